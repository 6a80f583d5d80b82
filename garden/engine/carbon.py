"""Energy and CO2 of every run and every answer, measured with CodeCarbon, offline.

A :class:`CarbonMeter` wraps CodeCarbon's ``OfflineEmissionsTracker`` in "machine" mode and
attributes a share of the machine's energy to the work it measures (see ``docs/carbon.md``):

* **Attribution rule.** Over each measurement interval, a meter is credited with the
  machine's CPU and RAM energy times its *CPU share*: the CPU time used by its own process
  tree (its process and children, minus the trees of other live meters) divided by the CPU
  time used by the whole machine. Meters living in the same process split that process's
  share equally. GPU energy is split equally among live meters. The shares of disjoint
  process trees never sum above one, so a chat session and a training run that overlap
  never count the same energy twice. Machine-level figures are kept beside the attributed
  ones (``data["machine"]``).
* **Per-answer rule.** ``energy_between(t0, t1)`` returns the meter's attributed energy in
  that window; inside a measurement interval, energy is spread in proportion to the
  meter's CPU time (sampled every second), so a short answer gets the energy of the CPU
  work it caused rather than a slice of wall-clock time.

Nothing here ever talks to the network, reads user-level CodeCarbon configuration, touches
signal handlers, or raises out of ``start``/``snapshot``/``stop``.
"""

from __future__ import annotations

import bisect
import contextlib
import dataclasses
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from garden.config import Settings, get_settings
from garden.store import get_store, new_id, now

log = logging.getLogger(__name__)

KINDS = ("training", "chat", "other")
FINE_SAMPLE_S = 1.0
_MEASURED_CPU_MODES = {
    "intel_rapl": "measured (Intel/AMD RAPL counters)",
    "windows_emi": "measured (Windows Energy Meter Interface)",
    "intel_power_gadget": "measured (Intel Power Gadget)",
    "apple_powermetrics": "measured (Apple powermetrics)",
}

# Equivalents: constants and where they come from -------------------------------------------
# US EPA, "Greenhouse Gas Emissions from a Typical Passenger Vehicle" (2023): 400 g CO2/mile.
CAR_KG_PER_KM = 0.400 / 1.609344
# US EPA, Greenhouse Gas Equivalencies Calculator — calculations and references:
# 0.019 kWh of electricity per smartphone charge.
SMARTPHONE_CHARGE_KWH = 0.019
# Physics: heating 1 L of water from 20 to 100 °C takes 4.186 kJ/(kg·K) × 80 K = 0.093 kWh;
# at a kettle's ~90 % efficiency that is ~0.103 kWh per boil.
KETTLE_BOIL_KWH = 4.186 * 80 / 3600 / 0.9
# A 10 W LED bulb (a common 800-lumen, "60 W equivalent" bulb) for one hour.
LED_BULB_HOUR_KWH = 0.010
# US EPA, Greenhouse Gas Equivalencies Calculator: one urban tree seedling grown for 10 years
# sequesters 0.060 t CO2, i.e. 60 kg / 3652 days.
TREE_DAY_KG = 60.0 / 3652.5

EQUIVALENT_SOURCES: dict[str, str] = {
    "car_km": "US EPA (2023), typical passenger vehicle: 400 g CO2 per mile",
    "smartphone_charges": "US EPA GHG Equivalencies Calculator: 0.019 kWh per smartphone charge",
    "kettle_boils": "physics: 1 L of water from 20 to 100 °C at 90 % efficiency ≈ 0.103 kWh",
    "led_bulb_hours": "a 10 W LED bulb (800 lm) for one hour = 0.010 kWh",
    "tree_days": "US EPA GHG Equivalencies Calculator: a tree seedling grown 10 years "
    "stores 60 kg CO2 (≈16 g per day)",
}


def equivalents(emissions_kg: float, energy_kwh: float) -> dict[str, float]:
    """Everyday equivalents of an amount of CO2 and energy (constants and sources above)."""
    emissions_kg = max(float(emissions_kg or 0.0), 0.0)
    energy_kwh = max(float(energy_kwh or 0.0), 0.0)
    return {
        "car_km": emissions_kg / CAR_KG_PER_KM,
        "smartphone_charges": energy_kwh / SMARTPHONE_CHARGE_KWH,
        "kettle_boils": energy_kwh / KETTLE_BOIL_KWH,
        "led_bulb_hours": energy_kwh / LED_BULB_HOUR_KWH,
        "tree_days": emissions_kg / TREE_DAY_KG,
    }


def _plain(value: float) -> str:
    """Two significant digits without scientific notation: 0.0000773 -> "0.000077"."""
    import math

    if value <= 0:
        return "0"
    if value >= 100:
        return f"{value:,.0f}"
    digits = max(0, 1 - math.floor(math.log10(value)))
    return f"{value:.{digits}f}"


def describe_equivalents(eq: dict[str, float]) -> str:
    """One line for people: "≈ 7.7 cm by car · 0.0057 smartphone charges · …"."""
    km = eq["car_km"]
    if km >= 1:
        distance = f"{_plain(km)} km"
    elif km >= 0.001:
        distance = f"{_plain(km * 1000)} m"
    else:
        distance = f"{_plain(km * 100000)} cm"
    return (
        f"≈ {distance} by car · {_plain(eq['smartphone_charges'])} smartphone charges · "
        f"{_plain(eq['kettle_boils'])} kettle boils · {_plain(eq['led_bulb_hours'])} h of an "
        "LED bulb"
    )


def power_label(power_source: str | None) -> str:
    """ "measured", "estimated" or "partly measured" from a record's ``power_source``."""
    if not power_source:
        return "—"
    if "estimated" in power_source and "measured" in power_source:
        return "partly measured"
    return "measured" if "measured" in power_source else "estimated"


# Grid intensity (CodeCarbon's bundled, offline data) ----------------------------------------


def grid_intensity(country_iso_code: str, region: str | None = None) -> float:
    """kg CO2e per kWh for a country (ISO-3) and optional region, from CodeCarbon's data.

    Regional data exists for the USA, Canada, China and the Nordic countries; elsewhere (or
    for an unknown region) the country's figure is used. Raises ``CarbonError`` for an
    unknown country.
    """
    from codecarbon.core.emissions import Emissions
    from codecarbon.core.units import Energy
    from codecarbon.external.geography import GeoMetadata
    from codecarbon.input import DataSource

    from garden.errors import CarbonError

    iso = (country_iso_code or "").strip().upper()
    mix = DataSource().get_global_energy_mix_data()
    if iso not in mix:
        raise CarbonError(
            f"Unknown country code {country_iso_code!r}.",
            hint="Use an ISO 3166 alpha-3 code such as USA, FRA, DEU or GBR.",
        )
    geo = GeoMetadata(
        country_iso_code=iso,
        country_name=mix[iso]["country_name"],
        region=(region or "").strip().lower() or None,
    )
    engine = Emissions(DataSource(), None)
    with _quiet_codecarbon():
        return float(engine.get_private_infra_emissions(Energy.from_energy(kWh=1.0), geo))


def list_countries() -> list[tuple[str, str]]:
    """(ISO-3 code, name) of every country CodeCarbon has grid data for, sorted by name."""
    from codecarbon.input import DataSource

    mix = DataSource().get_global_energy_mix_data()
    return sorted(((iso, row["country_name"]) for iso, row in mix.items()), key=lambda x: x[1])


def list_regions(country_iso_code: str) -> list[str]:
    """Regions with their own grid data for a country (empty when there are none)."""
    from codecarbon.input import DataSource

    iso = (country_iso_code or "").upper()
    source = DataSource()
    if iso in ("USA", "CAN", "CHN"):
        with contextlib.suppress(Exception):
            data = source.get_country_emissions_data(iso.lower())
            return sorted(key for key in data if not key.startswith("_"))
        with contextlib.suppress(Exception):
            data = source.get_country_energy_mix_data(iso.lower())
            return sorted(key for key in data if not key.startswith("_"))
    return []


def what_if(
    record: CarbonRecord, country_iso_code: str, region: str | None = None, pue: float | None = None
) -> dict[str, float | None]:
    """CO2 of a past record under another grid (and PUE); the measured energy is untouched.

    The measured energy already includes the PUE it was measured with; a different PUE scales
    it by ``pue / record.pue`` for the hypothetical figure only.
    """
    if record.energy_kwh is None:
        return {"energy_kwh": None, "emissions_kg": None, "intensity_kg_per_kwh": None}
    intensity = grid_intensity(country_iso_code, region)
    energy = float(record.energy_kwh)
    if pue is not None and record.pue:
        energy *= float(pue) / float(record.pue)
    return {
        "energy_kwh": energy,
        "emissions_kg": energy * intensity,
        "intensity_kg_per_kwh": intensity,
    }


@contextlib.contextmanager
def _quiet_codecarbon():
    logger = logging.getLogger("codecarbon")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


# Records -----------------------------------------------------------------------------------


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
    cpu_energy_kwh: float | None = None
    gpu_energy_kwh: float | None = None
    ram_energy_kwh: float | None = None
    emissions_kg: float | None = None
    emissions_rate_kg_s: float | None = None
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

    def to_row(self) -> dict[str, Any]:
        row = dataclasses.asdict(self)
        row["data_json"] = row.pop("data")
        return row

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> CarbonRecord:
        names = {f.name for f in dataclasses.fields(cls)} - {"data"}
        values = {key: row.get(key) for key in names}
        values["status"] = values["status"] or "running"
        return cls(**values, data=row.get("data_json") or {})


def get_record(emission_id: str, settings: Settings | None = None) -> CarbonRecord | None:
    settings = settings or get_settings()
    row = get_store(settings.db_path).get("emissions", emission_id)
    return CarbonRecord.from_row(row) if row else None


def list_records(
    settings: Settings | None = None,
    *,
    since: float | None = None,
    until: float | None = None,
    kind: str | None = None,
) -> list[CarbonRecord]:
    """Records oldest first, optionally within [since, until) by start time and of one kind."""
    settings = settings or get_settings()
    sql, params = "SELECT * FROM emissions WHERE 1=1", []
    if since is not None:
        sql += " AND started_at >= ?"
        params.append(since)
    if until is not None:
        sql += " AND started_at < ?"
        params.append(until)
    if kind:
        sql += " AND kind = ?"
        params.append(kind)
    rows = get_store(settings.db_path).query(sql + " ORDER BY started_at ASC", params)
    return [CarbonRecord.from_row(row) for row in rows]


def list_readings(emission_id: str, settings: Settings | None = None) -> list[dict[str, Any]]:
    settings = settings or get_settings()
    return get_store(settings.db_path).query(
        "SELECT * FROM emission_readings WHERE emission_id = ? ORDER BY ts ASC", (emission_id,)
    )


# CPU accounting ----------------------------------------------------------------------------


def _machine_busy_cpu_s() -> float:
    import psutil

    times = psutil.cpu_times()
    idle = times.idle + getattr(times, "iowait", 0.0)
    total = sum(times)
    return max(total - idle - getattr(times, "guest", 0.0) - getattr(times, "guest_nice", 0.0), 0.0)


def _tree_cpu_s(exclude: set[int]) -> float:
    """CPU seconds of this process and its children, minus excluded processes' subtrees."""
    import psutil

    me = psutil.Process()
    try:
        children = me.children(recursive=True)
    except psutil.Error:
        children = []
    skip: set[int] = set()
    for proc in children:
        if proc.pid in exclude:
            skip.add(proc.pid)
            with contextlib.suppress(psutil.Error):
                skip.update(p.pid for p in proc.children(recursive=True))
    total = 0.0
    for proc in [me, *children]:
        if proc.pid in skip:
            continue
        with contextlib.suppress(psutil.Error):
            cpu = proc.cpu_times()
            total += cpu.user + cpu.system
    return total


@dataclass
class _Interval:
    """What one meter was credited with between two measurements."""

    t0: float
    t1: float
    energy_kwh: float
    emissions_kg: float


# The meter ---------------------------------------------------------------------------------


def _make_handler(meter: CarbonMeter) -> Any:
    from codecarbon.output_methods.base_output import BaseOutput

    class _GardenOutput(BaseOutput):
        """CodeCarbon's public output hook: every measurement becomes a reading."""

        def live_out(self, total: Any, delta: Any) -> None:
            meter._on_measurement(total)

        def out(self, total: Any, delta: Any) -> None:
            meter._final_data = total

    return _GardenOutput()


class CarbonMeter:
    """Measures the energy and CO2 attributed to one job or chat session (see module doc)."""

    def __init__(
        self,
        kind: str = "other",
        ref_id: str | None = None,
        label: str | None = None,
        settings: Settings | None = None,
        on_reading: Callable[[CarbonReading], None] | None = None,
        persist: bool = True,
        interval_s: float | None = None,
        *,
        pue: float = 1.0,
        output_dir: Path | str | None = None,
    ) -> None:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
        self.settings = settings or get_settings()
        self.kind = kind
        self.ref_id = ref_id
        self.label = label or (f"{kind} {ref_id}" if ref_id else kind)
        self.on_reading = on_reading
        self.persist = persist
        self.interval_s = float(interval_s or self.settings.carbon_tracking_interval)
        self.pue = float(pue)
        self.output_dir = Path(output_dir) if output_dir else self.settings.logs_path / "carbon"
        self.emission_id = new_id("em")
        self.available = False
        self.unavailable_reason: str | None = None
        self.started_at: float | None = None
        self.record: CarbonRecord | None = None
        self._tracker: Any = None
        self._lock = threading.RLock()
        self._measure_lock = threading.Lock()
        self._stop_lock = threading.Lock()
        self._stopped = threading.Event()
        self._readings: list[CarbonReading] = []
        self._intervals: list[_Interval] = []
        self._cpu_samples: deque[tuple[float, float]] = deque(maxlen=7200)
        self._sampler: threading.Thread | None = None
        self._prev: dict[str, float] | None = None
        self._exclude: set[int] = set()
        self._peers_same_pid = 1
        self._live_meters = 1
        self._final_data: Any = None
        self._power_source = ""
        self._hardware: list[str] = []

    # lifecycle -----------------------------------------------------------------------------
    def __enter__(self) -> CarbonMeter:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> CarbonMeter:
        """Start measuring. Never raises: on failure ``available`` is False and says why."""
        if self.started_at is not None:
            return self
        self.started_at = now()
        try:
            if not self.settings.carbon_tracking_enabled:
                raise RuntimeError("carbon tracking is switched off (CARBON_TRACKING_ENABLED)")
            self._check_output_dir()
            grid_intensity(self.settings.carbon_country_code, self.settings.carbon_region)
            self._insert_row()
            self._tracker = self._build_tracker()
            self._tracker._scheduler.function = self._locked_measure
            self._sample_cpu()
            with self._measure_lock, _quiet_codecarbon():
                self._tracker.start()
            if self._tracker._start_time is None:
                raise RuntimeError("CodeCarbon did not start (see the codecarbon log)")
            self._describe_hardware()
            self.available = True
            self._update_row(status="running", power_source=self._power_source)
            if self.kind == "chat":
                self._sampler = threading.Thread(
                    target=self._sample_loop, name=f"carbon-{self.emission_id}", daemon=True
                )
                self._sampler.start()
        except Exception as exc:
            self._fail(exc)
        return self

    def stop(self) -> CarbonRecord:
        """Stop measuring and return (and persist) the final record. Never raises."""
        with self._stop_lock:
            if self.record is not None and self.record.status != "running":
                return self.record
            self._stopped.set()
            if self.started_at is None:
                self.started_at = now()
                self._fail(RuntimeError("the meter was never started"))
            if self.available and self._tracker is not None:
                try:
                    with self._measure_lock, _quiet_codecarbon():
                        self._tracker.stop()
                except Exception as exc:
                    log.warning("Stopping CodeCarbon failed: %s", exc)
                self.record = self._build_record(final=True)
            elif self.record is None or self.record.status == "running":
                self.record = self._unavailable_record()
            self._save(self.record)
            return self.record

    # readings ------------------------------------------------------------------------------
    def snapshot(self) -> CarbonReading:
        """Cumulative attributed figures now (a fresh measurement when the last is >1 s old)."""
        try:
            if self.available and not self._stopped.is_set():
                last = self._readings[-1].ts if self._readings else 0.0
                if time.time() - last >= 1.0:
                    self._locked_measure()
            with self._lock:
                if self._readings:
                    return self._readings[-1]
        except Exception as exc:
            log.debug("Carbon snapshot failed: %s", exc)
        return CarbonReading(
            ts=time.time(),
            duration_s=time.time() - (self.started_at or time.time()),
            energy_kwh=0.0,
            emissions_kg=0.0,
            cpu_power_w=0.0,
            gpu_power_w=0.0,
            ram_power_w=0.0,
        )

    def readings(self) -> list[CarbonReading]:
        with self._lock:
            return list(self._readings)

    def energy_between(self, t0: float, t1: float) -> float:
        """kWh attributed to this meter in [t0, t1] (epoch seconds): the per-answer rule."""
        return self._between(t0, t1)[0]

    def emissions_between(self, t0: float, t1: float) -> float:
        """kg CO2e attributed to this meter in [t0, t1] (epoch seconds)."""
        return self._between(t0, t1)[1]

    def _between(self, t0: float, t1: float) -> tuple[float, float]:
        if t1 <= t0:
            return 0.0, 0.0
        try:
            if self.available and not self._stopped.is_set():
                last = self._intervals[-1].t1 if self._intervals else 0.0
                if t1 > last:
                    self._sample_cpu()
                    self._locked_measure()
            with self._lock:
                intervals = list(self._intervals)
                samples = list(self._cpu_samples)
        except Exception as exc:
            log.debug("Carbon energy_between failed: %s", exc)
            return 0.0, 0.0
        energy = emissions = 0.0
        for item in intervals:
            lo, hi = max(t0, item.t0), min(t1, item.t1)
            if hi <= lo or item.energy_kwh <= 0:
                continue
            fraction = _cpu_fraction(samples, item.t0, item.t1, lo, hi)
            energy += item.energy_kwh * fraction
            emissions += item.emissions_kg * fraction
        return energy, emissions

    # internals -----------------------------------------------------------------------------
    def _check_output_dir(self) -> None:
        try:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            probe = self.output_dir / f".probe-{os.getpid()}-{threading.get_ident()}"
            probe.write_text("ok", encoding="utf-8")
            probe.unlink()
        except OSError as exc:
            raise RuntimeError(
                f"cannot write CodeCarbon's output to {self.output_dir} ({exc.strerror or exc}); "
                "check the permissions of STORAGE_ROOT/logs"
            ) from exc

    def _build_tracker(self) -> Any:
        """An offline tracker with every parameter explicit: no config file or env var can
        switch on network output or change what is measured."""
        from codecarbon import OfflineEmissionsTracker
        from codecarbon.output_methods.base_output import OutputMethod

        logging.getLogger("codecarbon").setLevel(logging.ERROR)
        tracker = OfflineEmissionsTracker(
            country_iso_code=self.settings.carbon_country_code,
            region=(self.settings.carbon_region or "").lower() or None,
            cloud_provider=None,
            cloud_region=None,
            country_2letter_iso_code=None,
            project_name="model-garden",
            experiment_name=self.kind,
            experiment_id=self.emission_id,
            measure_power_secs=self.interval_s,
            api_call_interval=1,
            api_endpoint="http://127.0.0.1:9/disabled",
            api_key=None,
            output_dir=str(self.output_dir),
            output_file=f"{self.emission_id}.csv",
            output_methods=[OutputMethod.CSV],  # derives every save_to_* flag
            logging_logger=None,
            prometheus_url="http://127.0.0.1:9/disabled",
            output_handlers=[_make_handler(self)],
            gpu_ids=None,
            emissions_endpoint=None,
            electricitymaps_api_token=None,
            tracking_mode="machine",
            log_level="error",  # its per-measurement INFO lines would flood the app log
            on_csv_write="append",
            logger_preamble="",
            force_cpu_power=None,
            force_ram_power=None,
            pue=self.pue,
            wue=0.0,
            force_carbon_intensity_g_co2e_kwh=None,
            force_mode_cpu_load=False,
            allow_multiple_runs=True,
            rapl_include_dram=False,
            rapl_prefer_psys=False,
            metadata=None,
        )
        if not hasattr(tracker, "_scheduler") or not hasattr(tracker, "_output_handlers"):
            raise RuntimeError("CodeCarbon's tracker could not be created (see the codecarbon log)")
        # A deprecated token in a user config file would otherwise enable the online API.
        tracker._electricitymaps_api_token = None
        return tracker

    def _locked_measure(self) -> None:
        if self._tracker is None or self._tracker._start_time is None:
            return
        with self._measure_lock:
            if self._tracker._start_time is not None:
                self._tracker._measure_power_and_energy()

    def _describe_hardware(self) -> None:
        parts: list[str] = []
        for hw in self._tracker._hardware:
            name = type(hw).__name__
            mode = getattr(hw, "_mode", None)
            if name == "CPU":
                if mode in _MEASURED_CPU_MODES:
                    parts.append(f"CPU {_MEASURED_CPU_MODES[mode]}")
                elif mode == "cpu_load":
                    parts.append(f"CPU estimated from TDP ({getattr(hw, '_tdp', '?')} W) and load")
                else:
                    parts.append(f"CPU estimated from TDP ({getattr(hw, '_tdp', '?')} W), constant")
            elif name == "GPU":
                parts.append("GPU measured (NVML)")
            elif name == "RAM":
                parts.append("RAM estimated from installed memory")
            else:
                parts.append(f"{name} ({hw.description()})")
        self._hardware = [hw.description() for hw in self._tracker._hardware]
        self._power_source = "; ".join(parts) or "unknown"

    def _on_measurement(self, total: Any) -> None:
        """Called by CodeCarbon (scheduler thread or a locked on-demand measurement)."""
        try:
            ts = time.time()
            cpu_own = self._sample_cpu(ts)
            machine_cpu = _machine_busy_cpu_s()
            machine = {
                "ts": ts,
                "cpu": float(total.cpu_energy),
                "gpu": float(total.gpu_energy),
                "ram": float(total.ram_energy),
                "emissions": float(total.emissions),
                "own_cpu_s": cpu_own,
                "machine_cpu_s": machine_cpu,
            }
            with self._lock:
                prev, self._prev = self._prev, machine
                if prev is None:
                    self._refresh_peers()
                    return
                self._refresh_peers()
                d_machine_cpu = machine_cpu - prev["machine_cpu_s"]
                d_own = cpu_own - prev["own_cpu_s"]
                share = min(max(d_own / d_machine_cpu, 0.0), 1.0) if d_machine_cpu > 0 else 0.0
                share /= max(self._peers_same_pid, 1)
                gpu_share = 1.0 / max(self._live_meters, 1)
                d_cpu = max(machine["cpu"] - prev["cpu"], 0.0) * share
                d_ram = max(machine["ram"] - prev["ram"], 0.0) * share
                d_gpu = max(machine["gpu"] - prev["gpu"], 0.0) * gpu_share
                d_machine = sum(max(machine[k] - prev[k], 0.0) for k in ("cpu", "gpu", "ram"))
                d_em_machine = max(machine["emissions"] - prev["emissions"], 0.0)
                d_energy = d_cpu + d_ram + d_gpu
                intensity = d_em_machine / d_machine if d_machine > 0 else 0.0
                d_em = d_energy * intensity
                dt = max(ts - prev["ts"], 1e-9)
                base = self._readings[-1] if self._readings else None
                reading = CarbonReading(
                    ts=ts,
                    duration_s=ts - (self.started_at or ts),
                    energy_kwh=(base.energy_kwh if base else 0.0) + d_energy,
                    emissions_kg=(base.emissions_kg if base else 0.0) + d_em,
                    cpu_power_w=d_cpu * 3.6e6 / dt,
                    gpu_power_w=d_gpu * 3.6e6 / dt,
                    ram_power_w=d_ram * 3.6e6 / dt,
                    cpu_energy_kwh=(base.cpu_energy_kwh if base else 0.0) + d_cpu,
                    gpu_energy_kwh=(base.gpu_energy_kwh if base else 0.0) + d_gpu,
                    ram_energy_kwh=(base.ram_energy_kwh if base else 0.0) + d_ram,
                    machine_energy_kwh=machine["cpu"] + machine["gpu"] + machine["ram"],
                    share=share,
                )
                self._readings.append(reading)
                self._intervals.append(_Interval(prev["ts"], ts, d_energy, d_em))
            self._persist_reading(reading)
            if self.on_reading is not None:
                try:
                    self.on_reading(reading)
                except Exception as exc:
                    log.debug("on_reading callback failed: %s", exc)
        except Exception as exc:
            log.warning("Carbon reading failed: %s", exc)

    def _sample_cpu(self, ts: float | None = None) -> float:
        ts = ts or time.time()
        value = _tree_cpu_s(self._exclude)
        with self._lock:
            if not self._cpu_samples or ts > self._cpu_samples[-1][0]:
                self._cpu_samples.append((ts, value))
        return value

    def _sample_loop(self) -> None:
        while not self._stopped.wait(FINE_SAMPLE_S):
            with contextlib.suppress(Exception):
                self._sample_cpu()

    def _refresh_peers(self) -> None:
        """Live meters (this machine, any process) from the store: whose trees to exclude."""
        if not self.persist:
            return
        try:
            horizon = time.time() - max(3 * self.interval_s, 60.0)
            rows = get_store(self.settings.db_path).query(
                "SELECT id, json_extract(data_json, '$.pid') AS pid FROM emissions "
                "WHERE status = 'running' AND COALESCE(ended_at, started_at) >= ?",
                (horizon,),
            )
        except Exception as exc:
            log.debug("Could not read live meters: %s", exc)
            return
        pid = os.getpid()
        pids = [int(r["pid"]) for r in rows if r["pid"] is not None]
        self._exclude = {p for p in pids if p != pid}
        self._peers_same_pid = max(sum(1 for p in pids if p == pid), 1)
        self._live_meters = max(len(rows), 1)

    # persistence ---------------------------------------------------------------------------
    def _base_data(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "interval_s": self.interval_s,
            "scope": "process tree's CPU share of machine energy",
            "attribution": "cpu-share",
        }

    def _insert_row(self) -> None:
        if not self.persist:
            return
        record = CarbonRecord(
            id=self.emission_id,
            kind=self.kind,
            ref_id=self.ref_id,
            label=self.label,
            started_at=self.started_at or now(),
            ended_at=self.started_at,
            country_iso_code=self.settings.carbon_country_code,
            region=self.settings.carbon_region,
            pue=self.pue,
            tracking_mode="machine",
            status="running",
            data=self._base_data(),
        )
        try:
            get_store(self.settings.db_path).insert("emissions", record.to_row())
        except Exception as exc:
            log.warning("Could not record the carbon meter: %s", exc)
            self.persist = False

    def _update_row(self, **fields: Any) -> None:
        if not self.persist:
            return
        try:
            get_store(self.settings.db_path).update("emissions", self.emission_id, fields)
        except Exception as exc:
            log.debug("Could not update the carbon record: %s", exc)

    def _persist_reading(self, reading: CarbonReading) -> None:
        if not self.persist:
            return
        try:
            store = get_store(self.settings.db_path)
            store.insert(
                "emission_readings",
                {
                    "emission_id": self.emission_id,
                    "ts": reading.ts,
                    "energy_kwh": reading.energy_kwh,
                    "emissions_kg": reading.emissions_kg,
                    "cpu_power_w": reading.cpu_power_w,
                    "gpu_power_w": reading.gpu_power_w,
                    "ram_power_w": reading.ram_power_w,
                },
            )
            store.update(
                "emissions",
                self.emission_id,
                {
                    "ended_at": reading.ts,
                    "duration_s": reading.duration_s,
                    "energy_kwh": reading.energy_kwh,
                    "cpu_energy_kwh": reading.cpu_energy_kwh,
                    "gpu_energy_kwh": reading.gpu_energy_kwh,
                    "ram_energy_kwh": reading.ram_energy_kwh,
                    "emissions_kg": reading.emissions_kg,
                },
            )
        except Exception as exc:
            log.debug("Could not persist a carbon reading: %s", exc)

    def _build_record(self, *, final: bool) -> CarbonRecord:
        with self._lock:
            last = self._readings[-1] if self._readings else None
        ended = last.ts if last else time.time()
        duration = max(ended - (self.started_at or ended), 0.0)
        energy = last.energy_kwh if last else 0.0
        emissions = last.emissions_kg if last else 0.0
        data = self._base_data()
        total = self._final_data
        if total is not None:
            data["codecarbon"] = dataclasses.asdict(total)
            data["machine"] = {
                "energy_kwh": total.energy_consumed,
                "cpu_energy_kwh": total.cpu_energy,
                "gpu_energy_kwh": total.gpu_energy,
                "ram_energy_kwh": total.ram_energy,
                "emissions_kg": total.emissions,
                "cpu_power_w": total.cpu_power,
                "gpu_power_w": total.gpu_power,
                "ram_power_w": total.ram_power,
            }
        data["hardware"] = self._hardware
        data["mean_share"] = (
            energy / data["machine"]["energy_kwh"]
            if "machine" in data and data["machine"]["energy_kwh"]
            else None
        )
        data["intensity_kg_per_kwh"] = emissions / energy if energy else None
        data["readings"] = len(self._readings)

        def watts(kwh: float) -> float:
            return kwh * 3.6e6 / duration if duration > 0 else 0.0

        return CarbonRecord(
            id=self.emission_id,
            kind=self.kind,
            ref_id=self.ref_id,
            label=self.label,
            started_at=self.started_at or ended,
            ended_at=ended,
            duration_s=duration,
            energy_kwh=energy,
            cpu_energy_kwh=last.cpu_energy_kwh if last else 0.0,
            gpu_energy_kwh=last.gpu_energy_kwh if last else 0.0,
            ram_energy_kwh=last.ram_energy_kwh if last else 0.0,
            emissions_kg=emissions,
            emissions_rate_kg_s=emissions / duration if duration > 0 else 0.0,
            cpu_power_w=watts(last.cpu_energy_kwh) if last else 0.0,
            gpu_power_w=watts(last.gpu_energy_kwh) if last else 0.0,
            ram_power_w=watts(last.ram_energy_kwh) if last else 0.0,
            country_iso_code=self.settings.carbon_country_code,
            region=self.settings.carbon_region,
            pue=self.pue,
            tracking_mode="machine",
            power_source=self._power_source,
            status="final" if final else "running",
            data=data,
        )

    def _unavailable_record(self) -> CarbonRecord:
        ended = time.time()
        return CarbonRecord(
            id=self.emission_id,
            kind=self.kind,
            ref_id=self.ref_id,
            label=self.label,
            started_at=self.started_at or ended,
            ended_at=ended,
            duration_s=ended - (self.started_at or ended),
            country_iso_code=self.settings.carbon_country_code,
            region=self.settings.carbon_region,
            pue=self.pue,
            status="unavailable",
            unavailable_reason=self.unavailable_reason,
            data=self._base_data(),
        )

    def _save(self, record: CarbonRecord) -> None:
        if not self.persist:
            return
        row = record.to_row()
        row.pop("id")
        try:
            store = get_store(self.settings.db_path)
            if not store.update("emissions", self.emission_id, row):
                store.insert("emissions", record.to_row())
        except Exception as exc:
            log.warning("Could not save the carbon record: %s", exc)

    def _fail(self, exc: BaseException) -> None:
        self.available = False
        self.unavailable_reason = str(exc) or type(exc).__name__
        log.warning("Carbon tracking unavailable for %s: %s", self.label, self.unavailable_reason)
        if self._tracker is not None:
            with contextlib.suppress(Exception):
                self._tracker._scheduler.stop()
                self._tracker._scheduler_monitor_power.stop()
        self._stopped.set()
        self.record = self._unavailable_record()
        if self.persist:
            self._save(self.record)


def _cpu_fraction(
    samples: list[tuple[float, float]], t0: float, t1: float, lo: float, hi: float
) -> float:
    """Share of the CPU time used in [t0, t1] that fell in [lo, hi] (time share if none)."""
    whole = _cpu_at(samples, t1) - _cpu_at(samples, t0)
    if whole is None or whole <= 1e-6:
        return (hi - lo) / (t1 - t0)
    part = _cpu_at(samples, hi) - _cpu_at(samples, lo)
    return min(max(part / whole, 0.0), 1.0)


def _cpu_at(samples: list[tuple[float, float]], ts: float) -> float:
    """Cumulative own CPU seconds at ``ts``, linearly interpolated between samples."""
    if not samples:
        return 0.0
    index = bisect.bisect_left(samples, (ts, float("-inf")))
    if index <= 0:
        return samples[0][1]
    if index >= len(samples):
        return samples[-1][1]
    (a_ts, a_cpu), (b_ts, b_cpu) = samples[index - 1], samples[index]
    if b_ts <= a_ts:
        return b_cpu
    return a_cpu + (b_cpu - a_cpu) * (ts - a_ts) / (b_ts - a_ts)


# Reporting (CLI and Carbon tab) ------------------------------------------------------------

REPORT_COLUMNS: dict[str, type] = {
    "id": str,
    "kind": str,
    "ref_id": str,
    "label": str,
    "started": str,
    "started_at": float,
    "duration_s": float,
    "energy_kwh": float,
    "cpu_energy_kwh": float,
    "gpu_energy_kwh": float,
    "ram_energy_kwh": float,
    "emissions_kg": float,
    "machine_energy_kwh": float,
    "country_iso_code": str,
    "region": str,
    "pue": float,
    "power_source": str,
    "status": str,
    "unavailable_reason": str,
    "final_eval_loss": float,
    "whatif_emissions_kg": float,
}


def parse_since(value: str | None) -> float | None:
    """Epoch seconds of an ISO date/time (local time when no zone is given), or None."""
    from datetime import datetime

    from garden.errors import CarbonError

    if not value:
        return None
    try:
        return datetime.fromisoformat(value.strip()).timestamp()
    except ValueError:
        raise CarbonError(
            f"Cannot read the date {value!r}.", hint="Use YYYY-MM-DD or YYYY-MM-DDTHH:MM."
        ) from None


def _eval_losses(settings: Settings, job_ids: list[str]) -> dict[str, float]:
    if not job_ids:
        return {}
    marks = ", ".join("?" for _ in job_ids)
    rows = get_store(settings.db_path).query(
        f"SELECT id, result_json FROM jobs WHERE id IN ({marks})", job_ids
    )
    losses = {}
    for row in rows:
        result = row.get("result_json") or {}
        if isinstance(result, dict) and result.get("final_eval_loss") is not None:
            losses[row["id"]] = float(result["final_eval_loss"])
    return losses


def _is_stale(record: CarbonRecord) -> bool:
    """A "running" record whose meter stopped reporting (its process died)."""
    interval = float((record.data or {}).get("interval_s") or 15.0)
    last = record.ended_at or record.started_at
    return time.time() - last > max(3 * interval, 60.0)


def report_rows(
    records: list[CarbonRecord],
    settings: Settings | None = None,
    *,
    what_if_grid: tuple[str, str | None, float | None] | None = None,
) -> list[dict[str, Any]]:
    """One flat row per record (the table, the CSV and ``--json``), oldest first."""
    from datetime import datetime

    settings = settings or get_settings()
    losses = _eval_losses(
        settings, [r.ref_id for r in records if r.kind == "training" and r.ref_id]
    )
    intensity: float | None = None
    if what_if_grid is not None:
        intensity = grid_intensity(what_if_grid[0], what_if_grid[1])
    rows = []
    for record in records:
        whatif = None
        if intensity is not None and record.energy_kwh is not None:
            energy = record.energy_kwh
            pue = what_if_grid[2] if what_if_grid else None
            if pue and record.pue:
                energy *= pue / record.pue
            whatif = energy * intensity
        machine = (record.data or {}).get("machine") or {}
        status = record.status
        if status == "running" and _is_stale(record):
            status = "interrupted"
        rows.append(
            {
                "id": record.id,
                "kind": record.kind,
                "ref_id": record.ref_id,
                "label": record.label,
                "started": datetime.fromtimestamp(record.started_at).isoformat(timespec="seconds"),
                "started_at": record.started_at,
                "duration_s": record.duration_s,
                "energy_kwh": record.energy_kwh,
                "cpu_energy_kwh": record.cpu_energy_kwh,
                "gpu_energy_kwh": record.gpu_energy_kwh,
                "ram_energy_kwh": record.ram_energy_kwh,
                "emissions_kg": record.emissions_kg,
                "machine_energy_kwh": machine.get("energy_kwh"),
                "country_iso_code": record.country_iso_code,
                "region": record.region,
                "pue": record.pue,
                "power_source": record.power_source,
                "status": status,
                "unavailable_reason": record.unavailable_reason,
                "final_eval_loss": losses.get(record.ref_id or ""),
                "whatif_emissions_kg": whatif,
            }
        )
    return rows


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Totals over report rows: energy, CO2, duration, counts by kind, and equivalents."""
    energy = sum(r["energy_kwh"] or 0.0 for r in rows)
    emissions = sum(r["emissions_kg"] or 0.0 for r in rows)
    by_kind: dict[str, dict[str, float]] = {}
    for r in rows:
        kind = by_kind.setdefault(r["kind"], {"runs": 0, "energy_kwh": 0.0, "emissions_kg": 0.0})
        kind["runs"] += 1
        kind["energy_kwh"] += r["energy_kwh"] or 0.0
        kind["emissions_kg"] += r["emissions_kg"] or 0.0
    whatif = [r["whatif_emissions_kg"] for r in rows if r.get("whatif_emissions_kg") is not None]
    return {
        "runs": len(rows),
        "unavailable": sum(1 for r in rows if r["status"] == "unavailable"),
        "running": sum(1 for r in rows if r["status"] == "running"),
        "energy_kwh": energy,
        "emissions_kg": emissions,
        "duration_s": sum(r["duration_s"] or 0.0 for r in rows),
        "by_kind": by_kind,
        "equivalents": equivalents(emissions, energy),
        "whatif_emissions_kg": sum(whatif) if whatif else None,
    }


def write_csv(rows: list[dict[str, Any]], path: Path | str) -> Path:
    """Write report rows as CSV (``REPORT_COLUMNS``, floats at full precision)."""
    import csv

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(REPORT_COLUMNS))
        writer.writeheader()
        for row in rows:
            writer.writerow(
                {
                    key: ("" if row.get(key) is None else repr(row[key]))
                    if REPORT_COLUMNS[key] is float
                    else (row.get(key) or "")
                    for key in REPORT_COLUMNS
                }
            )
    return path


def read_csv(path: Path | str) -> list[dict[str, Any]]:
    """Read a CSV written by ``write_csv`` back into typed report rows."""
    import csv

    rows = []
    with Path(path).open(newline="", encoding="utf-8") as handle:
        for raw in csv.DictReader(handle):
            row: dict[str, Any] = {}
            for key, kind in REPORT_COLUMNS.items():
                value = raw.get(key, "")
                row[key] = None if value == "" else (float(value) if kind is float else value)
            rows.append(row)
    return rows
