"""Who may reach the app: the public-exposure rule, the login check and the route gate.

Gradio checks logins on most routes but not all (``/gradio_api/heartbeat``, ``cancel``,
``reset``, ``stream/*``, ``startup-events``, ``monitoring/{key}``, ``token``, ``app_id``…),
and its login page embeds the API description. :class:`AuthGate` sits in front of every
route: without a session only the login page, the login form and static assets answer.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from garden.config import MIN_PASSWORD_CHARS, Settings
from garden.errors import ConfigError
from garden.services import auth
from garden.services.auth import LoginGuard
from garden.services.serving import is_loopback

__all__ = ["AuthGate", "LoginGuard", "check_access", "exposure", "login_guard"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

OPEN_PATHS = frozenset(
    {"/", "/login", "/login/", "/favicon.ico", "/manifest.json", "/robots.txt", "/theme.css"}
    | {"/gradio_api/theme.css", "/gradio_api/login_check", "/gradio_api/login_check/"}
    | {"/gradio_api/startup-events"}  # idempotent; Gradio itself calls it on launch
)
OPEN_PREFIXES = ("/assets/", "/static/", "/svelte/")
API_INFO = re.compile(rb"window\.gradio_api_info = .*?;</script>", re.DOTALL)
NO_API_INFO = b"window.gradio_api_info = {};</script>"


def exposure(host: str, share: bool, space_id: str | None) -> str | None:
    """Why the app is reachable beyond this machine, or None when it is loopback only."""
    if share:
        return "--share opens a public link"
    if space_id:
        return f"SPACE_ID={space_id} (a Hugging Face Space) binds 0.0.0.0"
    if not is_loopback(host):
        return f"--host {host} is reachable beyond loopback"
    return None


def password_problem(settings: Settings) -> str | None:
    password = settings.auth_password.get_secret_value()
    if sum(not char.isspace() for char in password) < MIN_PASSWORD_CHARS:
        return f"AUTH_PASSWORD needs at least {MIN_PASSWORD_CHARS} non-blank characters"
    return None


def check_access(host: str, share: bool, space_id: str | None, settings: Settings) -> None:
    """Refuse a public app without a strong password, unless it is an explicit public demo."""
    if settings.enable_auth and (problem := password_problem(settings)):
        raise ConfigError(f"ENABLE_AUTH is on but {problem}.", hint="Set a longer AUTH_PASSWORD.")
    reason = exposure(host, share, space_id)
    if reason is None or settings.enable_auth or settings.public_demo:
        return
    raise ConfigError(
        f"Refusing to start without a password: {reason}.",
        hint=(
            f"Set ENABLE_AUTH=true and an AUTH_PASSWORD of {MIN_PASSWORD_CHARS}+ characters, "
            "or pass --public-demo (PUBLIC_DEMO=true) for a capped demo open to anyone."
        ),
    )


def login_guard(settings: Settings) -> LoginGuard | None:
    """Gradio's ``auth=`` callable: the process-wide check the REST API shares."""
    return auth.login_guard(settings=settings)


class AuthGate:
    """ASGI middleware: without a Gradio session cookie, only the login page's routes answer.

    Paths for which ``passes`` is true (the REST API's) go on untouched: they check a bearer
    token of their own.
    """

    def __init__(self, app: ASGIApp, passes: Callable[[str], bool] = lambda path: False) -> None:
        self.app = app
        self.passes = passes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if path in ("/login", "/login/"):  # the login check counts failures by address
            auth.login_client.set((scope.get("client") or ("",))[0] or None)
        if scope["type"] not in ("http", "websocket") or self.passes(path) or _signed_in(scope):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
        elif path == "/" and scope.get("method") == "GET":
            await self.app(scope, receive, _without_api_info(send))
        elif path in OPEN_PATHS or path.startswith(OPEN_PREFIXES):
            await self.app(scope, receive, send)
        else:
            body = json.dumps({"detail": "Not authenticated: log in first."}).encode()
            headers = [
                (b"content-type", b"application/json"),
                (b"content-length", b"%d" % len(body)),
            ]
            await send({"type": "http.response.start", "status": 401, "headers": headers})
            await send({"type": "http.response.body", "body": body})


def _signed_in(scope: Scope) -> bool:
    """True when the request carries a token Gradio's own login handed out."""
    app = scope.get("app")
    tokens: dict[str, str] = getattr(app, "tokens", {})
    cookie_id = getattr(app, "cookie_id", None)
    if not tokens or cookie_id is None:
        return False
    cookies = _cookies(scope)
    for name in (f"access-token-{cookie_id}", f"access-token-unsecure-{cookie_id}"):
        if cookies.get(name) in tokens:
            return True
    return False


def _cookies(scope: Scope) -> dict[str, str]:
    """Parsed as Starlette (and so Gradio) parses them."""
    from starlette.requests import cookie_parser

    cookies: dict[str, str] = {}
    for key, value in scope.get("headers", []):
        if key == b"cookie":
            cookies.update(cookie_parser(value.decode("latin-1")))
    return cookies


def _without_api_info(send: Send) -> Send:
    """The login page otherwise embeds the whole API description for anyone to read."""
    start: Message = {}
    chunks: list[bytes] = []

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            start.update(message)
            return
        if message["type"] != "http.response.body":
            await send(message)
            return
        chunks.append(message.get("body", b""))
        if message.get("more_body"):
            return
        body = API_INFO.sub(NO_API_INFO, b"".join(chunks))
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
        headers.append((b"content-length", b"%d" % len(body)))
        await send({**start, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return wrapped
