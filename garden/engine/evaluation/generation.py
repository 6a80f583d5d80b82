"""Greedy answers to held-out prompts, batched, with the chat template's generation prompt."""

from __future__ import annotations

from typing import Any

from garden.engine.evaluation.rows import HeldOutPrompt
from garden.engine.training.tool_template import render_chat

BATCH_SIZE = 8


def answers(
    model: Any, tokenizer: Any, prompts: list[HeldOutPrompt], max_new_tokens: int
) -> list[str]:
    """The model's greedy answer to each prompt, in order."""
    import torch

    device = next(model.parameters()).device
    tokenizer.padding_side = "left"
    out: list[str] = []
    with torch.no_grad():
        for start in range(0, len(prompts), BATCH_SIZE):
            batch = prompts[start : start + BATCH_SIZE]
            texts = [
                render_chat(tokenizer, p.messages, p.tools, add_generation_prompt=True)
                for p in batch
            ]
            enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
            generated = model.generate(
                **enc.to(device),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
            )
            new_tokens = generated[:, enc["input_ids"].shape[1] :]
            out.extend(
                text.strip()
                for text in tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
            )
    return out
