"""The carbon meter: CodeCarbon's offline tracker around one job or chat session.

A :class:`CarbonMeter` wraps CodeCarbon's ``OfflineEmissionsTracker`` in "machine" mode and
credits the work it measures with a share of the machine's energy (the rules are in
``attribution``; see ``docs/carbon.md``). Machine-level figures are kept beside the
attributed ones (``data["machine"]``). ``energy_between(t0, t1)`` gives the energy of one
answer.

Nothing here ever talks to the network, reads user-level CodeCarbon configuration, touches
signal handlers, or raises out of ``start``/``snapshot``/``stop``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from garden.config import Settings, get_settings
from garden.engine.carbon import records
from garden.engine.carbon.attribution import (
    Credit,
    MachineSample,
    credit,
    credit_between,
    machine_busy_cpu_s,
    tree_cpu_s,
)
from garden.engine.carbon.grid import grid_intensity, quiet_codecarbon
from garden.engine.carbon.records import CarbonReading, CarbonRecord
from garden.engine.carbon.tracker import check_output_dir, offline_tracker, power_source
from garden.store import new_id, now

log = logging.getLogger(__name__)

KINDS = ("training", "chat", "other")
FINE_SAMPLE_S = 1.0


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
        self._credits: list[Credit] = []
        self._cpu_samples: deque[tuple[float, float]] = deque(maxlen=7200)
        self._sampler: threading.Thread | None = None
        self._prev: MachineSample | None = None
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
            check_output_dir(self.output_dir)
            grid_intensity(self.settings.carbon_country_code, self.settings.carbon_region)
            self._insert_row()
            self._tracker = offline_tracker(self)
            self._tracker._scheduler.function = self._locked_measure
            self._sample_cpu()
            with self._measure_lock, quiet_codecarbon():
                self._tracker.start()
            if self._tracker._start_time is None:
                raise RuntimeError("CodeCarbon did not start (see the codecarbon log)")
            self._power_source = power_source(self._tracker)
            self._hardware = [hw.description() for hw in self._tracker._hardware]
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
                    with self._measure_lock, quiet_codecarbon():
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
                last = self._credits[-1].t1 if self._credits else 0.0
                if t1 > last:
                    self._sample_cpu()
                    self._locked_measure()
            with self._lock:
                credits = list(self._credits)
                samples = list(self._cpu_samples)
        except Exception as exc:
            log.debug("Carbon energy_between failed: %s", exc)
            return 0.0, 0.0
        return credit_between(credits, samples, t0, t1)

    # internals -----------------------------------------------------------------------------
    def on_final(self, total: Any) -> None:
        """CodeCarbon's final figures for the whole machine (its ``out`` hook)."""
        self._final_data = total

    def _locked_measure(self) -> None:
        if self._tracker is None or self._tracker._start_time is None:
            return
        with self._measure_lock:
            if self._tracker._start_time is not None:
                self._tracker._measure_power_and_energy()

    def on_measurement(self, total: Any) -> None:
        """CodeCarbon's hook for each measurement (scheduler thread or a locked on-demand one)."""
        try:
            ts = time.time()
            sample = MachineSample(
                ts=ts,
                cpu_kwh=float(total.cpu_energy),
                gpu_kwh=float(total.gpu_energy),
                ram_kwh=float(total.ram_energy),
                emissions_kg=float(total.emissions),
                own_cpu_s=self._sample_cpu(ts),
                machine_cpu_s=machine_busy_cpu_s(),
            )
            with self._lock:
                prev, self._prev = self._prev, sample
                # A peer that started or stopped inside the interval shared part of it: divide
                # by the larger count at either end, so overlapping meters never double-count.
                peers_before, live_before = self._peers_same_pid, self._live_meters
                self._refresh_peers()
                if prev is None:
                    return
                got = credit(
                    prev,
                    sample,
                    meters_in_process=max(peers_before, self._peers_same_pid),
                    live_meters=max(live_before, self._live_meters),
                )
                reading = self._next_reading(got, sample)
                self._readings.append(reading)
                self._credits.append(got)
            if self.persist:
                try:
                    records.add_reading(self.emission_id, reading, self.settings)
                except Exception as exc:
                    log.debug("Could not persist a carbon reading: %s", exc)
            if self.on_reading is not None:
                try:
                    self.on_reading(reading)
                except Exception as exc:
                    log.debug("on_reading callback failed: %s", exc)
        except Exception as exc:
            log.warning("Carbon reading failed: %s", exc)

    def _next_reading(self, got: Credit, sample: MachineSample) -> CarbonReading:
        """The cumulative reading after the last one plus ``got``."""
        base = self._readings[-1] if self._readings else CarbonReading(0, 0, 0, 0, 0, 0, 0)
        dt = max(got.t1 - got.t0, 1e-9)
        return CarbonReading(
            ts=got.t1,
            duration_s=got.t1 - (self.started_at or got.t1),
            energy_kwh=base.energy_kwh + got.energy_kwh,
            emissions_kg=base.emissions_kg + got.emissions_kg,
            cpu_power_w=got.cpu_kwh * 3.6e6 / dt,
            gpu_power_w=got.gpu_kwh * 3.6e6 / dt,
            ram_power_w=got.ram_kwh * 3.6e6 / dt,
            cpu_energy_kwh=base.cpu_energy_kwh + got.cpu_kwh,
            gpu_energy_kwh=base.gpu_energy_kwh + got.gpu_kwh,
            ram_energy_kwh=base.ram_energy_kwh + got.ram_kwh,
            machine_energy_kwh=sample.cpu_kwh + sample.gpu_kwh + sample.ram_kwh,
            share=got.share,
        )

    def _sample_cpu(self, ts: float | None = None) -> float:
        ts = ts or time.time()
        value = tree_cpu_s(self._exclude)
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
            live = records.live_records(self.settings)
        except Exception as exc:
            log.debug("Could not read live meters: %s", exc)
            return
        pid = os.getpid()
        pids = [record.pid for record in live if record.pid is not None]
        self._exclude = {p for p in pids if p != pid}
        self._peers_same_pid = max(pids.count(pid), 1)
        self._live_meters = max(len(live), 1)

    # records -----------------------------------------------------------------------------
    def _base_data(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "interval_s": self.interval_s,
            "scope": "process tree's CPU share of machine energy",
            "attribution": "cpu-share",
        }

    def _record(self, started_at: float, ended_at: float, **fields: Any) -> CarbonRecord:
        """This meter's record: its identity and grid, plus ``fields``."""
        return CarbonRecord(
            id=self.emission_id,
            kind=self.kind,
            ref_id=self.ref_id,
            label=self.label,
            started_at=started_at,
            ended_at=ended_at,
            country_iso_code=self.settings.carbon_country_code,
            region=self.settings.carbon_region,
            pue=self.pue,
            **fields,
        )

    def _insert_row(self) -> None:
        if not self.persist:
            return
        started = self.started_at or now()
        record = self._record(
            started, started, tracking_mode="machine", status="running", data=self._base_data()
        )
        try:
            records.insert_record(record, self.settings)
        except Exception as exc:
            log.warning("Could not record the carbon meter: %s", exc)
            self.persist = False

    def _update_row(self, **fields: Any) -> None:
        if not self.persist:
            return
        try:
            records.update_record(self.emission_id, fields, self.settings)
        except Exception as exc:
            log.debug("Could not update the carbon record: %s", exc)

    def _machine_data(self) -> dict[str, Any]:
        """CodeCarbon's final figures for the whole machine, beside the attributed ones."""
        total = self._final_data
        if total is None:
            return {}
        return {
            "codecarbon": dataclasses.asdict(total),
            "machine": {
                "energy_kwh": total.energy_consumed,
                "cpu_energy_kwh": total.cpu_energy,
                "gpu_energy_kwh": total.gpu_energy,
                "ram_energy_kwh": total.ram_energy,
                "emissions_kg": total.emissions,
                "cpu_power_w": total.cpu_power,
                "gpu_power_w": total.gpu_power,
                "ram_power_w": total.ram_power,
            },
        }

    def _build_record(self, *, final: bool) -> CarbonRecord:
        with self._lock:
            last = self._readings[-1] if self._readings else None
            count = len(self._readings)
        ended = last.ts if last else time.time()
        last = last or CarbonReading(ended, 0, 0, 0, 0, 0, 0)
        duration = max(ended - (self.started_at or ended), 0.0)
        machine_kwh = (self._machine_data().get("machine") or {}).get("energy_kwh")
        data = {
            **self._base_data(),
            **self._machine_data(),
            "hardware": self._hardware,
            "mean_share": last.energy_kwh / machine_kwh if machine_kwh else None,
            "intensity_kg_per_kwh": last.emissions_kg / last.energy_kwh
            if last.energy_kwh
            else None,
            "readings": count,
        }

        def watts(kwh: float) -> float:
            return kwh * 3.6e6 / duration if duration > 0 else 0.0

        return self._record(
            self.started_at or ended,
            ended,
            duration_s=duration,
            energy_kwh=last.energy_kwh,
            cpu_energy_kwh=last.cpu_energy_kwh,
            gpu_energy_kwh=last.gpu_energy_kwh,
            ram_energy_kwh=last.ram_energy_kwh,
            emissions_kg=last.emissions_kg,
            emissions_rate_kg_s=last.emissions_kg / duration if duration > 0 else 0.0,
            cpu_power_w=watts(last.cpu_energy_kwh),
            gpu_power_w=watts(last.gpu_energy_kwh),
            ram_power_w=watts(last.ram_energy_kwh),
            tracking_mode="machine",
            power_source=self._power_source,
            status="final" if final else "running",
            data=data,
        )

    def _unavailable_record(self) -> CarbonRecord:
        ended = time.time()
        started = self.started_at or ended
        return self._record(
            started,
            ended,
            duration_s=ended - started,
            status="unavailable",
            unavailable_reason=self.unavailable_reason,
            data=self._base_data(),
        )

    def _save(self, record: CarbonRecord) -> None:
        if not self.persist:
            return
        try:
            records.save_record(record, self.settings)
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
        self._save(self.record)
