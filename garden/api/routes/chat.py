"""Chat with a listed model: the whole answer at once, or streamed as server-sent events."""

from __future__ import annotations

import json
from collections.abc import Iterator

from fastapi import APIRouter
from sse_starlette import EventSourceResponse, ServerSentEvent

from garden.api.errors import error_body
from garden.api.metrics import CHAT_TOKENS_PER_SECOND, CHAT_TTFT_SECONDS
from garden.api.views import find
from garden.errors import GardenError
from garden.services import chat, models
from garden.services.chat import Answer, ChatRequest, ChatStats
from garden.services.rest import WebChatRequest

router = APIRouter(prefix="/api/v1/chat", tags=["chat"])


def checked(request: ChatRequest) -> ChatRequest:
    """The request, if its model is one the chat engine can serve (default: the embedded one;
    hub ids cannot chat offline)."""
    if request.model:
        find(models.chat_choices(), request.model, "chat model", "/api/v1/models")
    return request


def observe(stats: ChatStats) -> None:
    if stats.ttft_s is not None:
        CHAT_TTFT_SECONDS.labels(stats.backend).observe(stats.ttft_s)
    if stats.tokens_per_second is not None:
        CHAT_TOKENS_PER_SECOND.labels(stats.backend).observe(stats.tokens_per_second)


@router.post("", summary="Answer a conversation (waits for the whole answer)")
def answer(request: WebChatRequest) -> Answer:
    result = chat.answer(checked(request))
    observe(result.stats)
    return result


@router.post(
    "/stream",
    summary="Answer a conversation as server-sent events",
    description=(
        "Events: `delta` (an AnswerDelta: the text so far and the new piece), then `done` "
        "(the last AnswerDelta, with its stats), or `error` ({error, hint})."
    ),
    response_class=EventSourceResponse,
)
def stream(request: WebChatRequest) -> EventSourceResponse:
    return EventSourceResponse(events(checked(request)))


def events(request: ChatRequest) -> Iterator[ServerSentEvent]:
    try:
        for delta in chat.stream_answer(request):
            if delta.stats is not None:
                observe(delta.stats)
            yield ServerSentEvent(
                data=delta.model_dump_json(), event="done" if delta.done else "delta"
            )
    except GardenError as exc:
        yield ServerSentEvent(data=json.dumps(error_body(exc.message, exc.hint)), event="error")
