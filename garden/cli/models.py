"""`model-garden models …`: list and prepare models."""

from __future__ import annotations

import click
from rich.markup import escape
from rich.table import Table

from garden.cli.output import add_row, console, fail, print_json
from garden.errors import GardenError
from garden.services import models as model_service

COLUMNS = ("id", "kind", "prepared", "base model", "path")


@click.group()
def models() -> None:
    """List and prepare models."""


@models.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def models_list(as_json: bool) -> None:
    """List the default model, local base models, fine-tuned runs and hub ids."""
    found = model_service.list_models()
    if as_json:
        print_json(found)
        return
    table = Table(*COLUMNS, title="Models")
    for m in found:
        add_row(
            table, m.id, m.kind, "yes" if m.prepared else "no", m.base_model or "", m.path or ""
        )
    console.print(table)


@models.command("prepare")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def models_prepare(as_json: bool) -> None:
    """Convert the embedded default model to safetensors (once; later runs are no-ops)."""

    def log(message: str) -> None:
        console.log(message, highlight=False)

    try:
        with console.status("Preparing the default model…"):
            view = model_service.prepare_default(progress=None if as_json else log)
    except GardenError as exc:
        fail(exc)
    if as_json:
        print_json({"model": view.id, "path": view.path})
    else:
        console.print(
            f"[green]{escape(view.id)}[/] is ready at {escape(str(view.path))}", highlight=False
        )
