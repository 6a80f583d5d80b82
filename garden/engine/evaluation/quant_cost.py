"""What a GGUF quantisation costs in quality: the run's held-out prompts answered greedily by the
unquantized model and by the GGUF (dequantized to fp32 by the app's own GGUF reader, which
``tests/test_models.py`` checks equals transformers' ``gguf_file=`` loading and takes seconds
where that takes about a minute on 2 cores: the answers are those of the quantized weights),
both scored with ROUGE-L against the references, so a user sees the cost before shipping."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from pydantic import BaseModel, Field

from garden.engine.evaluation import generation, metrics
from garden.engine.evaluation.records import EvalRequest
from garden.engine.evaluation.rows import held_out_prompt, read_rows
from garden.engine.evaluation.run import load_tuned
from garden.errors import DatasetError

MAX_PROMPTS = 16


class QuantCost(BaseModel):
    """ROUGE-L of the unquantized model and of its GGUF on the same held-out prompts."""

    quant: str
    prompts: int = Field(description="Held-out prompts both models answered")
    rouge_l_unquantized: float | None
    rouge_l_quantized: float | None
    same_answers: int = Field(description="Prompts the two answered word for word alike")
    seconds: float


def quantization_cost(request: EvalRequest, gguf_path: Path, quant: str) -> QuantCost:
    """Answer the run's held-out prompts with both models; ``DatasetError`` without any."""
    from transformers import AutoModelForCausalLM

    from garden.gguf_convert import convert_llama_gguf

    started = time.monotonic()
    path = Path(request.eval_path)
    if not path.is_file():
        raise DatasetError(
            f"No held-out split at {path} to measure the quantisation's cost on.",
            hint="Import the dataset with an eval fraction above 0, or export without the check.",
        )
    prompts = [p for p in map(held_out_prompt, read_rows(path)) if p is not None]
    prompts = prompts[: min(request.max_prompts, MAX_PROMPTS)]
    if not prompts:
        raise DatasetError(
            f"The held-out split {path.name} has no prompt with an answer to compare.",
            hint="Use a chat or instruction dataset, or export without the check.",
        )
    model, tokenizer = load_tuned(request)
    before = generation.answers(model, tokenizer, prompts, request.max_new_tokens)
    del model
    with tempfile.TemporaryDirectory(prefix="garden-quant-") as scratch:
        convert_llama_gguf(gguf_path, Path(scratch), say=lambda _: None, name_or_path=quant)
        quantized = AutoModelForCausalLM.from_pretrained(scratch)
    quantized.eval()
    after = generation.answers(quantized, tokenizer, prompts, request.max_new_tokens)
    references = [p.reference for p in prompts]
    return QuantCost(
        quant=quant,
        prompts=len(prompts),
        rouge_l_unquantized=metrics.mean(
            [metrics.rouge_l(a, r) for a, r in zip(before, references, strict=True)]
        ),
        rouge_l_quantized=metrics.mean(
            [metrics.rouge_l(a, r) for a, r in zip(after, references, strict=True)]
        ),
        same_answers=sum(a == b for a, b in zip(before, after, strict=True)),
        seconds=round(time.monotonic() - started, 1),
    )
