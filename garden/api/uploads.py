"""Uploaded files: saved under STORAGE_ROOT/temp with a size cap, deleted after the request."""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fastapi import UploadFile

from garden.api.errors import ApiError
from garden.config import Settings

CHUNK = 1024 * 1024
UNSAFE_NAME_CHARS = re.compile(r"[^\w.-]")


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
                    raise ApiError(
                        413,
                        f"The upload {name!r} is larger than {settings.max_upload_mb} MB.",
                        hint="Send a smaller file, or raise MAX_UPLOAD_MB.",
                    )
                out.write(chunk)
        yield path
    finally:
        shutil.rmtree(folder, ignore_errors=True)
