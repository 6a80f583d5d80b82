"""Chat with a listed model: the whole answer at once, or streamed as server-sent events."""

from __future__ import annotations

import json
from collections.abc import Iterator

from fastapi import APIRouter
from sse_starlette import EventSourceResponse, ServerSentEvent

from garden.api.errors import error_body
from garden.api.views import find
from garden.errors import GardenError
from garden.services import chat, models
from garden.services.chat import Answer, ChatRequest
from garden.services.rest import WebChatRequest

router = APIRouter(prefix="/api/v1/chat", tags=["chat"])


def checked(request: ChatRequest) -> ChatRequest:
    """The request, if its model is one the chat engine can serve (default: the embedded one;
    hub ids cannot chat offline); with an ``endpoint`` the model is the one it serves, and the
    chat service checks that the endpoint may be called (``endpoints.checked_here``)."""
    if request.model and request.endpoint is None:
        find(models.chat_choices(), request.model, "chat model", "/api/v1/models")
    return request


@router.post("", summary="Answer a conversation (waits for the whole answer)")
def answer(request: WebChatRequest) -> Answer:
    return chat.answer(checked(request))


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
            yield ServerSentEvent(
                data=delta.model_dump_json(), event="done" if delta.done else "delta"
            )
    except GardenError as exc:
        yield ServerSentEvent(data=json.dumps(error_body(exc.message, exc.hint)), event="error")
