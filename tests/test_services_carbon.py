"""The carbon service over real CarbonMeter records in a private storage root."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from garden.config import Settings
from garden.engine.carbon import CarbonMeter, grid_intensity, records
from garden.errors import CarbonError
from garden.present import equivalents
from garden.services import carbon
from garden.services.carbon import WhatIfGrid
from garden.store import get_store, now


def busy(seconds: float) -> None:
    end = time.time() + seconds
    while time.time() < end:
        sum(i * i for i in range(2000))


def settings_for(root: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"carbon_tracking_interval": 0.5, **overrides}
    settings = Settings(_env_file=None, storage_root=root / "storage", **values)
    settings.ensure_storage()
    return settings


def metered(settings: Settings, kind: str, ref_id: str, label: str, seconds: float) -> str:
    with CarbonMeter(kind=kind, ref_id=ref_id, label=label, settings=settings) as meter:
        busy(seconds)
    assert meter.record is not None and meter.record.status == "final"
    return meter.emission_id


@pytest.fixture(scope="module")
def storage(module_tmp: Path) -> dict[str, Any]:
    """Three measured runs (training with an eval loss, chat, other) and one unavailable."""
    settings = settings_for(module_tmp)
    get_store(settings.db_path).insert(
        "jobs",
        {
            "id": "job-alpha",
            "name": "alpha-lora",
            "status": "completed",
            "spec_json": {"method": "lora"},
            "result_json": {"final_eval_loss": 1.25},
            "created_at": now(),
        },
    )
    ids = {"training": metered(settings, "training", "job-alpha", "alpha-lora", 1.2)}
    between = time.time()
    ids["chat"] = metered(settings, "chat", "chat-1", "chat session", 1.0)
    ids["other"] = metered(settings, "other", "bench_50%", "busy loop", 1.0)
    unknown_grid = settings.model_copy(update={"carbon_country_code": "XYZ"})
    broken = CarbonMeter(kind="other", label="no grid", settings=unknown_grid)
    broken.start()
    assert broken.stop().status == "unavailable"
    ids["unavailable"] = broken.emission_id
    return {"settings": settings, "ids": ids, "between": between}


def test_report_filters_in_sql(storage: dict[str, Any]) -> None:
    settings, ids = storage["settings"], storage["ids"]
    everything = carbon.report(settings=settings).rows
    assert [row.id for row in everything] == [
        ids["training"],
        ids["chat"],
        ids["other"],
        ids["unavailable"],
    ]
    assert [row.kind for row in carbon.report(kind="chat", settings=settings).rows] == ["chat"]
    by_label = carbon.report(search="ALPHA", settings=settings).rows
    assert [row.id for row in by_label] == [ids["training"]]
    assert by_label[0].final_eval_loss == pytest.approx(1.25)
    assert [r.id for r in carbon.report(search="chat-1", settings=settings).rows] == [ids["chat"]]
    by_id = carbon.report(search=ids["other"][-6:], settings=settings).rows
    assert [row.id for row in by_id] == [ids["other"]]
    assert [r.id for r in carbon.report(search="_50%", settings=settings).rows] == [ids["other"]]
    for wildcard in ("a%e", "t_s"):  # LIKE wildcards are plain text: "chat session" is no match
        assert carbon.report(search=wildcard, settings=settings).rows == []
    since = carbon.report(since=storage["between"], settings=settings).rows
    assert ids["training"] not in {row.id for row in since} and len(since) == 3
    window = carbon.report(
        since=storage["between"], until=everything[2].started_at, settings=settings
    )
    assert [row.id for row in window.rows] == [ids["chat"]]
    assert carbon.report(since="2999-01-01", settings=settings).rows == []
    assert len(carbon.report(since="2000-01-01", kind="other", settings=settings).rows) == 2
    with pytest.raises(CarbonError, match="YYYY-MM-DD"):
        carbon.report(since="last tuesday", settings=settings)


def test_rows_and_totals(storage: dict[str, Any]) -> None:
    result = carbon.report(settings=storage["settings"])
    measured = [row for row in result.rows if row.status == "final"]
    assert len(measured) == 3
    for row in measured:
        assert row.energy_kwh and row.energy_kwh > 0 and row.emissions_kg and row.emissions_kg > 0
        assert row.machine_energy_kwh is not None and row.machine_energy_kwh >= row.energy_kwh
        assert (row.country_iso_code, row.region) == ("USA", "california")
        assert row.power_source and row.started.startswith(time.strftime("%Y-"))
    unavailable = result.rows[-1]
    assert unavailable.status == "unavailable" and "XYZ" in (unavailable.unavailable_reason or "")
    assert unavailable.energy_kwh is None

    summary = result.summary
    energy = sum(row.energy_kwh or 0.0 for row in measured)
    emissions = sum(row.emissions_kg or 0.0 for row in measured)
    assert (summary.runs, summary.unavailable, summary.running) == (4, 1, 0)
    assert summary.energy_kwh == pytest.approx(energy)
    assert summary.emissions_kg == pytest.approx(emissions)
    assert summary.by_kind["other"].runs == 2 and summary.by_kind["chat"].runs == 1
    assert summary.by_kind["training"].energy_kwh == pytest.approx(measured[0].energy_kwh)
    assert summary.equivalents == equivalents(emissions, energy)
    assert summary.whatif_emissions_kg is None
    dumped = summary.model_dump(mode="json")
    assert set(dumped["equivalents"]) == {
        "car_km",
        "smartphone_charges",
        "kettle_boils",
        "led_bulb_hours",
        "tree_days",
    }


def test_what_if_recomputes_co2_not_energy(storage: dict[str, Any]) -> None:
    settings = storage["settings"]
    france = carbon.report(what_if=WhatIfGrid(country="FRA"), settings=settings)
    doubled = carbon.report(what_if=WhatIfGrid(country="FRA", pue=2.0), settings=settings)
    intensity = carbon.grid_intensity("FRA")
    assert intensity == grid_intensity("FRA") and intensity != carbon.grid_intensity("POL")
    for row, twice in zip(france.rows, doubled.rows, strict=True):
        if row.energy_kwh is None:
            assert row.whatif_emissions_kg is None
            continue
        assert row.whatif_emissions_kg == pytest.approx(row.energy_kwh * intensity)
        assert twice.whatif_emissions_kg == pytest.approx(2 * row.energy_kwh * intensity)
        assert twice.energy_kwh == row.energy_kwh
    assert france.summary.whatif_emissions_kg == pytest.approx(
        france.summary.energy_kwh * intensity
    )
    assert france.summary.emissions_kg == carbon.report(settings=settings).summary.emissions_kg
    with pytest.raises(CarbonError, match="ISO"):
        carbon.report(what_if=WhatIfGrid(country="XYZ"), settings=settings)


def test_grids() -> None:
    countries = {country.iso_code: country.name for country in carbon.countries()}
    assert countries["FRA"] == "France" and "USA" in countries
    assert "california" in carbon.regions("USA")
    assert carbon.regions("FRA") == []
    assert carbon.grid_intensity("USA", "california") != carbon.grid_intensity("USA")


def test_csv_round_trip(storage: dict[str, Any], tmp_path: Path) -> None:
    settings = storage["settings"]
    rows = carbon.report(what_if=WhatIfGrid(country="DEU"), settings=settings).rows
    default = carbon.export_csv(rows, settings=settings)
    assert default.parent == settings.temp_path and default.suffix == ".csv"
    assert carbon.read_csv(default) == rows
    chosen = carbon.export_csv(rows[:1], tmp_path / "out" / "carbon.csv")
    assert carbon.read_csv(chosen) == rows[:1]
    assert chosen.read_text(encoding="utf-8").splitlines()[0].startswith("id,kind,ref_id,label")


def test_live_power_stale_meter_and_fingerprint(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    assert carbon.live_power(settings=settings) == carbon.LivePower()
    empty = carbon.fingerprint(settings=settings)

    meter = CarbonMeter(kind="training", ref_id="job-live", label="live run", settings=settings)
    meter.start()
    try:
        live = carbon.live_power(settings=settings)
        deadline = time.time() + 60  # a loaded CI machine can delay the first reading
        while not (live.times and live.energy_kwh) and time.time() < deadline:
            busy(0.5)
            live = carbon.live_power(settings=settings)
        assert (live.run, live.kind) == ("live run", "training")
        assert len(live.times) >= 1 and live.times == sorted(live.times)
        assert live.energy_kwh and live.energy_kwh > 0 and max(live.cpu_power_w) > 0
        during = carbon.fingerprint(settings=settings)
        assert during != empty
        assert [row.status for row in carbon.report(settings=settings).rows] == ["running"]
        summary = carbon.report(settings=settings).summary
        assert summary.running == 1
    finally:
        meter.stop()
    assert carbon.fingerprint(settings=settings) != during
    assert carbon.live_power(settings=settings).run is None

    silent = CarbonMeter(kind="chat", label="silent", settings=settings, interval_s=60.0)
    silent.start()
    try:
        ten_minutes_ago = time.time() - 600
        records.update_record(
            silent.emission_id,
            {"started_at": ten_minutes_ago, "ended_at": ten_minutes_ago},
            settings,
        )
        statuses = {row.label: row.status for row in carbon.report(settings=settings).rows}
        assert statuses == {"live run": "final", "silent": "interrupted"}
        assert carbon.report(settings=settings).summary.running == 0
        assert carbon.live_power(settings=settings).run is None
    finally:
        silent.stop()
