"""One error shape for the REST API, ``{"error": ..., "hint": ...}``, with the right status.

Typed errors map to a status by class; a route that knows better raises :class:`ApiError`.
Full traces go to the log only.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import Request
from fastapi.exception_handlers import (
    http_exception_handler,
    request_validation_exception_handler,
)
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, PlainTextResponse, Response

from garden.errors import (
    AccessError,
    CarbonError,
    ConfigError,
    DatasetError,
    DiskFullError,
    GardenError,
    JobError,
    LimitError,
    ModelLoadError,
    OutOfMemoryError,
    ServingError,
)
from garden.services.auth import AuthError
from garden.services.web import safe_text

log = logging.getLogger("garden.api")

API_PREFIXES = ("/api/v1/", "/ws/jobs/", "/docs/static/")  # /docs/static: as /docs
API_PATHS = frozenset({"/api/v1", "/docs", "/docs/oauth2-redirect", "/openapi.json", "/metrics"})

STATUS_BY_ERROR: list[tuple[type[GardenError], int]] = [
    (AuthError, 401),
    (AccessError, 403),
    (LimitError, 429),
    (JobError, 409),
    (DatasetError, 400),
    (ModelLoadError, 503),
    (ServingError, 503),
    (OutOfMemoryError, 503),
    (DiskFullError, 503),
    (ConfigError, 400),
    (CarbonError, 400),
]
HINTS = {
    401: "Get a token from POST /api/v1/auth/token and send it as 'Authorization: Bearer …'.",
    404: "Check the path and the id: the list routes show what exists.",
    405: "See /docs for the methods each route accepts.",
    413: "Send a smaller file (MAX_UPLOAD_MB).",
    422: "See /docs for the expected body and parameters.",
}


class ApiError(GardenError, kind="api"):
    """An error whose HTTP status the route chose (404 unknown id, 409 wrong state, …)."""

    def __init__(self, status: int, message: str, *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.status = status


def is_api_path(path: str) -> bool:
    """Whether the REST API (not Gradio) serves ``path``."""
    return path in API_PATHS or path.startswith(API_PREFIXES)


def error_body(message: str, hint: str | None) -> dict[str, Any]:
    return {"error": safe_text(message), "hint": hint}


def error_response(status: int, message: str, hint: str | None = None) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(error_body(message, hint), status_code=status, headers=headers)


def status_of(error: GardenError) -> int:
    if isinstance(error, ApiError):
        return error.status
    return next((status for kind, status in STATUS_BY_ERROR if isinstance(error, kind)), 400)


async def on_garden_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, GardenError)
    status = status_of(exc)
    log.info("%s %s → %d: %s", request.method, request.url.path, status, exc.message)
    return error_response(status, exc.message, exc.hint)


async def on_validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    if not is_api_path(request.url.path):
        return await request_validation_exception_handler(request, exc)
    problems = []
    for error in exc.errors()[:5]:
        where = ".".join(str(part) for part in error.get("loc", ()))
        problems.append(
            f"{where}: {str(error.get('msg', 'invalid')).removeprefix('Value error, ').rstrip('.')}"
        )
    return error_response(422, f"Invalid request: {'; '.join(problems)}.", HINTS[422])


async def on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if not is_api_path(request.url.path):
        return await http_exception_handler(request, exc)
    return error_response(exc.status_code, str(exc.detail), HINTS.get(exc.status_code))


async def on_unexpected_error(request: Request, exc: Exception) -> Response:
    log.error("Unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    if not is_api_path(request.url.path):
        return PlainTextResponse("Internal Server Error", status_code=500)
    return error_response(500, "Internal error.", "The full trace is in LOGS_DIR/app.log.")


EXCEPTION_HANDLERS = {
    GardenError: on_garden_error,
    RequestValidationError: on_validation_error,
    HTTPException: on_http_error,
    Exception: on_unexpected_error,
}
