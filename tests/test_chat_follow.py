"""The Chat tab's answer poller (``chat_tab._follow``) over a real ``AnswerStream`` fed by hand:
no model and no timing, the stream finishes exactly between two frames."""

from __future__ import annotations

from collections.abc import Iterator

from garden.services.chat import AnswerDelta, AnswerStream, ChatStats
from garden.ui.chat_tab import _follow, _Turn

STATS = ChatStats(
    model="SmolLM2-135M-Instruct",
    backend="onnx",
    tokens=3,
    prompt_tokens=12,
    ttft_s=0.2,
    duration_s=0.5,
    tokens_per_second=6.0,
    energy_kwh=None,
    finish_reason="stop",
)


def _stream() -> AnswerStream:
    return AnswerStream("ui-test", lambda _request_id: None, lambda: "transformers")


def _turn() -> _Turn:
    question = {"role": "user", "content": "Capital of France?"}
    return _Turn([question, {"role": "assistant", "content": ""}], [])


def test_an_answer_finishing_between_two_frames_ends_on_its_stats() -> None:
    stream, turn = _stream(), _turn()
    frames = _follow(turn, [stream], "session-race")
    first = next(frames)
    assert "generating" in first[3]
    # The answer thread finishes while Gradio holds the frame: text, stats, then done.
    stream.run(
        iter(
            [
                AnswerDelta(text="Paris", delta="Paris", tokens=1),
                AnswerDelta(text="Paris.", delta=".", tokens=3, stats=STATS, done=True),
            ]
        )
    )
    assert stream.done
    rest = list(frames)
    assert rest, "no frame after the answer finished: the page would keep 'generating…'"
    chat_a, _chat_b, _message, stats_a, _stats_b = rest[-1]
    assert "generating" not in stats_a
    assert "tok/s" in stats_a and "onnx" in stats_a
    assert chat_a[-1]["content"] == "Paris."


def test_a_finished_answer_gets_its_stats_in_the_only_frame() -> None:
    stream, turn = _stream(), _turn()
    stream.run(iter([AnswerDelta(text="Hi.", delta="Hi.", tokens=2, stats=STATS, done=True)]))
    frames = list(_follow(turn, [stream], "session-done"))
    assert len(frames) == 1
    assert "tok/s" in frames[-1][3]


def test_a_failed_answer_ends_on_its_error() -> None:
    stream, turn = _stream(), _turn()
    frames = _follow(turn, [stream, None], "session-error")
    next(frames)

    stream.run(_failing())
    last = list(frames)[-1]
    assert last[3].startswith("❌") and "boom" in last[3]


def _failing() -> Iterator[AnswerDelta]:
    yield AnswerDelta(text="Pa", delta="Pa", tokens=1)
    raise RuntimeError("boom")
