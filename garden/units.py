"""Plain unit formatting (energy, CO₂, numbers, sizes, durations), the same everywhere.

Below the engine: the engine (run cards, model cards) and ``garden.present`` (views for front
ends) both use it. Pure functions over plain numbers; imports nothing from ``garden``.
"""

from __future__ import annotations

import math
import time

MISSING = "—"


def plain(value: float) -> str:
    """Two significant digits without scientific notation: 0.0000773 -> "0.000077"."""
    if value <= 0:
        return "0"
    if value >= 100:
        return f"{value:,.0f}"
    digits = max(0, 1 - math.floor(math.log10(value)))
    return f"{value:.{digits}f}"


def _scaled(value: float | None, units: tuple[str, str, str]) -> str:
    """``value`` in the large unit, shown in it, in 1/1000 of it, or in 1/1e6 of it."""
    if value is None:
        return MISSING
    large, unit, small = units
    if value >= 1:
        return f"{value:,.3f} {large}"
    return f"{value * 1000:,.3f} {unit}" if value >= 1e-3 else f"{value * 1e6:,.1f} {small}"


def energy(kwh: float | None) -> str:
    """ "5.120 Wh", "1.250 kWh", "35.2 mWh"; "—" when unknown."""
    return _scaled(kwh, ("kWh", "Wh", "mWh"))


def co2(kg: float | None) -> str:
    """ "5.120 g", "1.500 kg", "12.0 mg"; "—" when unknown."""
    return _scaled(kg, ("kg", "g", "mg"))


def number(value: float | None, pattern: str = "{:.4f}") -> str:
    return MISSING if value is None else pattern.format(value)


def file_size(size_bytes: int) -> str:
    """ "540.1 MB", "12.0 kB", "512 B"."""
    value = float(size_bytes)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"


def duration(seconds: float | None) -> str:
    """ "42s", "3m05s", "2h04m"."""
    if seconds is None:
        return MISSING
    total = int(max(seconds, 0))
    if total < 60:
        return f"{total}s"
    if total < 3600:
        return f"{total // 60}m{total % 60:02d}s"
    return f"{total // 3600}h{total % 3600 // 60:02d}m"


def local_time(ts: float | None, pattern: str = "%Y-%m-%d %H:%M") -> str:
    return MISSING if ts is None else time.strftime(pattern, time.localtime(ts))
