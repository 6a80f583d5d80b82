"""What each GGUF quantisation costs: size, export time and ROUGE-L on the facts run's held-out
prompts, beside the unquantized model's.

Trains the garden_facts run as a user would (through the training service, in a throwaway
storage; the "Quick CPU demo" preset, its budget cut with ``--time-budget-s`` for a quicker
figure), then exports it as GGUF once per quant with the quality check on. Sizes and ROUGE-L do
not depend on the load (greedy answers); the seconds do.

    uv run python bench/quant_cost.py
    uv run python bench/quant_cost.py --time-budget-s 120 --quants q8_0,q4_1

The last line is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import benchenv

ROOT = Path(__file__).resolve().parent.parent
FACTS = ROOT / "assets" / "datasets" / "garden_facts.jsonl"
PRESET = "Quick CPU demo"
QUANTS = "f16,q8_0,q5_1,q5_0,q4_1,q4_0"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--time-budget-s", type=float, help="instead of the preset's budget")
    parser.add_argument("--quants", default=QUANTS, help=f"comma-separated (default {QUANTS})")
    args = parser.parse_args()
    load_before = benchenv.load_now()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from garden.services import export, training

    overrides = {"time_budget_s": args.time_budget_s} if args.time_budget_s else {}
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="garden-quant-") as tmp:
        settings = benchenv.private_storage(Path(tmp))
        spec = training.build_spec(
            {"dataset": str(FACTS), "name": "facts", **overrides}, preset=PRESET
        )
        done = training.wait(training.submit(spec, settings=settings).id, settings=settings)
        if done.status != "completed":
            raise SystemExit(f"the {PRESET} run ended {done.status}: {done.error}")
        for quant in args.quants.split(","):
            started = time.monotonic()
            request = export.ExportRequest(
                model="facts", format="gguf", quant=quant, check_quality=True
            )
            view = export.export(request, settings=settings)
            cost = view.quality
            assert cost is not None
            row = {
                "quant": quant,
                "size_mb": round(view.size_bytes / 1e6, 1),
                "export_and_check_s": round(time.monotonic() - started, 1),
                "check_s": cost.seconds,
                "prompts": cost.prompts,
                "rouge_l_unquantized": cost.rouge_l_unquantized,
                "rouge_l_quantized": cost.rouge_l_quantized,
                "same_answers": cost.same_answers,
            }
            rows.append(row)
            print(json.dumps(row))
    figures = {"preset": PRESET, "overrides": overrides, "steps": done.step, "quants": rows}
    print(json.dumps({**figures, **benchenv.conditions(load_before)}))


if __name__ == "__main__":
    main()
