"""`model-garden chat`: one prompt (streamed, or --json) or an interactive REPL."""

from __future__ import annotations

import os
from typing import Any

import click

from garden.cli.output import err_console, fail, print_json
from garden.engine.serving_types import BACKENDS
from garden.errors import GardenError

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
@click.option("--max-tokens", type=click.IntRange(min=1), default=256, show_default=True)
@click.option("--temperature", type=click.FloatRange(min=0), default=0.7, show_default=True)
@click.option("--top-p", type=click.FloatRange(0, 1, min_open=True), default=0.9, show_default=True)
@click.option("--top-k", type=click.IntRange(min=0), default=50, show_default=True)
@click.option("--repetition-penalty", type=click.FloatRange(min=0, min_open=True), default=1.0)
@click.option("--stop", multiple=True, help="Stop string (repeatable).")
@click.option("--seed", type=int, default=None, help="Seed for reproducible sampling.")
@click.option(
    "--json", "as_json", is_flag=True, help="Print one JSON object with the answer and figures."
)
def chat(
    prompt: str | None,
    model: str | None,
    backend: str,
    system_prompt: str,
    max_tokens: int,
    temperature: float,
    top_p: float,
    top_k: int,
    repetition_penalty: float,
    stop: tuple[str, ...],
    seed: int | None,
    as_json: bool,
) -> None:
    """Chat with a model: answer PROMPT, or start a REPL when no prompt is given."""
    _quiet_engines()
    from garden.engine.serving import GenerationConfig, get_engine, resolve_target, shutdown_all

    config = GenerationConfig(
        system_prompt=system_prompt,
        temperature=temperature,
        top_p=top_p,
        top_k=top_k,
        max_new_tokens=max_tokens,
        repetition_penalty=repetition_penalty,
        stop=list(stop),
        seed=seed,
    )
    if prompt is not None and not prompt.strip():
        fail("The prompt is empty. Pass some text, or no prompt at all for the interactive REPL.")
    one_shot = prompt is not None
    effective = "transformers" if (one_shot and backend == "auto") else backend
    try:
        config.validate()
        target = resolve_target(model)
        engine = get_engine(target, effective)
        if not as_json:
            err_console.print(f"Loading {target.label} ({effective})…", highlight=False)
        if effective == "vllm":
            engine.wait_loaded(timeout=900)
        else:
            engine.wait_ready(timeout=900)
        if not as_json:
            err_console.print(engine.status.describe().replace("**", ""), highlight=False)
        if one_shot:
            _answer(engine, [{"role": "user", "content": prompt}], config, target, as_json)
        else:
            _repl(engine, config, target)
    except GardenError as exc:
        fail(exc)
    finally:
        shutdown_all()


def _answer(
    engine: Any, messages: list[dict[str, str]], config: Any, target: Any, as_json: bool
) -> str:
    last = None
    for step in engine.stream_chat(messages, config, adapter=target.adapter_path):
        last = step
        if not as_json and step.delta:
            click.echo(step.delta, nl=False)
    assert last is not None and last.stats is not None
    stats = last.stats
    if as_json:
        print_json(
            {
                "text": last.text,
                "backend": stats.backend,
                "model": target.label,
                "tokens": stats.tokens,
                "ttft_s": stats.ttft_s,
                "tokens_per_second": stats.tokens_per_second,
                "energy_kwh": stats.energy_kwh,
            }
        )
    else:
        click.echo()
        energy = f"{stats.energy_kwh * 1000:.4f} Wh" if stats.energy_kwh is not None else "n/a"
        err_console.print(
            f"[dim]{stats.tokens} tokens · {stats.tokens_per_second or 0:.1f} tok/s · "
            f"first token {stats.ttft_s or 0:.2f} s · energy {energy} · {stats.backend}[/]",
            highlight=False,
        )
    return last.text


def _repl(engine: Any, config: Any, target: Any) -> None:
    err_console.print(REPL_HELP, highlight=False)
    history: list[dict[str, str]] = []
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
        history.append({"role": "user", "content": text})
        try:
            reply = _answer(engine, history, config, target, as_json=False)
        except GardenError as exc:
            history.pop()
            err_console.print(f"[bold red]Error:[/] {exc}", highlight=False)
            continue
        history.append({"role": "assistant", "content": reply})
