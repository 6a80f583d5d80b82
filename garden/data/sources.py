"""Where rows come from: local or uploaded files, bundled samples and hub datasets.

Every reader streams: rows are yielded one at a time with the location a person would use to
find them (``line 7`` in a JSONL file, ``row 7`` elsewhere). A row that cannot be read is
yielded with an error instead of data, so one bad line never hides the rest of the file.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import re
import shutil
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast

from garden.config import Settings
from garden.errors import DatasetError

BUNDLED_DIR = Path(__file__).resolve().parent.parent.parent / "assets" / "datasets"
MAX_LINE_BYTES = 32 * 1024 * 1024
FILE_TYPES = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".csv": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
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
UNREACHABLE_WORDS = (
    "offline",
    "connect",
    "couldn't reach",
    "network",
    "timed out",
    "timeout",
    "unreachable",
    "name or service not known",
    "localentrynotfound",
)
BAD_JSON_COMMA = re.compile(r",\s*([}\]])")


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
    file_type: str | None = None  # jsonl | json | csv | tsv | parquet
    compressed: bool = False
    hub_id: str | None = None
    subset: str | None = None
    split: str | None = None

    @property
    def label(self) -> str:
        if self.kind == "hub":
            extra = f"@{self.subset}" if self.subset else ""
            return f"{self.hub_id}{extra}:{self.split or 'train'}"
        if self.kind == "bundled" and self.path is not None:
            return f"bundled:{self.path.stem}"
        return str(self.path)


def list_bundled() -> list[dict[str, Any]]:
    """The sample datasets shipped in ``assets/datasets`` (name, path, description)."""
    found = []
    for path in sorted(BUNDLED_DIR.glob("*.jsonl")):
        description = ""
        notes = path.with_suffix(".md")
        if notes.is_file():
            description = notes.read_text(encoding="utf-8").strip().splitlines()[0].lstrip("# ")
        found.append({"name": path.stem, "path": str(path), "description": description})
    return found


def _bundled_path(name: str) -> Path | None:
    stem = name.removeprefix("bundled:").removesuffix(".jsonl")
    candidate = BUNDLED_DIR / f"{stem}.jsonl"
    if "/" in stem or "\\" in stem or not candidate.is_file():
        return None
    return candidate


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
        bundled = _bundled_path(ref)
        if bundled is None:
            names = ", ".join(b["name"] for b in list_bundled())
            raise DatasetError(
                f"There is no bundled dataset {ref!r}.", hint=f"Choose one of: {names}."
            )
        return _file_source(bundled, settings, kind="bundled", ref=ref)
    if ref.startswith(("hf://", "hub:")):
        hub = _hub_source(ref, split, subset)
        if hub is None:
            raise DatasetError(
                f"{ref!r} is not a hub dataset id.",
                hint="Use the form org/name, optionally org/name@subset:split.",
            )
        return hub
    path = Path(ref).expanduser()
    if path.exists():
        return _file_source(path, settings, kind="file")
    bundled = _bundled_path(ref)
    if bundled is not None:
        return _file_source(bundled, settings, kind="bundled", ref=ref)
    hub = _hub_source(ref, split, subset)
    if hub is not None and path.suffix.lower() not in (*FILE_TYPES, ".gz"):
        return hub
    raise DatasetError(
        f"{ref!r} was not found: it is not an existing file, a bundled sample or a hub id.",
        hint="Check the path, or use the form org/name for a Hugging Face dataset.",
    )


def _hub_source(ref: str, split: str | None, subset: str | None) -> Source | None:
    match = HUB_PATTERN.match(ref)
    if match is None:
        return None
    return Source(
        kind="hub",
        ref=ref,
        hub_id=match["id"],
        subset=subset or match["subset"],
        split=split or match["split"] or "train",
    )


def _file_source(path: Path, settings: Settings, *, kind: str, ref: str | None = None) -> Source:
    path = path.expanduser().resolve()
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
        except (OSError, EOFError) as exc:
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
        return Source(kind=kind, ref=ref or str(path), path=path, file_type="parquet")
    _reject_binary(path.name, head)
    if file_type is None:
        file_type = _sniff_text(head)
        if file_type is None:
            raise DatasetError(
                f"Cannot tell what kind of file {path.name} is.",
                hint="Use .jsonl, .json, .csv or .parquet (optionally .gz).",
            )
    return Source(
        kind=kind, ref=ref or str(path), path=path, file_type=file_type, compressed=compressed
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


# readers -----------------------------------------------------------------------------


class RowReader:
    """Iterates a source's rows once; ``fraction`` tells how far through the source it is."""

    def __init__(self, source: Source) -> None:
        self.source = source
        self._raw: IO[bytes] | None = None
        self._size = source.path.stat().st_size if source.path else 0
        self._done_rows = 0
        self._total_rows: int | None = None

    @property
    def fraction(self) -> float | None:
        if self._total_rows:
            return min(1.0, self._done_rows / self._total_rows)
        if self._raw is not None and self._size and not self._raw.closed:
            return min(1.0, self._raw.tell() / self._size)
        return None

    def __iter__(self) -> Iterator[RawRow]:
        source = self.source
        if source.kind == "hub":
            yield from _iter_hub(source)
            return
        assert source.path is not None
        if source.file_type == "parquet":
            yield from self._iter_parquet(source.path)
            return
        with source.path.open("rb") as raw:
            self._raw = raw
            handle: IO[bytes] = (
                cast(IO[bytes], gzip.GzipFile(fileobj=raw, mode="rb")) if source.compressed else raw
            )
            if source.file_type == "jsonl":
                yield from _iter_jsonl(handle)
            elif source.file_type == "json":
                yield from _iter_json(handle, source.path.name)
            else:
                yield from _iter_csv(handle, "\t" if source.file_type == "tsv" else ",")

    def _iter_parquet(self, path: Path) -> Iterator[RawRow]:
        import pyarrow.parquet as pq

        try:
            parquet = pq.ParquetFile(path)
        except Exception as exc:
            raise DatasetError(
                f"{path.name} is not a readable Parquet file ({exc}).",
                hint="Export it again as Parquet, or as JSONL/CSV.",
            ) from exc
        self._total_rows = parquet.metadata.num_rows or None
        index = 0
        for batch in parquet.iter_batches(batch_size=1024):
            for record in batch.to_pylist():
                yield RawRow(index, f"row {index + 1}", record)
                index += 1
                self._done_rows = index


def _parse_json_object(text: str) -> tuple[dict[str, Any] | None, str | None, str | None]:
    """(data, error, note) for one JSON record; tolerates trailing commas with a note."""
    note = None
    try:
        value = json.loads(text)
    except RecursionError:
        return None, "is nested too deeply to read; flatten the record", None
    except json.JSONDecodeError as exc:
        fixed = BAD_JSON_COMMA.sub(r"\1", text.rstrip().rstrip(","))
        try:
            value = json.loads(fixed)
        except (json.JSONDecodeError, RecursionError):
            return None, f"is not valid JSON ({exc.msg} at column {exc.colno})", None
        note = "a trailing comma was ignored"
    if not isinstance(value, dict):
        kind = type(value).__name__.replace("dict", "object").replace("str", "string")
        return None, f'is a JSON {kind}, expected an object such as {{"messages": [...]}}', None
    return value, None, note


def _iter_jsonl(handle: IO[bytes]) -> Iterator[RawRow]:
    index = 0
    line_no = 0
    while True:
        raw = handle.readline(MAX_LINE_BYTES + 1)
        if not raw:
            return
        line_no += 1
        location = f"line {line_no}"
        if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
            while True:
                more = handle.readline(MAX_LINE_BYTES)
                if not more or more.endswith(b"\n"):
                    break
            yield RawRow(index, location, None, f"is longer than {MAX_LINE_BYTES >> 20} MB")
            index += 1
            continue
        if line_no == 1:
            raw = raw.removeprefix(UTF8_BOM)
        raw = raw.strip()
        if not raw:
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield RawRow(
                index,
                location,
                None,
                f"is not valid UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1}); "
                "re-save the file as UTF-8",
            )
            index += 1
            continue
        data, error, note = _parse_json_object(text)
        yield RawRow(index, location, data, error, note)
        index += 1


def _iter_json(handle: IO[bytes], name: str) -> Iterator[RawRow]:
    """Stream the elements of a top-level JSON array (``{"data": [...]}`` is read whole)."""
    import codecs

    decoder = json.JSONDecoder()
    utf8 = codecs.getincrementaldecoder("utf-8")()
    chunk_size = 1 << 16
    buffer = ""
    pos = 0
    eof = False
    offset = 0

    def read_more() -> bool:
        nonlocal buffer, pos, eof, offset
        if eof:
            return False
        data = handle.read(chunk_size)
        try:
            text = utf8.decode(data, final=not data)
        except UnicodeDecodeError as exc:
            raise DatasetError(
                f"{name} is not valid UTF-8 (near byte {offset + exc.start}).",
                hint="Re-save the file as UTF-8, or export it as JSONL so only bad lines are dropped.",
            ) from exc
        offset += len(data)
        if not data:
            eof = True
        buffer = buffer[pos:] + text
        pos = 0
        return bool(data)

    read_more()
    buffer = buffer.removeprefix("\ufeff")
    while not buffer.strip() and read_more():
        pass
    stripped = buffer.lstrip()
    if stripped.startswith("{"):
        while read_more():
            pass
        data, error, _ = _parse_json_object(buffer)
        if error:
            raise DatasetError(f"{name} {error}.", hint="Check the file is complete JSON.")
        assert data is not None
        lists = [v for v in data.values() if isinstance(v, list) and v and isinstance(v[0], dict)]
        records = lists[0] if len(lists) == 1 else [data]
        for index, record in enumerate(records):
            yield _element(index, record)
        return
    if not stripped.startswith("["):
        raise DatasetError(
            f"{name} does not start with a JSON array or object.",
            hint="A .json dataset must be a list of objects; JSON Lines files should end in .jsonl.",
        )
    pos = buffer.index("[") + 1
    index = 0
    while True:
        while True:
            while pos < len(buffer) and buffer[pos] in " \t\r\n,":
                pos += 1
            if pos < len(buffer) or not read_more():
                break
        if pos >= len(buffer):
            yield RawRow(index, f"row {index + 1}", None, "the file ends before the closing ]")
            return
        if buffer[pos] == "]":
            return
        try:
            value, end = decoder.raw_decode(buffer, pos)
        except RecursionError:
            yield RawRow(index, f"row {index + 1}", None, "is nested too deeply to read")
            return
        except json.JSONDecodeError as exc:
            if len(buffer) - pos < MAX_LINE_BYTES and read_more():
                chunk_size = min(chunk_size * 2, 1 << 24)
                continue
            yield RawRow(
                index,
                f"row {index + 1}",
                None,
                f"is not valid JSON ({exc.msg}); the rest of the file cannot be read",
            )
            return
        if end == len(buffer) and not eof:
            read_more()
            continue
        yield _element(index, value)
        index += 1
        pos = end


def _element(index: int, value: Any) -> RawRow:
    location = f"row {index + 1}"
    if not isinstance(value, dict):
        return RawRow(
            index, location, None, f"is a JSON {type(value).__name__}, expected an object"
        )
    return RawRow(index, location, value)


def _iter_csv(handle: IO[bytes], delimiter: str) -> Iterator[RawRow]:
    csv.field_size_limit(MAX_LINE_BYTES)
    text = io.TextIOWrapper(handle, encoding="utf-8-sig", errors="surrogateescape", newline="")
    reader = csv.DictReader(text, delimiter=delimiter)
    index = 0
    while True:
        location = f"row {index + 1}"
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield RawRow(index, location, None, f"cannot be read as CSV ({exc})")
            index += 1
            continue
        extra = record.pop(None, None)
        if extra:
            yield RawRow(index, location, None, f"has {len(extra)} more fields than the header")
        elif any(isinstance(v, str) and _has_surrogates(v) for v in record.values()):
            yield RawRow(index, location, None, "is not valid UTF-8; re-save the file as UTF-8")
        else:
            yield RawRow(index, location, {k: v for k, v in record.items() if k is not None})
        index += 1


def _has_surrogates(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def hub_offline() -> bool:
    flags = (os.environ.get("HF_HUB_OFFLINE", ""), os.environ.get("HF_DATASETS_OFFLINE", ""))
    return any(flag.strip().lower() in ("1", "true", "yes", "on") for flag in flags)


def _hub_error(source: Source, exc: BaseException | None) -> DatasetError:
    detail = f" ({type(exc).__name__}: {str(exc)[:200]})" if exc else ""
    text = f"{type(exc).__name__} {exc}".lower() if exc else "offline"
    if exc is None or any(word in text for word in UNREACHABLE_WORDS):
        return DatasetError(
            f"The Hugging Face hub is unreachable, so {source.hub_id} cannot be loaded{detail}.",
            hint="Download the dataset elsewhere and upload it as a JSONL, CSV or Parquet file, "
            "or connect to the internet (and unset HF_HUB_OFFLINE).",
        )
    return DatasetError(
        f"Loading hub dataset {source.label} failed{detail}.",
        hint="Check the id, the subset (org/name@subset) and the split (org/name:split).",
    )


def _probe_hub(timeout_s: float = 3.0) -> OSError | None:
    """A quick TCP connect to the hub, so an unreachable hub fails in seconds, not after retries."""
    import socket
    from urllib.parse import urlparse

    endpoint = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        with socket.create_connection((endpoint.hostname or "huggingface.co", port), timeout_s):
            return None
    except OSError as exc:
        return exc


def _iter_hub(source: Source) -> Iterator[RawRow]:
    if hub_offline():
        raise _hub_error(source, None)
    if (unreachable := _probe_hub()) is not None:
        raise _hub_error(source, ConnectionError(f"cannot connect to the hub: {unreachable}"))
    from datasets import load_dataset

    try:
        dataset = load_dataset(source.hub_id, source.subset, split=source.split, streaming=True)
        iterator = iter(dataset)
    except Exception as exc:
        raise _hub_error(source, exc) from exc
    index = 0
    while True:
        try:
            record = next(iterator)
        except StopIteration:
            return
        except Exception as exc:
            raise _hub_error(source, exc) from exc
        yield RawRow(index, f"row {index + 1}", dict(record))
        index += 1


# uploads -----------------------------------------------------------------------------


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
    name = sanitize_filename(original_name or source.name)
    stem, dot, ext = name.partition(".")
    for attempt in range(1000):
        candidate = raw_dir / (name if attempt == 0 else f"{stem}-{attempt}{dot}{ext}")
        try:
            fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            continue
        with os.fdopen(fd, "wb") as out, source.open("rb") as src:
            shutil.copyfileobj(src, out, 1 << 20)
        return candidate
    raise DatasetError(f"Too many uploads named {name}.", hint="Rename the file and upload again.")
