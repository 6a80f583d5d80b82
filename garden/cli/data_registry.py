"""`model-garden data import --from-llamafactory dataset_info.json [NAME…]`: a peer's registry."""

from __future__ import annotations

from collections.abc import Sequence

import click
from rich.table import Table

from garden.cli.output import add_row, console, fail, print_json
from garden.errors import GardenError
from garden.services import datasets


def import_from_registry(
    registry: str,
    names: Sequence[str],
    *,
    name: str | None,
    name_prefix: str,
    read: datasets.ReadOptions,
    eval_fraction: float,
    seed: int,
    drop_invalid: bool,
    as_json: bool,
    progress: datasets.Progress | None,
) -> None:
    """Import the entries and print one row per entry; exit 2 when one failed or none imported."""
    if name is not None:
        raise click.UsageError(
            "--name names one dataset; with --from-llamafactory use --name-prefix."
        )
    if read.mapping or read.split or read.subset:
        raise click.UsageError(
            "--mapping, --split and --subset do not apply with --from-llamafactory: each "
            "entry's columns and tags give its mapping."
        )
    try:
        results = datasets.import_registry(
            registry, names, name_prefix=name_prefix, options=read, eval_fraction=eval_fraction,
            seed=seed, drop_invalid=drop_invalid, progress=progress,
        )  # fmt: skip
    except GardenError as exc:
        fail(exc)
    if as_json:
        print_json(results)
    else:
        _print_results(results)
    failed = [r for r in results if r.status == "failed"]
    if failed:
        more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
        fail(f"{failed[0].entry} failed: {failed[0].reason}{more}")
    if not any(r.status == "imported" for r in results):
        fail("No entry was imported: every one was skipped (see the reasons above).")


def _print_results(results: list[datasets.RegistryImportView]) -> None:
    table = Table(
        "entry", "name", "kind", "rows", "status", "reason", title="LLaMA-Factory registry"
    )
    for r in results:
        rows = f"{r.rows:,}" if r.status == "imported" else ""
        add_row(table, r.entry, r.name, r.kind or "", rows, r.status, r.reason)
    console.print(table)
