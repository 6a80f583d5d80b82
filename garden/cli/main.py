"""The root `model-garden` group; every command group is registered here, explicitly."""

from __future__ import annotations

import click

from garden import __version__
from garden.cli.carbon import carbon
from garden.cli.chat import chat
from garden.cli.data import data
from garden.cli.models import models
from garden.cli.output import fail
from garden.cli.train import jobs, train
from garden.errors import GardenError


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


for group in (models, data, train, jobs, chat, carbon):
    main.add_command(group)
