"""The carbon meter: real CodeCarbon around real CPU work, offline, never failing the work."""

from __future__ import annotations

import multiprocessing
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from garden.config import Settings
from garden.engine.carbon import (
    CarbonMeter,
    get_record,
    grid_intensity,
    list_readings,
    what_if,
)
from garden.errors import CarbonError
from garden.present import equivalents
from garden.store import get_store


def busy(seconds: float) -> int:
    """Real CPU work: integer arithmetic for ``seconds``."""
    end, count = time.time() + seconds, 0
    while time.time() < end:
        count += sum(i * i for i in range(2000))
    return count


def settings_for(tmp_path: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {"carbon_tracking_interval": 0.5, **overrides}
    settings = Settings(_env_file=None, storage_root=tmp_path / "storage", **values)
    settings.ensure_storage()
    return settings


def test_meter_records_energy_and_emissions(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, carbon_country_code="DEU", carbon_region="")
    seen = []
    with CarbonMeter(
        kind="other",
        ref_id="cpu-work",
        label="busy loop",
        settings=settings,
        on_reading=seen.append,
    ) as meter:
        assert meter.available, meter.unavailable_reason
        busy(2.5)
    record = meter.stop()
    assert record.status == "final"
    assert record.energy_kwh > 0 and record.emissions_kg > 0
    assert record.cpu_energy_kwh > 0
    assert record.country_iso_code == "DEU"
    assert record.emissions_kg / record.energy_kwh == pytest.approx(grid_intensity("DEU"), rel=1e-6)
    assert "estimated" in record.power_source or "measured" in record.power_source
    assert record.data["machine"]["energy_kwh"] >= record.energy_kwh
    assert record.data["codecarbon"]["country_iso_code"] == "DEU"
    assert len(seen) >= 3

    stored = get_record(meter.emission_id, settings)
    assert stored is not None and stored.status == "final"
    assert stored.energy_kwh == pytest.approx(record.energy_kwh)
    readings = list_readings(meter.emission_id, settings)
    assert len(readings) == len(seen)
    assert [r.ts for r in readings] == sorted(r.ts for r in readings)
    assert readings[-1].energy_kwh == pytest.approx(seen[-1].energy_kwh)
    assert (tmp_path / "storage" / "logs" / "carbon" / f"{meter.emission_id}.csv").is_file()

    eq = equivalents(record.emissions_kg, record.energy_kwh).to_dict()
    assert set(eq) >= {"car_km", "smartphone_charges", "kettle_boils"}
    assert all(value > 0 for value in eq.values())


def test_country_changes_co2_not_energy(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, carbon_country_code="USA", carbon_region="california")
    with CarbonMeter(kind="other", settings=settings) as meter:
        busy(1.5)
    record = meter.record
    assert record is not None and record.energy_kwh > 0
    france = what_if(record, "FRA")
    poland = what_if(record, "POL")
    assert france.energy_kwh == record.energy_kwh == poland.energy_kwh
    assert france.emissions_kg != poland.emissions_kg
    assert poland.emissions_kg > france.emissions_kg
    assert france.emissions_kg == pytest.approx(record.energy_kwh * grid_intensity("FRA"))
    assert what_if(record, "USA", "california", pue=2.0).energy_kwh == pytest.approx(
        2 * record.energy_kwh
    )
    stored = get_record(meter.emission_id, settings)
    assert stored.energy_kwh == record.energy_kwh and stored.emissions_kg == record.emissions_kg
    with pytest.raises(CarbonError, match="ISO"):
        grid_intensity("XYZ")


def test_unwritable_output_dir_does_not_fail_the_work(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the output folder should be")
    readonly = tmp_path / "readonly"
    readonly.mkdir()
    readonly.chmod(0o500)
    for output_dir in (blocker / "carbon", readonly):
        meter = CarbonMeter(
            kind="training", ref_id="job-x", settings=settings, output_dir=output_dir
        )
        meter.start()
        if output_dir == readonly and meter.available:  # root ignores permissions
            meter.stop()
            continue
        assert not meter.available
        assert str(output_dir) in meter.unavailable_reason
        assert busy(0.2) > 0
        assert meter.snapshot().energy_kwh == 0.0
        assert meter.energy_between(time.time() - 1, time.time()) == 0.0
        record = meter.stop()
        assert record.status == "unavailable" and record.energy_kwh is None
        stored = get_record(meter.emission_id, settings)
        assert stored.status == "unavailable"
        assert stored.unavailable_reason == meter.unavailable_reason
        assert stored.ref_id == "job-x"


def test_unknown_country_is_reported_not_raised(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, carbon_country_code="XYZ")
    meter = CarbonMeter(kind="other", settings=settings).start()
    assert not meter.available and "XYZ" in meter.unavailable_reason
    assert meter.stop().status == "unavailable"


def test_no_network_and_user_config_ignored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A metered run never connects anywhere but loopback, whatever CodeCarbon config says."""
    home = tmp_path / "home"
    home.mkdir()
    (home / ".codecarbon.config").write_text(
        "[codecarbon]\nsave_to_api = True\napi_endpoint = https://api.codecarbon.io\n"
        "co2_signal_api_token = secret\nsave_to_prometheus = True\ntracking_mode = process\n"
    )
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(home)
    monkeypatch.setenv("CODECARBON_SAVE_TO_API", "True")
    monkeypatch.setenv("CODECARBON_EMISSIONS_ENDPOINT", "https://example.com/emissions")

    attempts: list[object] = []
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex

    def is_local(address: object) -> bool:
        if isinstance(address, (str, bytes)):
            return True  # AF_UNIX
        host = str(address[0]) if isinstance(address, tuple) else str(address)
        return host in ("localhost", "::1") or host.startswith("127.")

    def connect(self: socket.socket, address: object) -> object:
        attempts.append(address)
        if not is_local(address):
            raise OSError(f"network access attempted: {address}")
        return real_connect(self, address)

    def connect_ex(self: socket.socket, address: object) -> object:
        attempts.append(address)
        if not is_local(address):
            raise OSError(f"network access attempted: {address}")
        return real_connect_ex(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)

    settings = settings_for(tmp_path)
    with CarbonMeter(kind="other", settings=settings) as meter:
        busy(1.5)
    record = meter.record
    assert record.status == "final" and record.energy_kwh > 0
    tracker = meter._tracker
    assert tracker._tracking_mode == "machine"  # not the config file's "process"
    assert not tracker._save_to_api and not tracker._save_to_prometheus
    assert tracker._emissions_endpoint is None
    assert tracker._electricitymaps_api_token is None
    handlers = {type(h).__name__ for h in tracker._output_handlers}
    assert handlers == {"_GardenOutput", "FileOutput"}
    assert [a for a in attempts if not is_local(a)] == []


def test_signal_handlers_untouched_and_threads(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with CarbonMeter(kind="other", settings=settings) as meter:
        assert meter.available
        busy(0.3)
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before

    records = []

    def in_thread() -> None:
        with CarbonMeter(kind="other", settings=settings) as inner:
            busy(1.2)
        records.append(inner.record)

    worker = threading.Thread(target=in_thread)
    worker.start()
    worker.join(60)
    assert records and records[0].status == "final" and records[0].energy_kwh > 0


def measure_busy_then_idle(storage: str, results: Any) -> None:
    """In a process of its own (no sibling children to share its tree): busy 2 s, idle 2 s."""
    settings = settings_for(Path(storage), carbon_tracking_interval=30.0)
    with CarbonMeter(kind="chat", ref_id="engine-1", settings=settings) as meter:
        t0 = time.time()
        busy(2.0)
        t1 = time.time()
        time.sleep(2.0)
        t2 = time.time()
        windows = (meter.energy_between(t0, t1), meter.energy_between(t1, t2))
        results.put((*windows, meter.energy_between(t0, t2), meter.snapshot().energy_kwh))


def test_energy_between_follows_cpu_work(tmp_path: Path) -> None:
    """Per-answer rule: a busy window gets more energy than an idle one of the same length.

    Measured in a spawned process: the test session's own children (the shared app) would
    otherwise count as this process tree's CPU work during the idle window."""
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    child = context.Process(target=measure_busy_then_idle, args=(str(tmp_path), results))
    child.start()
    busy_kwh, idle_kwh, whole_kwh, total_kwh = results.get(timeout=120)
    child.join(30)
    assert busy_kwh > 0
    assert busy_kwh > 3 * idle_kwh
    assert whole_kwh == pytest.approx(busy_kwh + idle_kwh, rel=1e-6)
    assert total_kwh >= busy_kwh + idle_kwh - 1e-15


def test_overlapping_meters_do_not_double_count(tmp_path: Path) -> None:
    """Two live meters in one process split its share: together they stay within the machine's
    energy."""
    settings = settings_for(tmp_path)
    first = CarbonMeter(kind="training", ref_id="job-a", settings=settings).start()
    second = CarbonMeter(kind="chat", ref_id="chat-a", settings=settings).start()
    busy(2.5)
    a, b = second.stop(), first.stop()
    assert a.energy_kwh > 0 and b.energy_kwh > 0
    machine = max(a.data["machine"]["energy_kwh"], b.data["machine"]["energy_kwh"])
    assert a.energy_kwh + b.energy_kwh <= machine * 1.05
    shares = [
        r["energy_kwh"]
        for r in get_store(settings.db_path).query(
            "SELECT energy_kwh FROM emissions WHERE ref_id IN ('job-a', 'chat-a')"
        )
    ]
    assert len(shares) == 2
