"""Streaming readers: every row of a source, once, with the location a person would use.

A JSONL row is ``line 7``; elsewhere ``row 7``. A row that cannot be read is yielded with an
error instead of data, so one bad line never hides the rest of the file.
"""

from __future__ import annotations

import codecs
import csv
import datetime
import gzip
import io
import itertools
import json
import math
import re
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, cast

from garden.data.hub import iter_hub
from garden.data.limits import limited
from garden.data.sources import MAX_LINE_BYTES, UTF8_BOM, RawRow, Source
from garden.errors import DatasetError

BAD_JSON_COMMA = re.compile(r",\s*([}\]])")


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
        """The rows; a file that breaks while being read raises ``DatasetError``."""
        try:
            yield from self._rows()
        except (OSError, EOFError, zlib.error) as exc:
            raise read_error(self.source, exc) from exc

    def _rows(self) -> Iterator[RawRow]:
        source = self.source
        if source.kind == "hub":
            yield from iter_hub(source)
            return
        assert source.path is not None
        if source.file_type == "parquet":
            yield from self._iter_parquet(source.path)
            return
        with source.path.open("rb") as raw:
            self._raw = raw
            handle: IO[bytes] = raw
            if source.compressed:
                handle = cast(IO[bytes], gzip.GzipFile(fileobj=raw, mode="rb"))
                if source.max_bytes is not None:
                    handle = limited(handle, source.max_bytes, source.path.name)
            name = source.path.name
            if source.file_type == "jsonl":
                yield from _iter_jsonl(handle)
            elif source.file_type == "json":
                yield from _iter_json(handle, name)
            elif source.file_type == "txt":
                yield from _iter_text_blocks(handle)
            else:
                yield from _iter_csv(handle, "\t" if source.file_type == "tsv" else ",", name)

    def _iter_parquet(self, path: Path) -> Iterator[RawRow]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        broken = (pa.ArrowException, OSError, ValueError, TypeError, IndexError)
        try:
            parquet = pq.ParquetFile(path)
            self._total_rows = parquet.metadata.num_rows or None
            batches = parquet.iter_batches(batch_size=1024)
        except broken as exc:
            raise DatasetError(
                f"{path.name} is not a readable Parquet file ({_short(exc)}).",
                hint="Export it again as Parquet, or as JSONL/CSV.",
            ) from exc
        index = 0
        while True:
            try:
                batch = next(batches, None)
                records = batch.to_pylist() if batch is not None else []
            except broken as exc:
                raise DatasetError(
                    f"{path.name} is damaged near row {index + 1} ({_short(exc)}).",
                    hint="Export it again as Parquet, or as JSONL/CSV; "
                    "the rows before it were read fine.",
                ) from exc
            if batch is None:
                return
            for record in records:
                yield RawRow(index, f"row {index + 1}", plain_record(record))
                index += 1
                self._done_rows = index


def read_error(source: Source, exc: BaseException) -> DatasetError:
    """A ``DatasetError`` for a file that fails while it is being read."""
    name = source.path.name if source.path is not None else source.label
    if isinstance(exc, PermissionError):
        return DatasetError(
            f"{name} cannot be read: permission denied.",
            hint="Make the file readable by the user running Model Garden, or upload a copy.",
        )
    if source.compressed and isinstance(exc, (EOFError, zlib.error, gzip.BadGzipFile)):
        return DatasetError(
            f"{name} is a damaged or truncated gzip file ({_short(exc)}).",
            hint="Compress it again with gzip, or upload the uncompressed file.",
        )
    return DatasetError(
        f"{name} could not be read to the end ({_short(exc)}).",
        hint="Check the file is complete and on a working disk, then try again.",
    )


def _short(exc: BaseException, limit: int = 160) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[:limit] + "…"


def plain_record(record: dict[str, Any]) -> dict[str, Any]:
    """A Parquet record with only JSON values: bytes as text, decimals, dates and times as
    strings, maps as lists of pairs, so every cell shows and saves as plain text."""
    return {str(key): plain_value(value) for key, value in record.items()}


def plain_value(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        data = bytes(value)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return f"<{len(data)} bytes of binary data>"
    if isinstance(value, dict):
        return {str(key): plain_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain_value(item) for item in value]
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    return str(value)  # Decimal, timedelta, and anything newer


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


LINE_MODE_PEEK_BYTES = 1 << 20


def _iter_text_blocks(handle: IO[bytes]) -> Iterator[RawRow]:
    """A plain text corpus: one ``{"text": ...}`` document per blank-line-separated block, or
    per line when the file has no blank line in its first MB (one article per line, as corpora
    such as a wiki dump come: read as blocks, the whole file would be one document)."""
    text = io.TextIOWrapper(handle, encoding="utf-8-sig", errors="strict", newline=None)
    line_no = 0

    def numbered() -> Iterator[tuple[int, str]]:
        nonlocal line_no
        while line := text.readline(MAX_LINE_BYTES + 1):
            line_no += 1
            yield line_no, line

    try:
        lines = numbered()
        head: list[tuple[int, str]] = []
        peeked = 0
        for number, line in lines:
            head.append((number, line))
            peeked += len(line)
            if not line.strip() or peeked > LINE_MODE_PEEK_BYTES:
                break
        per_line = sum(1 for _, line in head if line.strip()) > 1 and all(
            line.strip() for _, line in head
        )
        stream = itertools.chain(head, lines)
        yield from _lines_as_documents(stream) if per_line else _blocks_as_documents(stream)
    except UnicodeDecodeError as exc:
        raise DatasetError(
            f"The text file is not valid UTF-8 (near line {line_no + 1}).",
            hint="Re-save the file as UTF-8.",
        ) from exc


def _lines_as_documents(lines: Iterator[tuple[int, str]]) -> Iterator[RawRow]:
    index = 0
    rest_of_long_line = False  # ``readline`` hands an over-long line out in pieces
    for number, line in lines:
        if rest_of_long_line:
            rest_of_long_line = not line.endswith("\n")
            continue
        if not line.strip():
            continue
        if len(line) > MAX_LINE_BYTES:
            rest_of_long_line = not line.endswith("\n")
            yield RawRow(index, f"line {number}", None, f"is longer than {MAX_LINE_BYTES >> 20} MB")
        else:
            yield RawRow(index, f"line {number}", {"text": line.strip()})
        index += 1


def _blocks_as_documents(lines: Iterator[tuple[int, str]]) -> Iterator[RawRow]:
    block: list[str] = []
    size = start = index = 0

    def document() -> RawRow:
        location = f"line {start}"
        if size > MAX_LINE_BYTES:
            return RawRow(
                index, location, None, f"is a block longer than {MAX_LINE_BYTES >> 20} MB"
            )
        return RawRow(index, location, {"text": "".join(block).strip()})

    for number, line in lines:
        if line.strip():
            if not block and size == 0:
                start = number
            if size <= MAX_LINE_BYTES:
                block.append(line)
            size += len(line)
            continue
        if size:
            yield document()
            index += 1
            block, size = [], 0
    if size:
        yield document()


def _iter_json(handle: IO[bytes], name: str) -> Iterator[RawRow]:
    """Stream the elements of a top-level JSON array (``{"data": [...]}`` is read whole)."""
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
        text = _decode(utf8, data, name, offset)
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
        yield from _iter_json_object(buffer, handle, utf8, name)
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
            too_long = len(buffer) - pos >= MAX_LINE_BYTES
            if not too_long and read_more():
                chunk_size = min(chunk_size * 2, 1 << 22)
                continue
            problem = (
                f"is longer than {MAX_LINE_BYTES >> 20} MB"
                if too_long
                else f"is not valid JSON ({exc.msg})"
            )
            yield RawRow(
                index, f"row {index + 1}", None, f"{problem}; the rest of the file cannot be read"
            )
            return
        if end == len(buffer) and not eof:
            read_more()
            continue
        yield _element(index, value)
        index += 1
        pos = end


def _decode(utf8: codecs.IncrementalDecoder, data: bytes, name: str, offset: int) -> str:
    try:
        return utf8.decode(data, final=not data)
    except UnicodeDecodeError as exc:
        raise DatasetError(
            f"{name} is not valid UTF-8 (near byte {offset + exc.start}).",
            hint="Re-save the file as UTF-8, or export it as JSONL so only bad lines are dropped.",
        ) from exc


def _iter_json_object(
    start: str, handle: IO[bytes], utf8: codecs.IncrementalDecoder, name: str
) -> Iterator[RawRow]:
    """A top-level JSON object: ``{"data": [...]}`` yields the list's records, any other object
    is one record. It is read whole, so it is refused above ``MAX_LINE_BYTES``."""
    parts, size, offset = [start], len(start), 0
    while True:
        data = handle.read(1 << 16)
        parts.append(_decode(utf8, data, name, offset))
        offset += len(data)
        size += len(parts[-1])
        if not data:
            break
        if size > MAX_LINE_BYTES:
            raise DatasetError(
                f"{name} is a single JSON object larger than {MAX_LINE_BYTES >> 20} MB.",
                hint="Save the records as a JSON array ([{...}, {...}]) or as JSON Lines (.jsonl), "
                "which are read record by record.",
            )
    data_, error, _ = _parse_json_object("".join(parts))
    if error:
        raise DatasetError(f"{name} {error}.", hint="Check the file is complete JSON.")
    assert data_ is not None
    lists = [v for v in data_.values() if isinstance(v, list) and v and isinstance(v[0], dict)]
    records = lists[0] if len(lists) == 1 else [data_]
    for index, record in enumerate(records):
        yield _element(index, record)


def _element(index: int, value: Any) -> RawRow:
    location = f"row {index + 1}"
    if not isinstance(value, dict):
        return RawRow(
            index, location, None, f"is a JSON {type(value).__name__}, expected an object"
        )
    return RawRow(index, location, value)


class _LineTooLong(Exception):
    """A physical line of a CSV file is longer than ``MAX_LINE_BYTES`` (it was skipped)."""


class _BoundedLines:
    """The lines of a text stream, each read with a bound; an over-long line is skipped to its
    end and reported by raising ``_LineTooLong`` (iteration can go on after it)."""

    def __init__(self, text: IO[str]) -> None:
        self._text = text

    def __iter__(self) -> _BoundedLines:
        return self

    def __next__(self) -> str:
        line = self._text.readline(MAX_LINE_BYTES + 1)
        if not line:
            raise StopIteration
        if len(line) > MAX_LINE_BYTES and not line.endswith(("\n", "\r")):
            while True:
                more = self._text.readline(MAX_LINE_BYTES)
                if not more or more.endswith(("\n", "\r")):
                    break
            raise _LineTooLong
        return line


def _iter_csv(handle: IO[bytes], delimiter: str, name: str) -> Iterator[RawRow]:
    csv.field_size_limit(MAX_LINE_BYTES)
    text = io.TextIOWrapper(handle, encoding="utf-8-sig", errors="surrogateescape", newline="")
    reader = csv.DictReader(_BoundedLines(text), delimiter=delimiter)
    try:
        reader.fieldnames  # noqa: B018 -- reads the header
    except _LineTooLong:
        raise DatasetError(
            f"The first line of {name} is longer than {MAX_LINE_BYTES >> 20} MB.",
            hint="A CSV file starts with a short header line of column names; "
            "export long texts as JSONL instead.",
        ) from None
    index = 0
    while True:
        location = f"row {index + 1}"
        try:
            record = next(reader)
        except StopIteration:
            return
        except _LineTooLong:
            yield RawRow(index, location, None, f"is longer than {MAX_LINE_BYTES >> 20} MB")
            index += 1
            continue
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
