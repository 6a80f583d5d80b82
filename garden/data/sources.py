"""Where rows come from: a local or uploaded file, a bundled sample or a hub dataset.

``resolve_source`` turns what a person typed into a ``Source`` after checking the file can be
read at all (exists, not empty, not too large, not binary, a known type); ``readers`` streams it.
"""

from __future__ import annotations

import csv
import gzip
import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from garden.config import Settings
from garden.data.bundled import bundled_path, list_bundled
from garden.errors import DatasetError

MAX_LINE_BYTES = 16 * 1024 * 1024  # one JSONL line, JSON element or CSV record
FILE_TYPES = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".csv": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".txt": "txt",
    ".text": "txt",
    ".md": "txt",
}
HUB_PATTERN = re.compile(
    r"^(?:hf://|hub:)?(?P<id>[A-Za-z0-9][\w.-]*/[\w.-]+)(?:@(?P<subset>[\w.-]+))?(?::(?P<split>[\w.\[\]%:-]+))?$"
)
UTF8_BOM = b"\xef\xbb\xbf"
MAGIC = {
    b"\x89PNG": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
    b"GIF8": "a GIF image",
    b"%PDF": "a PDF document",
    b"PK\x03\x04": "a ZIP archive (or an Excel/Office file)",
    b"\x7fELF": "a program binary",
    b"SQLite format 3": "an SQLite database",
}


@dataclass
class RawRow:
    """One record of a source: its 0-based ordinal, where it is, and its data or its error."""

    index: int
    location: str
    data: dict[str, Any] | None
    error: str | None = None
    note: str | None = None


@dataclass(frozen=True)
class Source:
    """A resolved source: a file (uploaded, local or bundled) or a hub dataset."""

    kind: str  # file | bundled | hub
    ref: str
    path: Path | None = None
    file_type: str | None = None  # jsonl | json | csv | tsv | parquet | txt
    compressed: bool = False
    hub_id: str | None = None
    subset: str | None = None
    split: str | None = None
    max_bytes: int | None = None  # MAX_UPLOAD_MB: bound on the decompressed bytes read

    @property
    def label(self) -> str:
        if self.kind == "hub":
            extra = f"@{self.subset}" if self.subset else ""
            return f"{self.hub_id}{extra}:{self.split or 'train'}"
        if self.kind == "bundled" and self.path is not None:
            return f"bundled:{self.path.stem}"
        return str(self.path)


def resolve_source(
    source: str | Path,
    settings: Settings,
    *,
    split: str | None = None,
    subset: str | None = None,
) -> Source:
    """Turn a path, ``bundled:NAME`` or hub id (``org/name[@subset][:split]``) into a ``Source``."""
    if isinstance(source, Path):
        return _file_source(source, settings, kind="file")
    ref = str(source).strip()
    if not ref:
        raise DatasetError(
            "No dataset source given.",
            hint="Upload a file, pick a bundled sample, or type a hub id such as org/name.",
        )
    if ref.startswith("bundled:"):
        bundled = bundled_path(ref)
        if bundled is None:
            names = ", ".join(b.name for b in list_bundled())
            raise DatasetError(
                f"There is no bundled dataset {ref!r}.", hint=f"Choose one of: {names}."
            )
        return _file_source(bundled, settings, kind="bundled", ref=ref)
    if ref.startswith(("hf://", "hub:")):
        hub = _hub_source(ref, split, subset, settings)
        if hub is None:
            raise DatasetError(
                f"{ref!r} is not a hub dataset id.",
                hint="Use the form org/name, optionally org/name@subset:split.",
            )
        return hub
    path = Path(ref).expanduser()
    try:
        exists = path.exists()
    except OSError:  # e.g. a folder on the way cannot be searched: say so below
        exists = True
    if exists:
        return _file_source(path, settings, kind="file")
    bundled = bundled_path(ref)
    if bundled is not None:
        return _file_source(bundled, settings, kind="bundled", ref=ref)
    hub = _hub_source(ref, split, subset, settings)
    if hub is not None and path.suffix.lower() not in (*FILE_TYPES, ".gz"):
        return hub
    raise DatasetError(
        f"{ref!r} was not found: it is not an existing file, a bundled sample or a hub id.",
        hint="Check the path, or use the form org/name for a Hugging Face dataset.",
    )


def _hub_source(
    ref: str, split: str | None, subset: str | None, settings: Settings
) -> Source | None:
    """A hub dataset, read at most ``MAX_UPLOAD_MB`` of rows (as JSON) deep, like a file."""
    match = HUB_PATTERN.match(ref)
    if match is None:
        return None
    return Source(
        kind="hub",
        ref=ref,
        hub_id=match["id"],
        subset=subset or match["subset"],
        split=split or match["split"] or "train",
        max_bytes=settings.max_upload_mb * 1024 * 1024,
    )


def _file_source(path: Path, settings: Settings, *, kind: str, ref: str | None = None) -> Source:
    try:
        return _checked_file(path.expanduser().resolve(), settings, kind, ref)
    except PermissionError as exc:
        raise DatasetError(
            f"{path.name} cannot be read: permission denied.",
            hint="Make the file readable by the user running Model Garden, or upload a copy.",
        ) from exc
    except OSError as exc:
        raise DatasetError(
            f"{path.name} cannot be read ({exc.strerror or exc}).",
            hint="Check the file is on a working disk, or upload a copy.",
        ) from exc


def _checked_file(path: Path, settings: Settings, kind: str, ref: str | None) -> Source:
    if not path.exists():
        raise DatasetError(f"{path} does not exist.", hint="Check the path and try again.")
    if path.is_dir():
        raise DatasetError(
            f"{path} is a folder, not a file.",
            hint="Point at one .jsonl, .json, .csv or .parquet file inside it.",
        )
    size = path.stat().st_size
    if size == 0:
        raise DatasetError(
            f"{path.name} is empty (0 bytes).",
            hint="Upload the file again; if it was exported, check the export finished.",
        )
    limit = settings.max_upload_mb * 1024 * 1024
    if size > limit:
        raise DatasetError(
            f"{path.name} is {size / 1024 / 1024:.1f} MB, over the {settings.max_upload_mb} MB limit.",
            hint="Split it into smaller files, or raise MAX_UPLOAD_MB in the settings.",
        )
    with path.open("rb") as handle:
        head = handle.read(8192)
    compressed = head.startswith(b"\x1f\x8b")
    if compressed:
        try:
            with gzip.open(path, "rb") as handle:
                head = handle.read(8192)
        except (OSError, EOFError, zlib.error) as exc:
            raise DatasetError(
                f"{path.name} looks gzip-compressed but cannot be decompressed ({exc}).",
                hint="Re-compress it with gzip, or upload the uncompressed file.",
            ) from exc
        if not head:
            raise DatasetError(f"{path.name} is empty once decompressed.", hint="Check the export.")
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    file_type = FILE_TYPES.get(suffixes[-1]) if suffixes else None
    if head.startswith(b"PAR1"):
        file_type = "parquet"
    if file_type == "parquet":
        if compressed:
            raise DatasetError(
                f"{path.name} is a gzip-compressed Parquet file.",
                hint="Upload the .parquet file itself; Parquet is already compressed.",
            )
        if not head.startswith(b"PAR1"):
            raise DatasetError(
                f"{path.name} is named .parquet but is not a Parquet file.",
                hint="Export it again as Parquet, or rename it to its real type (.jsonl, .csv).",
            )
        return Source(
            kind=kind, ref=ref or str(path), path=path, file_type="parquet", max_bytes=limit
        )
    _reject_binary(path.name, head)
    if file_type is None:
        file_type = _sniff_text(head)
        if file_type is None:
            raise DatasetError(
                f"Cannot tell what kind of file {path.name} is.",
                hint="Use .jsonl, .json, .csv, .parquet or .txt (optionally .gz).",
            )
    return Source(
        kind=kind,
        ref=ref or str(path),
        path=path,
        file_type=file_type,
        compressed=compressed,
        max_bytes=limit,
    )


def _reject_binary(name: str, head: bytes) -> None:
    for magic, what in MAGIC.items():
        if head.startswith(magic):
            raise DatasetError(
                f"{name} is {what}, not a dataset.",
                hint="Upload a .jsonl, .json, .csv or .parquet file (spreadsheets: export as CSV).",
            )
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise DatasetError(
            f"{name} is UTF-16 text.",
            hint="Re-save it as UTF-8 (in most editors: Save as… → Encoding: UTF-8).",
        )
    if b"\x00" in head:
        raise DatasetError(
            f"{name} is a binary file, not text.",
            hint="Upload a .jsonl, .json, .csv or .parquet file.",
        )


def _sniff_text(head: bytes) -> str | None:
    text = head.removeprefix(UTF8_BOM).lstrip()
    if text.startswith(b"["):
        return "json"
    if text.startswith(b"{"):
        return "jsonl"
    try:
        dialect = csv.Sniffer().sniff(head.decode("utf-8", errors="ignore")[:4096])
    except csv.Error:
        return None
    return "tsv" if dialect.delimiter == "\t" else "csv"
