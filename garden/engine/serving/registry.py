"""The process-wide chat engines: one per base model and backend, shared by every caller.

``get_engine(model, backend)`` returns the shared :class:`ChatEngine` for a model's base and
starts loading it in the background; ``peek_engine`` finds a live one without loading.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from pathlib import Path
from typing import Any

from garden.config import Settings, get_settings
from garden.engine.serving.engine import ChatEngine
from garden.engine.serving.targets import ChatTarget, adapter_rank, resolve_target
from garden.errors import GardenError
from garden.models import DEFAULT_MODEL_NAME, is_default_prepared

log = logging.getLogger(__name__)

# Which live engines a request for a backend may share: auto takes any engine of the base,
# vllm also takes an auto engine that serves (or will serve) with vLLM.
SHAREABLE: dict[str, tuple[str, ...]] = {
    "auto": ("auto", "vllm", "transformers"),
    "vllm": ("vllm", "auto"),
    "transformers": ("transformers",),
    "onnx": ("onnx",),
}

_engines: dict[tuple[str, str], ChatEngine] = {}
_last_used: dict[str, float] = {}  # engine id -> monotonic time of its last get/peek
_registry_lock = threading.Lock()


def _touch(engine: ChatEngine) -> ChatEngine:
    _last_used[engine.id] = time.monotonic()
    return engine


def _pick_evictions(keep: ChatEngine, limit: int) -> list[ChatEngine]:
    """Remove the least recently used engines beyond ``limit`` (never ``keep``); lock held."""
    live = {id(e): e for e in _engines.values() if e.status.state not in ("failed", "unloaded")}
    others = sorted(
        (e for e in live.values() if e is not keep), key=lambda e: _last_used.get(e.id, 0.0)
    )
    evicted = others[: max(0, len(live) - limit)]
    for key, value in list(_engines.items()):
        if value in evicted:
            del _engines[key]
    for engine in evicted:
        _last_used.pop(engine.id, None)
    return evicted


def _base_key(target: ChatTarget) -> str:
    return str(Path(target.base_path).resolve())


def _may_run_vllm(engine: ChatEngine) -> bool:
    """An ``auto`` engine that serves, or is starting, vLLM (or has not decided yet)."""
    status = engine.status
    if status.vllm_state == "failed":
        return False
    return status.vllm_state is not None or status.state == "loading"


def get_engine(
    model: str | ChatTarget | None = None,
    backend: str = "auto",
    *,
    settings: Settings | None = None,
    load: bool = True,
    vllm_options: dict[str, Any] | None = None,
) -> ChatEngine:
    """The shared engine for ``model``'s base (created and loading in the background).

    A failed engine is replaced by a fresh one on the next call, so a retry reloads.
    """
    settings = settings or get_settings()
    target = model if isinstance(model, ChatTarget) else resolve_target(model, settings)
    base = _base_key(target)
    with _registry_lock:
        for kind in SHAREABLE.get(backend, (backend,)):
            engine = _engines.get((base, kind))
            if engine is None or engine.status.state in ("failed", "unloaded"):
                continue
            if backend == "vllm" and kind == "auto" and not _may_run_vllm(engine):
                continue
            return _touch(engine)
        engine = ChatEngine(
            target.base_path,
            backend,
            settings=settings,
            vllm_options=vllm_options,
            lora_rank=adapter_rank(Path(target.adapter_path)) if target.adapter_path else None,
        )
        if not _engines:
            atexit.register(shutdown_all)
        _engines[(base, backend)] = _touch(engine)
        evicted = _pick_evictions(engine, settings.max_loaded_models)
    for old in evicted:
        log.info("Unloading chat engine %s (least recently used)", old.model_name)
        old.unload()
    if load:
        engine.load()
    return engine


def peek_engine(
    model: str | ChatTarget | None, backend: str = "auto", settings: Settings | None = None
) -> ChatEngine | None:
    """The live engine that ``get_engine`` would return, without creating or loading one."""
    if model in (None, "", "default", DEFAULT_MODEL_NAME) and not is_default_prepared(settings):
        return None  # nothing can be serving it yet; never convert the model just to look
    try:
        target = model if isinstance(model, ChatTarget) else resolve_target(model, settings)
    except GardenError:
        return None
    base = _base_key(target)
    with _registry_lock:
        for kind in SHAREABLE.get(backend, (backend,)):
            engine = _engines.get((base, kind))
            if engine is None or engine.status.state == "unloaded":
                continue
            if backend == "vllm" and kind == "auto" and not _may_run_vllm(engine):
                continue
            return _touch(engine)
    return None


def list_engines() -> list[ChatEngine]:
    with _registry_lock:
        return list(_engines.values())


def unload_engine(engine: ChatEngine) -> None:
    with _registry_lock:
        for key, value in list(_engines.items()):
            if value is engine:
                del _engines[key]
        _last_used.pop(engine.id, None)
    engine.unload()


def shutdown_all() -> None:
    """Unload every engine (vLLM's host processes included)."""
    with _registry_lock:
        engines = list({id(e): e for e in _engines.values()}.values())
        _engines.clear()
        _last_used.clear()
    for engine in engines:
        try:
            engine.unload()
        except Exception as exc:  # one engine failing to stop must not keep the others alive
            log.warning("Unloading chat engine %s failed: %s", engine.model_name, exc)
