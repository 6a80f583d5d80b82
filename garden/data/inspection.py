"""Inspect a source: detect, validate and summarise it without saving anything."""

from __future__ import annotations

from pathlib import Path

from garden.config import Settings, get_settings
from garden.data.formats import KIND_BY_FORMAT
from garden.data.report import InspectReport, IssueLog
from garden.data.scan import (
    Progress,
    ReadOptions,
    detect_source,
    load_tokenizer,
    open_source,
    sample_lengths,
    say,
    scan_rows,
)
from garden.data.tokens import render, token_stats


def inspect_source(
    source: str | Path,
    options: ReadOptions | None = None,
    *,
    settings: Settings | None = None,
    progress: Progress | None = None,
    rendered_samples: int = 10,
) -> InspectReport:
    """Detect, validate and summarise a source without saving anything.

    Raises ``DatasetError`` when the source cannot be read at all (missing, empty, binary,
    too large, hub unreachable, unknown format); row problems go into the report instead.
    The first ``rendered_samples`` samples are rendered with the model's chat template.
    """
    settings = settings or get_settings()
    options = options or ReadOptions()
    src = open_source(source, options, settings, progress)
    detection, columns = detect_source(src, options.mapping)
    warnings = IssueLog()
    tokenizer = load_tokenizer(options, detection, settings, warnings, progress)
    say(progress, 0.05, f"Detected {detection.format}; validating every row…")
    scan = scan_rows(
        src, detection, options, tokenizer=tokenizer, progress=progress, verb="Checked"
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
        kind=KIND_BY_FORMAT.get(detection.format, "chat"),
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
        token_stats=token_stats(
            lengths,
            scan.valid,
            options.max_seq_len,
            chunked=KIND_BY_FORMAT.get(detection.format, "chat") == "text",
        ),
        token_lengths=lengths,
        max_seq_len=options.max_seq_len,
        raw_preview=scan.raw_preview,
        samples=scan.samples,
        rendered=rendered,
        reasoning_rows=scan.reasoning,
        reasoning=options.reasoning,
    )
