"""Plain units (energy, CO₂, numbers, sizes, durations, everyday equivalents), the same everywhere.

Below the engine: the engine (run cards, model cards) and ``garden.present`` (views for front
ends) both use it. Pure functions over plain numbers; imports nothing from ``garden``.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

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


# Equivalents: constants and where they come from -------------------------------------------
# US EPA, "Greenhouse Gas Emissions from a Typical Passenger Vehicle" (2023): 400 g CO2/mile.
CAR_KG_PER_KM = 0.400 / 1.609344
# US EPA, Greenhouse Gas Equivalencies Calculator: 0.019 kWh of electricity per phone charge.
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


@dataclass(frozen=True)
class Equivalents:
    """Everyday equivalents of an amount of CO2 and energy (constants and sources above)."""

    car_km: float
    smartphone_charges: float
    kettle_boils: float
    led_bulb_hours: float
    tree_days: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def equivalents(emissions_kg: float | None, energy_kwh: float | None) -> Equivalents:
    kg = max(float(emissions_kg or 0.0), 0.0)
    kwh = max(float(energy_kwh or 0.0), 0.0)
    return Equivalents(
        car_km=kg / CAR_KG_PER_KM,
        smartphone_charges=kwh / SMARTPHONE_CHARGE_KWH,
        kettle_boils=kwh / KETTLE_BOIL_KWH,
        led_bulb_hours=kwh / LED_BULB_HOUR_KWH,
        tree_days=kg / TREE_DAY_KG,
    )
