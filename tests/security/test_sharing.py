"""Sharing with a password (issue 20): bounded login state, and no extra step for the REST API's
signing key."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import Clock, RunningApp, running_app

from garden.config import Settings
from garden.errors import ConfigError
from garden.services.auth import MAX_NAME_BYTES, LoginGuard, check_jwt_settings, jwt_secret_path

PASSWORD = "correct horse battery"
AUTH_ENV = {
    "ENABLE_AUTH": "true",
    "AUTH_USERNAME": "gardener",
    "AUTH_PASSWORD": PASSWORD,
    "LOGIN_MAX_FAILURES": "3",
    "JWT_SECRET_KEY": "",  # not set: the app makes one
}


def own_storage(folder: Path, default_model_path: Path) -> dict[str, str]:
    """The app's own STORAGE_ROOT, with the session's converted default model."""
    models = str(default_model_path.parent.parent)
    return {**AUTH_ENV, "STORAGE_ROOT": str(folder / "storage"), "MODELS_DIR": models}


@pytest.fixture(scope="module")
def shared(default_model_path: Path, module_tmp: Path) -> Iterator[RunningApp]:
    with running_app(module_tmp, own_storage(module_tmp, default_model_path)) as app:
        yield app


def test_login_state_is_bounded(shared: RunningApp) -> None:
    clock = Clock()
    guard = LoginGuard("gardener", PASSWORD, max_failures=3, lockout_s=300, clock=clock)
    assert not guard("x" * (MAX_NAME_BYTES + 1), "pw", "203.0.113.9")
    assert guard.tracked == 0, "an over-long name is refused before it is stored"
    for _ in range(3):
        assert not guard("gardener", "wrong", "203.0.113.9")
    assert not guard("gardener", PASSWORD, "203.0.113.9"), "that address is locked out"
    assert guard("gardener", PASSWORD, "198.51.100.7"), "another address is not"
    assert guard("gardener", PASSWORD, "127.0.0.1"), "the owner on loopback is never locked out"
    clock.now += 301
    assert guard.tracked == 0, "records expire after the lockout"
    assert guard("gardener", PASSWORD, "203.0.113.9")
    guard.MAX_TRACKED = 50
    for i in range(200):
        guard(f"name-{i}", "wrong", f"192.0.2.{i % 250}")
    assert guard.tracked <= 50
    behind_a_share_link = LoginGuard("gardener", PASSWORD, max_failures=1, trust_loopback=False)
    assert not behind_a_share_link("gardener", "wrong", "127.0.0.1")
    assert not behind_a_share_link("gardener", PASSWORD, "127.0.0.1")
    with httpx.Client(base_url=shared.url, timeout=30) as client:
        huge = {"username": "a" * 5000, "password": "b"}
        assert client.post("api/v1/auth/token", data=huge).status_code == 413
        assert client.post("login", data=huge).status_code == 413
        chunked = client.post(
            "api/v1/auth/token",
            content=iter([b"username=gardener&password=", b"x" * 8000]),
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        assert chunked.status_code == 413
        right = {"username": "gardener", "password": PASSWORD}
        assert client.post("api/v1/auth/token", data=right).status_code == 200


def test_auth_without_a_jwt_secret_starts_and_keeps_its_key(
    tmp_path: Path, default_model_path: Path
) -> None:
    right = {"username": "gardener", "password": PASSWORD}
    env = own_storage(tmp_path, default_model_path)
    with running_app(tmp_path, env) as first:
        secret = tmp_path / "storage" / "jwt-secret"
        assert secret.is_file() and stat.S_IMODE(secret.stat().st_mode) == 0o600
        assert len(secret.read_text().strip()) >= 32
        assert "generated a signing key" in first.log_tail(100_000)
        answer = httpx.post(f"{first.url}api/v1/auth/token", data=right, timeout=30)
        assert answer.status_code == 200, answer.text
        token = answer.json()["access_token"]
        bearer = {"Authorization": f"Bearer {token}"}
        assert httpx.get(f"{first.url}api/v1/models", headers=bearer).status_code == 200
    kept = secret.read_text()
    with running_app(tmp_path, env) as second:
        assert secret.read_text() == kept
        again = httpx.get(f"{second.url}api/v1/models", headers=bearer, timeout=30)
        assert again.status_code == 200, "a token from before the restart still works"


def _auth_settings(root: Path) -> Settings:
    return Settings(_env_file=None, storage_root=root, enable_auth=True, auth_password=PASSWORD)


def test_a_generated_key_is_kept_where_the_filesystem_has_no_hard_links(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_links(source: object, target: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr("garden.services.auth.os.link", no_links)
    first = _auth_settings(tmp_path)
    check_jwt_settings(first)
    again = _auth_settings(tmp_path)
    check_jwt_settings(again)
    key = first.jwt_secret_key.get_secret_value()
    assert len(key) >= 32 and again.jwt_secret_key.get_secret_value() == key
    assert stat.S_IMODE(jwt_secret_path(first).stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_a_cut_short_key_file_is_named_in_the_error(tmp_path: Path) -> None:
    settings = _auth_settings(tmp_path)
    path = jwt_secret_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("abc\n")
    with pytest.raises(ConfigError) as caught:
        check_jwt_settings(settings)
    assert str(path) in caught.value.message and "JWT_SECRET_KEY" in (caught.value.hint or "")
    assert "\n" not in caught.value.message
