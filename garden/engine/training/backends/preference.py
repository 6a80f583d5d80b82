"""Preference tuning through TRL: DPO and ORPO on preference pairs, KTO on labelled answers.

Rows come in the ``garden.data.kinds`` shapes, which are TRL's conversational formats, so the
trainers apply the chat template themselves; an answer's ``reasoning`` is handed over the way
that template takes it (``garden.data.reasoning.for_template``). With LoRA the reference model of DPO and KTO is
the base with the adapter disabled (TRL's default for a PEFT model): no second copy in memory.
ORPO needs no reference model. On a GPU the Unsloth backend builds the model and the same TRL
trainers run (Unsloth patches them); nothing here is specific to it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from garden.data.reasoning import for_template, template_keys
from garden.engine.training.backends.context import TrainContext, TrainOutcome
from garden.engine.training.backends.trl_peft import (
    load_model,
    read_jsonl,
    run_trainer,
    trainer_arguments,
)
from garden.errors import DatasetError


def _trainer_classes(objective: str) -> tuple[Any, Any]:
    """The TRL config and trainer classes of ``objective``."""
    if objective == "dpo":
        from trl import DPOConfig, DPOTrainer

        return DPOConfig, DPOTrainer
    if objective == "kto":
        from trl import KTOConfig, KTOTrainer

        return KTOConfig, KTOTrainer
    if objective == "orpo":
        from trl.experimental.orpo import ORPOConfig, ORPOTrainer

        return ORPOConfig, ORPOTrainer
    raise ValueError(f"not a preference objective: {objective}")


def objective_arguments(ctx: TrainContext) -> dict[str, Any]:
    """What the objective's config adds to the shared training arguments."""
    spec = ctx.spec
    values: dict[str, Any] = {"beta": spec.beta, "max_length": spec.max_seq_len}
    if spec.objective == "orpo":
        values["max_completion_length"] = spec.max_seq_len // 2
    return values


def _rows(ctx: TrainContext, path: Path | None) -> list[dict[str, Any]]:
    """The rows with the fields the objective's trainer reads (``tools`` kept when present)."""
    fields = (
        ("prompt", "completion", "label")
        if ctx.spec.objective == "kto"
        else ("prompt", "chosen", "rejected")
    )
    rows = []
    for row in read_jsonl(path):
        kept = {key: row[key] for key in (*fields, "tools") if key in row}
        if all(key in kept for key in fields):
            rows.append(kept)
    return rows


TURN_LISTS = ("prompt", "chosen", "rejected", "completion")


def _reasoning_for(tokenizer: Any, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows' turns with their reasoning as ``tokenizer``'s chat template takes it."""
    keys = template_keys(getattr(tokenizer, "chat_template", None))
    return [
        {
            key: for_template(value, keys) if key in TURN_LISTS else value
            for key, value in row.items()
        }
        for row in rows
    ]


def train(ctx: TrainContext, model: Any = None, tokenizer: Any = None) -> TrainOutcome:
    """Train one preference job; ``model``/``tokenizer`` may come pre-built (Unsloth)."""
    spec = ctx.spec
    train_rows, eval_rows = _rows(ctx, ctx.train_path), _rows(ctx, ctx.eval_path)
    if not train_rows:
        needs = "prompt/completion/label" if spec.objective == "kto" else "prompt/chosen/rejected"
        raise DatasetError(
            f"No {spec.objective.upper()} examples ({needs}) in {ctx.train_path}.",
            hint="Import a preference dataset in the Data tab, or choose SFT.",
        )
    if model is None or tokenizer is None:
        ctx.log(f"Loading model {ctx.model_path}")
        model, tokenizer = load_model(ctx)
    ctx.log(
        f"{spec.objective.upper()} (beta {spec.beta}) on {len(train_rows)} train / "
        f"{len(eval_rows)} eval examples"
    )
    train_rows, eval_rows = (
        _reasoning_for(tokenizer, train_rows),
        _reasoning_for(tokenizer, eval_rows),
    )
    config_class, trainer_class = _trainer_classes(spec.objective)
    args = config_class(
        **trainer_arguments(ctx, has_eval=bool(eval_rows)), **objective_arguments(ctx)
    )
    return run_trainer(trainer_class, ctx, model, tokenizer, args, train_rows, eval_rows)
