"""`model-garden data …`: inspect, import, list and delete datasets."""

from __future__ import annotations

import json
from typing import Any

import click
from rich.table import Table

from garden.cli.output import console, err_console, fail, print_json
from garden.errors import GardenError


def _mapping_option(value: str | None) -> dict[str, Any] | None:
    if not value:
        return None
    try:
        mapping = json.loads(value)
    except json.JSONDecodeError:
        mapping = dict(part.split("=", 1) for part in value.split(",") if "=" in part)
    if not isinstance(mapping, dict) or not mapping:
        raise click.BadParameter(
            'use JSON such as \'{"instruction": "question", "output": "answer"}\' '
            "or key=value pairs such as instruction=question,output=answer"
        )
    return mapping


def _progress(enabled: bool):
    if not enabled:
        return None
    last = {"message": ""}

    def report(fraction: float, message: str) -> None:
        if message != last["message"]:
            err_console.print(f"[dim]{fraction:4.0%} {message}[/]", highlight=False)
            last["message"] = message

    return report


source_argument = click.argument("source", metavar="PATH_OR_HUB_ID")
mapping_option = click.option(
    "--mapping",
    default=None,
    help='Override the detected mapping: JSON or key=value pairs, e.g. "instruction=q,output=a".',
)
split_option = click.option("--split", default=None, help="Hub split (default: train).")
subset_option = click.option("--subset", default=None, help="Hub subset / configuration.")
model_option = click.option(
    "--model", default=None, help="Tokenizer to count with (default model)."
)
seq_option = click.option(
    "--max-seq-len", type=click.IntRange(min=1), default=None, help="Flag rows longer than this."
)


@click.group()
def data() -> None:
    """Inspect, import, list and delete datasets."""


@data.command("inspect")
@source_argument
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@seq_option
@mapping_option
@model_option
@split_option
@subset_option
@click.option(
    "--preview", type=click.IntRange(min=0), default=1, show_default=True,
    help="Rendered samples to show (text output).",
)  # fmt: skip
def inspect_cmd(
    source: str,
    preview: int,
    as_json: bool,
    max_seq_len: int | None,
    mapping: str | None,
    model: str | None,
    split: str | None,
    subset: str | None,
) -> None:
    """Detect the format of a file or hub dataset and report every problem (exit 2 if unusable)."""
    from garden.data import inspect_source

    try:
        report = inspect_source(
            source,
            mapping=_mapping_option(mapping),
            max_seq_len=max_seq_len,
            model=model,
            split=split,
            subset=subset,
            progress=_progress(not as_json),
        )
    except GardenError as exc:
        fail(exc)
    if as_json:
        data_out = report.to_dict()
        data_out.pop("token_lengths")
        data_out["raw_preview"] = data_out["raw_preview"][:5]
        data_out["samples"] = data_out["samples"][:5]
        data_out["rendered"] = data_out["rendered"][:2]
        print_json(data_out)
    else:
        _print_report(report)
        for number, text in enumerate(report.rendered[:preview], 1):
            console.rule(f"sample {number} as the model sees it", style="dim")
            console.print(
                text if len(text) < 3000 else text[:3000] + " …", markup=False, highlight=False
            )
    if not report.usable:
        fail(f"{report.problem} Fix the file or the mapping (--mapping).")


def _print_report(report: Any) -> None:
    console.print(f"[bold]{report.source}[/] ({report.source_kind}, {report.file_type or 'hub'})")
    console.print(
        f"Format: [green]{report.format}[/] (confidence {report.confidence:.0%}; {report.detection})",
        highlight=False,
    )
    console.print(f"Mapping: {json.dumps(report.mapping)}", highlight=False)
    if report.columns:
        console.print(f"Fields: {', '.join(report.columns[:30])}", highlight=False)
    console.print(
        f"Rows: {report.rows:,} read, {report.valid_rows:,} usable, {report.invalid_rows:,} invalid"
    )
    for title, issues, counts, colour in (
        ("Errors", report.errors, report.error_counts, "red"),
        ("Warnings", report.warnings, report.warning_counts, "yellow"),
    ):
        if not counts:
            continue
        summary = ", ".join(f"{kind}: {n}" for kind, n in counts.items())
        console.print(f"[{colour}]{title}[/] ({summary})")
        for issue in issues[:20]:
            console.print(f"  {issue}", highlight=False, markup=False)
        if sum(counts.values()) > 20:
            console.print(f"  … and {sum(counts.values()) - min(20, len(issues)):,} more")
    stats = report.token_stats
    if stats.get("count"):
        sampled = f" (sample of {stats['count']:,} rows)" if stats["sampled"] else ""
        console.print(
            f"Tokens{sampled}: min {stats['min']}, median {stats['median']}, mean {stats['mean']}, "
            f"p95 {stats['p95']}, max {stats['max']}; ≈{stats['total_estimate']:,} in total"
        )


@data.command("import")
@source_argument
@click.option("--name", required=True, help="Name to save the dataset under.")
@click.option("--eval-fraction", type=click.FloatRange(0.0, 0.5), default=0.1, show_default=True)
@click.option(
    "--seed", type=int, default=42, show_default=True, help="Seed of the train/eval split."
)
@click.option(
    "--drop-invalid", is_flag=True, help="Skip rows that cannot be used instead of failing."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@seq_option
@mapping_option
@model_option
@split_option
@subset_option
def import_cmd(
    source: str,
    name: str,
    eval_fraction: float,
    seed: int,
    drop_invalid: bool,
    as_json: bool,
    max_seq_len: int | None,
    mapping: str | None,
    model: str | None,
    split: str | None,
    subset: str | None,
) -> None:
    """Normalise, validate and split a dataset and save it under NAME."""
    from garden.data import import_dataset

    try:
        record = import_dataset(
            source,
            name,
            eval_fraction=eval_fraction,
            seed=seed,
            mapping=_mapping_option(mapping),
            drop_invalid=drop_invalid,
            max_seq_len=max_seq_len,
            model=model,
            split=split,
            subset=subset,
            progress=_progress(not as_json),
        )
    except GardenError as exc:
        fail(exc)
    if as_json:
        print_json(record.to_dict())
        return
    console.print(
        f"Saved [green]{record.name}[/] as [bold]{record.id}[/]: {record.rows:,} rows "
        f"({record.train_rows:,} train, {record.eval_rows:,} eval), format {record.format}",
        highlight=False,
    )
    for warning in record.warnings[:10]:
        console.print(f"  [yellow]warning[/] {warning}", highlight=False)


@data.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def list_cmd(as_json: bool) -> None:
    """List imported datasets, newest first."""
    from garden.data import list_datasets

    found = list_datasets()
    if as_json:
        print_json([record.to_dict() for record in found])
        return
    table = Table(title="Datasets")
    for column in ("id", "name", "format", "rows", "train", "eval", "source"):
        table.add_column(column)
    for d in found:
        table.add_row(
            d.id, d.name, d.format, f"{d.rows:,}", f"{d.train_rows:,}", f"{d.eval_rows:,}", d.source
        )
    console.print(table)


@data.command("rm")
@click.argument("dataset", metavar="ID_OR_NAME")
def rm_cmd(dataset: str) -> None:
    """Delete an imported dataset (its processed files and its raw copy)."""
    from garden.data import delete_dataset

    try:
        record = delete_dataset(dataset)
    except GardenError as exc:
        fail(exc)
    console.print(f"Deleted {record.name} ({record.id})", highlight=False)
