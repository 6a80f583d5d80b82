"""Carbon reports: energy and CO2 of every run and chat session, totals, what-if, live power.

Country, region and PUE of a what-if grid only recompute a hypothetical CO2 figure; measured
energy is never rewritten.
"""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

from pydantic import Field

from garden.config import Settings
from garden.data.limits import temp_file
from garden.engine.carbon import grid, records
from garden.engine.carbon import report as engine_report
from garden.engine.carbon.records import CarbonRecord
from garden.engine.evaluation.storage import latest_completed
from garden.services.base import View, resolve
from garden.store import get_store
from garden.units import Equivalents, equivalents

LIVE_READINGS = 600


class CarbonRow(View):
    """One carbon record as shown in a table, a CSV file or JSON."""

    id: str
    kind: str
    ref_id: str | None
    label: str | None
    started: str
    started_at: float
    duration_s: float | None
    energy_kwh: float | None
    cpu_energy_kwh: float | None
    gpu_energy_kwh: float | None
    ram_energy_kwh: float | None
    emissions_kg: float | None
    machine_energy_kwh: float | None
    country_iso_code: str | None
    region: str | None
    pue: float | None
    power_source: str | None
    status: str
    unavailable_reason: str | None
    final_eval_loss: float | None
    eval_rouge_l: float | None = None
    whatif_emissions_kg: float | None

    @property
    def ended_at(self) -> float:
        return self.started_at + (self.duration_s or 0.0)


_RECORD_FIELDS = [
    name for name in CarbonRow.model_fields if name in CarbonRecord.__dataclass_fields__
]


class KindTotals(View):
    runs: int = 0
    energy_kwh: float = 0.0
    emissions_kg: float = 0.0


class CarbonSummary(View):
    """Totals over report rows: energy, CO2, duration, counts by kind, and equivalents."""

    runs: int
    unavailable: int
    running: int
    energy_kwh: float
    emissions_kg: float
    duration_s: float
    by_kind: dict[str, KindTotals]
    equivalents: Equivalents
    whatif_emissions_kg: float | None = None


class CarbonReport(View):
    rows: list[CarbonRow]
    summary: CarbonSummary


class WhatIfGrid(View):
    """Another grid (and PUE) to recompute past CO2 on."""

    country: str
    region: str | None = None
    pue: float = 1.0


class Country(View):
    iso_code: str
    name: str


class LivePower(View):
    """Attributed power of the run being measured now; ``run`` is None when there is none."""

    run: str | None = None
    kind: str | None = None
    times: list[float] = Field(default_factory=list)
    cpu_power_w: list[float] = Field(default_factory=list)
    gpu_power_w: list[float] = Field(default_factory=list)
    ram_power_w: list[float] = Field(default_factory=list)
    energy_kwh: float | None = None
    emissions_kg: float | None = None


# Reports -----------------------------------------------------------------------------------


def report(
    since: float | str | None = None,
    kind: str | None = None,
    search: str = "",
    what_if: WhatIfGrid | None = None,
    *,
    until: float | None = None,
    settings: Settings | None = None,
) -> CarbonReport:
    """Records started since ``since`` (epoch seconds or an ISO date), of one kind, matching
    ``search`` (label, reference or id), oldest first, with their totals.

    Raises ``CarbonError`` for an unreadable date or a what-if country CodeCarbon does not know.
    """
    settings = resolve(settings)
    start = engine_report.parse_since(since) if isinstance(since, str) else since
    found = records.list_records(
        settings, since=start, until=until, kind=kind or None, search=search
    )
    job_ids = [r.ref_id for r in found if r.kind == "training" and r.ref_id]
    losses = records.final_eval_losses(job_ids, settings)
    evaluated = latest_completed(get_store(settings.db_path), job_ids)
    rouge = {job_id: row["rouge_l"] for job_id, row in evaluated.items()}
    rows = [
        _row(record, losses.get(record.ref_id or ""), what_if, rouge.get(record.ref_id or ""))
        for record in found
    ]
    return CarbonReport(rows=rows, summary=summarize(rows))


def _row(
    record: CarbonRecord,
    eval_loss: float | None,
    what_if: WhatIfGrid | None,
    rouge_l: float | None = None,
) -> CarbonRow:
    whatif = None
    if what_if is not None:
        whatif = grid.what_if(record, what_if.country, what_if.region, what_if.pue).emissions_kg
    copied = {name: getattr(record, name) for name in _RECORD_FIELDS}
    return CarbonRow.model_validate(
        {
            **{name: None if value == "" else value for name, value in copied.items()},
            "started": datetime.fromtimestamp(record.started_at).isoformat(timespec="seconds"),
            "machine_energy_kwh": ((record.data or {}).get("machine") or {}).get("energy_kwh"),
            "status": engine_report.shown_status(record),
            "final_eval_loss": eval_loss,
            "eval_rouge_l": rouge_l,
            "whatif_emissions_kg": whatif,
        }
    )


def summarize(rows: list[CarbonRow]) -> CarbonSummary:
    """Totals over rows (unknown figures count as zero)."""
    by_kind: dict[str, KindTotals] = {}
    for row in rows:
        kind = by_kind.get(row.kind, KindTotals())
        by_kind[row.kind] = KindTotals(
            runs=kind.runs + 1,
            energy_kwh=kind.energy_kwh + (row.energy_kwh or 0.0),
            emissions_kg=kind.emissions_kg + (row.emissions_kg or 0.0),
        )
    energy = sum(row.energy_kwh or 0.0 for row in rows)
    emissions = sum(row.emissions_kg or 0.0 for row in rows)
    whatif = [row.whatif_emissions_kg for row in rows if row.whatif_emissions_kg is not None]
    return CarbonSummary(
        runs=len(rows),
        unavailable=sum(1 for row in rows if row.status == "unavailable"),
        running=sum(1 for row in rows if row.status == "running"),
        energy_kwh=energy,
        emissions_kg=emissions,
        duration_s=sum(row.duration_s or 0.0 for row in rows),
        by_kind=by_kind,
        equivalents=equivalents(emissions, energy),
        whatif_emissions_kg=sum(whatif) if whatif else None,
    )


def fingerprint(*, settings: Settings | None = None) -> str:
    """Changes whenever a record is added or updated: poll it to refresh only on change."""
    return records.fingerprint(resolve(settings))


# Grids -------------------------------------------------------------------------------------


def countries() -> list[Country]:
    """Every country with grid data, sorted by name."""
    return [Country(iso_code=iso, name=name) for iso, name in grid.list_countries()]


def regions(country: str) -> list[str]:
    """Regions with their own grid data for a country (empty when there are none)."""
    return grid.list_regions(country)


def grid_intensity(country: str, region: str | None = None) -> float:
    """kg CO2e per kWh of a grid; raises ``CarbonError`` for an unknown country."""
    return grid.grid_intensity(country, region)


# Live power --------------------------------------------------------------------------------


def live_power(*, settings: Settings | None = None) -> LivePower:
    """The latest readings of the newest run still being measured, or an empty view."""
    settings = resolve(settings)
    live = records.live_records(settings)
    if not live:
        return LivePower()
    record = live[0]
    readings = records.list_readings(record.id, settings)[-LIVE_READINGS:]
    last = readings[-1] if readings else None
    return LivePower(
        run=record.label or record.ref_id or record.id,
        kind=record.kind,
        times=[r.ts for r in readings],
        cpu_power_w=[r.cpu_power_w or 0.0 for r in readings],
        gpu_power_w=[r.gpu_power_w or 0.0 for r in readings],
        ram_power_w=[r.ram_power_w or 0.0 for r in readings],
        energy_kwh=last.energy_kwh if last else None,
        emissions_kg=last.emissions_kg if last else None,
    )


# CSV ---------------------------------------------------------------------------------------


def export_csv(
    rows: list[CarbonRow], path: Path | str | None = None, *, settings: Settings | None = None
) -> Path:
    """Write rows as CSV (every ``CarbonRow`` field, floats in full) to ``path``, or to a new,
    unguessably named file under STORAGE_ROOT/temp (exports older than 30 minutes there are
    deleted). Raises ``OSError`` when it cannot be written."""
    if path is None:
        stamp = time.strftime("%Y%m%d")
        path = temp_file(resolve(settings).temp_path, f"carbon-report-{stamp}", ".csv")
    return engine_report.write_csv(
        path, list(CarbonRow.model_fields), (row.model_dump() for row in rows)
    )


def read_csv(path: Path | str) -> list[CarbonRow]:
    """Rows of a CSV written by ``export_csv``."""
    return [CarbonRow.model_validate(raw) for raw in engine_report.read_csv(path)]
