"""How numbers are shown to people, the same in every front end: units, stats lines, equivalents.

Pure functions over plain numbers and service views; no I/O, no gradio, no torch.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

MISSING = "—"

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


def plain(value: float) -> str:
    """Two significant digits without scientific notation: 0.0000773 -> "0.000077"."""
    if value <= 0:
        return "0"
    if value >= 100:
        return f"{value:,.0f}"
    digits = max(0, 1 - math.floor(math.log10(value)))
    return f"{value:.{digits}f}"


def describe_equivalents(eq: Equivalents) -> str:
    """One line for people: "≈ 7.7 cm by car · 0.0057 smartphone charges · …"."""
    km = eq.car_km
    if km >= 1:
        distance = f"{plain(km)} km"
    elif km >= 0.001:
        distance = f"{plain(km * 1000)} m"
    else:
        distance = f"{plain(km * 100000)} cm"
    return (
        f"≈ {distance} by car · {plain(eq.smartphone_charges)} smartphone charges · "
        f"{plain(eq.kettle_boils)} kettle boils · {plain(eq.led_bulb_hours)} h of an LED bulb"
    )


# Units -------------------------------------------------------------------------------------


def energy(kwh: float | None) -> str:
    """ "0.512 Wh", "1.250 kWh", "35.2 mWh"; "—" when unknown."""
    if kwh is None:
        return MISSING
    if kwh >= 1:
        return f"{kwh:,.3f} kWh"
    return f"{kwh * 1000:,.3f} Wh" if kwh >= 1e-3 else f"{kwh * 1e6:,.1f} mWh"


def co2(kg: float | None) -> str:
    """ "0.120 g", "1.500 kg", "12.0 mg"; "—" when unknown."""
    if kg is None:
        return MISSING
    if kg >= 1:
        return f"{kg:,.3f} kg"
    return f"{kg * 1000:,.3f} g" if kg >= 1e-3 else f"{kg * 1e6:,.1f} mg"


def number(value: float | None, pattern: str = "{:.4f}") -> str:
    return MISSING if value is None else pattern.format(value)


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


def power_label(power_source: str | None) -> str:
    """ "measured", "estimated" or "partly measured" from a record's ``power_source``."""
    if not power_source:
        return MISSING
    if "estimated" in power_source and "measured" in power_source:
        return "partly measured"
    return "measured" if "measured" in power_source else "estimated"


# Training ----------------------------------------------------------------------------------


if TYPE_CHECKING:
    from garden.services.training import JobView


def job_steps(job: JobView) -> str:
    """ "step 3/10" ("step 3/?" while the total is unknown)."""
    return f"step {job.step}/{job.total_steps or '?'}"


def job_facts(job: JobView) -> list[str]:
    """The known ones of: ETA (while active), loss, tokens/s, energy, CO₂."""
    facts = []
    if job.active and job.eta_s:
        facts.append(f"ETA {duration(job.eta_s)}")
    if job.loss is not None:
        facts.append(f"loss {number(job.loss)}")
    if job.tokens_per_second:
        facts.append(f"{job.tokens_per_second:,.0f} tokens/s")
    if job.energy_kwh is not None:
        facts.append(f"energy {energy(job.energy_kwh)}")
    if job.emissions_kg is not None:
        facts.append(f"CO₂ {co2(job.emissions_kg)}")
    return facts


def job_stats_line(job: JobView, separator: str = " · ") -> str:
    """ "step 3/10 · ETA 42s · loss 1.2345 · 120 tokens/s · energy 0.512 Wh · CO₂ 0.120 g"."""
    return separator.join([job_steps(job), *job_facts(job)])
