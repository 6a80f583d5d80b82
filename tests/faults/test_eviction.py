"""At most MAX_LOADED_MODELS chat engines stay loaded; the least recently used one goes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def _copy_model(source: Path, target: Path) -> Path:
    """Another folder with the same weights (hard links: no extra disk)."""
    target.mkdir()
    for entry in source.iterdir():
        if entry.is_file():
            try:
                os.link(entry, target / entry.name)
            except OSError:
                (target / entry.name).symlink_to(entry)
    return target


@pytest.mark.slow
def test_least_recently_used_engine_is_unloaded(tmp_path, default_model_path, isolated_settings):
    from garden.engine.serving import get_engine, shutdown_all
    from garden.engine.serving.registry import list_engines

    settings = isolated_settings.model_copy(update={"max_loaded_models": 2})
    first = _copy_model(default_model_path, tmp_path / "first")
    second = _copy_model(default_model_path, tmp_path / "second")
    try:
        # One load at a time: transformers cannot load two models in two threads at once.
        default = get_engine(str(default_model_path), "transformers", settings=settings)
        assert default.wait_ready(300).state == "ready", default.status
        older = get_engine(str(first), "transformers", settings=settings)
        assert older.wait_ready(300).state == "ready", older.status
        again = get_engine(str(default_model_path), "transformers", settings=settings)
        assert again is default  # used again: ``older`` is now the least recently used
        newest = get_engine(str(second), "transformers", settings=settings)
        assert newest.wait_ready(300).state == "ready", newest.status

        assert older.status.state == "unloaded" and older.backend_name is None
        assert default.status.state == "ready" and default.backend_name == "transformers"
        assert {id(e) for e in list_engines()} == {id(default), id(newest)}
    finally:
        shutdown_all()
