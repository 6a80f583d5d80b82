"""The chat engine: one model (and its LoRA adapters) served by one backend at a time.

With ``backend="auto"`` the transformers backend serves within seconds while vLLM starts, and
the engine swaps to vLLM once it is ready. Fine-tuned runs that carry a LoRA adapter are served
as that adapter on their base model's engine, so switching between base and fine-tuned (or
comparing them side by side) needs no model reload. ``auto`` starts vLLM with LoRA layers only
once an adapter is wanted (they halve its batched throughput); until a LoRA-enabled vLLM has
taken over, transformers answers for the adapter. Engines are shared through ``registry``.

No gradio imports here; torch, transformers and vLLM are imported only by the backends.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from garden.config import Settings, get_settings
from garden.engine.serving.answers import AnswerEnd, answer_deltas
from garden.engine.serving.handover import BackendHandover
from garden.engine.serving.metering import answer_energy, carbon_meter
from garden.engine.serving.prompts import load_chat_tokenizer, prompt_ids
from garden.engine.serving.targets import (
    adapter_base,
    adapter_rank,
    adapter_run_name,
    check_adapter,
)
from garden.engine.serving.tool_calls import with_tool_calls
from garden.engine.serving.types import (
    BACKENDS,
    Adapter,
    AnswerStats,
    Backend,
    ChatDelta,
    EngineStatus,
    GenerationConfig,
    GenerationRequest,
)
from garden.errors import GardenError, ModelLoadError, ServingError
from garden.models import read_json, validate_model_dir

log = logging.getLogger("garden.serving")


class ChatEngine(BackendHandover):
    """One model (and its adapters) served by one backend at a time; thread-safe."""

    def __init__(
        self,
        base_path: str,
        backend: str = "auto",
        *,
        settings: Settings | None = None,
        vllm_options: dict[str, Any] | None = None,
        lora_rank: int | None = None,
    ) -> None:
        """``lora_rank``: the first answers use an adapter of that rank, so vLLM starts with
        LoRA at once."""
        if backend not in BACKENDS:
            raise ServingError(
                f"Unknown backend {backend!r}.", hint=f"Use one of: {', '.join(BACKENDS)}."
            )
        self.settings = settings or get_settings()
        self.base_path = base_path
        self.model_name = Path(base_path).name
        self.requested = backend
        self.id = f"chat_{uuid.uuid4().hex[:12]}"
        self.vllm_options = vllm_options or {}
        self._lock = threading.RLock()
        self._ready = threading.Event()
        self._done = threading.Event()
        self._backend: Backend | None = None
        self._spare: Backend | None = None
        self._fast: Backend | None = None  # the int4 ONNX copy beside the main backend (auto)
        self._run_copies: dict[str, Backend | None] = {}  # LoRA runs' int4 copies, by adapter
        self._tokenizer: Any = None
        self._adapters: dict[str, Adapter] = {}
        self._architectures: list[str] = []
        self._wanted_rank = lora_rank or 0
        self._lora_upgrade = False  # a LoRA-enabled vLLM is starting to replace one without
        self._inflight: dict[str, Backend] = {}
        self._aborted: set[str] = set()
        self._meter: Any = None
        self._started_at = time.time()
        self.status = EngineStatus(
            self.model_name, "loading", None, backend, "starting", vllm_state=None
        )

    # lifecycle -------------------------------------------------------------------------
    def load(self, wait: bool = False, timeout: float | None = None) -> ChatEngine:
        thread = threading.Thread(target=self._load, name=f"load-{self.model_name}", daemon=True)
        thread.start()
        if wait:
            self.wait_ready(timeout)
        return self

    def _fail(self, exc: BaseException) -> None:
        message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
        self._set(state="failed", error=message, hint=getattr(exc, "hint", None))
        log.error("Loading %s failed: %s", self.model_name, message)

    def _load(self) -> None:
        try:
            self._load_inner()
        except BaseException as exc:
            self._fail(exc)
        finally:
            self._ready.set()
            self._done.set()

    def _load_inner(self) -> None:
        validate_model_dir(Path(self.base_path))
        from garden.engine.serving.vllm import vllm_supports

        architectures = read_json(Path(self.base_path) / "config.json").get("architectures") or []
        self._architectures = list(architectures)
        use_vllm, why = False, "transformers was requested"
        if self.requested in ("auto", "vllm"):
            use_vllm, why = vllm_supports(architectures)
            if self.requested == "vllm" and not use_vllm:
                raise ModelLoadError(
                    f"The vLLM backend cannot serve {self.model_name}: {why}.",
                    hint="Pick the auto or transformers backend.",
                )
        # The vLLM host imports torch and vLLM (most of its start-up) beside our own loading.
        launched = self._launch_vllm() if use_vllm else None
        try:
            self._load_backends(use_vllm, why, launched)
        except BaseException:
            if launched is not None:
                launched.shutdown()
            raise

    def _load_backends(self, use_vllm: bool, why: str, launched: Any) -> None:
        from garden.engine.serving.onnx_backend import OnnxBackend

        self._tokenizer = load_chat_tokenizer(self.base_path)
        self._meter = carbon_meter(self.id, f"chat {self.model_name}", self.settings)
        if self.requested == "onnx":
            self._backend = OnnxBackend.started(self.base_path, self.settings)
            self._set(state="ready", backend="onnx", reason="int4 ONNX copy (onnxruntime-genai)")
            return
        if not use_vllm:
            reason = why if self.requested == "transformers" else f"{why}; using transformers"
            self._start_hf(reason)
            if self.requested == "auto":
                self._start_fast()
            return
        if self.requested == "auto":
            self._set(vllm_state="starting", reason="transformers loads first while vLLM starts")
            try:
                self._start_hf("serving while vLLM starts")
            except GardenError as exc:
                log.warning("transformers fallback failed: %s", exc)
            if self._backend is not None:
                self._ready.set()
            self._start_fast()
        else:
            self._set(vllm_state="starting", reason="starting vLLM")
        self._start_vllm(launched=launched)

    def _start_fast(self, lora: Adapter | None = None) -> None:
        """Load (building it once) the int4 copy of the base model, or of the LoRA run
        ``lora``, in its own thread, beside vLLM's start-up or the answers of other backends."""

        def start() -> None:
            from garden.engine.serving.onnx_backend import start_fast_backend

            adapter_path = lora.path if lora is not None else None
            backend = start_fast_backend(self.base_path, self.settings, adapter_path)
            with self._lock:
                if backend is not None and self.status.state != "unloaded":
                    if lora is None:
                        self._fast, backend = backend, None
                    elif lora.path in self._run_copies:
                        self._run_copies[lora.path], backend = backend, None
            if backend is not None:
                backend.shutdown()

        name = f"onnx-{self.model_name}" if lora is None else f"onnx-{lora.name}"
        threading.Thread(target=start, name=name, daemon=True).start()

    def _start_hf(self, reason: str) -> None:
        from garden.engine.serving.hf import TransformersBackend

        t0 = time.time()
        backend = TransformersBackend(self.base_path)
        backend.start()
        with self._lock:
            if self._backend is None:
                self._backend = backend
                self._set(
                    state="ready",
                    backend="transformers",
                    reason=reason,
                    load_seconds=round(time.time() - t0, 2),
                )
            else:
                backend.shutdown()

    def wait_ready(self, timeout: float | None = None) -> EngineStatus:
        """Block until a backend serves (or loading failed); raise on failure."""
        self._ready.wait(timeout)
        status = self.status
        if status.state == "failed":
            raise ModelLoadError(status.error or "Loading failed.", hint=status.hint)
        if status.state != "ready":
            raise ServingError(
                f"{self.model_name} is still loading.", hint="Wait a few seconds and retry."
            )
        return status

    def wait_loaded(self, timeout: float | None = None) -> EngineStatus:
        """Block until loading has fully finished (vLLM included, when it is used)."""
        self._done.wait(timeout)
        return self.wait_ready(0)

    def unload(self) -> None:
        with self._lock:
            copies = list(self._run_copies.values())
            backends = [
                b for b in (self._backend, self._spare, self._fast, *copies) if b is not None
            ]
            self._backend = self._spare = self._fast = None
            self._run_copies.clear()
            self._set(state="unloaded", backend=None)
            for request_id in list(self._inflight):
                self._aborted.add(request_id)
        for backend in backends:
            for request_id in list(self._inflight):
                backend.abort(request_id)
            backend.shutdown()
        meter, self._meter = self._meter, None
        if meter is not None:
            try:
                meter.stop()
            except Exception as exc:
                log.warning("Stopping the carbon meter failed: %s", exc)

    @property
    def backend_name(self) -> str | None:
        return self.status.backend

    # adapters -----------------------------------------------------------------------------
    def adapter(self, adapter_path: str | Path) -> Adapter:
        """Register (once) a LoRA adapter for this base model; checks it belongs here."""
        path = Path(adapter_path).resolve()
        key = str(path)
        with self._lock:
            if key in self._adapters:
                return self._adapters[key]
        check_adapter(path, self.base_path)
        name = adapter_run_name(path)
        with self._lock:
            adapter = Adapter(
                name=f"{name}-{len(self._adapters) + 1}",
                path=key,
                lora_id=len(self._adapters) + 1,
                rank=adapter_rank(path),
                base_model=adapter_base(path),
            )
            self._adapters[key] = adapter
            return adapter

    # chat ---------------------------------------------------------------------------------
    def build_prompt(
        self,
        messages: list[dict[str, Any]],
        system_prompt: str = "",
        tools: list[dict[str, Any]] | None = None,
    ) -> list[int]:
        """The prompt's token ids: the conversation (and ``tools``) in the model's template."""
        if self._tokenizer is None:
            self.wait_ready()
        return prompt_ids(self._tokenizer, messages, system_prompt, tools)

    def stream_chat(
        self,
        messages: list[dict[str, Any]],
        config: GenerationConfig | None = None,
        *,
        adapter: str | Path | None = None,
        request_id: str | None = None,
        tools: list[dict[str, Any]] | None = None,
        backend: str | None = None,
    ) -> Iterator[ChatDelta]:
        """Stream the assistant's answer to ``messages`` (OpenAI-style role/content dicts),
        offering the model ``tools`` (OpenAI/HF function schemas) when given. ``backend``
        names the backend that must answer (``ServingError`` when it cannot now); None or
        ``auto``: the engine picks."""
        config = config or GenerationConfig()
        config.validate()
        self.wait_ready()
        lora = self.adapter(adapter) if adapter else None
        prompt_ids = self.build_prompt(messages, config.system_prompt, tools)
        request_id = request_id or f"req-{uuid.uuid4().hex[:12]}"
        answering = self._answering_backend(lora, request_id, backend)
        yield from self._answer(answering, prompt_ids, config, request_id, lora, tools)

    def _answer(
        self,
        backend: Backend,
        prompt_ids: list[int],
        config: GenerationConfig,
        request_id: str,
        lora: Adapter | None,
        tools: list[dict[str, Any]] | None,
    ) -> Iterator[ChatDelta]:
        limit = backend.max_model_len
        if len(prompt_ids) >= limit:
            with self._lock:
                self._inflight.pop(request_id, None)
            raise ServingError(
                f"The prompt is {len(prompt_ids)} tokens; {self.model_name} accepts at most "
                f"{limit} tokens in total.",
                hint="Clear the conversation or shorten the message.",
            )
        run_config = config
        room = limit - len(prompt_ids)
        if config.max_new_tokens > room:
            run_config = replace(config, max_new_tokens=room)
        stats = AnswerStats(
            backend=backend.name,
            model=self.model_name if lora is None else f"{self.model_name}+{lora.name}",
            prompt_tokens=len(prompt_ids),
        )
        request = GenerationRequest(prompt_ids, run_config, request_id, lora)
        steps = self._run(backend, request, stats)
        yield from with_tool_calls(steps) if tools else steps

    def _run(
        self, backend: Backend, request: GenerationRequest, stats: AnswerStats
    ) -> Iterator[ChatDelta]:
        request_id = request.request_id
        t_start = time.time()
        end = AnswerEnd()
        try:
            yield from answer_deltas(
                backend, request, stats, lambda: request_id in self._aborted, end
            )
        finally:
            with self._lock:
                self._inflight.pop(request_id, None)
                was_aborted = request_id in self._aborted
                self._aborted.discard(request_id)
        t_end = time.time()
        stats.tokens = end.tokens
        stats.duration_s = round(t_end - t_start, 4)
        stats.tokens_per_second = (
            round(end.tokens / (t_end - t_start), 2) if t_end > t_start else None
        )
        stats.ttft_s = round(stats.ttft_s, 4) if stats.ttft_s is not None else None
        stats.finish_reason = "abort" if was_aborted else (end.finish or "stop")
        stats.energy_kwh = self._energy(t_start, t_end)
        yield ChatDelta("", end.text, end.tokens, done=True, stats=stats, backend=backend.name)

    def chat(
        self,
        messages: list[dict[str, Any]],
        config: GenerationConfig | None = None,
        *,
        adapter: str | Path | None = None,
        tools: list[dict[str, Any]] | None = None,
    ) -> ChatDelta:
        """The whole answer at once (the last :class:`ChatDelta`, with ``stats``)."""
        steps = list(self.stream_chat(messages, config, adapter=adapter, tools=tools))
        return steps[-1]

    def abort(self, request_id: str) -> None:
        """Stop a generation mid-stream; the stream ends with ``finish_reason='abort'``."""
        with self._lock:
            backend = self._inflight.get(request_id)
            if backend is None:
                return
            self._aborted.add(request_id)
        backend.abort(request_id)

    def _energy(self, t0: float, t1: float) -> float | None:
        return answer_energy(self._meter, t0, t1)
