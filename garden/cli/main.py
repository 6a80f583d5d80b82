"""The root `model-garden` group; every command group is registered here, explicitly."""

from __future__ import annotations

import click

from garden import __version__
from garden.cli.carbon import carbon
from garden.cli.chat import chat
from garden.cli.data import data
from garden.cli.eval import eval_command
from garden.cli.export import export
from garden.cli.models import models
from garden.cli.output import boundary
from garden.cli.serve import serve
from garden.cli.train import jobs, train


class GardenGroup(click.Group):
    """The root group: no exception leaves a command as a traceback."""

    def invoke(self, ctx: click.Context) -> object:
        with boundary():
            return super().invoke(ctx)


@click.group(cls=GardenGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="model-garden")
def main() -> None:
    """Model Garden: fine-tune open LLMs, chat with them, and measure their carbon cost."""


@main.command()
@click.option("--host", default=None, help="Interface to bind (default: API_HOST).")
@click.option("--port", type=int, default=None, help="Port (default: API_PORT, 7860).")
@click.option("--share", is_flag=True, help="Also open a Gradio share link (needs auth).")
@click.option(
    "--public-demo",
    is_flag=True,
    help="Allow a public app without a password, with demo limits (PUBLIC_DEMO=true).",
)
def ui(host: str | None, port: int | None, share: bool, public_demo: bool) -> None:
    """Start the web app (`uv run app.py` takes the same flags)."""
    from garden.ui.server import launch

    with boundary():
        launch(host=host, port=port, share=share, public_demo=public_demo)


for group in (models, data, train, jobs, chat, serve, export, carbon, eval_command):
    main.add_command(group)
