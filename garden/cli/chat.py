"""`model-garden chat`: one prompt (streamed, or --json) or an interactive REPL."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click
from rich.markup import escape

from garden import present
from garden.cli.output import err_console, fail, print_json
from garden.errors import GardenError
from garden.services import chat as chat_service
from garden.services.chat import (
    BACKENDS,
    ChatMessage,
    ChatRequest,
    Endpoint,
    GenerationSettings,
)
from garden.services.endpoints import endpoint_models
from garden.services.tools import ToolSchema, read_tools

TOOLS_FILE = click.Path(dir_okay=False, path_type=Path)
TOOLS_HELP = (
    "Offer the model these tools (a JSON list of OpenAI-style function schemas); "
    "its tool calls are printed as calls."
)
REPL_HELP = "Commands: /reset clears the conversation, /exit quits (or Ctrl-D)."


def _quiet_engines() -> None:
    """Engine logs go to stderr (and only warnings), so stdout holds just the answer."""
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@click.command()
@click.argument("prompt", required=False)
@click.option(
    "--model", "-m", default=None, help="Model name, run name or folder (default: embedded)."
)
@click.option(
    "--backend",
    type=click.Choice(BACKENDS),
    default="auto",
    show_default=True,
    help="auto: vLLM when it can serve the model; a single prompt is answered by transformers "
    "(ready in seconds) unless vllm is asked for.",
)
@click.option("--system", "system_prompt", default="", help="System prompt.")
@click.option(
    "--max-tokens", "max_new_tokens", type=click.IntRange(min=1), default=256, show_default=True
)
@click.option("--temperature", type=click.FloatRange(min=0), default=0.7, show_default=True)
@click.option("--top-p", type=click.FloatRange(0, 1, min_open=True), default=0.9, show_default=True)
@click.option("--top-k", type=click.IntRange(min=0), default=50, show_default=True)
@click.option("--repetition-penalty", type=click.FloatRange(min=0, min_open=True), default=1.0)
@click.option("--stop", multiple=True, help="Stop string (repeatable).")
@click.option("--seed", type=int, default=None, help="Seed for reproducible sampling.")
@click.option(
    "--json", "as_json", is_flag=True, help="Print one JSON object with the answer and figures."
)
@click.option(
    "--endpoint",
    default=None,
    metavar="URL",
    help="Chat with an OpenAI-compatible server instead (e.g. http://127.0.0.1:8000/v1); "
    "--model is then one of its models (default: its first).",
)
@click.option(
    "--api-key", default=None, envvar="GARDEN_ENDPOINT_API_KEY", help="The endpoint's API key."
)
@click.option("--tools", "tools_file", type=TOOLS_FILE, metavar="FILE.json", help=TOOLS_HELP)
def chat(
    prompt: str | None,
    model: str | None,
    backend: str,
    as_json: bool,
    endpoint: str | None,
    api_key: str | None,
    tools_file: Path | None,
    **generation: Any,
) -> None:
    """Chat with a model: answer PROMPT, or start a REPL when no prompt is given."""
    _quiet_engines()
    if prompt is not None and not prompt.strip():
        fail("The prompt is empty. Pass some text, or no prompt at all for the interactive REPL.")
    tools: list[ToolSchema] | None = None
    if tools_file is not None:
        if endpoint is not None:
            fail("--tools works with models served here, not with --endpoint. Drop one of them.")
        try:
            tools = read_tools(tools_file)
        except GardenError as exc:
            fail(exc)
    if endpoint is not None:
        _chat_remote(
            prompt, model, Endpoint(base_url=endpoint, api_key=api_key), as_json, generation
        )
        return
    one_shot = prompt is not None
    effective = "transformers" if (one_shot and backend == "auto") else backend
    try:
        settings = GenerationSettings(**generation)
        status = chat_service.load(model, effective)
        if not as_json:
            err_console.print(
                f"Loading {escape(status.label)} ({escape(str(effective))})…", highlight=False
            )
        status = chat_service.wait_ready(model, effective, include_vllm=effective == "vllm")
        if not as_json:
            err_console.print(status.text.replace("**", ""), highlight=False)
        if prompt is not None:
            messages = [ChatMessage(role="user", content=prompt)]
            _answer(model, effective, messages, settings, as_json, tools=tools)
        else:
            _repl(model, effective, settings, tools=tools)
    except GardenError as exc:
        fail(exc)
    finally:
        chat_service.shutdown()


def _chat_remote(
    prompt: str | None,
    model: str | None,
    endpoint: Endpoint,
    as_json: bool,
    generation: dict[str, Any],
) -> None:
    """The same one-shot answer or REPL, from a remote OpenAI-compatible endpoint."""
    try:
        settings = GenerationSettings(**generation)
        served = endpoint_models(endpoint)
        name = model or served[0]
        if not as_json:
            err_console.print(
                f"{endpoint.remote().base_url} serves {', '.join(served)}; chatting with {name}.",
                highlight=False,
            )
        if prompt is not None:
            messages = [ChatMessage(role="user", content=prompt)]
            _answer(name, "remote", messages, settings, as_json, endpoint)
        else:
            _repl(name, "remote", settings, endpoint)
    except GardenError as exc:
        fail(exc)


def _answer(
    model: str | None,
    backend: str,
    messages: list[ChatMessage],
    settings: GenerationSettings,
    as_json: bool,
    endpoint: Endpoint | None = None,
    tools: list[ToolSchema] | None = None,
) -> str:
    """Print the answer (and its tool calls); the reply as the next turn's assistant text."""

    def show(text: str) -> None:
        click.echo(text, nl=False)

    request = ChatRequest(
        model=model,
        backend="auto" if endpoint else backend,
        messages=messages,
        generation=settings,
        endpoint=endpoint,
        tools=tools,
    )
    reply = chat_service.answer(request, on_text=None if as_json else show)
    stats = reply.stats
    if as_json:
        print_json(
            {
                "text": reply.text,
                "backend": stats.backend,
                "model": stats.model,
                "tokens": stats.tokens,
                "ttft_s": stats.ttft_s,
                "tokens_per_second": stats.tokens_per_second,
                "energy_kwh": stats.energy_kwh,
                **({"tool_calls": [c.model_dump() for c in reply.tool_calls]} if tools else {}),
                **({"tool_problems": reply.tool_problems} if reply.tool_problems else {}),
            }
        )
    else:
        for call in reply.tool_calls:
            click.echo(("\n" if reply.text else "") + call.title(), nl=False)
        click.echo()
        for problem in reply.tool_problems:
            err_console.print(
                f"[yellow]Tool call not used:[/] {escape(str(problem))}", highlight=False
            )
        err_console.print(f"[dim]{escape(present.answer_stats(stats))}[/]", highlight=False)
    return "\n".join([reply.text, *(call.as_text() for call in reply.tool_calls)]).strip()


def _repl(
    model: str | None,
    backend: str,
    settings: GenerationSettings,
    endpoint: Endpoint | None = None,
    tools: list[ToolSchema] | None = None,
) -> None:
    err_console.print(REPL_HELP, highlight=False)
    history: list[ChatMessage] = []
    while True:
        try:
            line = click.prompt("you", prompt_suffix="> ", default="", show_default=False)
        except (EOFError, click.Abort):
            click.echo()
            return
        text = line.strip()
        if not text:
            continue
        if text in ("/exit", "/quit"):
            return
        if text == "/reset":
            history.clear()
            err_console.print("Conversation cleared.")
            continue
        history.append(ChatMessage(role="user", content=text))
        try:
            reply = _answer(model, backend, history, settings, False, endpoint, tools)
        except GardenError as exc:
            history.pop()
            err_console.print(f"[bold red]Error:[/] {escape(str(exc))}", highlight=False)
            continue
        history.append(ChatMessage(role="assistant", content=reply))
