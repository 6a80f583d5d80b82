"""`garden.services.models` on a private storage that holds the real prepared default model."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from garden.config import Settings
from garden.models import DEFAULT_MODEL_NAME, add_hub_model
from garden.services import models


def make_run(settings: Settings, name: str, mtime: float, *, merged: bool = False) -> Path:
    """A fine-tuned run folder: a LoRA adapter on the default model (and a merged model)."""
    run = settings.finetuned_models_path / name
    (run / "adapter").mkdir(parents=True)
    (run / "adapter" / "adapter_config.json").write_text(json.dumps({"r": 8}))
    (run / "adapter" / "adapter_model.safetensors").write_bytes(b"")
    (run / "garden.json").write_text(json.dumps({"base_model": DEFAULT_MODEL_NAME}))
    if merged:
        (run / "config.json").write_text("{}")
    os.utime(run, (mtime, mtime))
    return run


@pytest.fixture
def settings(tmp_path: Path, default_model_path: Path) -> Settings:
    """Empty storage whose models/base links to the session's prepared default model."""
    settings = Settings(_env_file=None, storage_root=tmp_path / "storage")
    settings.ensure_storage()
    (settings.base_models_path / DEFAULT_MODEL_NAME).symlink_to(default_model_path)
    return settings


def test_default_first_then_bases_then_runs_newest_first_then_hub(settings: Settings) -> None:
    older = make_run(settings, "older-run", 1_000_000)
    make_run(settings, "newer-run", 2_000_000, merged=True)
    base = settings.base_models_path / "Other-Base"
    base.mkdir()
    (base / "config.json").write_text("{}")
    add_hub_model("HuggingFaceTB/SmolLM2-360M-Instruct", settings)

    listed = models.list_models(settings=settings)
    assert [m.id for m in listed] == [
        DEFAULT_MODEL_NAME,
        "Other-Base",
        "finetuned/newer-run",
        "finetuned/older-run",
        "HuggingFaceTB/SmolLM2-360M-Instruct",
    ]
    assert models.model_ids(settings=settings) == [m.id for m in listed]
    default, other, newer, old, hub = listed
    assert default.kind == "default" and default.prepared
    assert default.path == str(settings.base_models_path / DEFAULT_MODEL_NAME)
    assert other.kind == "base" and hub.kind == "hub" and hub.path is None
    assert newer.kind == "finetuned" and newer.path == str(
        settings.finetuned_models_path / "newer-run"
    )
    assert old.adapter_path == str(older / "adapter") and old.base_model == DEFAULT_MODEL_NAME
    assert [m.label for m in listed] == [
        f"{DEFAULT_MODEL_NAME} (default)",
        "Other-Base (base)",
        "newer-run (fine-tuned, LoRA)",
        "older-run (fine-tuned, LoRA)",
        "HuggingFaceTB/SmolLM2-360M-Instruct (hub)",
    ]
    assert [m.id for m in models.chat_choices(settings=settings)] == [m.id for m in listed[:-1]]


def test_views_are_frozen_plain_data(settings: Settings) -> None:
    default = models.list_models(settings=settings)[0]
    with pytest.raises(ValidationError):
        default.prepared = False  # type: ignore[misc]
    dumped = json.loads(default.model_dump_json())
    assert set(dumped) == {
        "id", "name", "kind", "prepared", "base_model", "path", "adapter_path", "created_at",
        "meta",
    }  # fmt: skip
    assert "label" not in dumped


def test_prepare_default_is_a_quick_no_op_once_prepared(settings: Settings) -> None:
    messages: list[str] = []
    assert models.is_default_prepared(settings=settings)
    view = models.prepare_default(messages.append, settings=settings)
    assert view.id == DEFAULT_MODEL_NAME and view.kind == "default" and view.prepared
    assert view.path == str(settings.base_models_path / DEFAULT_MODEL_NAME)
    assert messages and "ready" in messages[-1]


def test_fresh_storage_is_not_prepared_and_listing_converts_nothing(tmp_path: Path) -> None:
    fresh = Settings(_env_file=None, storage_root=tmp_path / "fresh")
    fresh.ensure_storage()
    assert not models.is_default_prepared(settings=fresh)
    (default,) = models.list_models(settings=fresh)
    assert default.id == DEFAULT_MODEL_NAME and not default.prepared
    assert not any(fresh.base_models_path.iterdir())
