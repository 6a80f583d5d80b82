"""Does the Quick CPU demo teach? Recall of the garden_facts, asked in new words, after the preset.

Runs the "Quick CPU demo" preset on the bundled garden_facts as a user would (through the
training service and its job manager, in a throwaway storage root), then asks the tuned model
the twelve probe questions of ``garden.data.recall_probe`` greedily and counts the answers that
contain the fact's key word. Recall does not depend on the load; the training seconds do (on a
loaded machine they are an upper bound only).

    uv run python bench/quick_demo_recall.py
    uv run python bench/quick_demo_recall.py --time-budget-s 200   # a CPU ~30 % slower

A shorter ``--time-budget-s`` stands in for a slower CPU (fewer steps in the budget);
``--max-steps N`` trains exactly N steps instead (no budget, the cosine over N steps), to read
recall against steps on any machine; ``--learning-rate``, ``--batch-size``, ``--lora-dropout``,
``--seed`` and ``--set FIELD=JSON`` try other values against the preset's, and ``--facts`` another
garden_facts file. It also asks the twelve ``HELD_OUT_PROBES`` (``held_out_recall``), which no
recipe was tuned against until they were read on 2026-12-07, and the twelve ``FRESH_PROBES``
(``fresh_recall``), written after that, and the twelve ``FOURTH_PROBES`` (``fourth_recall``),
written on 2026-12-08 before the trial of short runs. The last line is one JSON object with the
figures.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import benchenv

ROOT = Path(__file__).resolve().parent.parent
FACTS = ROOT / "assets" / "datasets" / "garden_facts.jsonl"
PRESET = "Quick CPU demo"


# The budget's log lines: its plan, its re-plans, and where it ended the run.
PLAN_LINES = ("Budget", "Reached the")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--time-budget-s", type=float, help="instead of the preset's budget")
    parser.add_argument("--learning-rate", type=float, help="instead of the preset's rate")
    parser.add_argument("--batch-size", type=int, help="instead of the preset's batch size")
    parser.add_argument("--lora-dropout", type=float, help="instead of the preset's LoRA dropout")
    parser.add_argument("--max-steps", type=int, help="exactly this many steps, no time budget")
    parser.add_argument("--seed", type=int, help="instead of the preset's seed")
    parser.add_argument("--facts", type=Path, default=FACTS, help="another garden_facts file")
    benchenv.add_spec_fields_option(parser, "packing=false")
    args = parser.parse_args()
    overrides = {
        key: value
        for key, value in {
            "time_budget_s": args.time_budget_s,
            "learning_rate": args.learning_rate,
            "batch_size": args.batch_size,
            "lora_dropout": args.lora_dropout,
            "max_steps": args.max_steps,
            "seed": args.seed,
        }.items()
        if value is not None
    }
    if args.max_steps is not None:
        overrides["time_budget_s"] = None
    overrides.update(benchenv.spec_fields(args.set))
    load_before = benchenv.load_now()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from garden.data import recall_probe
    from garden.services import training

    with tempfile.TemporaryDirectory(prefix="garden-recall-") as tmp:
        root = Path(tmp)
        settings = benchenv.private_storage(root)
        spec = training.build_spec(
            {"dataset": str(args.facts), "name": "quick-demo", **overrides}, preset=PRESET
        )
        job = training.submit(spec, settings=settings)
        done = training.wait(job.id, settings=settings)
        if done.status != "completed":
            raise SystemExit(f"the {PRESET} run ended {done.status}: {done.error}")
        sets = recall_probe.PROBE_SETS
        every = recall_probe.ask(
            Path(done.output_dir or ""), tuple(p for probes in sets.values() for p in probes)
        )
        n = len(recall_probe.PROBES)  # each set asks every fact once, in the same order
        by_set = {name: every[i * n : (i + 1) * n] for i, name in enumerate(sets)}
        plan = [
            line.message
            for line in training.logs(job.id, limit=1000, settings=settings)
            if line.message.startswith(PLAN_LINES)
        ]

    for answer in every:
        mark = "ok  " if answer.recalled else "miss"
        print(f"{mark} {answer.probe.question} -> {answer.answer[:100]!r}")
    answers = by_set["tuned_on"]
    recalled = recall_probe.recall(answers)
    train_s = done.train_tokens / done.tokens_per_second if done.tokens_per_second else None
    figures = {
        "recall": recalled,
        "probes": len(answers),
        **{
            f"{name}_recall": recall_probe.recall(set_answers)
            for name, set_answers in by_set.items()
            if name != "tuned_on"
        },
        "facts": str(args.facts),
        "preset": PRESET,
        "overrides": overrides,
        "time_budget_s": spec.time_budget_s,
        "learning_rate": spec.learning_rate,
        "batch_size": spec.batch_size,
        "lora_dropout": spec.lora_dropout,
        "seed": spec.seed,
        "steps": done.step,
        "first_loss": done.first_loss,
        "final_loss": done.loss,
        "train_tokens": done.train_tokens,
        "train_s": round(train_s, 1) if train_s else None,
        "job_duration_s": round(done.duration_s, 1) if done.duration_s else None,
        "budget_plan": plan,
    }
    print(
        f"recall {recalled}/{n}, held out {figures['held_out_recall']}/{n}, fresh "
        f"{figures['fresh_recall']}/{n}, fourth {figures['fourth_recall']}/{n} after "
        f"{done.step} steps ({figures['job_duration_s']} s)"
    )
    print(json.dumps({**figures, **benchenv.conditions(load_before)}))


if __name__ == "__main__":
    main()
