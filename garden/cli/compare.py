"""`model-garden compare RUN RUN… [--json]`: runs side by side (read from the store; no model
is loaded, so torch is never imported)."""

from __future__ import annotations

import click
from rich.markup import escape
from rich.table import Table

from garden.cli.output import add_row, console, print_json
from garden.services import compare


@click.command("compare")
@click.argument("runs", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON.")
def compare_command(runs: tuple[str, ...], as_json: bool) -> None:
    """Compare two or more RUNS (job ids, run names or finetuned/NAME): what they trained, their
    losses and evaluation scores, their training energy and CO₂, the Pareto front of ROUGE-L
    against CO₂, and their answers to the held-out prompts they share beside the base model's."""
    view = compare.compare_runs(list(runs))
    if as_json:
        print_json(view)
        return
    console.print(_table("Runs compared", *compare.fact_table(view)))
    console.print(escape(view.status), highlight=False)
    for note in view.notes:
        console.print(f"[yellow]•[/] {escape(note)}", highlight=False)
    if view.answers:
        title = "Answers to the shared held-out prompts"
        console.print(_table(title, *compare.answer_table(view)))


def _table(title: str, headers: list[str], rows: list[list[str]]) -> Table:
    table = Table(title=title)
    for header in headers:
        table.add_column(escape(header), overflow="fold")
    for row in rows:
        add_row(table, *row)
    return table
