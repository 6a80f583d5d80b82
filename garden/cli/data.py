"""`model-garden data …`: inspect, import, list and delete datasets."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import fields
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from garden import present
from garden.cli.data_registry import import_from_registry
from garden.cli.output import add_row, console, err_console, fail, print_json
from garden.errors import GardenError
from garden.services import datasets

ISSUES_SHOWN = 20


def _parse_mapping(_ctx: click.Context, _param: click.Parameter, value: str | None) -> Any:
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


READ_OPTIONS = (
    click.option(
        "--max-seq-len", type=click.IntRange(min=1), default=None,
        help="Flag rows longer than this.",
    ),
    click.option(
        "--mapping", default=None, callback=_parse_mapping,
        help='Override the detected mapping: JSON or key=value pairs, e.g. "instruction=q,output=a".',
    ),
    click.option("--model", default=None, help="Tokenizer to count with (default model)."),
    click.option("--split", default=None, help="Hub split (default: train)."),
    click.option("--subset", default=None, help="Hub subset / configuration."),
    click.option(
        "--reasoning", type=click.Choice(["keep", "drop"]), default="keep", show_default=True,
        help="Keep the answers' reasoning traces (trained on) or drop them.",
    ),
)  # fmt: skip


def read_options(command: Callable[..., None]) -> Callable[..., None]:
    """Add the shared options to ``command``, which receives them as one ``read`` argument."""

    @functools.wraps(command)
    def with_read_options(**params: Any) -> None:
        names = [field.name for field in fields(datasets.ReadOptions)]
        command(read=datasets.ReadOptions(**{name: params.pop(name) for name in names}), **params)

    for option in reversed(READ_OPTIONS):
        with_read_options = option(with_read_options)
    return with_read_options


source_argument = click.argument("source", metavar="PATH_OR_HUB_ID")
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")


def _progress(enabled: bool) -> datasets.Progress | None:
    if not enabled:
        return None
    last = {"message": ""}

    def report(fraction: float, message: str) -> None:
        if message != last["message"]:
            err_console.print(f"[dim]{fraction:4.0%} {escape(str(message))}[/]", highlight=False)
            last["message"] = message

    return report


@click.group()
def data() -> None:
    """Inspect, import, list and delete datasets."""


@data.command("inspect")
@source_argument
@json_option
@read_options
@click.option(
    "--preview", type=click.IntRange(min=0), default=1, show_default=True,
    help="Rendered samples to show (text output).",
)  # fmt: skip
def inspect_cmd(source: str, as_json: bool, read: datasets.ReadOptions, preview: int) -> None:
    """Detect the format of a file or hub dataset and report every problem (exit 2 if unusable)."""
    try:
        view = datasets.inspect(source, read, progress=_progress(not as_json))
    except GardenError as exc:
        fail(exc)
    if as_json:
        shortened = view.model_copy(
            update={
                "raw_preview": view.raw_preview[:5],
                "samples": view.samples[:5],
                "rendered": view.rendered[:2],
                "previews": view.previews[:2],
            }
        )
        print_json(shortened.model_dump(mode="json", exclude={"token_lengths"}))
    else:
        _print_report(view)
        for number, text in enumerate(view.rendered[:preview], 1):
            console.rule(f"sample {number} as the model sees it", style="dim")
            console.print(_short(text), markup=False, highlight=False)
            if number <= len(view.previews):
                _print_preview(view.previews[number - 1])
    if not view.usable:
        fail(f"{view.problem} Fix the file or the mapping (--mapping).")


def _short(text: str, limit: int = 3000) -> str:
    return text if len(text) < limit else text[:limit] + " …"


def _print_preview(preview: datasets.SamplePreview) -> None:
    """What the rendering alone does not show: a pair's answers, a label, tools and calls."""
    if preview.reasoning:
        words = len(preview.reasoning.split())
        text = f"reasoning ({words} words): {_short(preview.reasoning, 500)}"
        console.print(text, style="dim", markup=False, highlight=False)
    if preview.kind == "preference":
        console.print(f"chosen:   {_short(preview.chosen, 500)}", markup=False, highlight=False)
        console.print(f"rejected: {_short(preview.rejected, 500)}", markup=False, highlight=False)
    if preview.label is not None:
        console.print(f"label: {'true (good)' if preview.label else 'false (bad)'}")
    if preview.tools:
        console.print(f"tools: {', '.join(preview.tools)}", markup=False, highlight=False)
    for call in preview.calls:
        console.print(f"call: {_short(call, 300)}", markup=False, highlight=False)


def _print_report(view: datasets.InspectView) -> None:
    detail = present.source_detail(view.source_kind, view.file_type)
    console.print(f"[bold]{escape(str(view.source))}[/] ({escape(str(detail))})")
    console.print(
        f"Kind: [green]{view.kind}[/] · Format: [green]{view.format}[/] (confidence {view.confidence:.0%}; {view.detection})",
        highlight=False,
    )
    console.print(f"Mapping: {escape(json.dumps(view.mapping))}", highlight=False)
    if view.columns:
        console.print(f"Fields: {escape(', '.join(view.columns[:30]))}", highlight=False)
    console.print(present.rows_line(view.rows, view.valid_rows, view.invalid_rows))
    for title, issues, counts, colour in (
        ("Errors", view.errors, view.error_counts, "red"),
        ("Warnings", view.warnings, view.warning_counts, "yellow"),
    ):
        if not counts:
            continue
        console.print(f"[{colour}]{title}[/] ({present.issue_counts(counts)})")
        for issue in issues[:ISSUES_SHOWN]:
            console.print(f"  {issue}", highlight=False, markup=False)
        if hidden := present.issues_not_shown(counts, len(issues), ISSUES_SHOWN):
            console.print(f"  … and {hidden:,} more")
    if tokens := present.tokens_line(view.token_stats):
        console.print(tokens)
    if reasoning := present.reasoning_line(view.reasoning_rows, view.reasoning):
        console.print(f"Reasoning: {reasoning}", highlight=False)


@data.command("import")
@click.argument("source", metavar="PATH_OR_HUB_ID", required=False)
@click.argument("entries", metavar="[NAME]...", nargs=-1)
@click.option("--name", default=None, help="Name to save the dataset under (required).")
@click.option(
    "--from-llamafactory",
    "registry",
    default=None,
    metavar="DATASET_INFO_JSON",
    help="Import LLaMA-Factory's registry instead: the entries NAME… (default: every entry "
    "whose file is here), each under its own name.",
)
@click.option("--name-prefix", default="", help="With --from-llamafactory: put before each name.")
@click.option("--eval-fraction", type=click.FloatRange(0.0, 0.5), default=0.1, show_default=True)
@click.option(
    "--seed", type=int, default=42, show_default=True, help="Seed of the train/eval split."
)
@click.option(
    "--drop-invalid", is_flag=True, help="Skip rows that cannot be used instead of failing."
)
@json_option
@read_options
def import_cmd(
    source: str | None,
    entries: tuple[str, ...],
    name: str | None,
    registry: str | None,
    name_prefix: str,
    eval_fraction: float,
    seed: int,
    drop_invalid: bool,
    as_json: bool,
    read: datasets.ReadOptions,
) -> None:
    """Normalise, validate and split a dataset and save it under --name; or import the
    datasets of LLaMA-Factory's dataset_info.json (--from-llamafactory PATH [NAME]...)."""
    if registry is not None:
        import_from_registry(
            registry, [*filter(None, [source]), *entries], name=name, name_prefix=name_prefix,
            read=read, eval_fraction=eval_fraction, seed=seed, drop_invalid=drop_invalid,
            as_json=as_json, progress=_progress(not as_json),
        )  # fmt: skip
        return
    if source is None or entries or name is None or name_prefix:
        raise click.UsageError(
            "give one PATH_OR_HUB_ID and --name (NAME... and --name-prefix go with "
            "--from-llamafactory)."
        )
    try:
        request = datasets.ImportRequest(
            source=source, name=name, options=read, eval_fraction=eval_fraction, seed=seed,
            drop_invalid=drop_invalid,
        )  # fmt: skip
        view = datasets.import_dataset(request, progress=_progress(not as_json))
    except GardenError as exc:
        fail(exc)
    if as_json:
        print_json(view)
        return
    split = present.split_line(view.rows, view.train_rows, view.eval_rows, view.format)
    console.print(
        f"Saved [green]{view.name}[/] as [bold]{view.id}[/] ({view.kind}): {split}",
        highlight=False,
    )
    for warning in view.warnings[:10]:
        console.print(f"  [yellow]warning[/] {escape(str(warning))}", highlight=False)


@data.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def list_cmd(as_json: bool) -> None:
    """List imported datasets, newest first."""
    found = datasets.list_datasets()
    if as_json:
        print_json(found)
        return
    table = Table(
        "id", "name", "kind", "format", "rows", "train", "eval", "source", title="Datasets"
    )
    for d in found:
        add_row(
            table,
            d.id,
            d.name,
            d.kind,
            d.format,
            f"{d.rows:,}",
            f"{d.train_rows:,}",
            f"{d.eval_rows:,}",
            d.source,
        )
    console.print(table)


@data.command("rm")
@click.argument("dataset", metavar="ID_OR_NAME")
def rm_cmd(dataset: str) -> None:
    """Delete an imported dataset (its processed files and its raw copy)."""
    try:
        view = datasets.delete_dataset(dataset)
    except GardenError as exc:
        fail(exc)
    console.print(f"Deleted {escape(view.name)} ({escape(view.id)})", highlight=False)


from garden.cli.synthesize import synthesize_cmd  # noqa: E402 - registered on the group above

data.add_command(synthesize_cmd)
