"""Inspect a source: detect, validate and summarise it without saving anything."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from garden.config import Settings, get_settings
from garden.data.report import InspectReport, IssueLog
from garden.data.scan import (
    Progress,
    check_max_seq_len,
    detect_source,
    sample_lengths,
    say,
    scan_rows,
    tokenizer_or_warning,
)
from garden.data.sources import resolve_source
from garden.data.tokens import render, token_stats


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
    rendered_samples: int = 10,
) -> InspectReport:
    """Detect, validate and summarise a source without saving anything.

    The first ``rendered_samples`` samples of the preview are rendered with the chat template.

    Raises ``DatasetError`` when the source cannot be read at all (missing, empty, binary,
    too large, hub unreachable, unknown format); row problems go into the report instead.
    """
    settings = settings or get_settings()
    check_max_seq_len(max_seq_len)
    say(progress, 0.0, "Reading the source…")
    src = resolve_source(source, settings, split=split, subset=subset)
    detection, columns = detect_source(src, mapping)
    warnings = IssueLog()
    say(progress, 0.02, f"Detected {detection.format}; loading the tokenizer…")
    tokenizer = tokenizer_or_warning(model, settings, warnings, required=max_seq_len is not None)
    say(progress, 0.05, f"Detected {detection.format}; validating every row…")
    scan = scan_rows(
        src,
        detection,
        allow_mixed=mapping is None,
        max_seq_len=max_seq_len,
        tokenizer=tokenizer,
        progress=progress,
        verb="Checked",
    )
    say(progress, 0.9, "Counting tokens…")
    lengths = sample_lengths(tokenizer, scan.reservoir)
    shown = scan.samples[:rendered_samples]
    rendered = [render(tokenizer, s) for s in shown] if tokenizer is not None else []
    for issue in warnings.items:
        scan.warnings.add(issue.kind, issue.message, issue.location)
    say(progress, 1.0, "Done")
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
