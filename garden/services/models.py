"""Models a person can train from or chat with: the embedded default, local bases, fine-tuned
runs and remembered hub ids."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Literal

from pydantic import Field

from garden import models as registry
from garden.config import Settings
from garden.errors import GardenError, ModelLoadError
from garden.models import DEFAULT_MODEL_NAME, ModelInfo
from garden.services.base import View, resolve

__all__ = [
    "DEFAULT_MODEL_NAME",
    "ModelView",
    "PrepareStatus",
    "chat_choices",
    "default_model_status",
    "is_default_prepared",
    "list_models",
    "model_ids",
    "prepare_default",
    "prepare_in_background",
    "wait_for_default",
]

log = logging.getLogger("garden.models")

ModelKind = Literal["default", "base", "finetuned", "hub"]
KIND_TAGS = {"default": "default", "base": "base", "finetuned": "fine-tuned", "hub": "hub"}


class ModelView(View):
    """One model: where it lives, what it was trained from, and whether it is ready to load."""

    id: str
    name: str
    kind: ModelKind
    prepared: bool = True
    base_model: str | None = None
    path: str | None = None
    adapter_path: str | None = None
    created_at: float | None = None
    meta: dict[str, Any] = Field(default_factory=dict)

    @property
    def label(self) -> str:
        """What a model picker shows: "facts-run (fine-tuned, LoRA)"."""
        tag = KIND_TAGS.get(self.kind, self.kind)
        if self.kind == "finetuned" and self.adapter_path:
            tag += ", LoRA"
        return f"{self.name} ({tag})"

    @classmethod
    def of(cls, info: ModelInfo) -> ModelView:
        return cls(**info.to_dict())


def list_models(*, settings: Settings | None = None) -> list[ModelView]:
    """The default model first, then local base models, fine-tuned runs (newest first), hub ids."""
    return [ModelView.of(info) for info in registry.list_models(resolve(settings))]


def chat_choices(*, settings: Settings | None = None) -> list[ModelView]:
    """What the chat engine can serve: every listed model except hub ids (it runs offline)."""
    return [view for view in list_models(settings=settings) if view.kind != "hub"]


def model_ids(*, settings: Settings | None = None) -> list[str]:
    """Every listed model's id, the default first."""
    return [view.id for view in list_models(settings=settings)]


def is_default_prepared(*, settings: Settings | None = None) -> bool:
    return registry.is_default_prepared(resolve(settings))


class PrepareStatus(View):
    """Where the embedded default model's one-time conversion stands in this process."""

    state: Literal["ready", "preparing", "not_started", "failed"]
    step: str = ""
    elapsed_s: float = 0.0
    error: str | None = None


class _Preparation:
    """The conversion this process runs (at most one at a time), as the UI polls it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.started: float | None = None
        self.step = ""
        self.error: str | None = None
        self.thread: threading.Thread | None = None

    def status(self, ready: bool) -> PrepareStatus:
        with self.lock:
            if ready:
                return PrepareStatus(state="ready")
            if self.started is None:
                return PrepareStatus(state="not_started")
            elapsed = time.monotonic() - self.started
            if self.error is not None:
                return PrepareStatus(state="failed", elapsed_s=elapsed, error=self.error)
            return PrepareStatus(state="preparing", step=self.step, elapsed_s=elapsed)


_preparations: dict[str, _Preparation] = {}
_preparations_lock = threading.Lock()


def _preparation_of(settings: Settings) -> _Preparation:
    """The conversion into this settings' default-model folder."""
    key = str(registry.default_model_dir(settings))
    with _preparations_lock:
        return _preparations.setdefault(key, _Preparation())


def prepare_default(
    progress: Callable[[str], None] | None = None, *, settings: Settings | None = None
) -> ModelView:
    """Convert the embedded default model once (later calls return at once); its view.

    While it runs, :func:`default_model_status` says which step it is on."""
    settings = resolve(settings)
    preparation = _preparation_of(settings)

    def track(step: str) -> None:
        with preparation.lock:
            preparation.step = step
        if progress is not None:
            progress(step)

    with preparation.lock:
        preparation.started, preparation.error = time.monotonic(), None
    try:
        path = registry.prepare_default_model(settings, track)
    except Exception as exc:
        with preparation.lock:
            preparation.error = exc.message if isinstance(exc, GardenError) else str(exc)
        raise
    return ModelView(
        id=DEFAULT_MODEL_NAME,
        name=DEFAULT_MODEL_NAME,
        kind="default",
        path=str(path),
        prepared=True,
    )


def default_model_status(*, settings: Settings | None = None) -> PrepareStatus:
    """Ready, being prepared (which step, for how long), failed, or not started."""
    settings = resolve(settings)
    return _preparation_of(settings).status(is_default_prepared(settings=settings))


def wait_for_default(
    *, poll_s: float = 1.0, timeout_s: float = 900.0, settings: Settings | None = None
) -> Iterator[PrepareStatus]:
    """Statuses while the default model is prepared (starting that in the background if no one
    has); ends once it is ready. ``ModelLoadError`` when it fails or takes over ``timeout_s``."""
    settings = resolve(settings)
    deadline = time.monotonic() + timeout_s
    while True:
        status = default_model_status(settings=settings)
        if status.state == "ready":
            return
        if status.state == "failed":
            preparation = _preparation_of(settings)
            with preparation.lock:
                preparation.started = None  # the next Start tries again
            raise ModelLoadError(
                f"Preparing the default model failed: {status.error}",
                hint="See the log; `model-garden models prepare` retries it.",
            )
        if status.state == "not_started":
            prepare_in_background(settings=settings)
            continue
        if time.monotonic() > deadline:
            raise ModelLoadError(
                "The default model is still being prepared.", hint="Press Start again in a minute."
            )
        yield status
        time.sleep(poll_s)


def prepare_in_background(
    progress: Callable[[str], None] | None = None, *, settings: Settings | None = None
) -> None:
    """Convert the default model in a background thread, unless one is already at it; its
    progress shows in :func:`default_model_status` (and goes to ``progress``)."""
    settings = resolve(settings)
    preparation = _preparation_of(settings)
    with preparation.lock:
        if preparation.thread is not None and preparation.thread.is_alive():
            return
        preparation.started, preparation.step = time.monotonic(), ""
        thread = threading.Thread(
            target=_prepare_logged,
            args=(settings, progress),
            name="prepare-default-model",
            daemon=True,
        )
        preparation.thread = thread
    thread.start()


def _prepare_logged(settings: Settings, progress: Callable[[str], None] | None) -> None:
    try:
        prepare_default(progress, settings=settings)
    except Exception as exc:  # also recorded in the status a waiting front end reads
        log.error("Preparing the default model failed: %s", exc)
