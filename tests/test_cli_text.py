"""What the CLI prints is text: ``[...]`` in a path, a name or an error is never rich markup."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from rich.table import Table

from garden.cli import main
from garden.cli.output import add_row, boundary, console

GLOO = "closing tag '[/__w/pytorch/third_party/gloo/transport/tcp/pair.cc:553]' at position 12"


def test_an_error_with_brackets_prints_as_itself_on_the_failure_path() -> None:
    @click.command()
    def crashes() -> None:
        with boundary():
            raise RuntimeError(f"[/pair.cc:553] Connection closed by peer; {GLOO}")

    result = CliRunner().invoke(crashes, [])
    assert result.exit_code == 1
    assert "[/pair.cc:553] Connection closed by peer" in result.stderr
    assert GLOO[:40] in result.stderr


def test_table_cells_keep_their_brackets() -> None:
    table = Table("key", "value")
    add_row(table, "error", f"[red]not red[/red] {GLOO}")
    with console.capture() as captured:
        console.print(table)
    assert "[red]not red[/red]" in captured.get().replace("\n", "")


@pytest.mark.usefixtures("default_model_path")
def test_a_file_named_with_brackets_is_shown_by_its_name(tmp_path: Path) -> None:
    path = tmp_path / "[red]tiny[bold].jsonl"
    row = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]}
    path.write_text(json.dumps(row) + "\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["data", "inspect", str(path)])
    assert result.exit_code == 0, result.stderr
    assert "[red]tiny[bold].jsonl" in result.stdout.replace("\n", "")
