"""Who may use the app: the shared login check (Gradio login and REST API) and REST API tokens.

One :class:`LoginGuard` per process checks every login, so a lockout earned on the Gradio login
page also refuses ``POST /api/v1/auth/token`` and the other way round.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from contextvars import ContextVar
from pathlib import Path
from typing import Literal

import jwt
from pydantic import SecretStr

from garden.config import Settings
from garden.errors import ConfigError, GardenError
from garden.services.base import View, resolve

log = logging.getLogger("garden.auth")

MIN_JWT_SECRET_CHARS = 32
JWT_SECRET_FILE = "jwt-secret"
TOKEN_HINT = "Get a token from POST /api/v1/auth/token and send it as 'Authorization: Bearer …'."


class AuthError(GardenError, kind="auth"):
    """Missing, wrong or expired credentials."""


class TokenView(View):
    """A bearer token for the REST API (OAuth2 password flow's answer)."""

    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int


MAX_NAME_BYTES = 256
MAX_LOGIN_FORM_BYTES = 4096  # the token form and the login form, refused unread beyond it
login_client: ContextVar[str | None] = ContextVar("login_client", default=None)


class LoginGuard:
    """A login check: constant-time comparison, failed logins rate-limited.

    After ``max_failures`` failures for one user name from one client address within
    ``lockout_s`` seconds, that name is refused to that address for ``lockout_s`` seconds; ten
    times as many failures in total lock every name. Records expire after ``lockout_s`` and at
    most ``MAX_TRACKED`` are kept (the oldest go first); a name over ``MAX_NAME_BYTES`` is
    refused before anything is stored. With ``trust_loopback`` (no share tunnel, whose visitors
    all arrive from loopback), a login from a loopback address is never locked out: the owner
    can always sign in. A refused login gets the same answer as a wrong password.
    """

    MAX_TRACKED = 10_000

    def __init__(
        self,
        username: str,
        password: str,
        max_failures: int = 5,
        lockout_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        trust_loopback: bool = True,
    ) -> None:
        self._username = username.encode()
        self._password = password.encode()
        self.max_failures = max_failures
        self.lockout_s = lockout_s
        self.trust_loopback = trust_loopback
        self._clock = clock
        self._lock = threading.Lock()
        self._failures: OrderedDict[tuple[str, str], deque[float]] = OrderedDict()
        self._all_failures: deque[float] = deque()

    @property
    def tracked(self) -> int:
        """How many (name, address) failure records are stored."""
        with self._lock:
            self._expire(self._clock())
            return len(self._failures)

    def __call__(self, username: str, password: str, client: str | None = None) -> bool:
        """True for the right credentials; ``client``: the caller's address (default: the one
        the login's gate noted in ``login_client``)."""
        if len(username.encode("utf-8", "replace")) > MAX_NAME_BYTES:
            log.warning("Login refused: a user name of %d characters", len(username))
            return False
        address = client or login_client.get() or "unknown"
        owner = self.trust_loopback and _is_loopback(address)
        key = (username, address)
        now = self._clock()
        with self._lock:
            self._expire(now)
            locked = not owner and (
                self._locked(self._all_failures, self.max_failures * 10, now)
                or self._locked(self._failures.get(key), self.max_failures, now)
            )
        if locked:
            log.warning("Login refused: too many failed attempts (user %r)", username[:64])
            return False
        good_name = hmac.compare_digest(username.encode(), self._username)
        good_password = hmac.compare_digest(password.encode(), self._password)
        if good_name and good_password:
            with self._lock:
                self._failures.pop(key, None)
            return True
        with self._lock:
            self._record_failure(key, now)
        return False

    def _locked(self, failures: deque[float] | None, limit: int, now: float) -> bool:
        if not failures:
            return False
        while failures and now - failures[0] > self.lockout_s:
            failures.popleft()
        return len(failures) >= limit

    def _expire(self, now: float) -> None:
        """Forget records whose last failure is older than the lockout (oldest first)."""
        while self._failures:
            key, failures = next(iter(self._failures.items()))
            if failures and now - failures[-1] <= self.lockout_s:
                break
            del self._failures[key]
        while self._all_failures and now - self._all_failures[0] > self.lockout_s:
            self._all_failures.popleft()

    def _record_failure(self, key: tuple[str, str], now: float) -> None:
        failures = self._failures.pop(key, None) or deque(maxlen=self.max_failures)
        while len(self._failures) >= self.MAX_TRACKED:
            self._failures.popitem(last=False)
        failures.append(now)
        self._failures[key] = failures  # the most recent failure last
        self._all_failures.append(now)
        if len(self._all_failures) > self.max_failures * 10:
            self._all_failures.popleft()


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


_guards: dict[tuple[str, str, int, float, bool], LoginGuard] = {}
_guards_lock = threading.Lock()


def login_guard(*, settings: Settings | None = None) -> LoginGuard | None:
    """This process's login check for these credentials; None when auth is off."""
    settings = resolve(settings)
    if not settings.enable_auth:
        return None
    key = (
        settings.auth_username,
        settings.auth_password.get_secret_value(),
        settings.login_max_failures,
        settings.login_lockout_seconds,
        settings.login_trust_loopback,
    )
    with _guards_lock:
        if key not in _guards:
            _guards[key] = LoginGuard(
                *key[:2], max_failures=key[2], lockout_s=key[3], trust_loopback=key[4]
            )
        return _guards[key]


def jwt_secret_path(settings: Settings) -> Path:
    return settings.storage_root.resolve() / JWT_SECRET_FILE


def check_jwt_settings(settings: Settings) -> None:
    """With auth on, the REST API needs a signing key of 32+ characters: ``JWT_SECRET_KEY``
    when set (``ConfigError`` when too short), else one generated on the first start and kept
    in ``STORAGE_ROOT/jwt-secret`` (mode 0600), so tokens outlive a restart."""
    if not settings.enable_auth:
        return
    if not settings.jwt_secret_key.get_secret_value().strip():
        settings.jwt_secret_key = SecretStr(_stored_secret(jwt_secret_path(settings)))
    if len(settings.jwt_secret_key.get_secret_value().strip()) < MIN_JWT_SECRET_CHARS:
        raise ConfigError(
            f"ENABLE_AUTH is on but JWT_SECRET_KEY has fewer than {MIN_JWT_SECRET_CHARS} "
            "characters.",
            hint='Set a random one, e.g. python -c "import secrets; print(secrets.token_hex(32))", '
            f"or unset it to use the generated one in STORAGE_ROOT/{JWT_SECRET_FILE}.",
        )


def _stored_secret(path: Path) -> str:
    """The signing key kept in ``path``, created (random, mode 0600) when there is none."""
    if path.exists():
        os.chmod(path, 0o600)
        log.info("JWT_SECRET_KEY is not set: REST API tokens are signed with the key in %s", path)
    else:
        _create_secret(path)
        log.warning("JWT_SECRET_KEY is not set: generated a signing key in %s (kept there)", path)
    secret = path.read_text(encoding="utf-8").strip()
    if len(secret) < MIN_JWT_SECRET_CHARS:
        raise ConfigError(
            f"The REST API's signing key in {path} has fewer than {MIN_JWT_SECRET_CHARS} "
            "characters (the file was cut short or edited).",
            hint="Delete the file to have a new key made at the next start (tokens issued "
            "before then stop working), or set JWT_SECRET_KEY.",
        )
    return secret


def _create_secret(path: Path) -> None:
    """Write a random key to ``path`` unless another process wrote one first; readers never see
    a half-written file (written aside, then linked) where the filesystem has hard links."""
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_hex(32) + "\n"
    temp = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
    descriptor = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as out:
        out.write(secret)
    try:
        os.link(temp, path)
    except FileExistsError:
        return
    except OSError:  # no hard links here (some network and FUSE mounts): create it exclusively
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return
        with os.fdopen(descriptor, "w", encoding="utf-8") as out:
            out.write(secret)
    finally:
        temp.unlink()


def issue_token(
    username: str, password: str, client: str | None = None, *, settings: Settings | None = None
) -> TokenView:
    """A signed token for these credentials; ``AuthError`` when they are wrong or locked
    (``client``: the caller's address, which the lockout counts by)."""
    settings = resolve(settings)
    guard = login_guard(settings=settings)
    if guard is None:
        raise AuthError(
            "Authentication is off: the API needs no token.",
            hint="Call the routes without a token, or set ENABLE_AUTH=true.",
        )
    if not guard(username, password, client):
        raise AuthError(
            "Incorrect username or password.",
            hint="Check AUTH_USERNAME / AUTH_PASSWORD; repeated failures lock the name for a while.",
        )
    lifetime_s = int(settings.jwt_expiration_minutes * 60)
    issued = int(time.time())
    claims = {"sub": username, "iat": issued, "exp": issued + lifetime_s}
    token = jwt.encode(
        claims, settings.jwt_secret_key.get_secret_value(), algorithm=settings.jwt_algorithm
    )
    return TokenView(access_token=token, expires_in=lifetime_s)


def verify_token(token: str | None, *, settings: Settings | None = None) -> str:
    """The user a valid token names; ``AuthError`` for a missing, forged or expired one."""
    settings = resolve(settings)
    if not token:
        raise AuthError("Not authenticated: this route needs a bearer token.", hint=TOKEN_HINT)
    try:
        claims = jwt.decode(
            token,
            settings.jwt_secret_key.get_secret_value(),
            algorithms=[settings.jwt_algorithm],
            options={"require": ["exp", "sub"]},
        )
    except jwt.ExpiredSignatureError:
        raise AuthError("The token has expired.", hint=TOKEN_HINT) from None
    except jwt.InvalidTokenError:
        raise AuthError("The token is not valid.", hint=TOKEN_HINT) from None
    return str(claims["sub"])
