"""Import a source as a processed dataset: normalise, validate, split and save it.

Everything is written to a staging folder first and renamed into place when complete.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from garden.config import Settings, get_settings
from garden.data.catalog import DatasetRecord, check_name, save_record
from garden.data.formats import KIND_BY_FORMAT, Detection
from garden.data.limits import check_free_space, writing
from garden.data.report import IssueLog
from garden.data.scan import (
    Progress,
    ReadOptions,
    detect_source,
    load_tokenizer,
    open_source,
    row_hash,
    sample_lengths,
    say,
    scan_rows,
)
from garden.data.sources import Source, resolve_source
from garden.data.tokens import token_stats
from garden.data.uploads import save_upload
from garden.errors import DatasetError
from garden.store import new_id, now


def import_dataset(
    source: str | Path,
    name: str,
    options: ReadOptions | None = None,
    *,
    eval_fraction: float = 0.1,
    seed: int = 42,
    drop_invalid: bool = False,
    settings: Settings | None = None,
    progress: Progress | None = None,
) -> DatasetRecord:
    """Normalise, validate and split a source into ``processed/<id>/{train,eval}.jsonl``.

    Rows that cannot be used make the import fail (listing them) unless ``drop_invalid``.
    Files are first copied into ``datasets/raw`` under a sanitised name that never overwrites.
    """
    settings = settings or get_settings()
    settings.ensure_storage()
    options = options or ReadOptions()
    name = check_name(name, settings)
    if not 0.0 <= eval_fraction <= 0.5:
        raise DatasetError(
            f"The eval fraction {eval_fraction} is out of range.",
            hint="Use a value from 0 (no eval split) to 0.5; 0.1 is typical.",
        )
    src = open_source(source, options, settings, progress)
    raw_path: Path | None = None
    copied = False
    if src.kind == "file" and src.path is not None:
        raw_dir = settings.raw_datasets_path.resolve()
        if raw_dir in src.path.parents:
            raw_path = src.path
        else:
            say(progress, 0.01, "Saving a copy of the file…")
            raw_path = save_upload(src.path, settings)
            copied = True
    _remove_stale_staging(settings)
    dataset_id = new_id("ds")
    staging = settings.temp_path / f"import-{dataset_id}"
    try:
        if copied and raw_path is not None:
            src = resolve_source(raw_path, settings)
        detection, _ = detect_source(src, options.mapping)
        check_free_space(settings.temp_path, processed_size_estimate(src), "the processed dataset")
        staging.mkdir(parents=True)
        with writing(settings.temp_path, "the processed dataset"):
            record = _write_dataset(
                src, detection, options, staging, dataset_id, name,
                eval_fraction=eval_fraction, seed=seed, drop_invalid=drop_invalid,
                settings=settings, progress=progress, raw_path=raw_path,
            )  # fmt: skip
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if copied and raw_path is not None:
            raw_path.unlink(missing_ok=True)
        raise
    return record


def processed_size_estimate(src: Source) -> int:
    """Bytes the processed files of ``src`` may take: twice its (decompressed) size, as the
    normalised rows repeat role names and keys; a Parquet file expands about four times. A hub
    dataset may stream up to its ``max_bytes``, so that bound is planned for."""
    if src.path is None:
        return 2 * (src.max_bytes or 0)
    size = src.path.stat().st_size
    if src.compressed:
        with src.path.open("rb") as handle:  # gzip records the size (mod 4 GiB) at its end
            handle.seek(-4, os.SEEK_END)
            size = max(size, int.from_bytes(handle.read(4), "little"))
        if src.max_bytes is not None:
            size = min(size, src.max_bytes)
    return size * (4 if src.file_type == "parquet" else 2)


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
    options: ReadOptions,
    staging: Path,
    dataset_id: str,
    name: str,
    *,
    eval_fraction: float,
    seed: int,
    drop_invalid: bool,
    settings: Settings,
    progress: Progress | None,
    raw_path: Path | None,
) -> DatasetRecord:
    extra = IssueLog()
    tokenizer = load_tokenizer(options, detection, settings, extra, progress)
    counts = {"train": 0, "eval": 0}
    first_train: list[tuple[float, int]] = []  # (hash, line in train.jsonl) of the lowest hash

    with (
        (staging / "train.jsonl").open("w", encoding="utf-8") as train,
        (staging / "eval.jsonl").open("w", encoding="utf-8") as evals,
    ):

        def write(index: int, sample: dict[str, Any]) -> None:
            line = json.dumps(sample, ensure_ascii=False) + "\n"
            value = row_hash(seed, index)
            if eval_fraction > 0 and value < eval_fraction:
                evals.write(line)
                counts["eval"] += 1
                return
            if not first_train or value < first_train[0][0]:
                first_train[:] = [(value, counts["train"])]
            train.write(line)
            counts["train"] += 1

        say(progress, 0.03, f"Detected {detection.format}; writing rows…")
        scan = scan_rows(
            src, detection, options, tokenizer=tokenizer, progress=progress, verb="Imported",
            on_sample=write,
        )  # fmt: skip
    if scan.errors.total and not drop_invalid:
        examples = "; ".join(str(issue) for issue in scan.errors.items[:3])
        raise DatasetError(
            f"{scan.errors.total} of {scan.rows} rows cannot be used ({examples}) "
            f"in {src.path.name if src.path is not None and src.kind == 'file' else src.label}.",
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
    say(progress, 0.95, "Counting tokens…")
    lengths = sample_lengths(tokenizer, scan.reservoir)
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
        kind=KIND_BY_FORMAT.get(detection.format, "chat"),
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
    save_record(record, settings)
    say(
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
