"""One evaluation of a run: the tuned model loaded once (the LoRA adapter on the base model,
switched off with PEFT's ``disable_adapter()`` for the base answers), then every metric."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

from garden.engine.evaluation import generation, metrics
from garden.engine.evaluation.loss import held_out_loss, perplexity
from garden.engine.evaluation.records import EvalRequest, EvaluationResult, SidePair
from garden.engine.evaluation.rows import held_out_prompt, loss_row, prompt_text, read_rows
from garden.errors import DatasetError, GardenError


def _load(path: str) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(path)
    model.eval()
    return model, tokenizer


@contextmanager
def _base_of(request: EvalRequest, tuned: Any) -> Iterator[Any]:
    """The base model: the tuned one with its adapter off, or (full fine-tune) a second load."""
    if request.adapter_dir:
        with tuned.disable_adapter():
            yield tuned
        return
    base, _ = _load(request.base_model_path)
    yield base


def load_tuned(request: EvalRequest) -> tuple[Any, Any]:
    """The tuned model and its tokenizer, on the GPU when there is one."""
    import torch

    if request.adapter_dir:
        from peft import PeftModel

        base, tokenizer = _load(request.base_model_path)
        model = PeftModel.from_pretrained(base, request.adapter_dir)
    elif request.tuned_dir:
        model, tokenizer = _load(request.tuned_dir)
    else:
        raise GardenError(f"Run {request.job_id} has no saved model to evaluate.")
    if torch.cuda.is_available():
        model = model.to("cuda")
    model.eval()
    return model, tokenizer


def evaluate(request: EvalRequest) -> EvaluationResult:
    """Every metric of the run on ``request.eval_path``; the judge's failure is kept in
    ``judge_error`` and never loses the other metrics."""
    started = time.monotonic()
    path = Path(request.eval_path)
    if not path.is_file():
        raise DatasetError(
            f"No held-out split at {path}.",
            hint="Import the dataset with an eval fraction above 0, or pass --dataset ID.",
        )
    rows = read_rows(path)
    model, tokenizer = load_tuned(request)
    scored = [row for row in map(loss_row, rows) if row is not None]
    loss, loss_rows = held_out_loss(model, tokenizer, scored, request.max_seq_len)
    prompts = [p for p in map(held_out_prompt, rows) if p is not None][: request.max_prompts]
    tuned = generation.answers(model, tokenizer, prompts, request.max_new_tokens)
    base_context: AbstractContextManager[Any] = (
        _base_of(request, model) if prompts else nullcontext(model)
    )
    with base_context as base_model:
        base = generation.answers(base_model, tokenizer, prompts, request.max_new_tokens)
    pairs = [
        SidePair(prompt=prompt_text(p), reference=p.reference, base=b, tuned=t)
        for p, b, t in zip(prompts, base, tuned, strict=True)
    ]
    result = EvaluationResult(
        job_id=request.job_id,
        model=request.model,
        dataset_id=request.dataset_id,
        eval_loss=loss,
        perplexity=perplexity(loss),
        loss_rows=loss_rows,
        rouge_l=metrics.mean([metrics.rouge_l(p.tuned, p.reference) for p in pairs]),
        exact_match=metrics.mean([float(metrics.exact_match(p.tuned, p.reference)) for p in pairs]),
        contains_match=metrics.mean(
            [float(metrics.contains_match(p.tuned, p.reference)) for p in pairs]
        ),
        base_rouge_l=metrics.mean([metrics.rouge_l(p.base, p.reference) for p in pairs]),
        n=len(pairs),
        pairs=pairs,
    )
    if request.judge is not None and pairs:
        result = _judged(request, result)
    return result.model_copy(update={"seconds": round(time.monotonic() - started, 3)})


def _judged(request: EvalRequest, result: EvaluationResult) -> EvaluationResult:
    from garden.engine.evaluation.judge import win_rate

    assert request.judge is not None
    try:
        rate = win_rate(request.judge, result.pairs)
    except GardenError as exc:
        return result.model_copy(update={"judge_error": f"Judge not used: {exc.message}"})
    return result.model_copy(update={"judge_win_rate": rate})
