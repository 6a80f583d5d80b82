"""From a conversation to a prompt: the model's chat tokenizer and the prompt's token ids."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from garden.engine.serving.types import message_text
from garden.engine.training.tool_template import render_chat
from garden.errors import ModelLoadError, ServingError


def load_chat_tokenizer(model_path: str) -> Any:
    """The tokenizer of ``model_path``; a model without a chat template cannot chat."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(model_path)
    except Exception as exc:
        raise ModelLoadError(
            f"Could not load the tokenizer of {model_path}: {exc}",
            hint="The model folder needs tokenizer.json / tokenizer_config.json.",
        ) from exc
    if not getattr(tokenizer, "chat_template", None):
        raise ModelLoadError(
            f"{Path(model_path).name} has no chat template, so it cannot chat.",
            hint="Pick an instruction-tuned model (e.g. the default SmolLM2-135M-Instruct).",
        )
    return tokenizer


def prompt_ids(
    tokenizer: Any,
    messages: list[dict[str, Any]],
    system_prompt: str = "",
    tools: list[dict[str, Any]] | None = None,
) -> list[int]:
    """The conversation (and ``tools``) in the model's template, as token ids."""
    conversation = [
        {"role": m["role"], "content": message_text(m.get("content"))}
        for m in messages
        if m.get("role") in ("system", "user", "assistant")
    ]
    if system_prompt.strip():
        conversation = [m for m in conversation if m["role"] != "system"]
        conversation.insert(0, {"role": "system", "content": system_prompt.strip()})
    if not conversation or conversation[-1]["role"] != "user":
        raise ServingError(
            "The conversation must end with a user message.", hint="Type a message first."
        )
    text = render_chat(tokenizer, conversation, tools, add_generation_prompt=True)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return [int(t) for t in ids]
