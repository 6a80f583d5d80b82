"""`garden.services.chat` on the real default model with the real transformers backend."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from garden import present
from garden.config import Settings
from garden.errors import ModelLoadError, ServingError
from garden.models import DEFAULT_MODEL_NAME
from garden.services import chat
from garden.services.chat import ChatMessage, ChatRequest, Conversation, GenerationSettings

pytestmark = pytest.mark.slow

BACKEND = "transformers"
GREEDY = GenerationSettings(temperature=0, max_new_tokens=24)


def ask(question: str, generation: GenerationSettings = GREEDY) -> ChatRequest:
    messages = [ChatMessage(role="user", content=question)]
    return ChatRequest(backend=BACKEND, messages=messages, generation=generation)


@pytest.fixture(scope="module")
def loaded(default_model_path: Path) -> Iterator[chat.EngineStatusView]:
    """The default model on the transformers backend, loaded through the service."""
    before = chat.engine_status(DEFAULT_MODEL_NAME, BACKEND)
    assert before.state == "not_loaded" and "not loaded" in before.text
    assert chat.load(None, BACKEND).state in ("loading", "ready")
    yield chat.wait_ready(None, BACKEND, timeout=300)
    chat.shutdown()


def test_load_reports_the_serving_backend(loaded: chat.EngineStatusView) -> None:
    assert loaded.state == "ready" and loaded.backend == BACKEND
    assert loaded.label == loaded.model == DEFAULT_MODEL_NAME
    assert BACKEND in loaded.text
    status = chat.engine_status(DEFAULT_MODEL_NAME, BACKEND)
    assert status.state == "ready" and not chat.is_loading(DEFAULT_MODEL_NAME, BACKEND)


def test_greedy_answer_streams_in_pieces_with_its_figures(loaded: chat.EngineStatusView) -> None:
    deltas = list(chat.stream_answer(ask("What is the capital of France?")))
    pieces, last = deltas[:-1], deltas[-1]
    assert len(pieces) > 1 and all(not d.done and d.stats is None for d in pieces)
    assert all(b.text == a.text + b.delta for a, b in itertools.pairwise(pieces))
    assert last.done and "Paris" in last.text
    stats = last.stats
    assert stats is not None
    assert stats.model == DEFAULT_MODEL_NAME and stats.backend == BACKEND
    assert stats.tokens == pieces[-1].tokens > 1 and stats.prompt_tokens > 5
    assert stats.finish_reason in ("stop", "length")
    assert stats.ttft_s is not None and 0 < stats.ttft_s < stats.duration_s
    assert stats.tokens_per_second == pytest.approx(stats.tokens / stats.duration_s, rel=0.05)
    assert stats.energy_kwh is not None and stats.energy_kwh >= 0
    line = present.answer_stats(stats)
    assert f"{stats.tokens} tokens" in line and "tok/s" in line and line.endswith(BACKEND)
    assert f"`{BACKEND}`" in present.answer_stats(stats, markdown=True)


def test_answer_is_the_same_text_as_the_stream(loaded: chat.EngineStatusView) -> None:
    pieces: list[str] = []
    reply = chat.answer(ask("What is the capital of France?"), on_text=pieces.append)
    assert "Paris" in reply.text and "".join(pieces) == reply.text
    assert reply.stats.tokens > 0


def test_bad_settings_are_typed_errors_that_name_the_setting() -> None:
    with pytest.raises(ServingError, match="temperature") as info:
        GenerationSettings(temperature=-1)
    assert info.value.hint
    with pytest.raises(ServingError, match=r"top-p.*max new tokens"):
        GenerationSettings(top_p=0, max_new_tokens=0)
    with pytest.raises(ValidationError):
        GenerationSettings(max_new_tokens="many")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        ChatRequest(backend="llama", messages=[])  # type: ignore[arg-type]
    config = GenerationSettings(temperature=0, stop=["\n"], seed=3).to_config()
    assert config.greedy and config.stop == ["\n"] and config.seed == 3


def test_a_background_answer_can_be_stopped(loaded: chat.EngineStatusView) -> None:
    long = GenerationSettings(temperature=0, max_new_tokens=400)
    stream = chat.start_answer(ask("Tell me a very long story.", long))
    deadline = time.monotonic() + 120
    while not stream.text and time.monotonic() < deadline:
        time.sleep(0.05)
    assert stream.text and stream.backend == BACKEND
    stream.abort()
    while not stream.done and time.monotonic() < deadline:
        time.sleep(0.05)
    assert stream.done and stream.error is None and stream.stats is not None
    assert stream.stats.finish_reason == "abort" and stream.stats.tokens < 400


def test_unknown_model_is_a_clear_error() -> None:
    with pytest.raises(ModelLoadError, match="Unknown model"):
        chat.load("no-such-model", BACKEND)
    assert chat.engine_status("no-such-model", BACKEND).state == "not_loaded"


def test_export_writes_the_conversations_under_temp(isolated_settings: Settings) -> None:
    history = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": [{"type": "text", "text": "Hello!"}]},
        {"role": "tool", "content": "dropped"},
    ]
    messages = chat.to_messages(history)
    assert [m.content for m in messages] == ["Hi", "Hello!"]
    path = chat.export_conversation(
        [Conversation(model=DEFAULT_MODEL_NAME, messages=messages)],
        BACKEND,
        GREEDY,
        settings=isolated_settings,
    )
    assert path.parent == isolated_settings.temp_path and path.suffix == ".json"
    data = json.loads(path.read_text())
    assert data["backend"] == BACKEND and data["generation_settings"]["temperature"] == 0
    assert data["conversations"] == [
        {
            "model": DEFAULT_MODEL_NAME,
            "messages": [
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello!"},
            ],
        }
    ]


def test_unload_frees_the_engine(loaded: chat.EngineStatusView) -> None:
    assert chat.unload([DEFAULT_MODEL_NAME], BACKEND) == [DEFAULT_MODEL_NAME]
    assert chat.engine_status(DEFAULT_MODEL_NAME, BACKEND).state == "not_loaded"
    assert chat.unload([DEFAULT_MODEL_NAME], BACKEND) == []
