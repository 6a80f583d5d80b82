"""The root `model-garden` group; every command group is registered here, explicitly.

A group's module is imported when that group runs (or when ``--help`` lists it), so that
`model-garden jobs list` does not import what `chat` or `export` need.
"""

from __future__ import annotations

import importlib

import click

from garden import __version__
from garden.cli.output import boundary

# command name -> (module, attribute)
COMMANDS = {
    "models": ("garden.cli.models", "models"),
    "data": ("garden.cli.data", "data"),
    "train": ("garden.cli.train", "train"),
    "jobs": ("garden.cli.train", "jobs"),
    "chat": ("garden.cli.chat", "chat"),
    "serve": ("garden.cli.serve", "serve"),
    "export": ("garden.cli.export", "export"),
    "carbon": ("garden.cli.carbon", "carbon"),
    "eval": ("garden.cli.eval", "eval_command"),
    "compare": ("garden.cli.compare", "compare_command"),
}


class GardenGroup(click.Group):
    """The root group: no exception leaves a command as a traceback; groups load lazily."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands or cmd_name not in COMMANDS:
            return super().get_command(ctx, cmd_name)
        module, attribute = COMMANDS[cmd_name]
        command = getattr(importlib.import_module(module), attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{module}.{attribute} is not a click command")
        return command

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
