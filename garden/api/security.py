"""The REST API's gate: with ENABLE_AUTH, every API path but the token route needs a bearer
token (the docs, the OpenAPI schema, /metrics and the job WebSocket included)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from garden.api.errors import error_response, is_api_path
from garden.api.routes.health import HEALTH_PATH
from garden.config import Settings
from garden.errors import AccessError
from garden.services import auth, visitors, web

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

TOKEN_PATH = "/api/v1/auth/token"
OPEN_API_PATHS = frozenset({TOKEN_PATH, HEALTH_PATH})
POLICY_VIOLATION = 1008


def bearer_token(scope: Scope) -> str | None:
    """The token of an ``Authorization: Bearer …`` header, or of a WebSocket's ``token`` query
    parameter (browsers cannot set headers on a WebSocket)."""
    for key, value in scope.get("headers", []):
        if key == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    if scope["type"] == "websocket":
        from urllib.parse import parse_qs

        tokens = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token")
        return tokens[0] if tokens else None
    return None


class BearerGate:
    """ASGI middleware in front of the API paths; other paths go on to Gradio's own gate. With
    ENABLE_AUTH every API path but the open ones needs a token; on a public demo a call without
    one may only read, and chat (``visitors.check_rest_write``)."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] not in ("http", "websocket") or not is_api_path(path):
            await self.app(scope, receive, send)
            return
        user = None
        try:
            if self.settings.enable_auth and path not in OPEN_API_PATHS:
                user = auth.verify_token(bearer_token(scope), settings=self.settings)
                scope.setdefault("state", {})["user"] = user
            if scope["type"] == "http":
                visitors.check_rest_write(self.settings, scope["method"], path, user)
        except auth.AuthError as exc:
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": POLICY_VIOLATION})
            else:
                await error_response(401, exc.message, exc.hint)(scope, receive, send)
            return
        except AccessError as exc:
            await error_response(403, exc.message, exc.hint)(scope, receive, send)
            return
        await self.app(scope, receive, send)


LOGIN_FORMS = frozenset({TOKEN_PATH, "/login", "/login/"})


class SmallForms:
    """ASGI middleware: a login form (the token route's, Gradio's ``/login``) over
    ``auth.MAX_LOGIN_FORM_BYTES`` gets ``413`` before anything parses it."""

    def __init__(self, app: ASGIApp, limit: int = auth.MAX_LOGIN_FORM_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") not in LOGIN_FORMS:
            await self.app(scope, receive, send)
            return
        body = await self._read(scope, receive)
        if body is None:
            hint = f"A login form is at most {self.limit} bytes."
            await error_response(413, "The form is too large.", hint)(scope, receive, send)
            return
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _read(self, scope: Scope, receive: Receive) -> bytes | None:
        """The whole body, or None past the limit (by its declared length or as it comes)."""
        for key, value in scope.get("headers", []):
            if key == b"content-length" and (not value.isdigit() or int(value) > self.limit):
                return None
        body = b""
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return body
            body += message.get("body", b"")
            if len(body) > self.limit:
                return None
            if not message.get("more_body"):
                return body


class SameOrigin:
    """ASGI middleware: a ``Host`` the app does not answer gets ``400`` (DNS rebinding). On a
    public app, a request another site's page makes (a foreign ``Origin``, or ``Sec-Fetch-Site:
    cross-site``) gets ``403`` whatever cookie it carries: state-changing ones (CSRF), WebSockets
    and reads alike, since Gradio's own CORS layer, which runs outside this one, lets any origin
    read answers with credentials once the host is not ``localhost``."""

    def __init__(self, app: ASGIApp, hosts: list[str], public: bool) -> None:
        self.app = app
        self.hosts = hosts
        self.public = public

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        host = headers.get(b"host", "")
        if not web.host_allowed(host, self.hosts):
            hint = "Open the app by a name it answers, or add it to ALLOWED_HOSTS."
            await _refuse(scope, receive, send, 400, f"Unknown host {host[:100]!r}.", hint)
        elif (
            self.public
            and scope.get("method") != "OPTIONS"
            and web.cross_site(headers, self.hosts, scope.get("method", "GET"))
        ):
            hint = "Use the app from its own page."
            await _refuse(scope, receive, send, 403, "Cross-site request refused.", hint)
        else:
            await self.app(scope, receive, send)


async def _refuse(
    scope: Scope, receive: Receive, send: Send, status: int, message: str, hint: str
) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": POLICY_VIOLATION})
    else:
        await error_response(status, message, hint)(scope, receive, send)
