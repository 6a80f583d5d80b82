"""Warm training workers: forked from a fork server where that is safe, spawned otherwise."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import pytest

from garden.engine.training import warm


def test_disabled_always_spawns():
    assert warm.worker_context(False).get_start_method() == "spawn"
    assert warm.warm_up_in_background(False) is None


@pytest.mark.skipif(not warm.warm_starts_possible(), reason="fork server is Linux without a GPU")
def test_warm_until_what_torch_reads_at_import_changes(monkeypatch):
    warm.worker_context(True)  # the session's fork server, started if it was not yet
    # As if the server had started with the environment as it is now (earlier tests may have
    # changed it since the server really started).
    monkeypatch.setattr(warm, "_server_import_env", warm._import_time(os.environ))
    assert warm.worker_context(True).get_start_method() == "forkserver"
    # What a library sets at import (vLLM does) is taken over by the worker: still warm.
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", "/tmp/elsewhere")
    monkeypatch.setenv("GARDEN_FAULT_MAX_FILE_BYTES", "1000000")
    assert warm.worker_context(True).get_start_method() == "forkserver"
    # What OpenCV's import and Gradio's Blocks set inside the app: still warm.
    monkeypatch.setenv("LD_LIBRARY_PATH", "/opencv/lib64:" + os.environ.get("LD_LIBRARY_PATH", ""))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "True")
    assert warm.worker_context(True).get_start_method() == "forkserver"
    assert warm.cold_start_reason(True) is None
    # torch imported in the server under the old value: a fresh process.
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "default")
    assert warm.worker_context(True).get_start_method() == "spawn"
    reason = warm.cold_start_reason(True)
    assert reason == "ATEN_CPU_CAPABILITY changed since the training stack was imported"
    monkeypatch.delenv("ATEN_CPU_CAPABILITY")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert warm.worker_context(True).get_start_method() == "spawn"


def test_what_the_app_s_own_libraries_set_keeps_runs_warm():
    """Building the UI (Gradio, analytics off) and importing OpenCV (vLLM and transformers do)
    change the process's environment; before, every run started after them was spawned cold
    (in this suite KTO's 8 s run took 18 s)."""
    import subprocess
    import sys

    script = (
        "import os; from garden.engine.training import warm\n"
        "before = warm._import_time(os.environ)\n"
        "import cv2, gradio as gr\n"
        "gr.Blocks()\n"
        "changed = {k for k, v in os.environ.items() if k.startswith(warm.IMPORT_TIME_PREFIXES)}\n"
        "print(sorted(changed - set(before)), warm._import_time(os.environ) == before)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in warm.SET_AT_RUNTIME}
    env["GRADIO_ANALYTICS_ENABLED"] = "False"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    last = done.stdout.strip().splitlines()[-1]
    assert last == "['HF_HUB_DISABLE_TELEMETRY', 'LD_LIBRARY_PATH'] True", last


def test_a_worker_adopts_the_app_s_environment():
    before = dict(os.environ)
    try:
        os.environ["GARDEN_LEFT_OVER"] = "from the fork server"
        wanted = {**before, "GARDEN_ADOPTED": "from the app"}
        warm.adopt_environment(wanted)
        assert dict(os.environ) == wanted
    finally:
        os.environ.clear()
        os.environ.update(before)


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
