"""The `model-garden` command line: the same engine as the app, without the UI."""

from __future__ import annotations

import json
import sys
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from garden import __version__
from garden.errors import GardenError

console = Console()
err_console = Console(stderr=True)


def fail(error: Exception | str, code: int = 2) -> None:
    """Print an actionable error on stderr and exit with ``code``."""
    err_console.print(f"[bold red]Error:[/] {error}", highlight=False)
    sys.exit(code)


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="model-garden")
def main() -> None:
    """Model Garden: fine-tune open LLMs, chat with them, and measure their carbon cost."""


@main.command()
@click.option("--host", default=None, help="Interface to bind (default: API_HOST).")
@click.option("--port", type=int, default=None, help="Port (default: API_PORT, 7860).")
@click.option("--share", is_flag=True, help="Also open a Gradio share link.")
def ui(host: str | None, port: int | None, share: bool) -> None:
    """Start the web app (same as `python app.py`)."""
    from garden.ui.server import launch

    try:
        launch(host=host, port=port, share=share)
    except GardenError as exc:
        fail(exc)


@main.group()
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


def _register_subcommands() -> None:
    """Sub-command groups that live in their own modules (data, train, chat, carbon, jobs)."""
    import importlib

    for module_name, attr in (
        ("garden.cli_data", "data"),
        ("garden.cli_train", "train"),
        ("garden.cli_train", "jobs"),
        ("garden.cli_chat", "chat"),
        ("garden.cli_carbon", "carbon"),
    ):
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        main.add_command(getattr(module, attr))


if __name__ == "__main__":
    # `python -m garden.cli`: run the importable module so sub-commands register exactly once.
    from garden.cli import main as cli_main

    cli_main()
else:
    _register_subcommands()
