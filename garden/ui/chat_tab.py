"""The Chat tab: pick a model and backend, stream answers, compare two models side by side.

Engines are shared by every browser session (see ``garden.engine.serving``); this module only
turns their streams into Chatbot updates. No torch/transformers/vLLM imports happen here.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import gradio as gr

from garden.config import Settings
from garden.engine.serving_types import BACKENDS, GenerationConfig
from garden.errors import GardenError

POLL_SECONDS = 0.05
_active: dict[str, list[tuple[Any, str]]] = {}
_active_lock = threading.Lock()


def model_choices(settings: Settings) -> list[tuple[str, str]]:
    """Default model first, then local base models, then fine-tuned runs (newest first)."""
    from garden.models import list_models

    choices = []
    for info in list_models(settings):
        if info.kind == "hub":
            continue
        tag = {"default": "default", "base": "base", "finetuned": "fine-tuned"}.get(
            info.kind, info.kind
        )
        if info.kind == "finetuned" and info.adapter_path:
            tag += ", LoRA"
        choices.append((f"{info.name} ({tag})", info.id))
    return choices


def generation_config(
    system: str,
    temperature: float,
    top_p: float,
    top_k: float,
    max_tokens: float,
    repetition: float,
    stop_text: str,
    seed: float | None,
) -> GenerationConfig:
    stops = [line for line in (stop_text or "").splitlines() if line.strip()]
    return GenerationConfig(
        system_prompt=system or "",
        temperature=float(temperature),
        top_p=float(top_p),
        top_k=int(top_k),
        max_new_tokens=int(max_tokens),
        repetition_penalty=float(repetition),
        stop=stops,
        seed=None if seed is None or int(seed) < 0 else int(seed),
    )


def format_stats(stats: Any) -> str:
    if stats is None:
        return ""
    energy = "n/a" if stats.energy_kwh is None else f"{stats.energy_kwh * 1000:.4f} Wh"
    ttft = "n/a" if stats.ttft_s is None else f"{stats.ttft_s:.2f} s"
    stopped = " · stopped" if stats.finish_reason == "abort" else ""
    return (
        f"**{stats.tokens}** tokens · **{stats.tokens_per_second or 0:.1f}** tok/s · "
        f"first token {ttft} · energy {energy} · `{stats.backend}`{stopped}"
    )


def engine_status(model: str | None, backend: str, settings: Settings) -> str:
    from garden.engine.serving import peek_engine

    if not model:
        return "Pick a model."
    engine = peek_engine(model, backend, settings)
    if engine is None:
        return f"{model}: not loaded yet — it loads on **Load** or on your first message."
    return engine.status.describe()


def _loading(model: str | None, backend: str, settings: Settings) -> bool:
    from garden.engine.serving import peek_engine

    engine = peek_engine(model, backend, settings) if model else None
    if engine is None:
        return False
    return engine.status.state == "loading" or engine.status.vllm_state == "starting"


class _Pane:
    """One answer streaming in a background thread into shared state."""

    def __init__(
        self, engine: Any, history: list[dict[str, Any]], config: Any, adapter: str | None
    ):
        self.engine = engine
        self.request_id = f"ui-{uuid.uuid4().hex[:12]}"
        self.text = ""
        self.stats: Any = None
        self.error: str | None = None
        self.done = False
        self._thread = threading.Thread(
            target=self._run, args=(history, config, adapter), daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def _run(self, history: list[dict[str, Any]], config: Any, adapter: str | None) -> None:
        try:
            for step in self.engine.stream_chat(
                history, config, adapter=adapter, request_id=self.request_id
            ):
                self.text = step.text
                if step.done:
                    self.stats = step.stats
        except GardenError as exc:
            self.error = str(exc)
        except Exception as exc:
            self.error = f"Generation failed: {exc}"
        finally:
            self.done = True


def _prepare(model: str, backend: str, settings: Settings) -> tuple[Any, str | None]:
    from garden.engine.serving import get_engine, resolve_target

    target = resolve_target(model, settings)
    return get_engine(target, backend, settings=settings), target.adapter_path


def _strip(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"role": m["role"], "content": m["content"]} for m in history]


def build(settings: Settings) -> None:
    choices = model_choices(settings)
    default = choices[0][1] if choices else None
    second = choices[1][1] if len(choices) > 1 else default

    gr.Markdown(
        "### Chat\nTalk to the default model or a fine-tuned run. **Compare** streams the same "
        "prompt into two models side by side (LoRA runs share their base model's engine)."
    )
    with gr.Row():
        model_a = gr.Dropdown(
            choices, value=default, label="Model", scale=3, elem_id="chat-model-a"
        )
        backend = gr.Radio(
            list(BACKENDS),
            value="auto",
            label="Backend",
            info="auto: vLLM when it can serve the model (transformers answers while it starts)",
            scale=3,
            elem_id="chat-backend",
        )
        compare = gr.Checkbox(False, label="Compare", scale=1, elem_id="chat-compare")
        model_b = gr.Dropdown(
            choices,
            value=second,
            label="Compare with",
            scale=3,
            visible=False,
            elem_id="chat-model-b",
        )
    with gr.Row():
        load_btn = gr.Button("Load", size="sm", scale=0)
        unload_btn = gr.Button("Unload", size="sm", scale=0)
        refresh_btn = gr.Button("↻ Models", size="sm", scale=0)
        status = gr.Markdown(engine_status(default, "auto", settings), elem_id="chat-status")
    timer = gr.Timer(2.0, active=False)
    with gr.Row(equal_height=True):
        with gr.Column():
            chat_a = gr.Chatbot(label="Model A", height=420, elem_id="chat-a", buttons=["copy"])
            stats_a = gr.Markdown(elem_id="chat-stats-a")
        with gr.Column(visible=False) as column_b:
            chat_b = gr.Chatbot(label="Model B", height=420, elem_id="chat-b", buttons=["copy"])
            stats_b = gr.Markdown(elem_id="chat-stats-b")
    with gr.Row():
        message = gr.Textbox(
            placeholder="Ask something… (Enter to send)",
            show_label=False,
            scale=6,
            lines=1,
            max_lines=6,
            elem_id="chat-input",
        )
        send_btn = gr.Button("Send", variant="primary", scale=1, elem_id="chat-send")
        stop_btn = gr.Button("Stop", variant="stop", scale=1, elem_id="chat-stop")
        clear_btn = gr.Button("Clear", scale=1, elem_id="chat-clear")
    with gr.Accordion("Generation settings", open=False):
        system = gr.Textbox(label="System prompt", lines=2, placeholder="(the model's default)")
        with gr.Row():
            temperature = gr.Slider(0, 2, value=0.7, step=0.05, label="Temperature (0 = greedy)")
            top_p = gr.Slider(0.05, 1, value=0.9, step=0.05, label="Top-p")
            top_k = gr.Slider(0, 200, value=50, step=1, label="Top-k (0 = off)")
        with gr.Row():
            max_tokens = gr.Slider(1, 2048, value=256, step=1, label="Max new tokens")
            repetition = gr.Slider(0.8, 2.0, value=1.0, step=0.05, label="Repetition penalty")
            seed = gr.Number(-1, label="Seed (-1 = random)", precision=0)
        stop_text = gr.Textbox(label="Stop strings (one per line)", lines=2)
    with gr.Row():
        export_btn = gr.Button("Export conversation (JSON)", size="sm", scale=0)
        export_file = gr.File(label="Conversation", visible=False, interactive=False)

    settings_inputs = [system, temperature, top_p, top_k, max_tokens, repetition, stop_text, seed]

    def toggle_compare(on: bool):
        return gr.update(visible=on), gr.update(visible=on)

    compare.change(toggle_compare, compare, [model_b, column_b])

    def refresh_models():
        fresh = model_choices(settings)
        return gr.update(choices=fresh), gr.update(choices=fresh)

    refresh_btn.click(refresh_models, None, [model_a, model_b])

    def load(model: str | None, backend_name: str, on: bool, other: str | None) -> str:
        if not model:
            gr.Warning("Pick a model first.")
            return "Pick a model."
        try:
            for name in [model, other] if on and other else [model]:
                _prepare(name, backend_name, settings)
        except GardenError as exc:
            gr.Warning(str(exc))
            return f"❌ {exc}"
        return engine_status(model, backend_name, settings)

    load_btn.click(load, [model_a, backend, compare, model_b], status).then(
        lambda: gr.Timer(active=True), None, timer
    )

    def unload(model: str | None, backend_name: str, on: bool, other: str | None) -> str:
        from garden.engine.serving import peek_engine, unload_engine

        names = [model] + ([other] if on and other else [])
        freed = []
        for name in names:
            engine = peek_engine(name, backend_name, settings) if name else None
            if engine is not None:
                unload_engine(engine)
                freed.append(engine.model_name)
        if not freed:
            return "Nothing to unload."
        return f"Unloaded {', '.join(sorted(set(freed)))}; its memory is released."

    unload_btn.click(unload, [model_a, backend, compare, model_b], status)

    def poll(model: str | None, backend_name: str, on: bool, other: str | None):
        """Status while something loads; the timer switches itself off once all is ready."""
        names = [model] + ([other] if on and other and other != model else [])
        texts = [engine_status(name, backend_name, settings) for name in names]
        busy = any(_loading(name, backend_name, settings) for name in names)
        return "\n\n".join(texts), gr.Timer(active=busy)

    timer.tick(poll, [model_a, backend, compare, model_b], [status, timer], show_progress="hidden")

    def respond(
        text: str,
        hist_a: list[dict[str, Any]],
        hist_b: list[dict[str, Any]],
        on: bool,
        name_a: str | None,
        name_b: str | None,
        backend_name: str,
        system_prompt: str,
        temperature_value: float,
        top_p_value: float,
        top_k_value: float,
        max_tokens_value: float,
        repetition_value: float,
        stop_value: str,
        seed_value: float | None,
        request: gr.Request,
    ):
        hist_a, hist_b = list(hist_a or []), list(hist_b or [])
        if not (text or "").strip():
            gr.Warning("Type a message first.")
            yield hist_a, hist_b, text, gr.update(), gr.update()
            return
        try:
            config = generation_config(
                system_prompt,
                temperature_value,
                top_p_value,
                top_k_value,
                max_tokens_value,
                repetition_value,
                stop_value,
                seed_value,
            )
            config.validate()
        except (GardenError, ValueError, TypeError) as exc:
            gr.Warning(str(exc))
            yield hist_a, hist_b, text, f"❌ {exc}", gr.update()
            return
        names = [name_a] + ([name_b] if on else [])
        histories = [hist_a] + ([hist_b] if on else [])
        if any(not n for n in names):
            gr.Warning("Pick a model for every pane.")
            yield hist_a, hist_b, text, gr.update(), gr.update()
            return
        prompts = [[*_strip(h), {"role": "user", "content": text}] for h in histories]
        for history in histories:
            history.append({"role": "user", "content": text})
            history.append({"role": "assistant", "content": ""})
        stats = ["⏳ loading…", "⏳ loading…" if on else ""]
        yield hist_a, hist_b, "", stats[0], stats[1]

        panes: list[_Pane | None] = []
        for i, name in enumerate(names):
            try:
                engine, adapter = _prepare(name, backend_name, settings)
                deadline = time.time() + 900
                while engine.status.state == "loading":
                    if time.time() > deadline:
                        break
                    stats[i] = engine.status.describe()
                    yield hist_a, hist_b, "", stats[0], stats[1]
                    time.sleep(0.5)
                engine.wait_ready(timeout=1)
                pane = _Pane(engine, prompts[i], config, adapter)
            except GardenError as exc:
                gr.Warning(str(exc))
                histories[i][-1]["content"] = f"⚠️ {exc}"
                stats[i] = f"❌ {exc}"
                pane = None
            panes.append(pane)
        session = request.session_hash or "anonymous"
        live = [p for p in panes if p is not None]
        with _active_lock:
            _active[session] = [(p.engine, p.request_id) for p in live]
        try:
            for pane in live:
                pane.start()
            while True:
                for i, pane in enumerate(panes):
                    if pane is None:
                        continue
                    histories[i][-1]["content"] = pane.text
                    if pane.error:
                        histories[i][-1]["content"] = (pane.text + f"\n\n⚠️ {pane.error}").strip()
                        stats[i] = f"❌ {pane.error}"
                    elif pane.stats is not None:
                        stats[i] = format_stats(pane.stats)
                    else:
                        stats[i] = f"✍️ generating… ({pane.engine.status.backend})"
                yield hist_a, hist_b, "", stats[0], stats[1]
                if all(p.done for p in live):
                    break
                time.sleep(POLL_SECONDS)
        finally:
            for pane in live:
                if not pane.done:
                    pane.engine.abort(pane.request_id)
            with _active_lock:
                _active.pop(session, None)

    inputs = [message, chat_a, chat_b, compare, model_a, model_b, backend, *settings_inputs]
    outputs = [chat_a, chat_b, message, stats_a, stats_b]
    watch = [model_a, backend, compare, model_b]
    send_event = send_btn.click(respond, inputs, outputs)
    send_event.then(poll, watch, [status, timer], show_progress="hidden")
    submit_event = message.submit(respond, inputs, outputs)
    submit_event.then(poll, watch, [status, timer], show_progress="hidden")

    def stop(request: gr.Request) -> None:
        with _active_lock:
            running = list(_active.get(request.session_hash or "anonymous", []))
        for engine, request_id in running:
            engine.abort(request_id)

    stop_btn.click(stop, None, None, cancels=[send_event, submit_event])
    clear_btn.click(lambda: ([], [], "", ""), None, [chat_a, chat_b, stats_a, stats_b])

    def export(
        hist_a: list[dict[str, Any]],
        hist_b: list[dict[str, Any]],
        on: bool,
        name_a: str | None,
        name_b: str | None,
        backend_name: str,
        *gen: Any,
    ):
        if not hist_a and not hist_b:
            gr.Warning("Nothing to export yet: chat first.")
            return gr.update(visible=False)
        try:
            config = generation_config(*gen).__dict__
        except (ValueError, TypeError):
            config = {}
        data = {
            "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "backend": backend_name,
            "generation_settings": config,
            "conversations": [{"model": name_a, "messages": _strip(hist_a or [])}]
            + ([{"model": name_b, "messages": _strip(hist_b or [])}] if on else []),
        }
        settings.temp_path.mkdir(parents=True, exist_ok=True)
        path = (
            Path(settings.temp_path)
            / f"chat-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}.json"
        )
        path.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")
        return gr.update(value=str(path), visible=True)

    export_btn.click(
        export, [chat_a, chat_b, compare, model_a, model_b, backend, *settings_inputs], export_file
    )
