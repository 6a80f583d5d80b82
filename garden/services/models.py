"""Models a person can train from or chat with: the embedded default, local bases, fine-tuned
runs and remembered hub ids."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from pydantic import Field

from garden import models as registry
from garden.config import Settings
from garden.models import DEFAULT_MODEL_NAME, ModelInfo
from garden.services.base import View, resolve

__all__ = [
    "DEFAULT_MODEL_NAME",
    "ModelView",
    "chat_choices",
    "is_default_prepared",
    "list_models",
    "model_ids",
    "prepare_default",
]

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


def prepare_default(
    progress: Callable[[str], None] | None = None, *, settings: Settings | None = None
) -> ModelView:
    """Convert the embedded default model once (later calls return at once); its view."""
    path = registry.prepare_default_model(resolve(settings), progress)
    return ModelView(
        id=DEFAULT_MODEL_NAME,
        name=DEFAULT_MODEL_NAME,
        kind="default",
        path=str(path),
        prepared=True,
    )
