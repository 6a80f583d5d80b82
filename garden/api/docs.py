"""``/openapi.json`` and ``/docs`` (Swagger UI) describing the REST API only, not Gradio's routes.

Swagger UI's script, stylesheet and icon are served from the packaged copy in ``swagger-ui-py``
at ``/docs/static/``, not from a CDN, so the page works offline.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.openapi.utils import get_openapi
from starlette.responses import FileResponse, HTMLResponse, JSONResponse

TITLE = "Model Garden API"
VERSION = "1"
DESCRIPTION = (
    "Datasets, training jobs, models, chat and emissions of Model Garden. With ENABLE_AUTH, "
    "get a token from `POST /api/v1/auth/token` and send it as `Authorization: Bearer …`."
)
STATIC_PREFIX = "/docs/static/"
SWAGGER_JS = "swagger-ui-bundle.js"
SWAGGER_CSS = "swagger-ui.css"
SWAGGER_ICON = "favicon-32x32.png"
STATIC_FILES = {SWAGGER_JS: "text/javascript", SWAGGER_CSS: "text/css", SWAGGER_ICON: "image/png"}


@lru_cache(maxsize=1)
def swagger_static_dir() -> Path:
    """The Swagger UI dist files that ``swagger-ui-py`` ships (found without importing it)."""
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("swagger-ui-py is not installed; run `uv sync`.")
    return Path(next(iter(spec.submodule_search_locations))) / "static"


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
            swagger_js_url=STATIC_PREFIX + SWAGGER_JS,
            swagger_css_url=STATIC_PREFIX + SWAGGER_CSS,
            swagger_favicon_url=STATIC_PREFIX + SWAGGER_ICON,
        )

    @router.get(STATIC_PREFIX + "{name}")
    def swagger_static(name: str) -> FileResponse:
        if name not in STATIC_FILES:
            raise HTTPException(status_code=404, detail="Not Found")
        return FileResponse(swagger_static_dir() / name, media_type=STATIC_FILES[name])

    @router.get("/docs/oauth2-redirect")
    def oauth2_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    return router
