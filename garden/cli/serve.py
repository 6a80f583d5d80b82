"""`model-garden serve`: vLLM's own OpenAI-compatible server for a base model and its LoRA runs."""

from __future__ import annotations

import signal
from types import FrameType

import click
from rich.markup import escape

from garden.cli.output import console, err_console, fail
from garden.errors import GardenError
from garden.services import serving
from garden.services.serving import DEFAULT_PORT, ServePlan


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _show_ready(plan: ServePlan, models: list[str]) -> None:
    console.print(f"Serving {escape(plan.base_url)}", highlight=False)
    console.print(f"Models: {escape(', '.join(models))}", highlight=False)
    key = "the API key" if plan.needs_api_key else "any api_key"
    err_console.print(
        f"OpenAI clients: base_url={plan.base_url} with {key}. Ctrl-C stops the server.",
        highlight=False,
    )


@click.command()
@click.option("--model", "-m", default=None, help="Base model (default: the embedded one).")
@click.option("--host", default=serving.DEFAULT_HOST, show_default=True, help="Interface to bind.")
@click.option("--port", type=click.IntRange(1, 65535), default=DEFAULT_PORT, show_default=True)
@click.option(
    "--lora",
    "loras",
    multiple=True,
    metavar="RUN",
    help="LoRA run to register (repeatable; default: every finished LoRA run of the model).",
)
@click.option(
    "--api-key",
    default=None,
    envvar="VLLM_API_KEY",
    help="Key clients must send (vLLM's --api-key; also VLLM_API_KEY). Needed off loopback.",
)
@click.option(
    "--ray", is_flag=True, help="Place the parallel ranks on a running Ray cluster (multi-node)."
)
@click.option("--dry-run", is_flag=True, help="Print the exact command and exit.")
def serve(
    model: str | None,
    host: str,
    port: int,
    loras: tuple[str, ...],
    api_key: str | None,
    ray: bool,
    dry_run: bool,
) -> None:
    """Serve a model and its LoRA runs with vLLM's OpenAI-compatible server (foreground)."""
    try:
        plan = serving.plan_serve(
            model,
            host=host,
            port=port,
            loras=list(loras) or None,
            api_key=api_key,
            ray=ray,
        )
    except GardenError as exc:
        fail(exc)
    if dry_run:
        click.echo(plan.command_line)
        err_console.print(
            f"Would serve {', '.join(plan.models)} at {plan.base_url}", highlight=False
        )
        return
    err_console.print(
        f"Starting vLLM: {escape(plan.command_line)}", highlight=False, soft_wrap=True
    )
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    try:
        code = serving.serve(plan, api_key=api_key, on_ready=lambda m: _show_ready(plan, m))
    except KeyboardInterrupt:
        err_console.print("Stopped vLLM's server.", highlight=False)
        return
    except GardenError as exc:
        fail(exc)
    if code != 0:
        fail(f"vLLM's server exited with code {code}. Its log above says why.", code=1)
