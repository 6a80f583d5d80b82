"""One streaming pass over a source: detect its format, validate and normalise every row.

Memory stays bounded by the preview, a token-length reservoir sample and the duplicate index,
whatever the file size. The train/eval split is decided per row by a hash of
``(seed, row index)``, so it is deterministic and does not depend on which rows were dropped.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from garden.config import Settings
from garden.data.formats import (
    CHAT_FORMATS,
    KIND_BY_FORMAT,
    Detection,
    RowError,
    complete_mapping,
    detect_format,
    normalise,
    row_mapping,
)
from garden.data.media import MEDIA_WARNING, find_media
from garden.data.readers import RowReader
from garden.data.reasoning import REASONING_MODES, ReasoningMode, settle_reasoning
from garden.data.report import IssueLog
from garden.data.sources import RawRow, Source, resolve_source
from garden.data.tokens import byte_bound, count_tokens, get_tokenizer
from garden.errors import DatasetError, GardenError

Progress = Callable[[float, str], None]

DETECT_ROWS = 500
PREVIEW_ROWS = 50
RESERVOIR_SIZE = 1000
DUPLICATE_INDEX_LIMIT = 1_000_000
LENGTH_BATCH = 64
PROGRESS_EVERY = 2000
LONG_SAMPLE_BYTES = 32 * 1024
PREVIEW_CHARS = 20_000


def say(progress: Progress | None, fraction: float, message: str) -> None:
    if progress is not None:
        progress(max(0.0, min(1.0, fraction)), message)


@dataclass(frozen=True)
class ReadOptions:
    """How to read a source: a mapping that overrides detection, the sequence length above
    which rows are flagged, the model whose tokenizer counts tokens, a hub split and subset,
    and whether the answers' reasoning traces are kept (trained on) or dropped."""

    mapping: dict[str, Any] | None = None
    max_seq_len: int | None = None
    model: str | None = None
    split: str | None = None
    subset: str | None = None
    reasoning: ReasoningMode = "keep"


def open_source(
    source: str | Path, options: ReadOptions, settings: Settings, progress: Progress | None
) -> Source:
    """Check the options and resolve the source, before any row is read."""
    check_max_seq_len(options.max_seq_len)
    if options.reasoning not in REASONING_MODES:
        raise DatasetError(
            f"Unknown reasoning option {options.reasoning!r}.",
            hint="Use keep (train on the reasoning traces) or drop (remove them).",
        )
    say(progress, 0.0, "Reading the source…")
    return resolve_source(source, settings, split=options.split, subset=options.subset)


def is_eval_row(seed: int, index: int, eval_fraction: float) -> bool:
    """Whether row ``index`` goes to the eval split: a pure function of seed and index."""
    return eval_fraction > 0 and row_hash(seed, index) < eval_fraction


def row_hash(seed: int, index: int) -> float:
    digest = hashlib.blake2b(f"{seed}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


@dataclass
class Scan:
    rows: int = 0
    valid: int = 0
    reasoning: int = 0  # usable rows that carry reasoning (before any drop)
    errors: IssueLog = field(default_factory=IssueLog)
    warnings: IssueLog = field(default_factory=IssueLog)
    raw_preview: list[dict[str, Any]] = field(default_factory=list)
    samples: list[dict[str, Any]] = field(default_factory=list)
    reservoir: list[dict[str, Any] | int] = field(default_factory=list)


def detect_source(source: Source, mapping: dict[str, Any] | None) -> tuple[Detection, list[str]]:
    sample: list[dict[str, Any]] = []
    first_error: RawRow | None = None
    for row in RowReader(source):
        if row.data is not None:
            sample.append(row.data)
        elif first_error is None:
            first_error = row
        if len(sample) >= DETECT_ROWS or row.index >= DETECT_ROWS * 4:
            break
    columns = sorted({key for row in sample for key in row})
    if not sample and first_error is None:
        raise _no_rows(source)
    if not sample:
        detail = f" ({first_error.location} {first_error.error})" if first_error else ""
        raise DatasetError(
            f"No row of {source.label} could be read{detail}.",
            hint="Check that the file is JSONL/JSON/CSV/Parquet text in UTF-8.",
        )
    if mapping:
        full = complete_mapping(mapping, columns)
        return Detection(full["format"], full, 1.0, [], "mapping set by you"), columns
    return detect_format(sample), columns


def scan_rows(
    source: Source,
    detection: Detection,
    options: ReadOptions,
    *,
    tokenizer: Any,
    progress: Progress | None,
    verb: str,
    on_sample: Callable[[int, dict[str, Any]], None] | None = None,
) -> Scan:
    """Validate and normalise every row; ``on_sample(index, sample)`` gets each usable one.

    Without a mapping override, a row in another chat format is converted with a warning.
    """
    allow_mixed, max_seq_len = options.mapping is None, options.max_seq_len
    long_rows = (
        "training splits it into chunks of that length"
        if KIND_BY_FORMAT.get(detection.format) == "text"
        else "training truncates it"
    )
    scan = Scan()
    mapping = detection.mapping
    seen: dict[int, str] = {}
    pending: list[tuple[str, dict[str, Any]]] = []
    rng = random.Random(0)
    reader = RowReader(source)

    def check_lengths() -> None:
        lengths = count_tokens(tokenizer, [sample for _, sample in pending])
        for (location, _), length in zip(pending, lengths, strict=True):
            if max_seq_len is not None and length > max_seq_len:
                scan.warnings.add(
                    "too_long",
                    f"has {length} tokens, more than the max sequence length {max_seq_len} "
                    f"({long_rows})",
                    location,
                )
        pending.clear()

    for row in reader:
        scan.rows += 1
        if len(scan.raw_preview) < PREVIEW_ROWS:
            scan.raw_preview.append(
                _shorten(row.data)
                if row.data is not None
                else {"_location": row.location, "_error": row.error}
            )
        if scan.rows % PROGRESS_EVERY == 0:
            say(progress, reader.fraction or 0.0, f"{verb} {scan.rows:,} rows…")
        if row.data is None:
            scan.errors.add("unreadable", row.error or "cannot be read", row.location)
            continue
        if row.note:
            scan.warnings.add("repaired", row.note, row.location)
        try:
            sample, notes = normalise(row.data, mapping)
        except RowError as exc:
            other = row_mapping(row.data) if allow_mixed else None
            if (
                other is None
                or other["format"] == mapping["format"]
                or other["format"] not in CHAT_FORMATS
                or mapping["format"] not in CHAT_FORMATS
            ):
                scan.errors.add("invalid", str(exc), row.location)
                continue
            try:
                sample, notes = normalise(row.data, other)
            except RowError as exc2:
                scan.errors.add("invalid", str(exc2), row.location)
                continue
            notes.append(
                f"is in {other['format']} format, not {mapping['format']}; converted anyway"
            )
        try:
            scan.reasoning += settle_reasoning(sample, options.reasoning)
        except RowError as exc:
            scan.errors.add("invalid", str(exc), row.location)
            continue
        for note in notes:
            scan.warnings.add("converted", note, row.location)
        if media := find_media(row.data):
            scan.warnings.add("multimodal", MEDIA_WARNING.format(what=media), row.location)
        key = int.from_bytes(
            hashlib.blake2b(json.dumps(sample, sort_keys=True).encode(), digest_size=8).digest(),
            "big",
        )
        if key in seen:
            scan.warnings.add("duplicate", f"repeats {seen[key]}", row.location)
        elif len(seen) < DUPLICATE_INDEX_LIMIT:
            seen[key] = row.location
        scan.valid += 1
        if len(scan.samples) < PREVIEW_ROWS:
            scan.samples.append(_shorten(sample))
        if len(scan.reservoir) < RESERVOIR_SIZE:
            scan.reservoir.append(_reservoir_entry(tokenizer, sample))
        else:
            slot = rng.randrange(scan.valid)
            if slot < RESERVOIR_SIZE:
                scan.reservoir[slot] = _reservoir_entry(tokenizer, sample)
        if max_seq_len is not None and byte_bound(sample) > max_seq_len:
            pending.append((row.location, sample))
            if len(pending) >= LENGTH_BATCH:
                check_lengths()
        if on_sample is not None:
            on_sample(row.index, sample)
    if pending:
        check_lengths()
    if len(seen) >= DUPLICATE_INDEX_LIMIT:
        scan.warnings.add(
            "duplicate",
            f"only the first {DUPLICATE_INDEX_LIMIT:,} distinct rows were checked for duplicates",
        )
    if scan.rows == 0:
        raise _no_rows(source)
    return scan


def _no_rows(source: Source) -> DatasetError:
    return DatasetError(
        f"{source.label} holds no rows (only blank lines or an empty list).",
        hint="Check the export: the file should hold one record per line or a list of records.",
    )


def load_tokenizer(
    options: ReadOptions,
    detection: Detection,
    settings: Settings,
    warnings: IssueLog,
    progress: Progress | None,
) -> Any:
    """The tokenizer of ``options.model``, or None with a warning when it cannot be loaded
    (unless a max sequence length has to be checked with it)."""
    say(progress, 0.02, f"Detected {detection.format}; loading the tokenizer…")
    try:
        return get_tokenizer(options.model, settings)
    except GardenError as exc:
        if options.max_seq_len is not None:
            raise
        warnings.add("tokenizer", f"token statistics are unavailable: {exc}")
        return None


def _reservoir_entry(tokenizer: Any, sample: dict[str, Any]) -> dict[str, Any] | int:
    """Short samples are kept for batched counting later; long ones are counted now, so the
    reservoir holds at most ``RESERVOIR_SIZE`` x ``LONG_SAMPLE_BYTES`` of text."""
    if tokenizer is not None and byte_bound(sample) > LONG_SAMPLE_BYTES:
        return count_tokens(tokenizer, [sample])[0]
    return sample


def _shorten(value: Any, limit: int = PREVIEW_CHARS) -> Any:
    """A copy for previews, with very long strings cut (the saved data is never cut)."""
    if isinstance(value, str) and len(value) > limit:
        return f"{value[:limit]}… [{len(value) - limit:,} more characters]"
    if isinstance(value, dict):
        return {key: _shorten(item, limit) for key, item in value.items()}
    if isinstance(value, list):
        return [_shorten(item, limit) for item in value[:200]]
    return value


def sample_lengths(tokenizer: Any, reservoir: list[dict[str, Any] | int]) -> list[int]:
    if tokenizer is None:
        return []
    samples = [entry for entry in reservoir if isinstance(entry, dict)]
    counted = [entry for entry in reservoir if isinstance(entry, int)]
    return counted + count_tokens(tokenizer, samples)


def check_max_seq_len(max_seq_len: int | None) -> None:
    if max_seq_len is not None and max_seq_len < 16:
        raise DatasetError(
            f"The max sequence length {max_seq_len} is too small.",
            hint="Use at least 16 tokens (typical values: 512-4096).",
        )
