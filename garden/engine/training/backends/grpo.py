"""GRPO through TRL's ``GRPOTrainer``: reinforcement learning with verifiable rewards.

Prompts are the user turns of chat rows (everything before the last assistant answer, which is
kept as the row's ``reference``) or text rows (each text as one user turn, no reference).
Completions are sampled with transformers' ``generate`` in the training process (TRL's vLLM
modes need a CUDA GPU); the rewards are ``garden.engine.training.rewards``. On a GPU the Unsloth
backend builds the model and this same trainer runs. After each logged step a few of the step's
completions, with their rewards, go to the job (``SamplesEvent``) for the live view.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
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
from garden.engine.training.records import CompletionSample, SamplesEvent
from garden.engine.training.rewards import completion_text, prompt_text, reward_functions
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


SAMPLES_PER_STEP = 4
PROMPT_CHARS, COMPLETION_CHARS = 500, 1000


def _score(value: Any) -> float | None:
    return None if value is None or math.isnan(float(value)) else float(value)


def step_samples(
    logs: Mapping[str, Any], weights: list[float], step: int, limit: int = SAMPLES_PER_STEP
) -> list[CompletionSample]:
    """Up to ``limit`` completions spread over the batch TRL's ``GRPOTrainer`` keeps in
    ``_logs`` (prompts, completions, each function's rewards), with the weighted total."""
    prompts, completions = list(logs.get("prompt") or ()), list(logs.get("completion") or ())
    rewards = {name: list(values) for name, values in (logs.get("rewards") or {}).items()}
    count = min(len(prompts), len(completions))
    samples = []
    for index in range(0, count, max(1, count // limit))[:limit]:
        scores = {
            name: _score(values[index]) if index < len(values) else None
            for name, values in rewards.items()
        }
        known = [(w, s) for w, s in zip(weights, scores.values(), strict=False) if s is not None]
        samples.append(
            CompletionSample(
                step=step,
                prompt=prompt_text(prompts[index])[:PROMPT_CHARS],
                completion=completion_text(completions[index])[:COMPLETION_CHARS],
                rewards=scores,
                total=sum(w * s for w, s in known) if known else None,
            )
        )
    return samples


def sampled_trainer(trainer_class: type, ctx: TrainContext, weights: list[float]) -> type:
    """``trainer_class`` that reports a few completions of each logged training step."""

    class SampledGRPOTrainer(trainer_class):
        def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
            training = self.model.training
            super().log(logs, start_time)
            if not (training and "loss" in logs and self.accelerator.is_main_process):
                return
            samples = step_samples(getattr(self, "_logs", {}), weights, self.state.global_step)
            if samples:
                ctx.emit(SamplesEvent(samples=samples))

    return SampledGRPOTrainer


def grpo_arguments(ctx: TrainContext, reward_weights: list[float]) -> dict[str, Any]:
    """GRPO's own settings over the shared ones: a batch holds whole groups of completions."""
    spec = ctx.spec
    values = trainer_arguments(ctx, has_eval=False)
    values.update(
        per_device_train_batch_size=spec.prompt_groups * spec.num_generations,
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
    functions, weights = reward_functions(
        spec.rewards,
        spec.reward_file,
        ctx.extra.get("judge"),
        lambda level, message: ctx.log(message, level),
    )
    names = ", ".join(f"{f.__name__}×{w:g}" for f, w in zip(functions, weights, strict=True))
    ctx.log(
        f"GRPO on {len(rows)} prompts: {spec.num_generations} completions each, up to "
        f"{spec.max_completion_length} tokens, rewards {names}"
    )
    args = GRPOConfig(**grpo_arguments(ctx, weights))
    trainer_class = sampled_trainer(GRPOTrainer, ctx, weights)
    return run_trainer(
        trainer_class, ctx, model, tokenizer, args, rows, [], extra={"reward_funcs": functions}
    )
