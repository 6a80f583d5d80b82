"""Outputs appear whole or not at all: written under a temporary name, renamed when complete."""

from __future__ import annotations

import shutil
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

INCOMPLETE_PREFIX = ".incomplete-"


@contextmanager
def staged_folder(final: Path) -> Iterator[Path]:
    """Yield a hidden folder beside ``final``; on success it replaces ``final``."""
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = final.parent / f"{INCOMPLETE_PREFIX}{final.name}-{time.time_ns()}"
    staging.mkdir()
    try:
        yield staging
        if final.exists():
            shutil.rmtree(final)
        staging.rename(final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def zip_folder(folder: Path, archive: Path, *, compress: bool = True) -> Path:
    """Zip the files of ``folder`` (names relative to it) into ``archive``, atomically."""
    partial = archive.parent / f"{INCOMPLETE_PREFIX}{archive.name}"
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    try:
        with zipfile.ZipFile(partial, "w", compression=method) as bundle:
            for path in sorted(folder.rglob("*")):
                if path.is_file():
                    bundle.write(path, path.relative_to(folder).as_posix())
        partial.replace(archive)
    finally:
        partial.unlink(missing_ok=True)
    return archive


def folder_size(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())
