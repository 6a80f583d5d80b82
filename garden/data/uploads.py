"""Uploaded files: copied into ``datasets/raw`` under a safe name that never overwrites."""

from __future__ import annotations

import os
import re
import shutil
import unicodedata
from pathlib import Path

from garden.config import Settings
from garden.data.limits import check_free_space, writing
from garden.errors import DatasetError


def sanitize_filename(name: str) -> str:
    """A safe file name: no folders, no traversal, only letters, digits, ``._-``."""
    base = re.split(r"[/\\]", name)[-1]
    base = unicodedata.normalize("NFKD", base).encode("ascii", "ignore").decode("ascii")
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", base).strip("._-")
    base = re.sub(r"\.{2,}", ".", base)
    if not base:
        base = "upload"
    stem, dot, ext = base.rpartition(".")
    if not dot:
        stem, ext = base, ""
    stem = stem[:80] or "upload"
    return f"{stem}.{ext[:12]}" if ext else stem


def save_upload(path: str | Path, settings: Settings, original_name: str | None = None) -> Path:
    """Copy an uploaded file into ``datasets/raw`` under a sanitised, never-overwriting name."""
    source = Path(path)
    if not source.is_file():
        raise DatasetError(f"The uploaded file {source.name} is missing.", hint="Upload it again.")
    raw_dir = settings.raw_datasets_path
    raw_dir.mkdir(parents=True, exist_ok=True)
    check_free_space(raw_dir, source.stat().st_size, "a copy of the uploaded file")
    name = sanitize_filename(original_name or source.name)
    stem, dot, ext = name.partition(".")
    for attempt in range(1000):
        candidate = raw_dir / (name if attempt == 0 else f"{stem}-{attempt}{dot}{ext}")
        try:
            fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            continue
        try:
            with (
                writing(raw_dir, "a copy of the uploaded file"),
                os.fdopen(fd, "wb") as out,
                source.open("rb") as src,
            ):
                shutil.copyfileobj(src, out, 1 << 20)
        except BaseException:
            candidate.unlink(missing_ok=True)
            raise
        return candidate
    raise DatasetError(f"Too many uploads named {name}.", hint="Rename the file and upload again.")
