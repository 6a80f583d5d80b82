"""One answer from a backend's chunks: stop strings, abort, time to first token, totals."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from garden.engine.serving.types import AnswerStats, Backend, ChatDelta, GenerationRequest


@dataclass
class AnswerEnd:
    """How an answer ended: its whole text, tokens made, and the finish reason seen."""

    text: str = ""
    tokens: int = 0
    finish: str | None = None


def answer_deltas(
    backend: Backend,
    request: GenerationRequest,
    stats: AnswerStats,
    aborted: Callable[[], bool],
    end: AnswerEnd,
) -> Iterator[ChatDelta]:
    """Yield the answer's text deltas; cut at the first stop string, stop when ``aborted()``.

    Fills ``end`` and ``stats.ttft_s`` (seconds, unrounded) as it goes."""
    t_start = time.time()
    request_id = request.request_id
    stops = [s for s in request.config.stop if s]
    for chunk in backend.stream(request):
        if aborted():
            backend.abort(request_id)
            end.finish = "abort"
            return
        if chunk.tokens and stats.ttft_s is None:
            stats.ttft_s = time.time() - t_start
        end.text += chunk.delta
        end.tokens = chunk.tokens
        end.finish = chunk.finish_reason or end.finish
        hit = first_stop(end.text, stops)
        if hit is not None:
            end.text = end.text[:hit]
            end.finish = "stop"
            backend.abort(request_id)
            return
        if chunk.delta:
            yield ChatDelta(chunk.delta, end.text, end.tokens, backend=backend.name)
        if chunk.finish_reason:
            return


def first_stop(text: str, stops: list[str]) -> int | None:
    hits = [text.find(s) for s in stops if s in text]
    return min(hits) if hits else None
