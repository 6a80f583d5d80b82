"""Distributed training through Hugging Face Accelerate: strategy, config file, launch command.

A job whose spec asks for more than one process in all (``num_processes`` per machine times
``num_machines``) runs its ranks under ``accelerate launch`` with one of the ready-made config
files in ``configs/accelerate/``; the command-line flags then set the counts and the addresses,
exactly as a person would pass them to ``accelerate launch``. One process changes nothing.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

from garden.engine.training.spec import JobSpec
from garden.errors import JobError

CONFIG_DIR = Path(__file__).resolve().parents[3] / "configs" / "accelerate"
CONFIG_FILES = {
    "cpu": "cpu_ddp.yaml",
    "ddp": "multi_gpu_ddp.yaml",
    "multi_node": "multi_node.yaml",
    "fsdp": "fsdp.yaml",
    "deepspeed": "deepspeed_zero2.yaml",
}
RANK_MODULE = "garden.engine.training.rank"
EVENTS_ADDRESS_ENV = "GARDEN_RANK_EVENTS"
EVENTS_KEY_ENV = "GARDEN_RANK_EVENTS_KEY"


@dataclass(frozen=True)
class Layout:
    """How a job's training is spread: the resolved strategy and the process counts."""

    strategy: str  # "single", "ddp", "fsdp" or "deepspeed"
    num_processes: int  # per machine
    num_machines: int
    device: str

    @property
    def world_size(self) -> int:
        return self.num_processes * self.num_machines


def deepspeed_installed() -> bool:
    return importlib.util.find_spec("deepspeed") is not None


def plan_layout(spec: JobSpec, gpu_memories: list[int], model_bytes_per_gpu: int) -> Layout:
    """Resolve ``strategy`` for the visible devices, or raise a one-line ``JobError``.

    ``gpu_memories`` lists the bytes of every visible GPU (empty on a CPU machine);
    ``model_bytes_per_gpu`` is the estimated peak memory of the run on one device.
    ``auto`` uses every visible GPU with DDP (FSDP when the run does not fit on one GPU);
    on the CPU it is DDP over gloo when more than one process is asked for.
    """
    device = "cuda" if gpu_memories else "cpu"
    processes = spec.num_processes
    if spec.strategy == "auto" and device == "cuda" and processes == 1:
        processes = len(gpu_memories)
    if processes * spec.num_machines > 1 and spec.backend == "unsloth":
        raise JobError(
            f"The Unsloth backend trains in one process; this job asks for "
            f"{processes * spec.num_machines}.",
            hint="Choose backend 'trl_peft' (or 'auto') for multi-process training, "
            "or set processes to 1.",
        )
    if device == "cpu" and spec.strategy in ("fsdp", "deepspeed"):
        raise JobError(
            f"Strategy {spec.strategy!r} needs CUDA GPUs and none was found.",
            hint="Use strategy 'ddp' (or 'auto'): on the CPU it runs DDP over gloo.",
        )
    if spec.strategy == "deepspeed" and not deepspeed_installed():
        raise JobError(
            "Strategy 'deepspeed' needs DeepSpeed and it is not installed.",
            hint="Install it (`uv pip install deepspeed`) or use strategy 'fsdp' or 'ddp'.",
        )
    if device == "cuda" and processes > len(gpu_memories):
        raise JobError(
            f"This job asks for {processes} processes per machine and {len(gpu_memories)} "
            "GPU(s) are visible: one process drives one GPU.",
            hint=f"Set processes to at most {len(gpu_memories)}.",
        )
    cores = physical_cores()
    if device == "cpu" and processes > cores:
        raise JobError(
            f"This job asks for {processes} CPU processes and this machine has {cores} cores.",
            hint=f"Set processes to at most {cores}: each CPU process needs a core of its own.",
        )
    if spec.method == "qlora" and spec.strategy in ("fsdp", "deepspeed"):
        raise JobError(
            f"QLoRA with {spec.strategy} is not supported here.",
            hint="Use strategy 'ddp' for multi-GPU QLoRA, or LoRA with FSDP.",
        )
    strategy: str = spec.strategy
    if strategy == "auto":
        fits = not gpu_memories or model_bytes_per_gpu <= min(gpu_memories)
        strategy = "ddp" if fits or spec.method == "qlora" else "fsdp"
    if processes * spec.num_machines == 1:
        strategy = "single"
    return Layout(strategy, processes, spec.num_machines, device)


def config_file(layout: Layout) -> Path:
    """The ``configs/accelerate/`` file for a layout."""
    if layout.device == "cpu":
        key = "cpu"
    elif layout.strategy in ("fsdp", "deepspeed"):
        key = layout.strategy
    else:
        key = "multi_node" if layout.num_machines > 1 else "ddp"
    path = CONFIG_DIR / CONFIG_FILES[key]
    if not path.is_file():
        raise JobError(
            f"The Accelerate config file {path} is missing.",
            hint="Run Model Garden from its source tree, which ships configs/accelerate/.",
        )
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def physical_cores() -> int:
    """The physical cores this process may run on (a `taskset` or container CPU set counts)."""
    import psutil

    physical = psutil.cpu_count(logical=False) or os.cpu_count() or 1
    try:
        allowed = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        allowed = physical
    return max(1, min(physical, allowed))


def threads_per_process(layout: Layout) -> int:
    """CPU threads per rank: the machine's physical cores shared among its ranks."""
    return max(1, physical_cores() // layout.num_processes)


def launch_command(spec: JobSpec, layout: Layout, task_file: Path) -> list[str]:
    """The ``accelerate launch`` command that starts this machine's ranks for ``task_file``.

    Accelerate's ``--num_processes`` counts the processes of all machines together.
    """
    port = spec.main_process_port or free_port()
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(config_file(layout)),
        "--num_processes",
        str(layout.world_size),
        "--num_machines",
        str(layout.num_machines),
        "--machine_rank",
        str(spec.machine_rank),
        "--main_process_ip",
        spec.main_process_ip or "127.0.0.1",
        "--main_process_port",
        str(port),
    ]
    if layout.device == "cpu":
        command += ["--num_cpu_threads_per_process", str(threads_per_process(layout))]
    return [*command, "-m", RANK_MODULE, str(task_file)]
