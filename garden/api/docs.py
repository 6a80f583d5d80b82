"""``/openapi.json`` and ``/docs`` (Swagger UI) describing the REST API only, not Gradio's routes."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from fastapi import APIRouter
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.openapi.utils import get_openapi
from starlette.responses import HTMLResponse, JSONResponse

TITLE = "Model Garden API"
VERSION = "1"
DESCRIPTION = (
    "Datasets, training jobs, models, chat and emissions of Model Garden. With ENABLE_AUTH, "
    "get a token from `POST /api/v1/auth/token` and send it as `Authorization: Bearer …`."
)


def docs_router(api: APIRouter) -> APIRouter:
    """The schema of ``api``'s routes and the Swagger UI that reads it."""
    router = APIRouter(include_in_schema=False)

    @lru_cache(maxsize=1)
    def schema() -> dict[str, Any]:
        return get_openapi(title=TITLE, version=VERSION, description=DESCRIPTION, routes=api.routes)

    @router.get("/openapi.json")
    def openapi() -> JSONResponse:
        return JSONResponse(schema())

    @router.get("/docs")
    def swagger() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title=f"{TITLE} — docs",
            oauth2_redirect_url="/docs/oauth2-redirect",
        )

    @router.get("/docs/oauth2-redirect")
    def oauth2_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    return router
