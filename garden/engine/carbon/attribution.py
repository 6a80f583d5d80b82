"""CPU-share accounting: which part of the machine's energy a meter is credited with.

Over each measurement interval a meter gets the machine's CPU and RAM energy times its CPU
share (the CPU time of its own process tree, minus the trees of other live meters, over the
CPU time of the whole machine), split equally among meters in the same process, and an
equal share of GPU energy among live meters. Inside an interval, energy is spread in
proportion to the meter's own CPU time (the per-answer rule).
"""

from __future__ import annotations

import bisect
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass


def machine_busy_cpu_s() -> float:
    """CPU seconds the whole machine has spent busy (not idle, not waiting, not guests)."""
    import psutil

    times = psutil.cpu_times()
    idle = times.idle + getattr(times, "iowait", 0.0)
    total = sum(times)
    return max(total - idle - getattr(times, "guest", 0.0) - getattr(times, "guest_nice", 0.0), 0.0)


def tree_cpu_s(exclude: set[int]) -> float:
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


@dataclass(frozen=True)
class MachineSample:
    """CodeCarbon's cumulative machine figures and the CPU clocks, at one measurement."""

    ts: float
    cpu_kwh: float
    gpu_kwh: float
    ram_kwh: float
    emissions_kg: float
    own_cpu_s: float
    machine_cpu_s: float


@dataclass(frozen=True)
class Credit:
    """What one meter is credited with between two machine samples."""

    t0: float
    t1: float
    cpu_kwh: float
    gpu_kwh: float
    ram_kwh: float
    emissions_kg: float
    share: float

    @property
    def energy_kwh(self) -> float:
        return self.cpu_kwh + self.gpu_kwh + self.ram_kwh


def credit(
    prev: MachineSample, cur: MachineSample, *, meters_in_process: int, live_meters: int
) -> Credit:
    """Apply the attribution rule (module doc) to the interval between two samples."""
    d_machine_cpu = cur.machine_cpu_s - prev.machine_cpu_s
    d_own = cur.own_cpu_s - prev.own_cpu_s
    share = min(max(d_own / d_machine_cpu, 0.0), 1.0) if d_machine_cpu > 0 else 0.0
    share /= max(meters_in_process, 1)
    d_cpu = max(cur.cpu_kwh - prev.cpu_kwh, 0.0)
    d_gpu = max(cur.gpu_kwh - prev.gpu_kwh, 0.0)
    d_ram = max(cur.ram_kwh - prev.ram_kwh, 0.0)
    d_machine = d_cpu + d_gpu + d_ram
    intensity = max(cur.emissions_kg - prev.emissions_kg, 0.0) / d_machine if d_machine else 0.0
    cpu, ram = d_cpu * share, d_ram * share
    gpu = d_gpu / max(live_meters, 1)
    return Credit(prev.ts, cur.ts, cpu, gpu, ram, (cpu + gpu + ram) * intensity, share)


def cpu_fraction(
    samples: Sequence[tuple[float, float]], t0: float, t1: float, lo: float, hi: float
) -> float:
    """Share of the CPU time used in [t0, t1] that fell in [lo, hi] (time share if none)."""
    whole = cpu_at(samples, t1) - cpu_at(samples, t0)
    if whole <= 1e-6:
        return (hi - lo) / (t1 - t0)
    part = cpu_at(samples, hi) - cpu_at(samples, lo)
    return min(max(part / whole, 0.0), 1.0)


def cpu_at(samples: Sequence[tuple[float, float]], ts: float) -> float:
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


def credit_between(
    credits: Sequence[Credit], samples: Sequence[tuple[float, float]], t0: float, t1: float
) -> tuple[float, float]:
    """kWh and kg CO2e credited in [t0, t1], spread inside intervals by own CPU time."""
    energy = emissions = 0.0
    for item in credits:
        lo, hi = max(t0, item.t0), min(t1, item.t1)
        if hi <= lo or item.energy_kwh <= 0:
            continue
        fraction = cpu_fraction(samples, item.t0, item.t1, lo, hi)
        energy += item.energy_kwh * fraction
        emissions += item.emissions_kg * fraction
    return energy, emissions
