"""Bounds on what reading and writing a dataset may cost: decompressed bytes, disk space, and
short-lived temp files with unguessable names that are purged after use."""

from __future__ import annotations

import errno
import io
import os
import secrets
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from garden.errors import DatasetError, DiskFullError

MB = 1024 * 1024
FREE_SPACE_RESERVE = 64 * MB  # left free after a write, so the database and logs still work
TEMP_MAX_AGE_S = 30 * 60  # exports under STORAGE_ROOT/temp older than this are deleted


class LimitedReader(io.RawIOBase):
    """A raw reader that refuses to hand out more than ``limit`` bytes in total.

    Wraps a decompressing stream, so ``MAX_UPLOAD_MB`` bounds what a file expands to (a gzip
    bomb stops at the limit instead of filling memory or disk). Use it through
    :func:`limited`, which adds buffering.
    """

    def __init__(self, raw: IO[bytes], limit: int, name: str) -> None:
        super().__init__()
        self._raw = raw
        self.limit = limit
        self.name = name
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self._raw.read(len(view))
        self.count += len(data)
        if self.count > self.limit:
            raise DatasetError(
                f"{self.name} expands to more than {self.limit // MB} MB once decompressed.",
                hint="Upload a smaller file, split it, or raise MAX_UPLOAD_MB in the settings.",
            )
        view[: len(data)] = data
        return len(data)


def limited(raw: IO[bytes], limit: int, name: str) -> IO[bytes]:
    """``raw`` as a buffered reader that raises ``DatasetError`` past ``limit`` bytes."""
    return io.BufferedReader(LimitedReader(raw, limit, name), 1 << 16)


def free_bytes(folder: Path) -> int:
    """Free bytes on the file system holding ``folder`` (or its nearest existing parent)."""
    path = folder
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def check_free_space(folder: Path, needed: int, what: str) -> None:
    """Raise ``DiskFullError`` unless ``needed`` bytes plus a reserve fit under ``folder``."""
    free = free_bytes(folder)
    if needed + FREE_SPACE_RESERVE > free:
        raise DiskFullError(
            f"Not enough disk space for {what}: about {_mb(needed + FREE_SPACE_RESERVE)} needed, "
            f"{_mb(free)} free.",
            hint="Free some space (delete old datasets, runs or checkpoints) and try again.",
        )


def disk_full_error(exc: OSError, what: str, folder: Path) -> DiskFullError | None:
    """A ``DiskFullError`` for an out-of-space ``OSError`` (None for other errors)."""
    if exc.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return None
    return DiskFullError(
        f"The disk filled up while writing {what} ({_mb(free_bytes(folder))} free).",
        hint="Free some space and try again; nothing was saved.",
    )


def _mb(size: int) -> str:
    return f"{size / MB:,.0f} MB"


def temp_file(folder: Path, prefix: str, suffix: str) -> Path:
    """A new empty file in ``folder`` with an unguessable name (``prefix-<random>suffix``),
    created exclusively and readable by its owner only; older temp files are purged first."""
    folder.mkdir(parents=True, exist_ok=True)
    purge_temp(folder)
    for _ in range(10):
        path = folder / f"{prefix}-{secrets.token_hex(16)}{suffix}"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            continue
        os.close(fd)
        return path
    raise OSError(errno.EEXIST, f"could not create a temp file in {folder}")


def purge_temp(folder: Path, max_age_s: float = TEMP_MAX_AGE_S) -> int:
    """Delete the plain files in ``folder`` older than ``max_age_s``; how many were deleted.

    Folders (import staging, which has its own clean-up) are left alone."""
    deleted = 0
    cutoff = time.time() - max_age_s
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    for entry in entries:
        try:
            if entry.is_file(follow_symlinks=False) and entry.stat().st_mtime < cutoff:
                os.unlink(entry.path)
                deleted += 1
        except OSError:
            continue
    return deleted


@contextmanager
def writing(folder: Path, what: str) -> Iterator[None]:
    """Turn an out-of-space ``OSError`` inside the block into a ``DiskFullError``."""
    try:
        yield
    except OSError as exc:
        full = disk_full_error(exc, what, folder)
        if full is None:
            raise
        raise full from exc
