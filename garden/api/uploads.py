"""Uploaded files: saved under STORAGE_ROOT/temp with a size cap, deleted after the request."""

from __future__ import annotations

import re
import shutil
import tempfile
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fastapi import UploadFile

from garden.api.errors import ApiError, error_response
from garden.api.security import ASGIApp, Receive, Scope, Send
from garden.config import Settings

CHUNK = 1024 * 1024
FORM_OVERHEAD = 64 * 1024
UNSAFE_NAME_CHARS = re.compile(r"[^\w.-]")


def too_large(settings: Settings, name: str = "upload") -> ApiError:
    return ApiError(
        413,
        f"The {name} is larger than {settings.max_upload_mb} MB.",
        hint="Send a smaller file, or raise MAX_UPLOAD_MB.",
    )


UPLOAD_PATHS = frozenset(
    {"/api/v1/datasets/inspect", "/api/v1/datasets/upload", "/api/v1/datasets/synthesize"}
)
GRADIO_UPLOAD_PATH = "/gradio_api/upload"


class UploadLimit:
    """ASGI middleware: ``413`` before a declared-too-large upload is read (FastAPI and Gradio
    parse, and spool to disk, a multipart body before any route code runs).

    Gradio's own upload route caps each file, not a request (which may carry 1,000 files), so a
    request there is capped at ``MAX_UPLOAD_MB`` in all. On a public app it must also declare
    its length (``411`` if not: the cap could not be checked before the body is spooled), and
    the bytes accepted within ``UPLOAD_CACHE_HOURS`` (what Gradio still keeps) stay under
    ``UPLOAD_CACHE_MAX_MB``; past that, ``507`` until old uploads expire."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.limit = settings.max_upload_mb * 1024 * 1024 + FORM_OVERHEAD
        self.settings = settings
        self.public = settings.enable_auth or settings.public_demo
        self.kept = UploadBudget(settings.upload_cache_max_mb * 1024 * 1024,
                                 settings.upload_cache_hours * 3600)  # fmt: skip

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path")
        if scope["type"] != "http" or (path not in UPLOAD_PATHS and path != GRADIO_UPLOAD_PATH):
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length", b"")
        refusal = None
        if declared.isdigit() and int(declared) > self.limit:
            refusal = 413, *_text(too_large(self.settings, "upload request"))
        elif path == GRADIO_UPLOAD_PATH and self.public:
            if not declared.isdigit():
                refusal = 411, "An upload must declare its length.", "Send a Content-Length."
            elif not self.kept.take(int(declared)):
                refusal = 507, "This app's upload space is full.", "Try again in an hour."
        if refusal:
            await error_response(*refusal)(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _text(error: ApiError) -> tuple[str, str | None]:
    return error.message, error.hint


class UploadBudget:
    """Bytes accepted within a sliding window of ``window_s`` seconds, at most ``limit``."""

    def __init__(self, limit: int, window_s: float) -> None:
        self.limit, self.window_s = limit, window_s
        self.accepted: deque[tuple[float, int]] = deque()
        self.total = 0
        self.lock = threading.Lock()

    def take(self, size: int, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        with self.lock:
            while self.accepted and self.accepted[0][0] < now - self.window_s:
                self.total -= self.accepted.popleft()[1]
            if self.total + size > self.limit:
                return False
            self.accepted.append((now, size))
            self.total += size
            return True


@contextmanager
def saved_upload(upload: UploadFile, settings: Settings) -> Iterator[Path]:
    """The upload as a regular file of its own (``413`` past ``MAX_UPLOAD_MB``), removed after."""
    name = UNSAFE_NAME_CHARS.sub("_", Path(upload.filename or "upload").name)[-100:] or "upload"
    limit = settings.max_upload_mb * 1024 * 1024
    folder = Path(tempfile.mkdtemp(prefix="api-upload-", dir=settings.temp_path))
    try:
        path = folder / name.lstrip(".")
        written = 0
        with path.open("wb") as out:
            while chunk := upload.file.read(CHUNK):
                written += len(chunk)
                if written > limit:
                    raise too_large(settings, f"upload {name!r}")
                out.write(chunk)
        yield path
    finally:
        shutil.rmtree(folder, ignore_errors=True)
