"""A long CPU run end to end: eager against ``torch_compile`` auto, each in a fresh process.

The same LoRA SFT run of the embedded default model on garden_facts (batch 8, 256 tokens,
constant learning rate 2e-4, no LoRA dropout), ``--steps`` optimizer steps, is trained through
the engine's own path with ``torch_compile`` off (eager), then unset (auto, which compiles
after its first steps where the CPU trains in bf16 and at least 5 minutes remain). Each run
starts in a process of its own, so neither inherits the other's allocator or thread state,
and ``--rounds 2`` alternates them (eager, auto, auto, eager) to spread any drift of the
machine over both. Prints each run's training seconds (compiling included), its step count,
last loss, its tokens/s over windows of steps (does a run slow down as it goes?), and the
ratio of the two settings' median training times.

    uv run python bench/compile_auto.py [--steps 90] [--rounds 1]

The default 90 steps take about 4-6 minutes eager on an `amx-bf16` CPU: just over auto's
threshold. The last line is one JSON object with the figures and the machine's conditions.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import benchenv
from train_throughput import bench_context, rows

SETTINGS: dict[str, bool | None] = {"eager": False, "auto": None}
# Tokens/s from the end of one optimizer step to the end of another (step 1 compiles, if at all).
WINDOWS = ((1, 10), (10, 40), (40, 90))


def make_step_log():
    from transformers import TrainerCallback

    class StepLog(TrainerCallback):
        """The time and the trained tokens at the end of every optimizer step."""

        def __init__(self) -> None:
            self.marks: dict[int, tuple[float, int]] = {}

        def on_step_end(self, args, state, control, **kwargs):
            self.marks[state.global_step] = (time.perf_counter(), int(state.num_input_tokens_seen))

        def windows(self) -> dict[str, float]:
            """Tokens/s between the ends of steps ``start`` and ``end`` of each window."""
            last = max(self.marks, default=0)
            figures = {}
            for start, end in WINDOWS:
                end = min(end, last)
                if start in self.marks and end > start:
                    (t0, n0), (t1, n1) = self.marks[start], self.marks[end]
                    figures[f"steps_{start}_{end}"] = round((n1 - n0) / (t1 - t0), 1)
            return figures

    return StepLog()


def run(model_path: str, data: Path, work: Path, steps: int, torch_compile: bool | None) -> dict:
    from garden.engine.training import JobSpec
    from garden.engine.training.backends import choose_precision, run_backend

    precision, _ = choose_precision("auto", "cpu")
    logged: list[str] = []
    spec = JobSpec(
        name="bench",
        dataset=str(data),
        max_steps=steps,
        epochs=1,
        batch_size=8,
        learning_rate=2e-4,
        lr_scheduler="constant",
        warmup_ratio=0.0,
        max_seq_len=256,
        lora_dropout=0.0,
        assistant_only_loss=True,
        checkpoint_interval=10_000,
        save_total_limit=1,
        torch_compile=torch_compile,
    )
    emit = lambda event: logged.append(str(getattr(event, "message", "") or ""))  # noqa: E731
    step_log = make_step_log()
    ctx = bench_context(
        spec, model_path, work / str(torch_compile), precision, emit=emit, callbacks=[step_log]
    )
    outcome = run_backend("trl_peft", ctx)
    compiled = [line for line in logged if line.startswith("Compiling")]
    return {
        "train_s": round(outcome.train_seconds, 1),
        "steps": outcome.steps,
        "final_loss": outcome.final_loss,
        "precision": precision,
        "compiled": compiled[0] if compiled else None,
        "tok_s": step_log.windows(),
    }


def run_here(name: str, steps: int) -> dict:
    """One run in this process (the child's side of ``run_fresh``)."""
    import psutil
    import torch

    from garden.models import prepare_default_model

    torch.set_num_threads(psutil.cpu_count(logical=False) or 1)
    model_path = str(prepare_default_model())
    with tempfile.TemporaryDirectory(prefix="garden-bench-") as tmp:
        work = Path(tmp)
        data = work / "train.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in rows(steps * 8 * 2)))
        return run(model_path, data, work, steps, SETTINGS[name])


def run_fresh(name: str, steps: int) -> dict:
    """One run in a new Python process; its last stdout line is the run's JSON."""
    command = [sys.executable, __file__, "--steps", str(steps), "--only", name]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise SystemExit(f"{name} run failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    return json.loads(lines[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=90)
    parser.add_argument("--rounds", type=int, default=1, help="2: eager, auto, auto, eager")
    parser.add_argument("--only", choices=list(SETTINGS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.only:
        print(json.dumps(run_here(args.only, args.steps)), flush=True)
        return
    load_before = benchenv.load_now()
    order: list[str] = []
    for round_number in range(args.rounds):
        pair = list(SETTINGS)
        order += pair if round_number % 2 == 0 else pair[::-1]
    runs: dict[str, list[dict]] = {name: [] for name in SETTINGS}
    for name in order:
        result = run_fresh(name, args.steps)
        runs[name].append(result)
        print(f"{name}: {result}", flush=True)
    eager_s = statistics.median(r["train_s"] for r in runs["eager"])
    auto_s = statistics.median(r["train_s"] for r in runs["auto"])
    figures = {
        "runs": runs,
        "order": order,
        "auto_time_ratio": round(auto_s / eager_s, 3) if eager_s else None,
        "steps": args.steps,
        "fresh_processes": True,
    }
    print(f"auto / eager training time (medians): {figures['auto_time_ratio']}")
    print(json.dumps({**figures, **benchenv.conditions(load_before)}))


if __name__ == "__main__":
    main()
