"""vLLM's parallelism (tensor, pipeline, data) from the settings, checked against the devices.

vLLM runs one process per rank: ``tensor × pipeline × data`` ranks need as many CUDA devices on
one machine, or, on a CPU, as many cores (vLLM's CPU backend binds each rank's OpenMP threads
to cores of its own and talks between ranks over gloo). Across machines the ranks are placed
by Ray (``--distributed-executor-backend ray``), which checks the cluster's devices itself.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from garden.config import Settings
from garden.errors import ConfigError

SERVING_DOC = "docs/serving.md (Parallel serving)"
DEFAULT_CPU_KV_CACHE_GB = "1"  # GB of KV cache vLLM reserves on a CPU


@dataclass(frozen=True)
class ParallelSizes:
    tensor: int = 1
    pipeline: int = 1
    data: int = 1

    @classmethod
    def of(cls, settings: Settings) -> ParallelSizes:
        return cls(
            settings.vllm_tensor_parallel_size,
            settings.vllm_pipeline_parallel_size,
            settings.vllm_data_parallel_size,
        )

    @property
    def ranks(self) -> int:
        return self.tensor * self.pipeline * self.data

    def engine_kwargs(self) -> dict[str, Any]:
        """vLLM's own engine arguments (``--tensor-parallel-size`` … on its command line)."""
        return {
            "tensor_parallel_size": self.tensor,
            "pipeline_parallel_size": self.pipeline,
            "data_parallel_size": self.data,
        }

    def describe(self) -> str:
        """The settings behind the rank count, e.g. ``VLLM_TENSOR_PARALLEL_SIZE=2 × …``."""
        named = {
            "VLLM_TENSOR_PARALLEL_SIZE": self.tensor,
            "VLLM_PIPELINE_PARALLEL_SIZE": self.pipeline,
            "VLLM_DATA_PARALLEL_SIZE": self.data,
        }
        shown = [f"{name}={value}" for name, value in named.items() if value > 1]
        return " × ".join(shown or ["VLLM_TENSOR_PARALLEL_SIZE=1"])


def visible_devices() -> tuple[str, int]:
    """("cuda", number of visible GPUs), or ("cpu", number of usable cores)."""
    import torch

    if torch.cuda.is_available():
        return "cuda", torch.cuda.device_count()
    return "cpu", usable_cpus()


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask, not the whole machine)."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def check_parallel(sizes: ParallelSizes, device: str, count: int) -> None:
    """Raise a one-line ``ConfigError`` naming the setting when the ranks do not fit."""
    if sizes.ranks <= count:
        return
    if device == "cuda":
        raise ConfigError(
            f"{sizes.describe()} needs {sizes.ranks} GPUs, but {count} CUDA device(s) "
            "are visible on this machine.",
            hint="Lower the setting, or make more GPUs visible (CUDA_VISIBLE_DEVICES); "
            f"to span machines use Ray, see {SERVING_DOC}.",
        )
    raise ConfigError(
        f"{sizes.describe()} needs {sizes.ranks} vLLM ranks, but only {count} CPU core(s) "
        "are usable here (on a CPU each rank is a process with cores of its own).",
        hint=f"Lower the setting to fit the cores, or serve on GPUs; see {SERVING_DOC}.",
    )


def engine_environment(device: str) -> dict[str, str]:
    """Environment defaults for a vLLM engine on ``device`` (a caller's own values win)."""
    if device == "cpu":
        return {"VLLM_CPU_KVCACHE_SPACE": DEFAULT_CPU_KV_CACHE_GB}
    return {}
