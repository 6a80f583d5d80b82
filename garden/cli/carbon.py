"""`model-garden carbon …`: energy and CO2 of every run and chat session."""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from garden.cli.output import console, fail, print_json
from garden.errors import GardenError


def _energy(kwh: float | None) -> str:
    if kwh is None:
        return "—"
    return f"{kwh * 1000:.3f} Wh" if kwh < 1 else f"{kwh:.3f} kWh"


def _co2(kg: float | None) -> str:
    if kg is None:
        return "—"
    return f"{kg * 1000:.3f} g" if kg < 1 else f"{kg:.3f} kg"


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
    from garden.config import get_settings
    from garden.engine.carbon import (
        describe_equivalents,
        list_records,
        parse_since,
        power_label,
        report_rows,
        summarize,
        write_csv,
    )

    settings = get_settings()
    try:
        rows = report_rows(
            list_records(settings, since=parse_since(since), kind=kind), settings=settings
        )
    except GardenError as exc:
        fail(exc)
    totals = summarize(rows)
    if csv_path is not None:
        try:
            write_csv(rows, csv_path)
        except OSError as exc:
            fail(f"Cannot write {csv_path}: {exc.strerror or exc}. Choose a writable path.")
    if as_json:
        print_json({"since": since, "totals": totals, "records": rows})
        return
    scope = f" since {since}" if since else ""
    console.print(
        f"[bold]{totals['runs']}[/] runs{scope}: [bold]{_energy(totals['energy_kwh'])}[/], "
        f"[bold]{_co2(totals['emissions_kg'])} CO₂e[/]"
        + (f" ({totals['unavailable']} without carbon data)" if totals["unavailable"] else ""),
        highlight=False,
    )
    console.print(describe_equivalents(totals["equivalents"]), highlight=False)
    if not rows:
        console.print("No carbon records yet: train a model or chat to create some.")
    else:
        table = Table(title="Carbon records")
        for column in ("started", "kind", "label", "duration", "energy", "CO₂e", "power", "status"):
            table.add_column(column)
        for r in rows:
            table.add_row(
                r["started"],
                r["kind"],
                r["label"] or r["ref_id"] or "",
                f"{r['duration_s'] or 0:.0f} s",
                _energy(r["energy_kwh"]),
                _co2(r["emissions_kg"]),
                power_label(r["power_source"]),
                r["status"]
                if r["status"] != "unavailable"
                else f"unavailable: {r['unavailable_reason']}",
            )
        console.print(table)
        for source in sorted({r["power_source"] for r in rows if r["power_source"]}):
            console.print(f"[dim]Power: {source}[/]", highlight=False)
    if csv_path is not None:
        console.print(f"Wrote {len(rows)} records to {csv_path}", highlight=False)
