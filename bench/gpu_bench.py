"""The GPU halves of `bench/gpu_check.sh`: one training backend on CUDA, and the final report.

    uv run --no-sync python bench/gpu_bench.py train --backend unsloth [--steps 30]
    uv run --no-sync python bench/gpu_bench.py report RESULTS_DIR [--dry-run]

``train`` runs the engine's own backend (``trl_peft`` or ``unsloth``) on the same short LoRA job
of the embedded default model that ``bench/train_throughput.py`` uses, on ``cuda``, and ends
with one JSON line: trained tokens/s after the first step, and peak GPU memory. Run each
backend in a process of its own: Unsloth patches transformers and trl when it is imported.
``report`` merges the JSON lines that `gpu_check.sh` saved into one line.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import benchenv

MIB = 2**20


def train(args: argparse.Namespace) -> dict[str, Any]:
    if args.backend == "unsloth":
        import unsloth  # noqa: F401 - before transformers and trl, as in the engine's worker
    import torch
    from train_throughput import rows, run_ours

    from garden.models import prepare_default_model

    if not torch.cuda.is_available():
        raise SystemExit("error: no CUDA device is visible; run this on a machine with a GPU")
    model_path = str(prepare_default_model())
    with tempfile.TemporaryDirectory(prefix="garden-gpu-") as tmp:
        work = Path(tmp)
        data = work / "train.jsonl"
        data.write_text(
            "".join(json.dumps(r) + "\n" for r in rows(args.steps * args.batch_size * 8))
        )
        torch.cuda.reset_peak_memory_stats()
        ours = run_ours(model_path, data, args, work, backend=args.backend, device="cuda")
    return {
        "backend": args.backend,
        "tok_s": round(ours["tok_s"], 1),
        "peak_allocated_mib": round(torch.cuda.max_memory_allocated() / MIB),
        "peak_reserved_mib": round(torch.cuda.max_memory_reserved() / MIB),
        "precision": ours["precision"],
        "steps": ours["steps"],
    }


def gpu_facts() -> dict[str, Any]:
    query = "name,driver_version,memory.total"
    try:
        out = subprocess.run(
            ["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        return {"gpu": None, "gpu_error": f"nvidia-smi: {type(exc).__name__}"}
    first = [part.strip() for part in out.splitlines()[0].split(",")]
    return {
        "gpu": first[0],
        "gpu_count": len(out.splitlines()),
        "driver": first[1],
        "gpu_memory_mib": int(float(first[2])),
    }


def last_json(path: Path) -> dict[str, Any]:
    """The last JSON object line of a step's output, or an ``error`` naming what went wrong."""
    if not path.is_file():
        return {"error": "not run"}
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    for line in reversed(lines):
        if line.startswith("{"):
            try:
                return dict(json.loads(line))
            except ValueError:
                break
    tail = next((line for line in reversed(lines) if line.strip()), "no output")
    return {"error": tail[-300:]}


def report(results: Path, dry_run: bool, load_before: list[float]) -> dict[str, Any]:
    trl, unsloth = (
        last_json(results / "train_trl_peft.txt"),
        last_json(results / "train_unsloth.txt"),
    )
    serve = last_json(results / "serve.txt")
    errors = {
        name: step["error"]
        for name, step in (("trl_peft", trl), ("unsloth", unsloth), ("serve", serve))
        if "error" in step
    }
    ratio = None
    if trl.get("tok_s") and unsloth.get("tok_s"):
        ratio = round(unsloth["tok_s"] / trl["tok_s"], 2)
    figures: dict[str, Any] = {
        "dry_run": dry_run,
        "sync": (results / "sync.txt").read_text().strip()
        if (results / "sync.txt").is_file()
        else None,
        "trl_tok_s": trl.get("tok_s"),
        "trl_peak_allocated_mib": trl.get("peak_allocated_mib"),
        "unsloth_tok_s": unsloth.get("tok_s"),
        "unsloth_peak_allocated_mib": unsloth.get("peak_allocated_mib"),
        "unsloth_vs_trl": ratio,
        "train_steps": trl.get("steps") or unsloth.get("steps"),
        "precision": trl.get("precision") or unsloth.get("precision"),
        "vllm_tok_s": serve.get("vllm_tok_s"),
        "vllm_cold_start_s": serve.get("cold_start_s"),
        "vllm_ttft_p50_s": serve.get("ttft_p50_s"),
        "transformers_tok_s": serve.get("transformers_tok_s"),
        "errors": errors,
    }
    gpu = {"gpu": None} if dry_run else gpu_facts()
    return {**figures, **gpu, **benchenv.conditions(load_before)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    train_cmd = sub.add_parser("train", help="one backend, one JSON line")
    train_cmd.add_argument("--backend", choices=["trl_peft", "unsloth"], required=True)
    train_cmd.add_argument("--steps", type=int, default=30)
    train_cmd.add_argument("--batch-size", type=int, default=8)
    train_cmd.add_argument("--max-seq-len", type=int, default=256)
    report_cmd = sub.add_parser("report", help="merge the saved steps into one JSON line")
    report_cmd.add_argument("results", type=Path)
    report_cmd.add_argument("--dry-run", action="store_true")
    report_cmd.add_argument("--load-before", default=None, help="'1m 5m 15m' at the start")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.command == "train":
        print(json.dumps(train(args)))
        return
    load = [float(x) for x in args.load_before.split()] if args.load_before else benchenv.load_now()
    print(json.dumps(report(args.results, args.dry_run, load)))


if __name__ == "__main__":
    main()
