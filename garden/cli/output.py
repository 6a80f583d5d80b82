"""Console output shared by every command: rich consoles, JSON printing, actionable failures."""

from __future__ import annotations

import json
import sys
from typing import Any, NoReturn

import click
from rich.console import Console

console = Console()
err_console = Console(stderr=True)


def fail(error: Exception | str, code: int = 2) -> NoReturn:
    """Print an actionable error on stderr and exit with ``code``."""
    err_console.print(f"[bold red]Error:[/] {error}", highlight=False)
    sys.exit(code)


def print_json(data: Any) -> None:
    """Print JSON on stdout; pydantic models and dataclasses are dumped as plain data."""
    click.echo(json.dumps(to_plain(data), indent=2, default=str))


def to_plain(data: Any) -> Any:
    import dataclasses

    from pydantic import BaseModel

    if isinstance(data, BaseModel):
        return data.model_dump(mode="json")
    if dataclasses.is_dataclass(data) and not isinstance(data, type):
        return to_plain(dataclasses.asdict(data))
    if isinstance(data, dict):
        return {key: to_plain(value) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [to_plain(value) for value in data]
    return data
