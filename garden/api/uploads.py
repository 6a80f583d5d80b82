"""Uploaded files: saved under STORAGE_ROOT/temp with a size cap, deleted after the request."""

from __future__ import annotations

import re
import shutil
import tempfile
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


UPLOAD_PATHS = frozenset({"/api/v1/datasets/inspect", "/api/v1/datasets/upload"})


class UploadLimit:
    """ASGI middleware: ``413`` before a declared-too-large upload is read (FastAPI parses, and
    spools to disk, a multipart body before any route code runs)."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.limit = settings.max_upload_mb * 1024 * 1024 + FORM_OVERHEAD
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("path") in UPLOAD_PATHS:
            declared = dict(scope.get("headers", [])).get(b"content-length", b"")
            if declared.isdigit() and int(declared) > self.limit:
                error = too_large(self.settings)
                await error_response(413, error.message, error.hint)(scope, receive, send)
                return
        await self.app(scope, receive, send)


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
