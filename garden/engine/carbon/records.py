"""Carbon records and readings, and every query about them (the ``emissions`` tables)."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

from garden.config import Settings, get_settings
from garden.store import Store, get_store

DEFAULT_INTERVAL_S = 15.0
MIN_STALE_AFTER_S = 60.0
READING_COLUMNS = ("ts", "energy_kwh", "emissions_kg", "cpu_power_w", "gpu_power_w", "ram_power_w")
TOTAL_COLUMNS = (
    "duration_s",
    "energy_kwh",
    "cpu_energy_kwh",
    "gpu_energy_kwh",
    "ram_energy_kwh",
    "emissions_kg",
)


@dataclass(frozen=True)
class CarbonReading:
    """Cumulative figures attributed to one meter at ``ts`` (epoch seconds)."""

    ts: float
    duration_s: float
    energy_kwh: float
    emissions_kg: float
    cpu_power_w: float
    gpu_power_w: float
    ram_power_w: float
    cpu_energy_kwh: float = 0.0
    gpu_energy_kwh: float = 0.0
    ram_energy_kwh: float = 0.0
    machine_energy_kwh: float = 0.0
    share: float = 0.0

    def to_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class StoredReading:
    """One row of ``emission_readings``: what a live power chart needs."""

    ts: float
    energy_kwh: float | None
    emissions_kg: float | None
    cpu_power_w: float | None
    gpu_power_w: float | None
    ram_power_w: float | None


@dataclass
class CarbonRecord:
    """One row of the ``emissions`` table: a meter's final (or running) figures."""

    id: str
    kind: str
    ref_id: str | None
    label: str | None
    started_at: float
    ended_at: float | None = None
    duration_s: float | None = None
    energy_kwh: float | None = None
    emissions_kg: float | None = None
    emissions_rate_kg_s: float | None = None
    cpu_energy_kwh: float | None = None
    gpu_energy_kwh: float | None = None
    ram_energy_kwh: float | None = None
    cpu_power_w: float | None = None
    gpu_power_w: float | None = None
    ram_power_w: float | None = None
    country_iso_code: str | None = None
    region: str | None = None
    pue: float | None = None
    tracking_mode: str | None = None
    power_source: str | None = None
    status: str = "running"
    unavailable_reason: str | None = None
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def available(self) -> bool:
        return self.status != "unavailable"

    @property
    def pid(self) -> int | None:
        """The process whose meter wrote this record."""
        pid = (self.data or {}).get("pid")
        return None if pid is None else int(pid)

    def is_stale(self, at: float | None = None) -> bool:
        """A "running" record whose meter stopped reporting (its process died): the one rule.

        A live meter updates its record every interval; one silent for three intervals (and at
        least a minute) is gone.
        """
        if self.status != "running":
            return False
        interval = float((self.data or {}).get("interval_s") or DEFAULT_INTERVAL_S)
        last = self.ended_at or self.started_at
        return (at if at is not None else time.time()) - last > max(3 * interval, MIN_STALE_AFTER_S)

    def to_row(self) -> dict[str, Any]:
        row = dataclasses.asdict(self)
        row["data_json"] = row.pop("data")
        return row

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> CarbonRecord:
        names = {f.name for f in dataclasses.fields(cls)} - {"data"}
        values: dict[str, Any] = {key: row.get(key) for key in names}
        values["status"] = values["status"] or "running"
        return cls(**values, data=row.get("data_json") or {})


def _store(settings: Settings | None) -> Store:
    return get_store((settings or get_settings()).db_path)


# Queries -----------------------------------------------------------------------------------


def get_record(emission_id: str, settings: Settings | None = None) -> CarbonRecord | None:
    row = _store(settings).get("emissions", emission_id)
    return CarbonRecord.from_row(row) if row else None


def list_records(
    settings: Settings | None = None,
    *,
    since: float | None = None,
    until: float | None = None,
    kind: str | None = None,
    search: str = "",
    status: str | None = None,
) -> list[CarbonRecord]:
    """Records oldest first, filtered in SQL: started in [since, until), of one kind and
    status, and with ``search`` in the label, reference id or id (case-insensitive)."""
    clauses: list[str] = []
    params: list[Any] = []
    for clause, value in (
        ("started_at >= ?", since),
        ("started_at < ?", until),
        ("kind = ?", kind or None),
        ("status = ?", status),
    ):
        if value is not None:
            clauses.append(clause)
            params.append(value)
    if search.strip():
        escaped = search.strip().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        clauses.append(
            "(" + " OR ".join(f"{c} LIKE ? ESCAPE '\\'" for c in ("label", "ref_id", "id")) + ")"
        )
        params.extend([f"%{escaped}%"] * 3)
    where = " AND ".join(clauses) or "1=1"
    rows = _store(settings).query(
        f"SELECT * FROM emissions WHERE {where} ORDER BY started_at ASC", params
    )
    return [CarbonRecord.from_row(row) for row in rows]


def live_records(settings: Settings | None = None) -> list[CarbonRecord]:
    """Records whose meter is still reporting, newest first."""
    running = list_records(settings, status="running")
    return [record for record in reversed(running) if not record.is_stale()]


def list_readings(emission_id: str, settings: Settings | None = None) -> list[StoredReading]:
    rows = _store(settings).query(
        f"SELECT {', '.join(READING_COLUMNS)} FROM emission_readings "
        "WHERE emission_id = ? ORDER BY ts ASC",
        (emission_id,),
    )
    return [StoredReading(**row) for row in rows]


def fingerprint(settings: Settings | None = None) -> str:
    """Changes whenever a record is added or updated (cheap: one aggregate query)."""
    row = _store(settings).query(
        "SELECT COUNT(*) AS n, MAX(COALESCE(ended_at, started_at)) AS last, "
        "SUM(status = 'running') AS running FROM emissions"
    )[0]
    return f"{row['n']}:{row['last']}:{row['running']}"


def final_eval_losses(job_ids: list[str], settings: Settings | None = None) -> dict[str, float]:
    """The final eval loss of each finished training job that has one, by job id."""
    if not job_ids:
        return {}
    marks = ", ".join("?" for _ in job_ids)
    rows = _store(settings).query(
        f"SELECT id, json_extract(result_json, '$.final_eval_loss') AS loss FROM jobs "
        f"WHERE id IN ({marks})",
        job_ids,
    )
    return {row["id"]: float(row["loss"]) for row in rows if row["loss"] is not None}


# Writes (by the meter) ---------------------------------------------------------------------


def insert_record(record: CarbonRecord, settings: Settings | None = None) -> None:
    _store(settings).insert("emissions", record.to_row())


def update_record(
    emission_id: str, fields: dict[str, Any], settings: Settings | None = None
) -> None:
    _store(settings).update("emissions", emission_id, fields)


def save_record(record: CarbonRecord, settings: Settings | None = None) -> None:
    """Write the whole record, inserting it when its row is missing."""
    row = record.to_row()
    row.pop("id")
    store = _store(settings)
    if not store.update("emissions", record.id, row):
        store.insert("emissions", record.to_row())


def add_reading(emission_id: str, reading: CarbonReading, settings: Settings | None = None) -> None:
    """Store one reading and bring the record's running totals up to it."""
    store = _store(settings)
    values = reading.to_dict()
    store.insert(
        "emission_readings",
        {"emission_id": emission_id, **{key: values[key] for key in READING_COLUMNS}},
    )
    store.update(
        "emissions",
        emission_id,
        {"ended_at": reading.ts, **{key: values[key] for key in TOTAL_COLUMNS}},
    )
