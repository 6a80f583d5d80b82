"""The app shell: four tabs, HTTP on a free port, launch flags, and a light UI import."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from conftest import RunningApp

from garden.config import Settings
from garden.errors import ConfigError
from garden.ui.server import resolve_auth, resolve_host


def test_app_has_exactly_the_four_tabs() -> None:
    import gradio as gr

    from garden.ui import TAB_NAMES, build_app

    app = build_app()
    labels = [block.label for block in app.blocks.values() if isinstance(block, gr.Tab)]
    top_level = [label for label in labels if label in TAB_NAMES]
    assert top_level == ["Data", "Fine-tune", "Chat", "Carbon"]


def test_building_the_ui_on_fresh_storage_stays_light(tmp_path: Path) -> None:
    """Neither importing nor building the app loads torch or converts the default model."""
    code = (
        "import sys, garden.ui; garden.ui.build_app(); "
        "print('torch' in sys.modules, 'transformers' in sys.modules, 'vllm' in sys.modules)"
    )
    env = {**os.environ, "STORAGE_ROOT": str(tmp_path / "fresh")}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert out.stdout.split()[-3:] == ["False", "False", "False"]
    assert not (tmp_path / "fresh" / "models" / "base" / "SmolLM2-135M-Instruct").exists()


def test_app_py_serves_http_200(app: RunningApp) -> None:
    assert httpx.get(app.url, timeout=10).status_code == 200
    page = httpx.get(f"{app.url}config", timeout=10).json()
    assert page["title"] == "Model Garden"


def test_space_binds_all_interfaces(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(_env_file=None)
    monkeypatch.delenv("SPACE_ID", raising=False)
    assert resolve_host(None, settings) == "127.0.0.1"
    assert resolve_host("0.0.0.0", settings) == "0.0.0.0"
    monkeypatch.setenv("SPACE_ID", "someone/model-garden")
    assert resolve_host(None, settings) == "0.0.0.0"


def test_auth_needs_a_password() -> None:
    assert resolve_auth(Settings(_env_file=None)) is None
    with pytest.raises(ConfigError, match="AUTH_PASSWORD"):
        resolve_auth(Settings(_env_file=None, enable_auth=True))
    creds = resolve_auth(Settings(_env_file=None, enable_auth=True, auth_password="s3cret"))
    assert creds == ("admin", "s3cret")
