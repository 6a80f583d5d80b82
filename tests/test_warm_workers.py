"""Warm training workers: forked from a fork server where that is safe, spawned otherwise."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from garden.engine.training import warm


def test_disabled_always_spawns():
    assert warm.worker_context(False).get_start_method() == "spawn"
    assert warm.warm_up_in_background(False) is None


@pytest.mark.skipif(not warm.warm_starts_possible(), reason="fork server is Linux without a GPU")
def test_warm_until_the_environment_changes(monkeypatch):
    assert warm.worker_context(True).get_start_method() == "forkserver"
    # The fork server imported torch under the old environment: a changed one spawns afresh.
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "default")
    assert warm.worker_context(True).get_start_method() == "spawn"
    monkeypatch.undo()
    assert warm.worker_context(True).get_start_method() == "forkserver"


def test_the_preload_imports_what_a_run_uses():
    # The fork server ignores a preload that fails to import, which would silently make every
    # run cold again: import it here, where a failure shows.
    for name in warm.PRELOAD:
        module = importlib.import_module(name)
        assert module.LOADED


def test_nothing_imports_the_preload_but_the_fork_server():
    garden = Path(__file__).resolve().parent.parent / "garden"
    importers = [
        path.name
        for path in garden.rglob("*.py")
        if "training.preload" in path.read_text() and path.name != "preload.py"
    ]
    assert importers == ["warm.py"]
