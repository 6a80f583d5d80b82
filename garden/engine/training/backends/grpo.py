"""GRPO through TRL's ``GRPOTrainer``: reinforcement learning with verifiable rewards.

Prompts are the user turns of chat rows (everything before the last assistant answer, which is
kept as the row's ``reference``) or text rows (each text as one user turn, no reference).
Completions are sampled with transformers' ``generate`` in the training process (TRL's vLLM
modes need a CUDA GPU); the rewards are ``garden.engine.training.rewards``. On a GPU the Unsloth
backend builds the model and this same trainer runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from garden.data.kinds import row_kind
from garden.engine.training.backends.context import TrainContext, TrainOutcome
from garden.engine.training.backends.trl_peft import (
    load_model,
    read_jsonl,
    run_trainer,
    trainer_arguments,
)
from garden.engine.training.rewards import reward_functions
from garden.errors import DatasetError


def prompt_rows(path: Path | None) -> list[dict[str, Any]]:
    """``{"prompt": [...], "reference": str, "tools"?: [...]}`` for each usable row."""
    rows = []
    for row in read_jsonl(path):
        kind = row_kind(row)
        if kind == "text":
            text = str(row.get("text") or "").strip()
            if text:
                rows.append({"prompt": [{"role": "user", "content": text}], "reference": ""})
            continue
        if kind != "chat":
            continue
        messages = row["messages"]
        last = max((i for i, m in enumerate(messages) if m.get("role") == "assistant"), default=0)
        if last == 0:
            continue
        prompt = [{"role": m["role"], "content": m.get("content") or ""} for m in messages[:last]]
        kept: dict[str, Any] = {"prompt": prompt, "reference": messages[last].get("content") or ""}
        if row.get("tools"):
            kept["tools"] = row["tools"]
        rows.append(kept)
    return rows


def grpo_arguments(ctx: TrainContext, reward_weights: list[float]) -> dict[str, Any]:
    """GRPO's own settings over the shared ones: a batch holds whole groups of completions."""
    spec = ctx.spec
    values = trainer_arguments(ctx, has_eval=False)
    groups = max(1, -(-spec.batch_size // spec.num_generations))
    values.update(
        per_device_train_batch_size=groups * spec.num_generations,
        gradient_accumulation_steps=spec.gradient_accumulation,
        num_generations=spec.num_generations,
        max_completion_length=spec.max_completion_length,
        temperature=spec.generation_temperature,
        reward_weights=reward_weights,
        beta=0.0,  # no reference model: half the memory, and TRL's default
        log_completions=False,
        include_num_input_tokens_seen="no",
    )
    return values


def train(ctx: TrainContext, model: Any = None, tokenizer: Any = None) -> TrainOutcome:
    """Train one GRPO job; ``model``/``tokenizer`` may come pre-built (Unsloth)."""
    from trl import GRPOConfig, GRPOTrainer

    spec = ctx.spec
    rows = prompt_rows(ctx.train_path)
    if not rows:
        raise DatasetError(
            f"No prompts (user turns) in {ctx.train_path}.",
            hint="Import a chat or text dataset for GRPO.",
        )
    if model is None or tokenizer is None:
        ctx.log(f"Loading model {ctx.model_path}")
        model, tokenizer = load_model(ctx)
    functions, weights = reward_functions(spec.rewards, spec.reward_file)
    names = ", ".join(f"{f.__name__}×{w:g}" for f, w in zip(functions, weights, strict=True))
    ctx.log(
        f"GRPO on {len(rows)} prompts: {spec.num_generations} completions each, up to "
        f"{spec.max_completion_length} tokens, rewards {names}"
    )
    args = GRPOConfig(**grpo_arguments(ctx, weights))
    return run_trainer(
        GRPOTrainer, ctx, model, tokenizer, args, rows, [], extra={"reward_funcs": functions}
    )
