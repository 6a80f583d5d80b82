"""The app shell: four tabs, HTTP on a free port, launch flags, and a light UI import."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from conftest import ROOT, RunningApp

from garden.config import Settings
from garden.ui.server import resolve_host


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
    assert "garden-demo-banner" not in str(page), "a local app shows no public-demo banner"


def test_app_py_and_the_ui_command_share_their_flags() -> None:
    def flags(command: list[str]) -> list[str]:
        out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        return sorted(word for word in out.split() if word.startswith("--"))

    app_flags = flags([sys.executable, str(ROOT / "app.py"), "--help"])
    assert app_flags == flags([sys.executable, "-m", "garden.cli", "ui", "--help"])
    assert {"--host", "--port", "--share", "--public-demo"} <= set(app_flags)


def test_space_binds_all_interfaces(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(_env_file=None)
    monkeypatch.delenv("SPACE_ID", raising=False)
    assert resolve_host(None, settings) == "127.0.0.1"
    assert resolve_host("0.0.0.0", settings) == "0.0.0.0"
    monkeypatch.setenv("SPACE_ID", "someone/model-garden")
    assert resolve_host(None, settings) == "0.0.0.0"


def test_every_setting_is_documented() -> None:
    example = (ROOT / ".env.example").read_text()
    readme = (ROOT / "README.md").read_text()
    for name in Settings.model_fields:
        assert f"{name.upper()}=" in example or f"# {name.upper()}=" in example, name
        assert f"`{name.upper()}`" in readme, name
