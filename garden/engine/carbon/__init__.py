"""Energy and CO2 of every run and every answer, measured with CodeCarbon, offline.

``meter`` (the :class:`CarbonMeter`), ``tracker`` (CodeCarbon underneath it), ``attribution``
(whose share of the machine's energy), ``grid`` (grid intensity and the what-if figure),
``records`` (the stored records and every query about them) and ``report`` (dates, the
status shown, CSV files).
"""

from garden.engine.carbon.grid import WhatIf, grid_intensity, list_countries, list_regions, what_if
from garden.engine.carbon.meter import CarbonMeter
from garden.engine.carbon.records import (
    CarbonReading,
    CarbonRecord,
    StoredReading,
    get_record,
    list_readings,
    list_records,
)

__all__ = [
    "CarbonMeter",
    "CarbonReading",
    "CarbonRecord",
    "StoredReading",
    "WhatIf",
    "get_record",
    "grid_intensity",
    "list_countries",
    "list_readings",
    "list_records",
    "list_regions",
    "what_if",
]
