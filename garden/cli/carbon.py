"""`model-garden carbon …`: energy and CO2 of every run and chat session."""

from __future__ import annotations

from pathlib import Path

import click
from rich.markup import escape
from rich.table import Table

from garden import present
from garden.cli.output import add_row, console, fail, print_json
from garden.errors import GardenError
from garden.services import carbon as carbon_service


@click.group()
def carbon() -> None:
    """Energy and CO2 measured for training runs and chat sessions."""


@carbon.command("report")
@click.option("--since", default=None, help="Only runs started on/after this date (YYYY-MM-DD).")
@click.option(
    "--kind", type=click.Choice(["training", "chat", "other"]), default=None, help="One kind only."
)
@click.option("--json", "as_json", is_flag=True, help="Print totals and records as JSON.")
@click.option(
    "--csv",
    "csv_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the records to this CSV file.",
)
def report(since: str | None, kind: str | None, as_json: bool, csv_path: Path | None) -> None:
    """Totals and per-run records (energy, CO2, how power was obtained)."""
    try:
        result = carbon_service.report(since=since, kind=kind)
    except GardenError as exc:
        fail(exc)
    if csv_path is not None:
        try:
            carbon_service.export_csv(result.rows, csv_path)
        except OSError as exc:
            fail(f"Cannot write {csv_path}: {exc.strerror or exc}. Choose a writable path.")
    if as_json:
        print_json({"since": since, "totals": result.summary, "records": result.rows})
        return
    _print_report(result, f" since {since}" if since else "")
    if csv_path is not None:
        console.print(
            f"Wrote {len(result.rows)} records to {escape(str(csv_path))}", highlight=False
        )


def _print_report(result: carbon_service.CarbonReport, scope: str) -> None:
    totals = result.summary
    console.print(
        present.carbon_totals_line(
            totals.runs, totals.energy_kwh, totals.emissions_kg, totals.unavailable, scope
        ),
        highlight=False,
    )
    console.print(present.describe_equivalents(totals.equivalents), highlight=False)
    if not result.rows:
        console.print("No carbon records yet: train a model or chat to create some.")
        return
    table = Table(title="Carbon records")
    for column in ("started", "kind", "label", "duration", "energy", "CO₂e", "power", "status"):
        table.add_column(column)
    for row in result.rows:
        add_row(
            table,
            row.started,
            row.kind,
            present.run_name(row.label, row.ref_id, row.id),
            f"{row.duration_s or 0:.0f} s",
            present.energy(row.energy_kwh),
            present.co2(row.emissions_kg),
            present.power_label(row.power_source),
            present.carbon_status(row.status, row.unavailable_reason),
        )
    console.print(table)
    for source in sorted({row.power_source for row in result.rows if row.power_source}):
        console.print(f"[dim]Power: {escape(str(source))}[/]", highlight=False)
