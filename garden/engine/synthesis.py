"""The teacher of data synthesis: a local model (transformers, greedy, as an evaluation answers)
or an OpenAI-compatible endpoint, asked one prompt at a time for question/answer pairs."""

from __future__ import annotations

from pydantic import BaseModel

from garden.engine.evaluation.generation import answers
from garden.engine.evaluation.rows import HeldOutPrompt
from garden.engine.serving.remote import RemoteEndpoint, ask_once, endpoint_url, openai_client


class TeacherRequest(BaseModel):
    """Prompts for a local model (``model_path``) or an endpoint (``base_url`` and ``model``)."""

    prompts: list[str]
    max_new_tokens: int = 256
    model_path: str | None = None
    base_url: str | None = None
    model: str | None = None
    api_key: str | None = None


def local_replies(request: TeacherRequest) -> list[str]:
    """The local model's greedy reply to each prompt, in order."""
    import torch

    from garden.engine.evaluation.run import _load

    assert request.model_path is not None
    model, tokenizer = _load(request.model_path)
    if torch.cuda.is_available():
        model = model.to("cuda")
    prompts = [
        HeldOutPrompt(messages=[{"role": "user", "content": text}], reference="")
        for text in request.prompts
    ]
    return answers(model, tokenizer, prompts, request.max_new_tokens)


def remote_replies(request: TeacherRequest) -> list[str]:
    """The endpoint's reply to each prompt; ``ServingError`` when it cannot be reached or refuses."""
    assert request.base_url is not None and request.model is not None
    endpoint = RemoteEndpoint(endpoint_url(request.base_url), request.api_key or None)
    client = openai_client(endpoint)
    model = request.model
    return [
        ask_once(client, endpoint, model, text, request.max_new_tokens) for text in request.prompts
    ]


def replies_in_worker(request: dict[str, object]) -> list[str]:
    """``local_replies`` for a spawned worker process (the model never loads in the app)."""
    return local_replies(TeacherRequest.model_validate(request))
