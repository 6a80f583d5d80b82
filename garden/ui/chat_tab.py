"""The Chat tab: pick a model and backend, stream answers, compare two models side by side.

Layout and bindings over ``services.chat`` and ``services.models``. Engines are shared by every
browser session; an answer generates in a background thread (``services.chat.AnswerStream``)
that the send handler polls into the Chatbots. No torch/transformers/vLLM imports happen here.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from typing import Any

import gradio as gr
from gradio.blocks import Block

from garden import present
from garden.config import Settings
from garden.errors import GardenError, ModelLoadError
from garden.services import chat
from garden.services import models as model_service
from garden.services.chat import (
    BACKENDS,
    AnswerStream,
    ChatMessage,
    ChatRequest,
    Conversation,
    GenerationSettings,
)
from garden.ui.boundary import OnShow, guard, guard_stream, plain
from garden.ui.chat_remote import RemotePanel, endpoint_of
from garden.ui.chat_tools import ToolsPanel, show_tool_calls, tools_in_box

POLL_SECONDS = 0.05
DEFAULTS = GenerationSettings()
History = list[dict[str, Any]]
_active: dict[str, list[AnswerStream]] = {}
_active_lock = threading.Lock()


@dataclass(frozen=True)
class ChatForm:
    """What the page holds when an event fires (the fields a handler was not sent keep their
    defaults)."""

    model_a: str | None = None
    backend: str = "auto"
    compare: bool = False
    model_b: str | None = None
    message: str = ""
    chat_a: History = field(default_factory=list)
    chat_b: History = field(default_factory=list)
    system_prompt: str = ""
    temperature: float = DEFAULTS.temperature
    top_p: float = DEFAULTS.top_p
    top_k: float = DEFAULTS.top_k
    max_new_tokens: float = DEFAULTS.max_new_tokens
    repetition_penalty: float = DEFAULTS.repetition_penalty
    stop: str = ""
    seed: float | None = -1
    remote_on: bool = False
    remote_url: str = ""
    remote_key: str = ""
    remote_model: str | None = None
    tools_json: str = ""

    @property
    def panes(self) -> list[str | None]:
        """The model of each pane: A (the remote model when on), and B when comparing."""
        first = self.remote_model if self.remote_on else self.model_a
        return [first, self.model_b] if self.compare else [first]

    @property
    def picked(self) -> list[str]:
        return [name for name in self.panes if name]

    def generation(self) -> GenerationSettings:
        """The generation settings; raises ``ServingError`` (or ``ValueError``) when invalid."""
        return GenerationSettings(
            system_prompt=self.system_prompt or "",
            temperature=self.temperature,
            top_p=self.top_p,
            top_k=self.top_k,
            max_new_tokens=self.max_new_tokens,
            repetition_penalty=self.repetition_penalty,
            stop=[line for line in (self.stop or "").splitlines() if line.strip()],
            seed=None if self.seed is None or self.seed < 0 else int(self.seed),
        )


def model_choices(settings: Settings) -> list[tuple[str, str]]:
    """Default model first, then local base models, then fine-tuned runs (newest first)."""
    return [(view.label, view.id) for view in model_service.chat_choices(settings=settings)]


def status_text(model: str | None, backend: str, settings: Settings) -> str:
    if not model:
        return "Pick a model."
    return chat.engine_status(model, backend, settings=settings).text


# Messages are text: no Markdown rendering, HTML sanitised, no custom tags kept.
CHATBOT_TEXT: dict[str, Any] = {
    "height": 420,
    "buttons": ["copy"],
    "render_markdown": False,
    "sanitize_html": True,
    "allow_tags": False,
}
SELECTION = ("model_a", "backend", "compare", "model_b")
FORM_FIELDS = tuple(f.name for f in fields(ChatForm))


def _guarded(handlers: _Handlers, settings: Settings) -> None:
    """Every handler at the boundary: an exception becomes one line, its trace goes to the log."""
    keep = gr.update()
    handlers.refresh_models = guard("listing models", lambda _: (keep, keep), settings)(  # type: ignore[method-assign]
        handlers.refresh_models
    )
    handlers.load = guard("loading the model", lambda m: f"❌ {plain(m)}", settings)(handlers.load)  # type: ignore[method-assign]
    handlers.unload = guard("unloading", lambda m: f"❌ {plain(m)}", settings)(handlers.unload)  # type: ignore[method-assign]
    handlers.poll = guard(  # type: ignore[method-assign]
        "reading the model status", lambda m: (f"❌ {plain(m)}", gr.Timer(active=False)), settings
    )(handlers.poll)
    handlers.respond = guard_stream(  # type: ignore[method-assign]
        "answering", lambda m: (keep, keep, keep, f"❌ {plain(m)}", keep), settings
    )(handlers.respond)
    handlers.export = guard("exporting", lambda _: gr.update(visible=False), settings)(  # type: ignore[method-assign]
        handlers.export
    )


def build(settings: Settings) -> OnShow:
    page = ChatPage(settings)
    handlers = _Handlers(page, settings)
    _guarded(handlers, settings)
    selection, everything = page.inputs(*SELECTION), page.inputs(*FORM_FIELDS)
    page.compare.change(_toggle_compare, page.compare, [page.model_b, page.column_b])
    page.refresh_btn.click(handlers.refresh_models, None, [page.model_a, page.model_b])
    page.load_btn.click(handlers.load, selection, page.status).then(
        lambda: gr.Timer(active=True), None, page.timer
    )
    page.unload_btn.click(handlers.unload, selection, page.status)
    page.timer.tick(handlers.poll, selection, [page.status, page.timer], show_progress="hidden")
    answer_outputs = [page.chat_a, page.chat_b, page.message, page.stats_a, page.stats_b]
    sent = page.send_btn.click(handlers.respond, everything, answer_outputs)
    submitted = page.message.submit(handlers.respond, everything, answer_outputs)
    for event in (sent, submitted):
        event.then(handlers.poll, selection, [page.status, page.timer], show_progress="hidden")
    page.stop_btn.click(_stop, None, None, cancels=[sent, submitted])
    page.clear_btn.click(
        lambda: ([], [], "", ""), None, [page.chat_a, page.chat_b, page.stats_a, page.stats_b]
    )
    page.export_btn.click(handlers.export, everything, page.export_file)
    page.model_a.change(handlers.poll, selection, [page.status, page.timer], show_progress="hidden")
    page.remote.bind(settings)
    page.tools.bind()
    return OnShow(handlers.refresh_models, [page.model_a, page.model_b])


class ChatPage:
    """The tab's layout. The inputs are attributes named like the :class:`ChatForm` fields."""

    def __init__(self, settings: Settings) -> None:
        choices = model_choices(settings)
        default = choices[0][1] if choices else None
        second = choices[1][1] if len(choices) > 1 else default
        gr.Markdown(
            "### Chat\nTalk to the default model or a fine-tuned run. **Compare** streams the "
            "same prompt into two models side by side (LoRA runs share their base model's engine)."
        )
        with gr.Row():
            self.model_a = gr.Dropdown(
                choices, value=default, label="Model", scale=3, elem_id="chat-model-a"
            )
            self.backend = gr.Radio(
                list(BACKENDS),
                value="auto",
                label="Backend",
                info="auto: one stream from the int4 copy (a fine-tuned run's own, once built), many "
                "from vLLM, transformers while they start",
                scale=3,
                elem_id="chat-backend",
            )
            self.compare = gr.Checkbox(False, label="Compare", scale=1, elem_id="chat-compare")
            self.model_b = gr.Dropdown(
                choices,
                value=second,
                label="Compare with",
                scale=3,
                visible=False,
                elem_id="chat-model-b",
            )
        with gr.Row():
            self.load_btn = gr.Button("Load", size="sm", scale=0)
            self.unload_btn = gr.Button("Unload", size="sm", scale=0)
            self.refresh_btn = gr.Button("↻ Models", size="sm", scale=0)
            self.status = gr.Markdown(status_text(default, "auto", settings), elem_id="chat-status")
        self.timer = gr.Timer(2.0, active=False)
        with gr.Row(equal_height=True):
            with gr.Column():
                self.chat_a = gr.Chatbot(label="Model A", elem_id="chat-a", **CHATBOT_TEXT)
                self.stats_a = gr.Markdown(elem_id="chat-stats-a")
            with gr.Column(visible=False) as self.column_b:
                self.chat_b = gr.Chatbot(label="Model B", elem_id="chat-b", **CHATBOT_TEXT)
                self.stats_b = gr.Markdown(elem_id="chat-stats-b")
        with gr.Row():
            self.message = gr.Textbox(
                placeholder="Ask something… (Enter to send)",
                show_label=False,
                scale=6,
                lines=1,
                max_lines=6,
                elem_id="chat-input",
            )
            self.send_btn = gr.Button("Send", variant="primary", scale=1, elem_id="chat-send")
            self.stop_btn = gr.Button("Stop", variant="stop", scale=1, elem_id="chat-stop")
            self.clear_btn = gr.Button("Clear", scale=1, elem_id="chat-clear")
        self._generation_settings()
        self.remote = RemotePanel()
        self.remote_on, self.remote_url, self.remote_key, self.remote_model = self.remote.inputs()
        self.tools = ToolsPanel()
        self.tools_json = self.tools.code
        with gr.Row():
            self.export_btn = gr.Button("Export conversation (JSON)", size="sm", scale=0)
            self.export_file = gr.File(label="Conversation", visible=False, interactive=False)

    def _generation_settings(self) -> None:
        with gr.Accordion("Generation settings", open=False):
            self.system_prompt = gr.Textbox(
                label="System prompt", lines=2, placeholder="(the model's default)"
            )
            with gr.Row():
                self.temperature = gr.Slider(
                    0, 2, value=DEFAULTS.temperature, step=0.05, label="Temperature (0 = greedy)"
                )
                self.top_p = gr.Slider(0.05, 1, value=DEFAULTS.top_p, step=0.05, label="Top-p")
                self.top_k = gr.Slider(
                    0, 200, value=DEFAULTS.top_k, step=1, label="Top-k (0 = off)"
                )
            with gr.Row():
                self.max_new_tokens = gr.Slider(
                    1, 2048, value=DEFAULTS.max_new_tokens, step=1, label="Max new tokens"
                )
                self.repetition_penalty = gr.Slider(
                    0.8,
                    2.0,
                    value=DEFAULTS.repetition_penalty,
                    step=0.05,
                    label="Repetition penalty",
                )
                self.seed = gr.Number(-1, label="Seed (-1 = random)", precision=0)
            self.stop = gr.Textbox(label="Stop strings (one per line)", lines=2)

    def inputs(self, *names: str) -> set[Block]:
        return {getattr(self, name) for name in names}

    def form(self, values: dict[Block, Any]) -> ChatForm:
        """The page as one typed object, from the values Gradio sent (fields not sent, or
        empty, keep their defaults)."""
        sent = {name: values.get(getattr(self, name)) for name in FORM_FIELDS}
        return ChatForm(**{name: value for name, value in sent.items() if value is not None})


def _toggle_compare(on: bool) -> tuple[Any, Any]:
    return gr.update(visible=on), gr.update(visible=on)


def _stop(request: gr.Request) -> None:
    with _active_lock:
        running = list(_active.get(request.session_hash or "anonymous", []))
    for stream in running:
        stream.abort()


def _pane_update(stream: AnswerStream, history: History) -> str:
    """Copy a stream's text into its pane's last message; the pane's stats line."""
    if stream.error:
        history[-1]["content"] = (stream.text + f"\n\n⚠️ {stream.error}").strip()
        return f"❌ {stream.error}"
    history[-1]["content"] = stream.text
    if stream.stats is not None:
        return present.answer_stats(stream.stats, markdown=True)
    return f"✍️ generating… ({stream.backend})"


@dataclass
class _Turn:
    """One message being answered: the panes' chat histories and stats lines."""

    chat_a: History
    chat_b: History
    stats: list[Any] = field(default_factory=lambda: [gr.update(), gr.update()])

    def histories(self, panes: int) -> list[History]:
        return [self.chat_a, self.chat_b][:panes]

    def frame(self, message: str = "") -> tuple[Any, ...]:
        """The send event's outputs: both chats, the input box and both stats lines."""
        return self.chat_a, self.chat_b, message, self.stats[0], self.stats[1]


def _waits_for(status: chat.EngineStatusView, backend: str) -> bool:
    """Whether an answer from ``backend`` must wait: the model loads, or vLLM (asked for by
    name) is still starting on an engine that answers from another backend meanwhile."""
    return status.state == "loading" or (backend == "vllm" and status.vllm_state == "starting")


def _update_panes(turn: _Turn, streams: list[AnswerStream | None]) -> None:
    for i, stream in enumerate(streams):
        if stream is not None:
            turn.stats[i] = _pane_update(stream, turn.histories(2)[i])


def _follow(
    turn: _Turn, streams: list[AnswerStream | None], session: str
) -> Iterator[tuple[Any, ...]]:
    """Poll the answers into their panes until all are done; when the event is cancelled
    (Stop), the answers still running are stopped."""
    live = [s for s in streams if s is not None]
    with _active_lock:
        _active[session] = live
    try:
        # ``done`` is read before the frame is built: a stream that finishes while a frame is
        # out (its stats set, then ``done``) is caught by the loop's test, and the final frame
        # below is built from the finished streams, so it always carries their stats.
        while not all(s.done for s in live):
            _update_panes(turn, streams)
            yield turn.frame()
            time.sleep(POLL_SECONDS)
        _update_panes(turn, streams)
        for i, stream in enumerate(streams):
            if stream is not None and (stream.tool_calls or stream.tool_problems):
                turn.stats[i] += show_tool_calls(stream, turn.histories(2)[i])
        yield turn.frame()
    finally:
        for stream in live:
            stream.abort()
        with _active_lock:
            _active.pop(session, None)


class _Handlers:
    """The tab's event handlers; each reads the page as one :class:`ChatForm`."""

    def __init__(self, page: ChatPage, settings: Settings) -> None:
        self.page = page
        self.settings = settings

    def refresh_models(self) -> tuple[Any, Any]:
        fresh = model_choices(self.settings)
        return gr.update(choices=fresh), gr.update(choices=fresh)

    def check_listed(self, form: ChatForm) -> None:
        """Only listed models are served to the web: a typed folder or file never is."""
        listed = {view.id for view in model_service.chat_choices(settings=self.settings)}
        for name in form.picked[1:] if form.remote_on else form.picked:
            if name not in listed:
                raise ModelLoadError(
                    f"{name[:80]!r} is not a listed model.",
                    hint="Pick one in the list (↻ Models refreshes it).",
                )

    def load(self, values: dict[Block, Any]) -> str:
        form = self.page.form(values)
        if not form.model_a:
            gr.Warning("Pick a model first.")
            return "Pick a model."
        self.check_listed(form)
        try:
            for name in form.picked:
                chat.load(name, form.backend, settings=self.settings)
        except GardenError as exc:
            gr.Warning(str(exc))
            return f"❌ {exc}"
        return status_text(form.model_a, form.backend, self.settings)

    def unload(self, values: dict[Block, Any]) -> str:
        form = self.page.form(values)
        freed = chat.unload(form.picked, form.backend, settings=self.settings)
        if not freed:
            return "Nothing to unload."
        return f"Unloaded {', '.join(freed)}; its memory is released."

    def poll(self, values: dict[Block, Any]) -> tuple[str, Any]:
        """Status while something loads; the timer switches itself off once all is ready."""
        form = self.page.form(values)
        names = list(dict.fromkeys(form.picked))
        texts = [status_text(name, form.backend, self.settings) for name in names]
        busy = any(chat.is_loading(n, form.backend, settings=self.settings) for n in form.picked)
        return "\n\n".join(texts) or "Pick a model.", gr.Timer(active=busy)

    def respond(self, values: dict[Block, Any], request: gr.Request) -> Iterator[tuple[Any, ...]]:
        form = self.page.form(values)
        turn = _Turn(list(form.chat_a), list(form.chat_b))
        if not form.message.strip():
            gr.Warning("Type a message first.")
            yield turn.frame(form.message)
            return
        try:
            generation = form.generation()
            tools = tools_in_box(form.tools_json)
        except (GardenError, ValueError) as exc:
            gr.Warning(str(exc))
            turn.stats[0] = f"❌ {exc}"
            yield turn.frame(form.message)
            return
        if not all(form.panes):
            gr.Warning("Pick a model for every pane.")
            yield turn.frame(form.message)
            return
        self.check_listed(form)
        question = ChatMessage(role="user", content=form.message)
        histories = turn.histories(len(form.panes))
        prompts = [[*chat.to_messages(history), question] for history in histories]
        for history in histories:
            history.extend([question.model_dump(), {"role": "assistant", "content": ""}])
        turn.stats = ["⏳ loading…", "⏳ loading…" if form.compare else ""]
        yield turn.frame()
        streams: list[AnswerStream | None] = []
        for i, name in enumerate(form.picked):
            try:
                endpoint = endpoint_of(form, self.settings) if i == 0 else None
                for text in [] if endpoint else self._loading(name, form.backend):
                    turn.stats[i] = text
                    yield turn.frame()
                wanted = ChatRequest(
                    model=name,
                    backend=form.backend,
                    messages=prompts[i],
                    generation=generation,
                    endpoint=endpoint,
                    tools=tools,
                )
                stream = chat.start_answer(wanted, settings=self.settings)
            except GardenError as exc:
                gr.Warning(str(exc))
                histories[i][-1]["content"] = f"⚠️ {exc}"
                turn.stats[i] = f"❌ {exc}"
                stream = None
            streams.append(stream)
        yield from _follow(turn, streams, request.session_hash or "anonymous")

    def _loading(self, model: str, backend: str) -> Iterator[str]:
        """Load ``model``; its status text every half second while it loads."""
        status = chat.load(model, backend, settings=self.settings)
        deadline = time.monotonic() + chat.LOAD_TIMEOUT_S
        while _waits_for(status, backend) and time.monotonic() < deadline:
            yield status.text
            time.sleep(0.5)
            status = chat.engine_status(model, backend, settings=self.settings)

    def export(self, values: dict[Block, Any]) -> Any:
        form = self.page.form(values)
        if not form.chat_a and not form.chat_b:
            gr.Warning("Nothing to export yet: chat first.")
            return gr.update(visible=False)
        try:
            generation: GenerationSettings | None = form.generation()
        except (GardenError, ValueError):
            generation = None
        conversations = [
            Conversation(model=name, messages=chat.to_messages(history))
            for name, history in zip(form.panes, [form.chat_a, form.chat_b], strict=False)
        ]
        path = chat.export_conversation(
            conversations, form.backend, generation, settings=self.settings
        )
        return gr.update(value=str(path), visible=True)
