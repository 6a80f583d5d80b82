"""What is being exported: the model folder, its adapter, its base model and its run facts."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from garden.config import Settings
from garden.engine.serving.targets import adapter_base
from garden.errors import ExportError, GardenError
from garden.models import DEFAULT_MODEL_NAME, read_json, resolve_model

DEFAULT_MODEL_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"


@dataclass(frozen=True)
class ExportSource:
    """A local model ready to export; ``adapter_dir`` is set for LoRA runs only."""

    id: str
    name: str
    kind: str
    model_dir: Path
    adapter_dir: Path | None = None
    base_model_dir: Path | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def slug(self) -> str:
        return re.sub(r"[^A-Za-z0-9._-]+", "-", self.name).strip("-") or "model"

    @property
    def base_model_id(self) -> str:
        """The base model as a Hub card names it (the embedded default by its Hub id)."""
        base = str(self.meta.get("base_model_id") or self.meta.get("base_model") or self.name)
        return DEFAULT_MODEL_HUB_ID if Path(base).name == DEFAULT_MODEL_NAME else base


def find_source(ref: str, settings: Settings) -> ExportSource:
    """Resolve a listed model, run or folder to an :class:`ExportSource`."""
    info = resolve_model(ref, settings)
    if info.kind == "hub" or not info.path:
        raise ExportError(
            f"{ref!r} is a Hub id, not a local model, so there is nothing local to export.",
            hint="Export a fine-tuned run or a local model (`model-garden models list`).",
        )
    model_dir = Path(info.path)
    adapter_dir = Path(info.adapter_path) if info.adapter_path else None
    base_dir = None
    if adapter_dir is not None:
        base = adapter_base(adapter_dir)
        base_dir = _local_base(base, settings) if base else None
    meta = dict(info.meta) or read_json(model_dir / "garden.json")
    return ExportSource(
        id=info.id,
        name=info.name,
        kind=info.kind,
        model_dir=model_dir,
        adapter_dir=adapter_dir,
        base_model_dir=base_dir,
        meta=meta,
    )


def _local_base(base: str, settings: Settings) -> Path | None:
    path = Path(base)
    if path.is_dir():
        return path
    try:
        info = resolve_model(base, settings)
    except GardenError:
        return None
    return Path(info.path) if info.path else None
