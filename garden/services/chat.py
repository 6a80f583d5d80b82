"""Chat: load a model on a backend, stream answers with their figures, stop them, export them.

Engines are shared by every caller (see ``garden.engine.serving``): a model is named by its id
or name (what ``services.models.chat_choices`` lists) and a backend from :data:`BACKENDS`.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from garden.config import Settings
from garden.data.limits import temp_file
from garden.engine.serving import (
    BACKENDS,
    AnswerStats,
    ChatEngine,
    ChatTarget,
    EngineStatus,
    GenerationConfig,
    get_engine,
    peek_engine,
    resolve_target,
    shutdown_all,
    unload_engine,
)
from garden.engine.serving.auto import missing_package
from garden.engine.serving.remote import remote_chats
from garden.engine.serving.types import LOAD_WAIT_S, BackendName, ChatDelta, message_text
from garden.engine.training.chat_pause import training_paused
from garden.errors import GardenError, ServingError
from garden.services import telemetry
from garden.services.base import View, resolve
from garden.services.endpoints import Endpoint, checked_here
from garden.services.tools import ToolCallView, ToolSchema, undeclared_calls

__all__ = [
    "BACKENDS",
    "Answer",
    "AnswerDelta",
    "AnswerStream",
    "ChatMessage",
    "ChatRequest",
    "ChatStats",
    "Conversation",
    "Endpoint",
    "EngineStatusView",
    "GenerationSettings",
    "ToolCallView",
    "ToolSchema",
    "abort",
    "answer",
    "check_backend",
    "engine_status",
    "export_conversation",
    "is_loading",
    "load",
    "shutdown",
    "start_answer",
    "stream_answer",
    "to_messages",
    "unload",
    "wait_ready",
]

LOAD_TIMEOUT_S = LOAD_WAIT_S  # the longest an answer waits for its model (the engine's rule)


class GenerationSettings(View):
    """How to sample one answer; invalid values raise ``ServingError`` on construction."""

    system_prompt: str = ""
    temperature: float = 0.7  # 0 = greedy
    top_p: float = 0.9
    top_k: int = 50  # 0 = off
    max_new_tokens: int = 256
    repetition_penalty: float = 1.0  # 1 = off
    stop: list[str] = Field(default_factory=list)
    seed: int | None = None
    ignore_eos: bool = False

    @model_validator(mode="after")
    def _valid_for_the_engine(self) -> GenerationSettings:
        self.to_config().validate()
        return self

    def to_config(self) -> GenerationConfig:
        return GenerationConfig(**self.model_dump())


class ChatMessage(View):
    role: Literal["system", "user", "assistant"]
    content: str


class ChatRequest(View):
    """What to answer: a conversation, for a model (default: the embedded one) on a backend,
    or for a model that a remote OpenAI-compatible ``endpoint`` serves (then ``model`` is the
    endpoint's model name and ``backend`` is not used)."""

    model: str | None = None
    backend: BackendName = "auto"
    messages: list[ChatMessage]
    generation: GenerationSettings = Field(default_factory=GenerationSettings)
    endpoint: Endpoint | None = None
    tools: list[ToolSchema] | None = None

    @model_validator(mode="after")
    def _endpoint_names_its_model(self) -> ChatRequest:
        if self.endpoint is not None and not (self.model or "").strip():
            raise ServingError(
                "No model picked for the remote endpoint.",
                hint="Pick one of the models it serves (list them first).",
            )
        if self.endpoint is not None and self.tools:
            raise ServingError(
                "Tools are offered only to models served here, not to a remote endpoint.",
                hint="Clear the Tools box (or drop --tools / tools) for the remote model.",
            )
        return self

    def tool_dicts(self) -> list[dict[str, Any]] | None:
        return [tool.model_dump() for tool in self.tools] if self.tools else None


class Conversation(View):
    """One model's side of a chat, as exported."""

    model: str | None
    messages: list[ChatMessage]


class ChatStats(View):
    """The figures of one answer."""

    model: str
    backend: str
    tokens: int
    prompt_tokens: int
    ttft_s: float | None
    duration_s: float
    tokens_per_second: float | None
    energy_kwh: float | None
    finish_reason: str | None

    @classmethod
    def of(cls, stats: AnswerStats, model: str) -> ChatStats:
        return cls(**{**asdict(stats), "model": model})


class AnswerDelta(View):
    """One streamed step: the answer so far, the new text, and the stats on the last step.
    With tools offered, the last step carries the model's calls (``tool_calls``, kept out of
    ``text``) and a line for each call that could not be read (``tool_problems``)."""

    text: str
    delta: str
    tokens: int
    stats: ChatStats | None = None
    done: bool = False
    tool_calls: list[ToolCallView] = Field(default_factory=list)
    tool_problems: list[str] = Field(default_factory=list)
    backend: str | None = None  # the backend generating this answer


class Answer(View):
    text: str
    stats: ChatStats
    tool_calls: list[ToolCallView] = Field(default_factory=list)
    tool_problems: list[str] = Field(default_factory=list)


class EngineStatusView(View):
    """The engine serving ``label`` (the model picked): its state, backend, and a line for
    people (``text``, markdown) that says why."""

    label: str
    model: str
    state: Literal["not_loaded", "loading", "ready", "failed", "unloaded"]
    backend: str | None = None
    vllm_state: str | None = None  # starting | ready | failed | None when vLLM is not used
    text: str

    @classmethod
    def of(cls, status: EngineStatus, label: str, shown: str | None = None) -> EngineStatusView:
        """``shown``: how the text names the model (default: ``label``)."""
        return cls(
            label=label,
            model=status.model,
            state=status.state,
            backend=status.backend,
            vllm_state=status.vllm_state,
            text=status.describe(shown or label),
        )


def check_backend(backend: str, target: ChatTarget | None = None) -> None:
    """The rule every front end gets: a named backend answers (``ChatEngine.stream_chat`` keeps
    to it) or the request is refused here with why (not installed; no LoRA on onnx)."""
    if backend == "onnx" and target is not None and target.adapter_path:
        raise ServingError(
            f"The onnx backend by name serves base models only, and {target.label} is a LoRA run.",
            hint="Pick auto: it answers a run from the run's own int4 copy once that is built "
            "(in the background, from its first answer), or pick transformers or vllm.",
        )
    if backend not in BACKENDS:
        raise ServingError(
            f"Unknown backend {backend!r}.", hint=f"Use one of: {', '.join(BACKENDS)}."
        )
    if missing := missing_package(backend):
        raise ServingError(
            f"The {backend} backend is not installed here (no {missing[0]} package).",
            hint=f"Pick auto or another backend, or install {missing[1]}.",
        )


def to_messages(history: Iterable[Mapping[str, Any]]) -> list[ChatMessage]:
    """Chat messages from role/content mappings (e.g. a Gradio chat history); others dropped."""
    return [
        ChatMessage(role=m["role"], content=message_text(m.get("content")))
        for m in history
        if m.get("role") in ("system", "user", "assistant")
    ]


def engine_status(
    model: str, backend: str = "auto", *, settings: Settings | None = None
) -> EngineStatusView:
    """The state of the engine that serves ``model`` (never starts or converts anything)."""
    settings = resolve(settings)
    engine = peek_engine(model, backend, settings)
    if engine is None:
        return EngineStatusView(
            label=model,
            model=model,
            state="not_loaded",
            text=f"{model}: not loaded yet — it loads on **Load** or on your first message.",
        )
    try:
        shown = resolve_target(model, settings).shown(engine.model_name)
    except GardenError:
        shown = model
    return EngineStatusView.of(engine.status, model, shown)


def is_loading(model: str, backend: str = "auto", *, settings: Settings | None = None) -> bool:
    """Whether ``model`` is loading, or vLLM is still starting to take it over."""
    status = engine_status(model, backend, settings=settings)
    return status.state == "loading" or status.vllm_state == "starting"


def _engine(
    model: str | None, backend: str, settings: Settings | None
) -> tuple[ChatEngine, ChatTarget]:
    settings = resolve(settings)
    check_backend(backend)
    target = resolve_target(model, settings)
    check_backend(backend, target)
    return get_engine(target, backend, settings=settings), target


def load(
    model: str | None, backend: str = "auto", *, settings: Settings | None = None
) -> EngineStatusView:
    """Start loading ``model``'s engine in the background (or find it loaded); its state."""
    engine, target = _engine(model, backend, settings)
    return EngineStatusView.of(engine.status, target.label, target.shown(engine.model_name))


def wait_ready(
    model: str | None,
    backend: str = "auto",
    *,
    timeout: float = LOAD_TIMEOUT_S,
    include_vllm: bool = False,
    settings: Settings | None = None,
) -> EngineStatusView:
    """Load ``model`` and wait until it answers (with ``include_vllm``, until vLLM has started
    or failed as well); raises ``ModelLoadError`` when loading failed."""
    engine, target = _engine(model, backend, settings)
    status = engine.wait_loaded(timeout) if include_vllm else engine.wait_ready(timeout)
    return EngineStatusView.of(status, target.label, target.shown(engine.model_name))


def unload(
    models: Sequence[str], backend: str = "auto", *, settings: Settings | None = None
) -> list[str]:
    """Unload the engines serving ``models``; the names of the base models freed."""
    freed = set()
    for model in models:
        engine = peek_engine(model, backend, resolve(settings))
        if engine is not None:
            unload_engine(engine)
            freed.add(engine.model_name)
    return sorted(freed)


def _deltas(
    engine: ChatEngine, target: ChatTarget, request: ChatRequest, request_id: str | None
) -> Iterator[AnswerDelta]:
    if request.backend == "vllm":  # an auto engine may still be starting it: wait for it
        engine.wait_loaded(LOAD_TIMEOUT_S)
    steps = engine.stream_chat(
        [m.model_dump() for m in request.messages],
        request.generation.to_config(),
        adapter=target.adapter_path,
        request_id=request_id,
        tools=request.tool_dicts(),
        backend=request.backend,
    )
    yield from _answer_deltas(steps, target.label, request.tools or [], request.backend)


def _remote_deltas(request: ChatRequest, request_id: str) -> Iterator[AnswerDelta]:
    """The remote endpoint's answer (web callers check it first: ``check_endpoint``)."""
    assert request.endpoint is not None and request.model
    endpoint = checked_here(request.endpoint).remote()
    label = f"{request.model} @ {endpoint.host}"
    steps = remote_chats.stream_chat(
        endpoint,
        request.model,
        [m.model_dump() for m in request.messages],
        request.generation.to_config(),
        request_id,
    )
    yield from _answer_deltas(steps, label)


def _answer_deltas(
    steps: Iterator[ChatDelta], label: str, tools: Sequence[ToolSchema] = (), wanted: str = "auto"
) -> Iterator[AnswerDelta]:
    """The engine's steps as views; the finished answer is counted in the metrics. A named
    backend (``wanted``) is checked on every step: an answer never comes from another one."""
    for step in steps:
        if wanted != "auto" and step.backend not in (None, wanted):
            raise ServingError(
                f"The {wanted} backend was asked for, but {step.backend} answered.",
                hint="Ask again (the engine changed backends meanwhile), or pick auto.",
            )
        stats = ChatStats.of(step.stats, label) if step.stats is not None else None
        if stats is not None:
            telemetry.observe_answer(stats.backend, stats.ttft_s, stats.tokens_per_second)
        calls = [ToolCallView.of(call) for call in step.tool_calls]
        yield AnswerDelta(
            text=step.text,
            delta=step.delta,
            tokens=step.tokens,
            stats=stats,
            done=step.done,
            tool_calls=calls,
            tool_problems=[*step.tool_problems, *undeclared_calls(calls, list(tools))],
            backend=step.backend,
        )


def stream_answer(
    request: ChatRequest,
    *,
    request_id: str | None = None,
    timeout: float = LOAD_TIMEOUT_S,
    settings: Settings | None = None,
) -> Iterator[AnswerDelta]:
    """Load the model if needed and stream the answer (the storage's CPU runs pause meanwhile:
    ``chat_pause``); the last step has ``done`` set and carries the stats."""
    if request.endpoint is not None:
        yield from _remote_deltas(request, request_id or f"remote-{uuid.uuid4().hex[:12]}")
        return
    engine, target = _engine(request.model, request.backend, settings)
    engine.wait_ready(timeout)
    with training_paused(resolve(settings)):
        yield from _deltas(engine, target, request, request_id)


def answer(
    request: ChatRequest,
    *,
    on_text: Callable[[str], None] | None = None,
    settings: Settings | None = None,
) -> Answer:
    """The whole answer; ``on_text`` receives each new piece of text as it streams."""
    for delta in stream_answer(request, settings=settings):
        if on_text is not None and delta.delta:
            on_text(delta.delta)
        if delta.stats is not None:
            return Answer(
                text=delta.text,
                stats=delta.stats,
                tool_calls=delta.tool_calls,
                tool_problems=delta.tool_problems,
            )
    raise ServingError("The answer ended without its figures.", hint="Ask again.")


def abort(model: str, backend: str, request_id: str, *, settings: Settings | None = None) -> None:
    """Stop a streaming answer; its stream ends with ``finish_reason == "abort"``."""
    remote_chats.abort(request_id)
    engine = peek_engine(model, backend, resolve(settings))
    if engine is not None:
        engine.abort(request_id)


class AnswerStream:
    """An answer generating in a background thread; a front end polls ``text``, ``stats``,
    ``error`` and ``done`` while it runs."""

    def __init__(
        self, request_id: str, stop: Callable[[str], None], backend: Callable[[], str | None]
    ) -> None:
        """``backend``: the backend expected to answer, shown until the first piece of text
        names the one that does."""
        self.request_id = request_id
        self.text = ""
        self.stats: ChatStats | None = None
        self.tool_calls: list[ToolCallView] = []
        self.tool_problems: list[str] = []
        self.error: str | None = None
        self.done = False
        self.answered_by: str | None = None  # the backend that produced this answer
        self._stop = stop
        self._backend = backend

    @property
    def backend(self) -> str | None:
        """The backend that produced this answer (from its first piece of text on), else the
        one expected to."""
        if self.stats is not None:
            return self.stats.backend
        return self.answered_by or self._backend()

    def abort(self) -> None:
        if not self.done:
            self._stop(self.request_id)

    def run(self, deltas: Iterator[AnswerDelta]) -> None:
        try:
            for delta in deltas:
                self.text = delta.text
                self.answered_by = delta.backend or self.answered_by
                if delta.stats is not None:
                    self.tool_calls, self.tool_problems = delta.tool_calls, delta.tool_problems
                    self.stats = delta.stats
        except GardenError as exc:
            self.error = str(exc)
        except Exception as exc:
            self.error = f"Generation failed: {exc}"
        finally:
            self.done = True


def start_answer(request: ChatRequest, *, settings: Settings | None = None) -> AnswerStream:
    """Start answering in a background thread on a ready engine (``load`` it first), or on
    the request's remote endpoint."""
    request_id = f"ui-{uuid.uuid4().hex[:12]}"
    if request.endpoint is not None:
        stream = AnswerStream(request_id, remote_chats.abort, lambda: "remote")
        deltas = _remote_deltas(request, request_id)
    else:
        engine, target = _engine(request.model, request.backend, settings)
        engine.wait_ready(timeout=1)
        named = None if request.backend == "auto" else request.backend
        stream = AnswerStream(request_id, engine.abort, lambda: named or engine.status.backend)
        deltas = _deltas(engine, target, request, request_id)
    threading.Thread(
        target=stream.run, args=(deltas,), name=f"answer-{stream.request_id}", daemon=True
    ).start()
    return stream


def export_conversation(
    conversations: Sequence[Conversation],
    backend: str,
    generation: GenerationSettings | None = None,
    *,
    settings: Settings | None = None,
) -> Path:
    """Write the conversations as JSON to a new, unguessably named file under
    STORAGE_ROOT/temp (exports older than 30 minutes there are deleted); the file's path."""
    data = {
        "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "backend": backend,
        "generation_settings": generation.model_dump() if generation is not None else {},
        "conversations": [c.model_dump() for c in conversations],
    }
    path = temp_file(resolve(settings).temp_path, f"chat-{time.strftime('%Y%m%d')}", ".json")
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")
    return path


def shutdown() -> None:
    """Unload every engine (vLLM's host processes included)."""
    shutdown_all()
