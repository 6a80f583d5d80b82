"""The REST API with ENABLE_AUTH: JWT bearer tokens on every API path, the Gradio login's
credentials and lockout shared, a start-up refusal without a usable signing key; and the
examples of docs/api.md run against that app."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import pytest
from conftest import ROOT, RunningApp, running_app

PASSWORD = "correct horse battery staple"
SECRET = "an-api-test-signing-key-longer-than-32-characters"
AUTH_ENV = {
    "ENABLE_AUTH": "true",
    "AUTH_USERNAME": "admin",
    "AUTH_PASSWORD": PASSWORD,
    "LOGIN_MAX_FAILURES": "3",
    "LOGIN_TRUST_LOOPBACK": "false",  # the tests' clients are all on loopback
    "JWT_SECRET_KEY": SECRET,
    "MAX_UPLOAD_MB": "1",
}
GUARDED = ["api/v1/models", "api/v1/training/jobs", "metrics", "openapi.json", "docs"]
DOCS = ROOT / "docs" / "api.md"
DOCS_URL = "http://127.0.0.1:7860"


@pytest.fixture(scope="module")
def secured(default_model_path: Path, module_tmp: Path) -> Iterator[RunningApp]:
    env = {**AUTH_ENV, "MODELS_DIR": str(default_model_path.parent.parent)}
    with running_app(module_tmp, env) as app:
        yield app


@pytest.fixture(scope="module")
def token(secured: RunningApp) -> str:
    answer = httpx.post(
        f"{secured.url}api/v1/auth/token", data={"username": "admin", "password": PASSWORD}
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["token_type"] == "bearer" and body["expires_in"] == 3600
    return str(body["access_token"])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_refused(answer: httpx.Response, needle: str, hint: str = "auth/token") -> None:
    assert answer.status_code == 401, f"{answer.request.url}: {answer.status_code}"
    body = answer.json()
    assert set(body) == {"error", "hint"} and needle in body["error"], body
    assert hint in body["hint"]


def test_every_api_path_needs_a_valid_token(secured: RunningApp, token: str) -> None:
    expired = jwt.encode({"sub": "admin", "exp": int(time.time()) - 10}, SECRET, "HS256")
    forged = jwt.encode({"sub": "admin", "exp": int(time.time()) + 600}, "x" * 40, "HS256")
    with httpx.Client(base_url=secured.url, timeout=60) as client:
        for path in GUARDED:
            assert_refused(client.get(path), "Not authenticated")
            assert_refused(client.get(path, headers=bearer(expired)), "expired")
            assert_refused(client.get(path, headers=bearer(forged)), "not valid")
            assert client.get(path, headers=bearer(token)).status_code == 200, path
        assert client.get("config").status_code == 401, "Gradio's gate still guards Gradio"
        health = client.get("api/v1/health")  # open to load balancers, says nothing private
        assert health.status_code == 200 and set(health.json()) == {
            "status",
            "version",
            "default_model_ready",
        }
        assert client.get("config", headers=bearer(token)).status_code == 401
        for size in (1024 * 1024 + 1, 3 * 1024 * 1024):  # counted while saved; declared
            big = {"file": ("big.jsonl", b"x" * size, "application/jsonl")}
            too_big = client.post(
                "api/v1/datasets/upload", files=big, data={"name": "big"}, headers=bearer(token)
            )
            assert too_big.status_code == 413 and "1 MB" in too_big.json()["error"], size


def test_the_websocket_needs_a_token(secured: RunningApp, token: str) -> None:
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    url = f"ws://127.0.0.1:{secured.port}/ws/jobs/job-nope"
    with pytest.raises(InvalidStatus):
        connect(url, open_timeout=30)
    with connect(url, additional_headers=bearer(token), open_timeout=30) as socket:
        assert "job-nope" in json.loads(socket.recv(timeout=30))["error"]
    with connect(f"{url}?token={token}", open_timeout=30) as socket:
        assert "job-nope" in json.loads(socket.recv(timeout=30))["error"]


def run_blocks(language: str, url: str, env: dict[str, str], tmp_path: Path) -> str:
    """Run docs/api.md's ``language`` blocks, in order, as one script against ``url``."""
    blocks = re.findall(rf"```{language}\n(.*?)```", DOCS.read_text(encoding="utf-8"), re.S)
    assert blocks, f"no {language} example in docs/api.md"
    script = "\n".join(blocks).replace(DOCS_URL, url.rstrip("/"))
    command = ["bash", "-euo", "pipefail", "-c"] if language == "bash" else [sys.executable, "-c"]
    result = subprocess.run(
        [*command, script],
        cwd=tmp_path,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, f"{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    return result.stdout


@pytest.mark.slow
def test_docs_examples_run(secured: RunningApp, tmp_path: Path) -> None:
    env = {"AUTH_PASSWORD": PASSWORD}
    printed = run_blocks("bash", secured.url, env, tmp_path)
    assert "SmolLM2-135M-Instruct" in printed and "garden_facts" in printed
    assert "alpaca" in printed
    printed = run_blocks("python", secured.url, env, tmp_path)
    assert "completed 2" in printed and "kg CO2e" in printed


def test_short_jwt_secret_refuses_to_start(tmp_path: Path) -> None:
    for secret in ("too-short",):
        result = subprocess.run(
            [sys.executable, str(ROOT / "app.py")],
            cwd=tmp_path,
            env={**os.environ, **AUTH_ENV, "JWT_SECRET_KEY": secret},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "JWT_SECRET_KEY" in lines[0] and "32" in lines[0], lines
        assert "too-short" not in lines[0]


def test_bad_password_then_lockout_shared_with_the_gradio_login(secured: RunningApp) -> None:
    """Runs last: it locks the name for the rest of this app's life."""
    with httpx.Client(base_url=secured.url, timeout=60) as client:
        wrong = {"username": "admin", "password": "not the password"}
        for _ in range(3):
            assert_refused(client.post("api/v1/auth/token", data=wrong), "Incorrect", "AUTH_")
        right = {"username": "admin", "password": PASSWORD}
        assert_refused(client.post("api/v1/auth/token", data=right), "Incorrect", "AUTH_")
        assert client.post("login", data=right).status_code == 400, "the Gradio login is locked too"
