"""Who may use the app: the shared login check (Gradio login and REST API) and REST API tokens.

One :class:`LoginGuard` per process checks every login, so a lockout earned on the Gradio login
page also refuses ``POST /api/v1/auth/token`` and the other way round.
"""

from __future__ import annotations

import hmac
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Literal

import jwt

from garden.config import Settings
from garden.errors import ConfigError, GardenError
from garden.services.base import View, resolve

log = logging.getLogger("garden.auth")

MIN_JWT_SECRET_CHARS = 32
TOKEN_HINT = "Get a token from POST /api/v1/auth/token and send it as 'Authorization: Bearer …'."


class AuthError(GardenError, kind="auth"):
    """Missing, wrong or expired credentials."""


class TokenView(View):
    """A bearer token for the REST API (OAuth2 password flow's answer)."""

    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int


class LoginGuard:
    """A login check: constant-time comparison, failed logins rate-limited.

    After ``max_failures`` failures for one user name within ``lockout_s`` seconds, that name is
    refused for ``lockout_s`` seconds; ten times as many failures in total lock every name.
    A refused login gets the same answer as a wrong password.
    """

    MAX_TRACKED_NAMES = 10_000

    def __init__(
        self,
        username: str,
        password: str,
        max_failures: int = 5,
        lockout_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._username = username.encode()
        self._password = password.encode()
        self.max_failures = max_failures
        self.lockout_s = lockout_s
        self._clock = clock
        self._lock = threading.Lock()
        self._failures: dict[str, deque[float]] = {}
        self._all_failures: deque[float] = deque()

    def __call__(self, username: str, password: str) -> bool:
        now = self._clock()
        with self._lock:
            locked = self._locked(self._all_failures, self.max_failures * 10, now) or self._locked(
                self._failures.get(username), self.max_failures, now
            )
        if locked:
            log.warning("Login refused: too many failed attempts (user %r)", username[:64])
            return False
        good_name = hmac.compare_digest(username.encode(), self._username)
        good_password = hmac.compare_digest(password.encode(), self._password)
        if good_name and good_password:
            with self._lock:
                self._failures.pop(username, None)
            return True
        with self._lock:
            self._record_failure(username, now)
        return False

    def _locked(self, failures: deque[float] | None, limit: int, now: float) -> bool:
        if not failures:
            return False
        while failures and now - failures[0] > self.lockout_s:
            failures.popleft()
        return len(failures) >= limit

    def _record_failure(self, username: str, now: float) -> None:
        if username not in self._failures and len(self._failures) >= self.MAX_TRACKED_NAMES:
            self._failures.pop(next(iter(self._failures)))
        self._failures.setdefault(username, deque()).append(now)
        self._all_failures.append(now)


_guards: dict[tuple[str, str, int, float], LoginGuard] = {}
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
    )
    with _guards_lock:
        if key not in _guards:
            _guards[key] = LoginGuard(*key[:2], max_failures=key[2], lockout_s=key[3])
        return _guards[key]


def check_jwt_settings(settings: Settings) -> None:
    """With auth on, the REST API needs a signing key of 32+ characters (``ConfigError``)."""
    if not settings.enable_auth:
        return
    if len(settings.jwt_secret_key.get_secret_value().strip()) < MIN_JWT_SECRET_CHARS:
        raise ConfigError(
            f"ENABLE_AUTH is on but JWT_SECRET_KEY has fewer than {MIN_JWT_SECRET_CHARS} "
            "characters.",
            hint='Set a random one, e.g. python -c "import secrets; print(secrets.token_hex(32))".',
        )


def issue_token(username: str, password: str, *, settings: Settings | None = None) -> TokenView:
    """A signed token for these credentials; ``AuthError`` when they are wrong or locked."""
    settings = resolve(settings)
    guard = login_guard(settings=settings)
    if guard is None:
        raise AuthError(
            "Authentication is off: the API needs no token.",
            hint="Call the routes without a token, or set ENABLE_AUTH=true.",
        )
    if not guard(username, password):
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
