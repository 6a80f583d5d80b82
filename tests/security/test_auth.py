"""Public means protected: the exposure rule, the login check and every route kind over HTTP."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import ROOT, RunningApp, running_app

from garden.config import Settings
from garden.errors import ConfigError
from garden.ui.auth import LoginGuard, check_access, exposure

PASSWORD = "correct horse battery"
AUTH_ENV = {
    "ENABLE_AUTH": "true",
    "AUTH_USERNAME": "gardener",
    "AUTH_PASSWORD": PASSWORD,
    "LOGIN_MAX_FAILURES": "3",
    "LOGIN_TRUST_LOOPBACK": "false",  # the tests' clients are all on loopback
    "JWT_SECRET_KEY": "a-test-signing-key-of-more-than-32-characters",
    "PUBLIC_DEMO_MAX_UPLOAD_MB": "1",
}


def settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


# --- the exposure rule, without a server -------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_loopback_is_private(host: str) -> None:
    assert exposure(host, share=False, space_id=None) is None


PUBLIC_WAYS = [
    ("0.0.0.0", False, None),
    ("192.168.1.20", False, None),
    ("garden.example.org", False, None),
    ("127.0.0.1", True, None),
    ("127.0.0.1", False, "someone/garden"),
]


@pytest.mark.parametrize(("host", "share", "space_id"), PUBLIC_WAYS)
def test_public_needs_auth_or_an_explicit_demo(
    host: str, share: bool, space_id: str | None
) -> None:
    with pytest.raises(ConfigError, match="ENABLE_AUTH=true"):
        check_access(host, share, space_id, settings())
    check_access(host, share, space_id, settings(enable_auth=True, auth_password=PASSWORD))
    check_access(host, share, space_id, settings(public_demo=True))


@pytest.mark.parametrize("password", ["", " " * 20, "short pass", "a b c d e f g h i j k"])
def test_weak_passwords_are_refused_even_on_loopback(password: str) -> None:
    with pytest.raises(ConfigError, match="12 non-blank"):
        check_access("127.0.0.1", False, None, settings(enable_auth=True, auth_password=password))


def test_public_demo_caps_uploads() -> None:
    demo = settings(public_demo=True, max_upload_mb=512, public_demo_max_upload_mb=10)
    assert demo.max_upload_mb == 10
    assert settings(max_upload_mb=512).max_upload_mb == 512


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_failed_logins_lock_the_name_then_everyone() -> None:
    clock = FakeClock()
    guard = LoginGuard("admin", PASSWORD, max_failures=3, lockout_s=60, clock=clock)
    assert guard("admin", PASSWORD)
    assert not guard("admin", "wrong")
    assert not guard("Admin", PASSWORD), "the user name is compared exactly"
    assert not guard("admin", "wrong") and not guard("admin", "wrong")
    assert not guard("admin", PASSWORD), "locked: even the right password is refused"
    clock.now += 61
    assert guard("admin", PASSWORD), "the lockout ends"
    for attempt in range(30):  # ten times the per-name limit, over many names
        assert not guard(f"user{attempt}", "wrong")
    assert not guard("admin", PASSWORD), "too many failures overall lock every name"
    clock.now += 61
    assert guard("admin", PASSWORD)


# --- refusals and bad settings at the command line (no server starts) ---------------------


def run_app(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "app.py"), *args],
        cwd=tmp_path,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0]


@pytest.mark.parametrize(
    ("env", "args", "needles"),
    [
        ({}, ["--host", "0.0.0.0"], ["--host 0.0.0.0", "ENABLE_AUTH=true", "--public-demo"]),
        ({"SPACE_ID": "someone/garden"}, [], ["SPACE_ID", "ENABLE_AUTH=true"]),
        ({"ENABLE_AUTH": "true", "AUTH_PASSWORD": " x "}, [], ["AUTH_PASSWORD", "12"]),
        ({"API_PORT": "abc"}, [], ["API_PORT", ".env"]),
    ],
)
def test_app_py_refuses_with_one_line(
    tmp_path: Path, env: dict[str, str], args: list[str], needles: list[str]
) -> None:
    assert_one_line_error(run_app(tmp_path, env, *args), *needles)


@pytest.mark.parametrize(
    ("name", "value"), [("LOG_LEVEL", "LOUD"), ("CARBON_COUNTRY_CODE", "XX"), ("API_PORT", "0")]
)
def test_cli_names_the_bad_setting(tmp_path: Path, name: str, value: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "garden.cli", "models", "list"],
        cwd=tmp_path,
        env={**os.environ, name: value},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert_one_line_error(result, name, repr(value))


def test_cli_turns_an_unexpected_error_into_one_line_and_logs_the_trace(tmp_path: Path) -> None:
    storage = tmp_path / "storage"
    storage.mkdir()
    (storage / "garden.db").write_bytes(b"not a database, " * 512)
    result = subprocess.run(
        [sys.executable, "-m", "garden.cli", "jobs", "list"],
        cwd=tmp_path,
        env={**os.environ, "STORAGE_ROOT": str(storage)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    if result.returncode == 1:  # not (yet) a typed GardenError: the trace went to the log
        log = storage / "logs" / "cli.log"
        assert str(log) in result.stderr
        assert "Traceback" in log.read_text()


# --- a real app with auth on, in public-demo mode ----------------------------------------


@pytest.fixture(scope="module")
def secured(default_model_path: Path, module_tmp: Path) -> Iterator[RunningApp]:
    """One app start for every HTTP test below: auth on, `--public-demo`, 1 MB uploads."""
    with running_app(module_tmp, AUTH_ENV, "--public-demo") as app:
        yield app


@pytest.fixture(scope="module")
def signed_in(secured: RunningApp) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=secured.url, timeout=30) as client:
        answer = client.post("login", data={"username": "gardener", "password": PASSWORD})
        assert answer.status_code == 200, answer.text
        yield client


def opened(client: httpx.Client, url: str, **params: str) -> httpx.Response:
    """The answer of an event-stream route, closed as soon as its status is known."""
    with client.stream("GET", url, params=params) as answer:
        return answer


def route_kinds(client: httpx.Client, fn_index: int, file_url: str) -> dict[str, httpx.Response]:
    """One request of every kind of route the Gradio app serves."""
    join = {"data": [], "fn_index": fn_index, "session_hash": "s3cur1ty", "trigger_id": None}
    return {
        "config": client.get("config"),
        "info": client.get("gradio_api/info"),
        "upload": client.post("gradio_api/upload", files={"files": ("a.jsonl", b'{"text":"x"}')}),
        "file": client.get(file_url),
        "queue/join": client.post("gradio_api/queue/join", json=join),
        "queue/data": opened(client, "gradio_api/queue/data", session_hash="s3cur1ty"),
        "call": client.post("gradio_api/call/data_refresh", json={"data": []}),
        "heartbeat": opened(client, "gradio_api/heartbeat/s3cur1ty"),
        "token": client.get("gradio_api/token"),
    }


@pytest.mark.slow
def test_every_route_kind_needs_a_session(secured: RunningApp, signed_in: httpx.Client) -> None:
    config = signed_in.get("config").json()
    fn_index = next(d["id"] for d in config["dependencies"] if d["api_name"] == "data_refresh")
    uploaded = signed_in.post("gradio_api/upload", files={"files": ("b.jsonl", b"{}")}).json()[0]
    file_url = f"gradio_api/file={uploaded}"

    with httpx.Client(base_url=secured.url, timeout=30) as stranger:
        page = stranger.get("")
        assert page.status_code == 200 and '"auth_required":true' in page.text.replace(" ", "")
        assert "data_refresh" not in page.text, "the login page describes no API"
        refused = route_kinds(stranger, fn_index, file_url)
        for kind, answer in refused.items():
            assert answer.status_code == 401, f"{kind} answered a stranger: {answer.status_code}"

    with httpx.Client(base_url=secured.url, timeout=30, cookies=signed_in.cookies) as member:
        served = route_kinds(member, fn_index, file_url)
        for kind in ("config", "info", "upload", "file", "queue/join", "queue/data", "call"):
            assert served[kind].status_code == 200, f"{kind}: {served[kind].text[:300]}"
        assert served["file"].content == b"{}"


@pytest.mark.slow
def test_public_demo_shows_its_banner_and_caps_uploads(signed_in: httpx.Client) -> None:
    assert "Public demo" in signed_in.get("config").text
    big = b"x" * (1024 * 1024 + 1)
    answer = signed_in.post("gradio_api/upload", files={"files": ("big.jsonl", big)})
    assert answer.status_code == 413, answer.text


@pytest.mark.slow
def test_failed_logins_are_rate_limited(secured: RunningApp) -> None:
    """Runs last: it locks the user name for the rest of this app's life."""
    with httpx.Client(base_url=secured.url, timeout=30) as client:
        wrong = {"username": "gardener", "password": "not the password"}
        answers = [client.post("login", data=wrong) for _ in range(3)]
        assert [a.status_code for a in answers] == [400, 400, 400]
        locked = client.post("login", data={"username": "gardener", "password": PASSWORD})
        assert locked.status_code == 400 and locked.json() == answers[0].json()


def test_chat_and_import_events_share_bounded_limits() -> None:
    from garden.ui import build_app
    from garden.ui.server import limit_events

    app = build_app()
    limit_events(app, settings(chat_concurrency=7, import_concurrency=2))
    groups: dict[str, set[str]] = {}
    for fn in app.fns.values():
        groups.setdefault(str(fn.concurrency_id), set()).add(fn.api_name)
        if fn.concurrency_id in ("chat", "import"):
            assert fn.concurrency_limit == (7 if fn.concurrency_id == "chat" else 2)
    assert len(groups["chat"]) == 2, "the Send button and Enter in the message box"
    assert groups["import"] == {"data_inspect", "data_save"}
