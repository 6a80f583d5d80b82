"""Carbon metering of a chat engine: one CarbonMeter per engine, and each answer's energy."""

from __future__ import annotations

import logging
import threading
from typing import Any

from garden.config import Settings

log = logging.getLogger("garden.serving")
ENERGY_TIMEOUT_S = 5.0


def carbon_meter(engine_id: str, label: str, settings: Settings) -> Any:
    """A running CarbonMeter for this engine, or None when the carbon module is missing/off."""
    if not settings.carbon_tracking_enabled:
        return None
    try:
        from garden.engine.carbon import CarbonMeter
    except ImportError:
        return None
    try:
        meter = CarbonMeter(kind="chat", ref_id=engine_id, label=label, settings=settings)
        meter.start()
    except Exception as exc:
        log.warning("Carbon meter for %s unavailable: %s", label, exc)
        return None
    return meter if getattr(meter, "available", True) else None


def answer_energy(meter: Any, t0: float, t1: float) -> float | None:
    """The energy between two instants; never holds the answer back for more than a few seconds."""
    if meter is None:
        return None
    result: list[float] = []
    worker = threading.Thread(
        target=lambda: result.append(float(meter.energy_between(t0, t1))),
        name="carbon-answer-energy",
        daemon=True,
    )
    worker.start()
    worker.join(ENERGY_TIMEOUT_S)
    if not result:
        log.warning("Energy for an answer was not ready within %.0f s", ENERGY_TIMEOUT_S)
        return None
    return result[0]
