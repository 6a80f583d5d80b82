"""`model-garden models …`: list and prepare models."""

from __future__ import annotations

import click
from rich.table import Table

from garden.cli.output import console, fail, print_json
from garden.errors import GardenError


@click.group()
def models() -> None:
    """List and prepare models."""


@models.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def models_list(as_json: bool) -> None:
    """List the default model, local base models, fine-tuned runs and hub ids."""
    from garden.models import list_models

    found = list_models()
    if as_json:
        print_json([m.to_dict() for m in found])
        return
    table = Table(title="Models")
    for column in ("id", "kind", "prepared", "base model", "path"):
        table.add_column(column)
    for m in found:
        table.add_row(m.id, m.kind, "yes" if m.prepared else "no", m.base_model or "", m.path or "")
    console.print(table)


@models.command("prepare")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def models_prepare(as_json: bool) -> None:
    """Convert the embedded default model to safetensors (once; later runs are no-ops)."""
    from garden.models import DEFAULT_MODEL_NAME, prepare_default_model

    try:
        with console.status("Preparing the default model…"):
            path = prepare_default_model(
                progress=None if as_json else lambda msg: console.log(msg, highlight=False)
            )
    except GardenError as exc:
        fail(exc)
    if as_json:
        print_json({"model": DEFAULT_MODEL_NAME, "path": str(path)})
    else:
        console.print(f"[green]{DEFAULT_MODEL_NAME}[/] is ready at {path}", highlight=False)
