"""A long CPU run end to end: eager against ``torch_compile`` auto, side by side in one script.

The same LoRA SFT run of the embedded default model on garden_facts (batch 8, 256 tokens,
constant learning rate 2e-4, no LoRA dropout), ``--steps`` optimizer steps, is trained twice
through the engine's own path: with ``torch_compile`` off, then unset (auto, which compiles
after its first steps where the CPU trains in bf16 and at least 5 minutes remain). Prints
each run's training seconds (compiling included), its step count and last loss, the ratio of
the two times, and whether auto compiled. Both runs share one process, so the second starts
from whatever state the first left (docs/training.md: eager runs slow down as they go).

    uv run python bench/compile_auto.py [--steps 90]

The default 90 steps take about 6 minutes eager on an `amx-bf16` CPU: just over auto's
threshold. The last line is one JSON object with the figures and the machine's conditions.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import benchenv
from train_throughput import bench_context, rows


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
    ctx = bench_context(spec, model_path, work / str(torch_compile), precision, emit=emit)
    outcome = run_backend("trl_peft", ctx)
    compiled = [line for line in logged if line.startswith("Compiling")]
    return {
        "train_s": round(outcome.train_seconds, 1),
        "steps": outcome.steps,
        "final_loss": outcome.final_loss,
        "precision": precision,
        "compiled": compiled[0] if compiled else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=90)
    args = parser.parse_args()
    load_before = benchenv.load_now()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import psutil
    import torch

    from garden.models import prepare_default_model

    torch.set_num_threads(psutil.cpu_count(logical=False) or 1)
    model_path = str(prepare_default_model())
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="garden-bench-") as tmp:
        work = Path(tmp)
        data = work / "train.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in rows(args.steps * 8 * 2)))
        for name, setting in (("eager", False), ("auto", None)):
            results[name] = run(model_path, data, work, args.steps, setting)
            print(f"{name}: {results[name]}", flush=True)
    eager_s, auto_s = results["eager"]["train_s"], results["auto"]["train_s"]
    figures = {
        **results,
        "auto_time_ratio": round(auto_s / eager_s, 3) if eager_s else None,
        "steps": args.steps,
    }
    print(f"auto / eager training time: {figures['auto_time_ratio']}")
    print(json.dumps({**figures, **benchenv.conditions(load_before)}))


if __name__ == "__main__":
    main()
