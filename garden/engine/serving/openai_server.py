"""vLLM's own OpenAI-compatible server (``vllm serve``) as a child process: start it, wait until
it lists its models, stop it and every process it started.

The server runs in a session of its own so that it and its engine-core processes can be
stopped as one group; ``PR_SET_PDEATHSIG`` stops it should this process die without cleaning up.

vLLM's own key check (``--api-key`` / ``VLLM_API_KEY``) guards only paths under ``/v1``, ``/v2``,
``/inference`` and ``/cohere``: ``/invocations`` (SageMaker's route, always registered),
``/tokenize``, ``/detokenize``, ``/metrics``, ``/docs``… answer anyone. With a key, the server
also runs :class:`KeyOnEveryRoute` (vLLM's ``--middleware``), which asks for it on every path
but the health check.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from garden.engine.serving.remote import RemoteEndpoint, list_models
from garden.engine.training.procs import die_with_parent, kill_tree
from garden.errors import ServingError

STOP_GRACE_S = 30.0
POLL_S = 1.0
STDERR_FD = 2
KEY_ENV = "VLLM_API_KEY"
OPEN_PATHS = frozenset({"/health"})
MIDDLEWARE = "garden.engine.serving.openai_server.KeyOnEveryRoute"


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


class KeyOnEveryRoute:
    """ASGI middleware for vLLM's server: ``Authorization: Bearer <VLLM_API_KEY>`` on every HTTP
    and WebSocket path but ``/health`` (and CORS preflights); ``401`` otherwise. Without the key
    in its environment it refuses to start, so a server meant to be guarded never runs open."""

    def __init__(self, app: ASGIApp) -> None:
        key = os.environ.get(KEY_ENV, "")
        if not key.strip():
            raise RuntimeError(f"{KEY_ENV} is not set: refusing to serve without a key.")
        self.app = app
        self._key = _digest(key)

    def _allowed(self, scope: Scope) -> bool:
        path = scope["path"].removeprefix(scope.get("root_path", "")) or "/"
        if path in OPEN_PATHS or scope.get("method") == "OPTIONS":
            return True
        headers = dict(scope.get("headers") or [])
        scheme, _, token = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(_digest(token), self._key)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or self._allowed(scope):
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
        else:
            body = json.dumps({"error": "Unauthorized"}).encode()
            headers = [(b"content-type", b"application/json"), (b"www-authenticate", b"Bearer")]
            await send({"type": "http.response.start", "status": 401, "headers": headers})
            await send({"type": "http.response.body", "body": body})


def start_server(argv: Sequence[str], env: Mapping[str, str]) -> subprocess.Popen[Any]:
    """Start ``argv`` (a ``vllm serve`` command) with ``env`` added to this environment; its
    log goes to this process's stderr, so stdout keeps only what the caller prints."""
    try:
        return subprocess.Popen(
            list(argv),
            env={**os.environ, **env},
            stdout=STDERR_FD,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
    except OSError as exc:
        raise ServingError(
            f"Could not start vLLM's server ({argv[0]}): {exc}.",
            hint="Check that vLLM is installed in this environment (uv sync).",
        ) from exc


def wait_until_serving(
    process: subprocess.Popen[Any], endpoint: RemoteEndpoint, timeout: float
) -> list[str]:
    """The served model names, once ``GET /v1/models`` answers; ``ServingError`` when the
    server exits first or does not answer within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        code = process.poll()
        if code is not None:
            raise ServingError(
                f"vLLM's server exited with code {code} before it served.",
                hint="Its log above says why (a port in use, a bad flag, too little memory).",
            )
        try:
            return list_models(endpoint)
        except ServingError:
            if time.monotonic() > deadline:
                raise ServingError(
                    f"vLLM's server did not answer at {endpoint.base_url} within {timeout:.0f} s.",
                    hint="Its log above says where it stopped; a loaded machine needs longer.",
                ) from None
        time.sleep(POLL_S)


def stop_server(process: subprocess.Popen[Any], grace_s: float = STOP_GRACE_S) -> None:
    """SIGTERM to the server's process group, then SIGKILL to whatever is left of it."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=grace_s)
    if process.poll() is None:
        kill_tree(process.pid, timeout=2.0, include_self=True)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=10)
