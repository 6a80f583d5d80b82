"""The REST API: FastAPI routes over ``garden.services`` at ``/api/v1``, docs at ``/docs``,
a job WebSocket at ``/ws/jobs/{id}`` and Prometheus metrics at ``/metrics``.

It is served by the same FastAPI app and port as the Gradio UI: :func:`app_kwargs` gives what
Gradio's ``launch(app_kwargs=...)`` passes to that app (routes, docs, handlers, middleware).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from fastapi.security import OAuth2PasswordBearer
from starlette.middleware import Middleware

from garden.api import errors, metrics
from garden.api.docs import docs_router
from garden.api.errors import is_api_path
from garden.api.routes import (
    auth,
    chat,
    compare,
    datasets,
    emissions,
    evaluation,
    exports,
    health,
    models,
    synthesis,
    training,
)
from garden.api.security import BearerGate
from garden.api.uploads import UploadLimit
from garden.config import Settings
from garden.services import auth as auth_service

__all__ = ["app_kwargs", "is_api_path", "router"]


# Documents the bearer token in /docs ("Authorize"); BearerGate checks it on every API path.
documented_bearer = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", auto_error=False)


def router() -> APIRouter:
    """Every REST route (and the job WebSocket and /metrics)."""
    combined = APIRouter()
    combined.include_router(health.router)
    combined.include_router(auth.router)
    for module in (
        datasets,
        synthesis,
        training,
        evaluation,
        compare,
        models,
        chat,
        emissions,
        exports,
    ):
        combined.include_router(module.router, dependencies=[Depends(documented_bearer)])
    combined.include_router(training.live)
    combined.include_router(metrics.router)
    combined.include_router(docs_router(combined))
    return combined


def app_kwargs(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for the FastAPI app that also serves Gradio.

    ``ConfigError`` when auth is on without a usable JWT_SECRET_KEY.
    """
    auth_service.check_jwt_settings(settings)
    metrics.install_collector(settings)
    return {
        "routes": router().routes,
        "docs_url": None,
        "openapi_url": None,
        "exception_handlers": errors.EXCEPTION_HANDLERS,
        "middleware": [
            Middleware(metrics.LatencyMiddleware),
            Middleware(BearerGate, settings=settings),
            Middleware(UploadLimit, settings=settings),
        ],
    }
