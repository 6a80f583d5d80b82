"""Launching the app: host, port, share link, auth, Hugging Face Spaces."""

from __future__ import annotations

import logging
import os
import threading

from garden.config import Settings, get_settings
from garden.errors import ConfigError
from garden.services import lifecycle

log = logging.getLogger("garden")


def resolve_host(host: str | None, settings: Settings) -> str:
    """A Hugging Face Space (``SPACE_ID`` set) must listen on all interfaces."""
    if os.environ.get("SPACE_ID"):
        return "0.0.0.0"
    return host or settings.api_host


def resolve_auth(settings: Settings) -> tuple[str, str] | None:
    if not settings.enable_auth:
        return None
    password = settings.auth_password.get_secret_value()
    if not password:
        raise ConfigError(
            "ENABLE_AUTH is on but AUTH_PASSWORD is empty.",
            hint="Set AUTH_PASSWORD (and AUTH_USERNAME) in the environment or .env.",
        )
    return (settings.auth_username, password)


def prepare_in_background(settings: Settings) -> threading.Thread:
    """Convert the embedded default model without delaying the first HTTP answer."""
    from garden.services import models

    def run() -> None:
        try:
            models.prepare_default(log.info, settings=settings)
        except Exception as exc:  # shown in the UI when a tab needs the model
            log.error("Preparing the default model failed: %s", exc)

    thread = threading.Thread(target=run, name="prepare-default-model", daemon=True)
    thread.start()
    return thread


def recover_jobs_in_background(settings: Settings) -> threading.Thread:
    """Start the job manager: runs left active by a previous app become interrupted (resumable)."""

    def run() -> None:
        try:
            from garden.services import training

            interrupted = training.start_manager(settings=settings)
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
    settings: Settings | None = None,
    prevent_thread_lock: bool = False,
):
    """Build and launch the app; returns the Blocks object when ``prevent_thread_lock``."""
    from garden.ui import app_css, app_theme, build_app

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    settings = settings or get_settings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(message)s")
    auth = resolve_auth(settings)
    lifecycle.install_signal_handlers()
    prepare_in_background(settings)
    recover_jobs_in_background(settings)
    app = build_app(settings)
    app.queue(default_concurrency_limit=8)
    app.launch(
        server_name=resolve_host(host, settings),
        server_port=port or settings.api_port,
        share=share,
        auth=auth,
        theme=app_theme(),
        css=app_css(),
        show_error=True,
        prevent_thread_lock=prevent_thread_lock,
        allowed_paths=[str(settings.temp_path)],
    )
    return app
