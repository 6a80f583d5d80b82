"""Launching the app: host, port, share link, auth, Hugging Face Spaces, and the REST API.

The REST API lives in the FastAPI app that Gradio's ``launch()`` builds (its ``app_kwargs``:
routes, docs, exception handlers, middleware), not in an app of ours with Gradio mounted on it:
``launch()`` alone starts the share tunnel, the upload-cache cleaner, the queue and the login
routes, so ``--share``, Spaces and every Gradio behaviour stay exactly as they were, on one port.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from typing import Any

from garden.config import Settings, get_settings
from garden.services import lifecycle
from garden.ui.auth import AuthGate, check_access, login_guard

log = logging.getLogger("garden")

# Events sharing one concurrency limit, by api name (a trailing ``_1`` … is ignored).
EVENT_GROUPS = {"respond": "chat", "data_inspect": "import", "data_save": "import"}


def resolve_host(host: str | None, settings: Settings) -> str:
    """A Hugging Face Space (``SPACE_ID`` set) must listen on all interfaces."""
    if os.environ.get("SPACE_ID"):
        return "0.0.0.0"
    return host or settings.api_host


def startup_settings(public_demo: bool) -> Settings:
    """``--public-demo`` is PUBLIC_DEMO=true for this process and its workers alike."""
    if public_demo:
        os.environ["PUBLIC_DEMO"] = "true"
        get_settings.cache_clear()
    return get_settings()


def configure_logging(settings: Settings) -> None:
    """Log to stderr and to LOGS_DIR/app.log, where full traces go."""
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=[logging.StreamHandler(), logging.FileHandler(settings.logs_path / "app.log")],
    )


def limit_events(app: Any, settings: Settings) -> None:
    """Chat answers and dataset imports each share one concurrency limit."""
    limits = {"chat": settings.chat_concurrency, "import": settings.import_concurrency}
    for fn in app.fns.values():
        group = EVENT_GROUPS.get(re.sub(r"_\d+$", "", fn.api_name or ""))
        if group:
            fn.concurrency_id, fn.concurrency_limit = group, limits[group]


def recover_jobs_in_background(settings: Settings) -> threading.Thread:
    """Start the job manager: runs left active by a previous app become interrupted (resumable)."""

    def run() -> None:
        try:
            from garden.services import training

            interrupted = training.start_manager(settings=settings)
            training.warm_up_workers(settings=settings)
            if interrupted:
                log.warning("Marked %d job(s) from a previous run as interrupted", len(interrupted))
        except Exception as exc:
            log.error("Recovering training jobs failed: %s", exc)

    thread = threading.Thread(target=run, name="recover-jobs", daemon=True)
    thread.start()
    return thread


def launch(
    host: str | None = None,
    port: int | None = None,
    share: bool = False,
    public_demo: bool = False,
    prevent_thread_lock: bool = False,
):
    """Check who can reach the app, then build and launch it (ConfigError when refused)."""
    settings = startup_settings(public_demo)
    server_name = resolve_host(host, settings)
    check_access(server_name, share, os.environ.get("SPACE_ID"), settings)
    from garden import api

    configure_logging(settings)
    rest = api.app_kwargs(settings)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from starlette.middleware import Middleware

    from garden.api.security import SameOrigin, SmallForms
    from garden.services import endpoints, models
    from garden.services.web import request_hosts
    from garden.ui import app_css, app_theme, build_app

    lifecycle.install_signal_handlers()
    endpoints.serve_web()  # every remote chat endpoint is checked from now on
    models.prepare_in_background(log.info, settings=settings)  # the UI answers meanwhile
    recover_jobs_in_background(settings)
    app = build_app(settings)
    limit_events(app, settings)
    app.delete_cache = (3600, int(settings.upload_cache_hours * 3600))
    app.queue(max_size=settings.queue_max_size, default_concurrency_limit=8, api_open=False)
    hosts = request_hosts(server_name, share=share, space_host=os.environ.get("SPACE_HOST"))
    public = settings.enable_auth or settings.public_demo
    log.info("Answering the hosts %s (ALLOWED_HOSTS to change)", ", ".join(hosts))
    rest["middleware"].insert(0, Middleware(SameOrigin, hosts=hosts, public=public))
    auth = login_guard(settings)
    if auth:
        auth.trust_loopback &= not share  # a share tunnel's visitors all come from loopback
        rest["middleware"].append(Middleware(AuthGate, passes=api.is_api_path))
        rest["middleware"].append(Middleware(SmallForms))
    app.launch(
        server_name=server_name,
        server_port=port or settings.api_port,
        share=share,
        auth=auth,
        app_kwargs=rest,
        max_file_size=settings.max_upload_mb * 1024 * 1024,
        ssr_mode=False,
        theme=app_theme(),
        css=app_css(),
        show_error=True,
        prevent_thread_lock=prevent_thread_lock,
        allowed_paths=[str(settings.temp_path), str(settings.exports_root)],
    )
    return app
