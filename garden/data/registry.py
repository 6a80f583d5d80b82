"""Inspect a source, import it as a processed dataset, and find, list or delete datasets.

Both inspection and import stream the source once, row by row: memory stays bounded by the
preview, a token-length reservoir sample and the duplicate index, whatever the file size.
The train/eval split is decided per row by a hash of ``(seed, row index)``, so it is
deterministic and does not depend on buffering or on which other rows were dropped.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from garden.config import Settings, get_settings
from garden.data.formats import (
    CHAT_FORMATS,
    Detection,
    RowError,
    complete_mapping,
    detect_format,
    normalise,
    row_mapping,
)
from garden.data.sources import RawRow, RowReader, Source, resolve_source, save_upload
from garden.data.tokens import byte_bound, count_tokens, get_tokenizer, render, token_stats
from garden.errors import DatasetError, GardenError
from garden.store import get_store, new_id, now

Progress = Callable[[float, str], None]

DETECT_ROWS = 500
PREVIEW_ROWS = 50
RESERVOIR_SIZE = 1000
DUPLICATE_INDEX_LIMIT = 1_000_000
ISSUES_KEPT_PER_KIND = 50
LENGTH_BATCH = 64
PROGRESS_EVERY = 2000
LONG_SAMPLE_BYTES = 32 * 1024
PREVIEW_CHARS = 20_000


@dataclass
class Issue:
    """One problem or warning: where (``line 7``), what kind, and what it says."""

    kind: str
    message: str
    location: str | None = None

    def __str__(self) -> str:
        return f"{self.location}: {self.message}" if self.location else self.message


@dataclass
class IssueLog:
    """Counts every issue by kind; keeps the first few of each kind with their locations."""

    items: list[Issue] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)

    def add(self, kind: str, message: str, location: str | None = None) -> None:
        self.counts[kind] += 1
        if self.counts[kind] <= ISSUES_KEPT_PER_KIND:
            self.items.append(Issue(kind, message, location))

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass
class InspectReport:
    """What a source holds and what is wrong with it."""

    source: str
    source_kind: str
    file_type: str | None
    format: str
    confidence: float
    mapping: dict[str, Any]
    detection: str
    candidates: list[dict[str, Any]]
    columns: list[str]
    rows: int
    valid_rows: int
    invalid_rows: int
    errors: list[Issue]
    warnings: list[Issue]
    error_counts: dict[str, int]
    warning_counts: dict[str, int]
    token_stats: dict[str, Any]
    token_lengths: list[int]
    max_seq_len: int | None
    raw_preview: list[dict[str, Any]]
    samples: list[dict[str, Any]]
    rendered: list[str]

    @property
    def usable(self) -> bool:
        return self.valid_rows > 0

    @property
    def problem(self) -> str | None:
        if self.valid_rows == 0:
            first = f" First problem: {self.errors[0]}." if self.errors else ""
            return f"None of the {self.rows} rows can be used.{first}"
        return None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["usable"] = self.usable
        data["problem"] = self.problem
        return data


@dataclass
class DatasetRecord:
    """A processed dataset: ``train.jsonl`` and ``eval.jsonl`` under ``path``."""

    id: str
    name: str
    source: str
    format: str
    mapping: dict[str, Any]
    rows: int
    train_rows: int
    eval_rows: int
    eval_fraction: float
    seed: int
    token_stats: dict[str, Any]
    path: str
    created_at: float
    raw_path: str | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def train_path(self) -> Path:
        return Path(self.path) / "train.jsonl"

    @property
    def eval_path(self) -> Path:
        return Path(self.path) / "eval.jsonl"

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> DatasetRecord:
        return cls(
            id=row["id"],
            name=row["name"],
            source=row["source"],
            format=row["format"],
            mapping=row.get("mapping_json") or {},
            rows=row["rows"],
            train_rows=row["train_rows"],
            eval_rows=row["eval_rows"],
            eval_fraction=row["eval_fraction"],
            seed=row["seed"],
            token_stats=row.get("token_stats_json") or {},
            path=row["path"],
            created_at=row["created_at"],
            raw_path=row.get("raw_path"),
            warnings=row.get("warnings_json") or [],
        )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["train_path"] = str(self.train_path)
        data["eval_path"] = str(self.eval_path)
        return data


# scanning ----------------------------------------------------------------------------


def _say(progress: Progress | None, fraction: float, message: str) -> None:
    if progress is not None:
        progress(max(0.0, min(1.0, fraction)), message)


def is_eval_row(seed: int, index: int, eval_fraction: float) -> bool:
    """Whether row ``index`` goes to the eval split: a pure function of seed and index."""
    return eval_fraction > 0 and _row_hash(seed, index) < eval_fraction


def _row_hash(seed: int, index: int) -> float:
    digest = hashlib.blake2b(f"{seed}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


@dataclass
class _Scan:
    rows: int = 0
    valid: int = 0
    errors: IssueLog = field(default_factory=IssueLog)
    warnings: IssueLog = field(default_factory=IssueLog)
    raw_preview: list[dict[str, Any]] = field(default_factory=list)
    samples: list[dict[str, Any]] = field(default_factory=list)
    reservoir: list[dict[str, Any] | int] = field(default_factory=list)


def _detect(source: Source, mapping: dict[str, Any] | None) -> tuple[Detection, list[str]]:
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
        raise DatasetError(
            f"{source.label} holds no rows (only blank lines or an empty list).",
            hint="Check the export: the file should hold one record per line or a list of records.",
        )
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


def _scan(
    source: Source,
    detection: Detection,
    *,
    allow_mixed: bool,
    max_seq_len: int | None,
    tokenizer: Any,
    progress: Progress | None,
    verb: str,
    on_sample: Callable[[int, dict[str, Any]], None] | None = None,
) -> _Scan:
    scan = _Scan()
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
                    "(training truncates it)",
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
            _say(progress, reader.fraction or 0.0, f"{verb} {scan.rows:,} rows…")
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
        for note in notes:
            scan.warnings.add("converted", note, row.location)
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
        raise DatasetError(
            f"{source.label} holds no rows (only blank lines or an empty list).",
            hint="Check the export: the file should hold one record per line or a list of records.",
        )
    return scan


def _tokenizer_or_warning(
    model: str | None, settings: Settings, warnings: IssueLog, required: bool
) -> Any:
    try:
        return get_tokenizer(model, settings)
    except GardenError as exc:
        if required:
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


def _lengths(tokenizer: Any, reservoir: list[dict[str, Any] | int]) -> list[int]:
    if tokenizer is None:
        return []
    samples = [entry for entry in reservoir if isinstance(entry, dict)]
    counted = [entry for entry in reservoir if isinstance(entry, int)]
    return counted + count_tokens(tokenizer, samples)


def inspect_source(
    source: str | Path,
    *,
    mapping: dict[str, Any] | None = None,
    max_seq_len: int | None = None,
    model: str | None = None,
    split: str | None = None,
    subset: str | None = None,
    settings: Settings | None = None,
    progress: Progress | None = None,
) -> InspectReport:
    """Detect, validate and summarise a source without saving anything.

    Raises ``DatasetError`` when the source cannot be read at all (missing, empty, binary,
    too large, hub unreachable, unknown format); row problems go into the report instead.
    """
    settings = settings or get_settings()
    _check_max_seq_len(max_seq_len)
    _say(progress, 0.0, "Reading the source…")
    src = resolve_source(source, settings, split=split, subset=subset)
    detection, columns = _detect(src, mapping)
    warnings = IssueLog()
    _say(progress, 0.02, f"Detected {detection.format}; loading the tokenizer…")
    tokenizer = _tokenizer_or_warning(model, settings, warnings, required=max_seq_len is not None)
    _say(progress, 0.05, f"Detected {detection.format}; validating every row…")
    scan = _scan(
        src,
        detection,
        allow_mixed=mapping is None,
        max_seq_len=max_seq_len,
        tokenizer=tokenizer,
        progress=progress,
        verb="Checked",
    )
    _say(progress, 0.9, "Counting tokens…")
    lengths = _lengths(tokenizer, scan.reservoir)
    rendered = [render(tokenizer, s) for s in scan.samples[:10]] if tokenizer is not None else []
    for issue in warnings.items:
        scan.warnings.add(issue.kind, issue.message, issue.location)
    _say(progress, 1.0, "Done")
    return InspectReport(
        source=src.label,
        source_kind=src.kind,
        file_type=src.file_type,
        format=detection.format,
        confidence=detection.confidence,
        mapping=detection.mapping,
        detection=detection.reason,
        candidates=detection.candidates,
        columns=columns,
        rows=scan.rows,
        valid_rows=scan.valid,
        invalid_rows=scan.rows - scan.valid,
        errors=scan.errors.items,
        warnings=scan.warnings.items,
        error_counts=dict(scan.errors.counts),
        warning_counts=dict(scan.warnings.counts),
        token_stats=token_stats(lengths, scan.valid),
        token_lengths=lengths,
        max_seq_len=max_seq_len,
        raw_preview=scan.raw_preview,
        samples=scan.samples,
        rendered=rendered,
    )


def _check_max_seq_len(max_seq_len: int | None) -> None:
    if max_seq_len is not None and max_seq_len < 16:
        raise DatasetError(
            f"The max sequence length {max_seq_len} is too small.",
            hint="Use at least 16 tokens (typical values: 512-4096).",
        )


def _check_name(name: str, settings: Settings) -> str:
    name = " ".join(str(name or "").split())
    if not name:
        raise DatasetError(
            "The dataset needs a name.", hint="Type a short name, e.g. garden-facts."
        )
    if len(name) > 100:
        raise DatasetError("The dataset name is longer than 100 characters.", hint="Shorten it.")
    if get_store(settings.db_path).list("datasets", where={"name": name}, limit=1):
        raise DatasetError(
            f"A dataset named {name!r} already exists.",
            hint="Choose another name, or delete the existing dataset first.",
        )
    return name


def import_dataset(
    source: str | Path,
    name: str,
    *,
    eval_fraction: float = 0.1,
    seed: int = 42,
    mapping: dict[str, Any] | None = None,
    drop_invalid: bool = False,
    max_seq_len: int | None = None,
    model: str | None = None,
    split: str | None = None,
    subset: str | None = None,
    settings: Settings | None = None,
    progress: Progress | None = None,
) -> DatasetRecord:
    """Normalise, validate and split a source into ``processed/<id>/{train,eval}.jsonl``.

    Rows that cannot be used make the import fail (listing them) unless ``drop_invalid``.
    Files are first copied into ``datasets/raw`` under a sanitised name that never overwrites.
    """
    settings = settings or get_settings()
    settings.ensure_storage()
    name = _check_name(name, settings)
    if not 0.0 <= eval_fraction <= 0.5:
        raise DatasetError(
            f"The eval fraction {eval_fraction} is out of range.",
            hint="Use a value from 0 (no eval split) to 0.5; 0.1 is typical.",
        )
    _check_max_seq_len(max_seq_len)
    _say(progress, 0.0, "Reading the source…")
    src = resolve_source(source, settings, split=split, subset=subset)
    raw_path: Path | None = None
    copied = False
    if src.kind == "file" and src.path is not None:
        raw_dir = settings.raw_datasets_path.resolve()
        if raw_dir in src.path.parents:
            raw_path = src.path
        else:
            _say(progress, 0.01, "Saving a copy of the file…")
            raw_path = save_upload(src.path, settings)
            copied = True
    _remove_stale_staging(settings)
    dataset_id = new_id("ds")
    staging = settings.temp_path / f"import-{dataset_id}"
    try:
        if copied and raw_path is not None:
            src = resolve_source(raw_path, settings)
        detection, _ = _detect(src, mapping)
        staging.mkdir(parents=True)
        record = _write_dataset(
            src, detection, staging, dataset_id, name,
            eval_fraction=eval_fraction, seed=seed, allow_mixed=mapping is None,
            drop_invalid=drop_invalid, max_seq_len=max_seq_len, model=model,
            settings=settings, progress=progress, raw_path=raw_path,
        )  # fmt: skip
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if copied and raw_path is not None:
            raw_path.unlink(missing_ok=True)
        raise
    return record


def _remove_stale_staging(settings: Settings, max_age_s: float = 6 * 3600) -> None:
    """Staging folders left by imports that were killed (never ones that may still run)."""
    for folder in settings.temp_path.glob("import-ds-*"):
        try:
            if now() - folder.stat().st_mtime > max_age_s:
                shutil.rmtree(folder, ignore_errors=True)
        except OSError:
            continue


def _write_dataset(
    src: Source,
    detection: Detection,
    staging: Path,
    dataset_id: str,
    name: str,
    *,
    eval_fraction: float,
    seed: int,
    allow_mixed: bool,
    drop_invalid: bool,
    max_seq_len: int | None,
    model: str | None,
    settings: Settings,
    progress: Progress | None,
    raw_path: Path | None,
) -> DatasetRecord:
    extra = IssueLog()
    _say(progress, 0.02, f"Detected {detection.format}; loading the tokenizer…")
    tokenizer = _tokenizer_or_warning(model, settings, extra, required=max_seq_len is not None)
    counts = {"train": 0, "eval": 0}
    first_train: list[tuple[float, int]] = []  # (hash, line in train.jsonl) of the lowest hash

    with (
        (staging / "train.jsonl").open("w", encoding="utf-8") as train,
        (staging / "eval.jsonl").open("w", encoding="utf-8") as evals,
    ):

        def write(index: int, sample: dict[str, Any]) -> None:
            line = json.dumps(sample, ensure_ascii=False) + "\n"
            value = _row_hash(seed, index)
            if eval_fraction > 0 and value < eval_fraction:
                evals.write(line)
                counts["eval"] += 1
                return
            if not first_train or value < first_train[0][0]:
                first_train[:] = [(value, counts["train"])]
            train.write(line)
            counts["train"] += 1

        _say(progress, 0.03, f"Detected {detection.format}; writing rows…")
        scan = _scan(
            src, detection, allow_mixed=allow_mixed, max_seq_len=max_seq_len,
            tokenizer=tokenizer, progress=progress, verb="Imported", on_sample=write,
        )  # fmt: skip
    if scan.errors.total and not drop_invalid:
        examples = "; ".join(str(issue) for issue in scan.errors.items[:3])
        raise DatasetError(
            f"{scan.errors.total} of {scan.rows} rows cannot be used ({examples}).",
            hint="Fix those rows, or import with 'drop invalid rows' (CLI: --drop-invalid) to "
            "skip them. `model-garden data inspect` lists every problem.",
        )
    if scan.valid == 0:
        raise DatasetError(f"None of the {scan.rows} rows can be used.", hint="Check the mapping.")
    if eval_fraction > 0 and counts["eval"] == 0 and counts["train"] >= 2:
        _move_to_eval(staging, first_train[0][1])
        counts["train"] -= 1
        counts["eval"] += 1
    if counts["train"] == 0:
        raise DatasetError(
            "Every row went to the eval split; nothing is left to train on.",
            hint="Lower the eval fraction, or add rows.",
        )
    _say(progress, 0.95, "Counting tokens…")
    lengths = _lengths(tokenizer, scan.reservoir)
    for issue in extra.items:
        scan.warnings.add(issue.kind, issue.message, issue.location)
    warnings = [str(issue) for issue in scan.warnings.items[:100]]
    if scan.errors.total:
        warnings.insert(0, f"{scan.errors.total} invalid rows were dropped")
    final = settings.processed_datasets_path / dataset_id
    record = DatasetRecord(
        id=dataset_id,
        name=name,
        source=src.label if src.kind != "file" or raw_path is None else str(raw_path),
        format=detection.format,
        mapping=detection.mapping,
        rows=scan.valid,
        train_rows=counts["train"],
        eval_rows=counts["eval"],
        eval_fraction=eval_fraction,
        seed=seed,
        token_stats=token_stats(lengths, scan.valid),
        path=str(final),
        created_at=now(),
        raw_path=str(raw_path) if raw_path else None,
        warnings=warnings,
    )
    meta = record.to_dict() | {
        "source_rows": scan.rows,
        "dropped_rows": scan.rows - scan.valid,
        "confidence": detection.confidence,
        "detection": detection.reason,
    }
    (staging / "meta.json").write_text(json.dumps(meta, indent=2, default=str), encoding="utf-8")
    settings.processed_datasets_path.mkdir(parents=True, exist_ok=True)
    staging.rename(final)
    get_store(settings.db_path).insert(
        "datasets",
        {
            "id": record.id,
            "name": record.name,
            "source": record.source,
            "format": record.format,
            "mapping_json": record.mapping,
            "rows": record.rows,
            "train_rows": record.train_rows,
            "eval_rows": record.eval_rows,
            "eval_fraction": record.eval_fraction,
            "seed": record.seed,
            "token_stats_json": record.token_stats,
            "warnings_json": record.warnings,
            "path": record.path,
            "raw_path": record.raw_path,
            "created_at": record.created_at,
        },
    )
    _say(
        progress,
        1.0,
        f"Saved {record.name}: {record.train_rows} train, {record.eval_rows} eval rows",
    )
    return record


def _move_to_eval(staging: Path, train_line: int) -> None:
    """Guarantee one eval row for small datasets: move the train row with the lowest hash."""
    source = staging / "train.jsonl"
    rewritten = staging / "train.jsonl.tmp"
    with (
        source.open(encoding="utf-8") as src,
        rewritten.open("w", encoding="utf-8") as dst,
        (staging / "eval.jsonl").open("a", encoding="utf-8") as evals,
    ):
        for number, line in enumerate(src):
            (evals if number == train_line else dst).write(line)
    rewritten.replace(source)


# registry ----------------------------------------------------------------------------


def get_dataset(id_or_name: str, settings: Settings | None = None) -> DatasetRecord:
    settings = settings or get_settings()
    store = get_store(settings.db_path)
    key = str(id_or_name).strip()
    row = store.get("datasets", key)
    if row is None:
        rows = store.list("datasets", where={"name": key}, limit=1)
        row = rows[0] if rows else None
    if row is None:
        raise DatasetError(
            f"There is no dataset {key!r}.",
            hint="Import one first (Data tab or `model-garden data import`); "
            "`model-garden data list` shows what exists.",
        )
    return DatasetRecord.from_row(row)


def list_datasets(settings: Settings | None = None) -> list[DatasetRecord]:
    """Every imported dataset, newest first."""
    settings = settings or get_settings()
    rows = get_store(settings.db_path).list("datasets", order_by="created_at DESC")
    return [DatasetRecord.from_row(row) for row in rows]


def dataset_choices(settings: Settings | None = None) -> list[tuple[str, str]]:
    """``(label, id)`` pairs for a dropdown, newest first."""
    return [
        (f"{d.name} — {d.rows:,} rows, {d.format} ({d.id})", d.id) for d in list_datasets(settings)
    ]


def delete_dataset(id_or_name: str, settings: Settings | None = None) -> DatasetRecord:
    """Remove a processed dataset (its files, its raw copy and its store row)."""
    settings = settings or get_settings()
    record = get_dataset(id_or_name, settings)
    store = get_store(settings.db_path)
    folder = Path(record.path).resolve()
    if settings.processed_datasets_path.resolve() in folder.parents:
        shutil.rmtree(folder, ignore_errors=True)
    if record.raw_path:
        raw = Path(record.raw_path).resolve()
        shared = store.query(
            "SELECT COUNT(*) AS n FROM datasets WHERE raw_path = ? AND id != ?",
            (record.raw_path, record.id),
        )[0]["n"]
        if not shared and settings.raw_datasets_path.resolve() in raw.parents:
            raw.unlink(missing_ok=True)
    store.delete("datasets", record.id)
    return record


def read_rows(
    id_or_name: str,
    split: str = "train",
    offset: int = 0,
    limit: int = 10,
    settings: Settings | None = None,
) -> list[dict[str, Any]]:
    """A page of a processed dataset's rows (streamed, so any offset is cheap in memory)."""
    record = get_dataset(id_or_name, settings)
    path = record.eval_path if split == "eval" else record.train_path
    out: list[dict[str, Any]] = []
    if not path.is_file():
        return out
    handle: IO[str]
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle):
            if number < offset:
                continue
            if len(out) >= limit:
                break
            out.append(json.loads(line))
    return out


def render_samples(
    samples: list[dict[str, Any]], model: str | None = None, settings: Settings | None = None
) -> list[str]:
    """Samples rendered through ``model``'s chat template, as training will see them."""
    tokenizer = get_tokenizer(model, settings or get_settings())
    return [render(tokenizer, sample) for sample in samples]
