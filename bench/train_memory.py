"""Peak memory per training rank: the default model on long chats, one and two processes.

Each case is a real job through the training service (as the CLI and the tabs submit it) on
chat rows long enough to fill every packed row: the CLI's defaults (no preset: batch 8, 512
tokens), the *LoRA* preset at ``max_seq_len`` 1024 (batch 8 per rank; one gradient
accumulation step and two optimizer steps here, since memory is per micro-batch) and the *Quick
CPU demo* preset (batch 1 of 256 tokens; two steps, not its time budget). While a job
runs, the resident set size (RSS) of its worker and of every process under it is sampled every
0.1 s; a rank's peak is the largest RSS of a training process (the worker itself with one
process, each ``torchrun`` rank with two). Memory does not depend on the machine's load.

    HF_HUB_OFFLINE=1 uv run python bench/train_memory.py [--cases cli-1,cli-2,lora1024-1,...]
        [--gradient-checkpointing auto|on|off] [--set FIELD=JSON ...]

``--set`` gives every case another spec field, e.g. ``--set 'precision="fp32"' --set
int8_matmuls=false``. Each case also prints the planner's estimate of a rank's peak (the job
log's "Memory: about … GB per process"), to compare with the measured one.

The last line is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import benchenv
import psutil

ROOT = Path(__file__).resolve().parent.parent
ALPACA = ROOT / "assets" / "datasets" / "alpaca_sample.jsonl"
CASES: dict[str, dict[str, Any]] = {
    "cli-1": {"preset": None, "values": {}, "processes": 1},
    "cli-2": {"preset": None, "values": {}, "processes": 2},
    "lora1024-1": {"preset": "LoRA", "values": {"gradient_accumulation": 1}, "processes": 1},
    "lora1024-2": {"preset": "LoRA", "values": {"gradient_accumulation": 1}, "processes": 2},
    "quick-1": {"preset": "Quick CPU demo", "values": {"time_budget_s": None}, "processes": 1},
}
GB = 1024**3


def long_chats(path: Path, rows: int = 64) -> Path:
    """Chats of several turns (≈600–1,500 tokens each) from the alpaca sample."""
    pairs = [json.loads(line) for line in ALPACA.read_text(encoding="utf-8").splitlines()]
    rng = random.Random(0)
    with path.open("w", encoding="utf-8") as out:
        for _ in range(rows):
            turns = []
            for pair in rng.sample(pairs, k=min(len(pairs), rng.randint(6, 12))):
                question = f"{pair.get('instruction', '')} {pair.get('input', '')}".strip()
                turns += [
                    {"role": "user", "content": question},
                    {"role": "assistant", "content": str(pair.get("output", "")) * 2},
                ]
            out.write(json.dumps({"messages": turns}) + "\n")
    return path


class PeakSampler(threading.Thread):
    """The peak RSS of each process under ``pid`` (and of ``pid``), sampled until stopped."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peaks: dict[int, tuple[str, int]] = {}
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            try:
                root = psutil.Process(self.pid)
                processes = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                return
            for proc in processes:
                try:
                    rss = proc.memory_info().rss
                    name = " ".join(proc.cmdline()[:3])[:80]
                except psutil.Error:
                    continue
                if rss > self.peaks.get(proc.pid, ("", 0))[1]:
                    self.peaks[proc.pid] = (name, rss)
            time.sleep(0.1)


def from_log(job_id: str, settings: Any) -> dict[str, Any]:
    """From the job's log: the planner's estimate of one rank's peak ("Memory: about … GB per
    process"), the precision, and whether the frozen weights multiplied in int8."""
    from garden.services import training

    lines = [line.message for line in training.logs(job_id, limit=1000, settings=settings)]
    text = "\n".join(lines)
    planned = re.search(r"Memory: about ([0-9.]+) GB per process", text)
    precision = re.search(r"; precision (\w+) \(", text)
    return {
        "planned_rank_gb": float(planned.group(1)) if planned else None,
        "precision": precision.group(1) if precision else None,
        "int8_frozen": "multiply in int8" in text,
    }


def run_case(
    name: str,
    case: dict[str, Any],
    settings: Any,
    dataset: Path,
    checkpointing: bool | None,
    overrides: dict[str, Any],
) -> dict[str, Any]:
    from garden.engine.training import queries
    from garden.services import training
    from garden.store import get_store

    values = {
        "dataset": str(dataset),
        "name": name,
        "max_steps": 2,
        "num_processes": case["processes"],
        **case["values"],
        "gradient_checkpointing": checkpointing,
        **overrides,
    }
    spec = training.build_spec(values, preset=case["preset"])
    job = training.submit(spec, settings=settings)
    deadline = time.monotonic() + 120
    while (pid := queries.get_job(get_store(settings.db_path), job.id).pid) is None:
        if time.monotonic() > deadline:
            raise SystemExit(f"{name}: the worker did not start")
        time.sleep(0.05)
    sampler = PeakSampler(pid)
    sampler.start()
    done = training.wait(job.id, settings=settings)
    sampler.done.set()
    sampler.join()
    if done.status != "completed":
        raise SystemExit(f"{name}: the run ended {done.status}: {done.error}")
    # With two processes the worker only launches the ranks: a rank is a process that imported
    # torch and trains, i.e. the largest processes under the worker.
    ranked = sorted(sampler.peaks.values(), key=lambda item: item[1], reverse=True)
    ranks = ranked[: case["processes"]]
    figures = {
        "case": name,
        "preset": case["preset"] or "CLI defaults",
        "processes": case["processes"],
        "batch_size": spec.batch_size,
        "max_seq_len": spec.max_seq_len,
        "gradient_checkpointing": "auto" if checkpointing is None else checkpointing,
        "train_tokens": done.train_tokens,
        "tokens_per_second": done.tokens_per_second,
        "overrides": overrides,
        "rank_peak_gb": [round(rss / GB, 2) for _, rss in ranks],
        **from_log(job.id, settings),
        "all_processes_peak_gb": round(sum(rss for _, rss in ranked) / GB, 2),
        "processes_seen": [(cmd, round(rss / GB, 2)) for cmd, rss in ranked[:6]],
    }
    print(json.dumps(figures))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--cases", default=",".join(CASES), help="comma list of " + ", ".join(CASES)
    )
    parser.add_argument(
        "--gradient-checkpointing",
        choices=("auto", "on", "off"),
        default="auto",
        help="auto: the trainer's rule (on for several CPU processes per machine)",
    )
    benchenv.add_spec_fields_option(parser, "int8_matmuls=false")
    args = parser.parse_args()
    overrides = benchenv.spec_fields(args.set)
    checkpointing = {"auto": None, "on": True, "off": False}[args.gradient_checkpointing]
    load_before = benchenv.load_now()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    results = []
    with tempfile.TemporaryDirectory(prefix="garden-memory-") as tmp:
        root = Path(tmp)
        settings = benchenv.private_storage(root)
        data = root / "long-chats"
        data.mkdir()
        long_chats(data / "train.jsonl")
        for name in args.cases.split(","):
            results.append(run_case(name, CASES[name], settings, data, checkpointing, overrides))
    print(
        json.dumps({"bench": "train_memory", "cases": results, **benchenv.conditions(load_before)})
    )


if __name__ == "__main__":
    main()
