"""The app shell: four tabs, HTTP on a free port, launch flags, and a light UI import."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from garden.config import Settings
from garden.errors import ConfigError
from garden.ui.server import resolve_auth, resolve_host

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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


def test_app_py_serves_http_200(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "API_PORT": str(port)}
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "app.py")],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        status = None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                status = httpx.get(f"http://127.0.0.1:{port}/", timeout=2).status_code
                if status == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.3)
        assert status == 200, process.stdout.read() if process.poll() is not None else status
        page = httpx.get(f"http://127.0.0.1:{port}/config", timeout=10).json()
        assert page["title"] == "Model Garden"
    finally:
        process.terminate()
        process.wait(timeout=30)


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
