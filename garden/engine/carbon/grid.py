"""Grid carbon intensity from CodeCarbon's bundled, offline data, and the what-if figure."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from garden.errors import CarbonError

if TYPE_CHECKING:
    from garden.engine.carbon.records import CarbonRecord

REGIONAL_COUNTRIES = ("USA", "CAN", "CHN")


@contextlib.contextmanager
def quiet_codecarbon() -> Iterator[None]:
    """Silence CodeCarbon's INFO and WARNING lines for the duration of a call."""
    logger = logging.getLogger("codecarbon")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def grid_intensity(country_iso_code: str, region: str | None = None) -> float:
    """kg CO2e per kWh for a country (ISO-3) and optional region, from CodeCarbon's data.

    Regional data exists for the USA, Canada, China and the Nordic countries; elsewhere (or
    for an unknown region) the country's figure is used. Raises ``CarbonError`` for an
    unknown country.
    """
    return _intensity((country_iso_code or "").strip().upper(), (region or "").strip().lower())


@lru_cache(maxsize=256)
def _intensity(iso: str, region: str) -> float:
    from codecarbon.core.emissions import Emissions
    from codecarbon.core.units import Energy
    from codecarbon.external.geography import GeoMetadata
    from codecarbon.input import DataSource

    mix = DataSource().get_global_energy_mix_data()
    if iso not in mix:
        raise CarbonError(
            f"Unknown country code {iso!r}.",
            hint="Use an ISO 3166 alpha-3 code such as USA, FRA, DEU or GBR.",
        )
    geo = GeoMetadata(
        country_iso_code=iso, country_name=mix[iso]["country_name"], region=region or None
    )
    engine = Emissions(DataSource(), None)
    with quiet_codecarbon():
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
    if iso not in REGIONAL_COUNTRIES:
        return []
    source = DataSource()
    for read in (source.get_country_emissions_data, source.get_country_energy_mix_data):
        with contextlib.suppress(Exception):
            return sorted(key for key in read(iso.lower()) if not key.startswith("_"))
    return []


@dataclass(frozen=True)
class WhatIf:
    """A past record's figures under another grid (and PUE); ``None`` when it has no energy."""

    energy_kwh: float | None
    emissions_kg: float | None
    intensity_kg_per_kwh: float | None


def what_if(
    record: CarbonRecord, country_iso_code: str, region: str | None = None, pue: float | None = None
) -> WhatIf:
    """CO2 of a past record under another grid (and PUE); the measured energy is untouched.

    The measured energy already includes the PUE it was measured with; a different PUE scales
    it by ``pue / record.pue`` for the hypothetical figure only.
    """
    if record.energy_kwh is None:
        return WhatIf(None, None, None)
    intensity = grid_intensity(country_iso_code, region)
    energy = float(record.energy_kwh)
    if pue and record.pue:
        energy *= float(pue) / float(record.pue)
    return WhatIf(energy, energy * intensity, intensity)
