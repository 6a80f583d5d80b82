"""``/docs`` works offline: Swagger UI's script, stylesheet and icon come from the packaged copy
at ``/docs/static/``, and the auth gate treats them exactly as it treats ``/docs``."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
from conftest import RunningApp
from fastapi import FastAPI
from fastapi.testclient import TestClient

from garden.api import app_kwargs, is_api_path
from garden.config import Settings
from garden.services import auth

STATIC = ("swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png")


def test_docs_point_at_the_packaged_swagger_ui(app: RunningApp) -> None:
    page = httpx.get(app.url + "docs", timeout=30)
    assert page.status_code == 200
    for name in STATIC:
        assert f"/docs/static/{name}" in page.text
    assert "cdn.jsdelivr.net" not in page.text
    types = {}
    for name in STATIC:
        served = httpx.get(app.url + f"docs/static/{name}", timeout=30)
        assert served.status_code == 200 and len(served.content) > 1000, name
        types[name] = served.headers["content-type"].split(";")[0]
    assert types == {
        "swagger-ui-bundle.js": "text/javascript",
        "swagger-ui.css": "text/css",
        "favicon-32x32.png": "image/png",
    }
    for other in ("index.html", "swagger-initializer.js", "..%2F__init__.py"):
        assert httpx.get(app.url + f"docs/static/{other}", timeout=30).status_code == 404


def test_the_auth_gate_treats_the_static_files_as_it_treats_docs(tmp_path: Path) -> None:
    settings = Settings(
        _env_file=None,
        storage_root=tmp_path / "storage",
        enable_auth=True,
        auth_password="a long enough password",
        jwt_secret_key="a-secret-key-of-at-least-thirty-two-bytes-for-hs256",
    )
    assert all(is_api_path(f"/docs/static/{name}") for name in STATIC)
    client = TestClient(FastAPI(**app_kwargs(settings)))
    paths = ["/docs", *(f"/docs/static/{name}" for name in STATIC)]
    assert [client.get(path).status_code for path in paths] == [401] * len(paths)
    token = auth.issue_token("admin", "a long enough password", settings=settings).access_token
    signed = {"Authorization": f"Bearer {token}"}
    assert [client.get(path, headers=signed).status_code for path in paths] == [200] * len(paths)


def test_docs_render_their_operations_with_the_network_blocked(
    app: RunningApp, browser: Any
) -> None:
    blocked: list[str] = []

    def only_loopback(route: Any) -> None:
        if urlparse(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        page.route("**/*", only_loopback)
        page.goto(app.url + "docs")
        page.locator(".opblock").first.wait_for(timeout=30_000)
        assert page.locator(".opblock").count() > 10
        assert "Model Garden API" in page.locator(".title").first.inner_text()
        assert not [url for url in blocked if url.endswith((".js", ".css"))], blocked
    finally:
        page.close()
