"""One rank of a distributed run; ``accelerate launch`` starts it as
``python -m garden.engine.training.rank <task file>``.

Every rank trains; global rank 0 alone writes checkpoints (on every machine's local rank 0 when
the run spans machines, so each machine can resume) and the outputs. Each machine's local rank 0
reports logs, metrics and the outcome to the job's worker (``garden.engine.training.launcher``);
any rank that fails reports which rank it is and what went wrong.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import sys
import traceback
from collections.abc import Callable
from multiprocessing.connection import Client, Connection
from pathlib import Path
from typing import Any

from garden.engine.training.backends import choose_precision, run_backend, select_backend
from garden.engine.training.distributed import EVENTS_ADDRESS_ENV, EVENTS_KEY_ENV
from garden.engine.training.launcher import RankDone, RankFailure
from garden.engine.training.records import LogEvent, StartedEvent, WorkerEvent
from garden.engine.training.task import TrainTask, train_context
from garden.engine.training.worker import _limit_file_size, _stop_on_signal, classify_error
from garden.models import staging_dir


def _connect() -> Connection | None:
    address = os.environ.get(EVENTS_ADDRESS_ENV)
    key = os.environ.get(EVENTS_KEY_ENV)
    if not address or not key:
        return None
    host, port = address.rsplit(":", 1)
    return Client((host, int(port)), authkey=bytes.fromhex(key))


def synced_stop(local: Callable[[], bool], device: str) -> Callable[[], bool]:
    """A stop check that every rank answers alike: stop when any rank's machine asks to.

    Each machine sees only its own job's stop flag; one all-reduce per step spreads it.
    """

    def should_stop() -> bool:
        import torch
        import torch.distributed as dist

        wanted = torch.tensor([1 if local() else 0], device=device)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(wanted, op=dist.ReduceOp.MAX)
        return bool(wanted.item())

    return should_stop


def load_indexed_cpu_locations() -> None:
    """Let ``torch.load`` read ``cpu:N`` as the CPU.

    On resume, transformers loads a distributed run's optimizer state onto ``args.device``,
    which is ``cpu:0`` for a CPU rank, and torch's own CPU deserializer accepts only ``cpu``.
    """
    import torch.serialization

    def deserialize(storage: Any, location: str) -> Any:
        return storage if location.startswith("cpu:") else None

    torch.serialization.register_package(5, lambda storage: None, deserialize)


def run_rank(task: TrainTask, channel: Connection | None) -> int:
    """Train as this rank; returns the process exit code."""
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    reporter = local_rank == 0

    def send(item: Any) -> None:
        if channel is not None:
            with contextlib.suppress(OSError):
                channel.send(item)

    def emit(event: WorkerEvent) -> None:
        if reporter:
            send(event)

    try:
        _limit_file_size()
        spec = task.spec
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
        if device == "cuda":
            torch.cuda.set_device(local_rank)
        else:
            torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
            load_indexed_cpu_locations()
        backend, reason = select_backend(spec.backend, spec.method)
        if backend == "unsloth":
            backend, reason = "trl_peft", "auto: a multi-process run trains with TRL + PEFT"
        precision, precision_reason = choose_precision(spec.precision, device)
        started = StartedEvent(
            backend=backend,
            backend_reason=reason,
            device=device,
            precision=precision,
            pid=os.getpid(),
        )
        emit(started)
        emit(
            LogEvent(
                message=f"Rank {rank} of {world} ({task.plan.strategy}): backend {backend}; "
                f"device {device}; precision {precision} ({precision_reason}); "
                f"{torch.get_num_threads()} torch threads"
            )
        )
        staging = staging_dir(task.output_dir, task.job_id)
        ctx = train_context(task, staging, device, precision, emit)
        ctx.should_stop = synced_stop(
            ctx.should_stop, f"cuda:{local_rank}" if device == "cuda" else "cpu"
        )
        ctx.extra["skip_outputs"] = rank != 0
        ctx.extra["save_on_each_node"] = task.plan.num_machines > 1
        outcome = run_backend(backend, ctx)
        if reporter:
            send(RankDone(rank, started, outcome, writes_outputs=rank == 0))
        return 0
    except BaseException as exc:
        traceback.print_exc()
        kind, message, hint = classify_error(exc)
        send(RankFailure(rank, task.spec.machine_rank, kind, message, hint))
        return 1


def main(argv: list[str]) -> int:
    task: TrainTask = pickle.loads(Path(argv[1]).read_bytes())
    _stop_on_signal(task.checkpoint_dir)
    channel = _connect()
    try:
        return run_rank(task, channel)
    finally:
        if channel is not None:
            channel.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
