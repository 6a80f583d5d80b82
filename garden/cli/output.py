"""Console output shared by every command: rich consoles, JSON printing, actionable failures."""

from __future__ import annotations

import json
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from garden.config import load_settings
from garden.errors import GardenError

console = Console()
err_console = Console(stderr=True)


def fail(error: Exception | str, code: int = 2) -> NoReturn:
    """Print an actionable error on stderr, on one line, and exit with ``code``."""
    line = " ".join(str(error).split())
    err_console.print(Text.assemble(("Error: ", "bold red"), line), soft_wrap=True, highlight=False)
    sys.exit(code)


@contextmanager
def boundary() -> Iterator[None]:
    """Every exception leaving a command becomes one line on stderr; traces go to the log."""
    try:
        yield
    except (click.ClickException, click.exceptions.Exit, click.Abort):
        raise
    except GardenError as exc:
        fail(exc)
    except Exception as exc:
        where = log_trace(exc)
        detail = (str(exc).strip().splitlines() or [""])[0][:200]
        trace = f"the full trace is in {where}" if where else "no log file could be written"
        fail(
            f"unexpected {type(exc).__name__}: {detail} ({trace}). Check the input and the "
            "settings, then retry; report it with the log if it happens again.",
            code=1,
        )


def log_trace(exc: BaseException) -> Path | None:
    """Append the full trace to LOGS_DIR/cli.log; None when even that fails."""
    try:
        logs = load_settings().logs_path
        logs.mkdir(parents=True, exist_ok=True)
        path = logs / "cli.log"
        with path.open("a", encoding="utf-8") as log:
            log.write(f"{datetime.now().isoformat(timespec='seconds')} {' '.join(sys.argv)}\n")
            log.write("".join(traceback.format_exception(exc)) + "\n")
        return path
    except Exception:
        return None


def add_row(table: Table, *values: object) -> None:
    """A table row whose cells print as they are: rich reads ``[...]`` in a plain string as markup
    (a path or a C++ location in an error would break the table, or vanish)."""
    table.add_row(*(Text("" if value is None else str(value)) for value in values))


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
