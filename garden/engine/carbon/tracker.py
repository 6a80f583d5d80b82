"""CodeCarbon underneath the meter: an offline tracker that cannot reach the network.

Every tracker parameter is explicit, so no CodeCarbon config file or ``CODECARBON_*``
variable can switch on network output or change what is measured.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any, Protocol

from garden.config import Settings

_MEASURED_CPU_MODES = {
    "intel_rapl": "measured (Intel/AMD RAPL counters)",
    "windows_emi": "measured (Windows Energy Meter Interface)",
    "intel_power_gadget": "measured (Intel Power Gadget)",
    "apple_powermetrics": "measured (Apple powermetrics)",
}
# Every tracker parameter that does not depend on the meter, explicit so that no CodeCarbon
# config file or CODECARBON_* variable can switch on network output or change what is measured.
_OFFLINE_TRACKER: dict[str, Any] = {
    "cloud_provider": None,
    "cloud_region": None,
    "country_2letter_iso_code": None,
    "project_name": "model-garden",
    "api_call_interval": 1,
    "api_endpoint": "http://127.0.0.1:9/disabled",
    "api_key": None,
    "logging_logger": None,
    "prometheus_url": "http://127.0.0.1:9/disabled",
    "gpu_ids": None,
    "emissions_endpoint": None,
    "electricitymaps_api_token": None,
    "tracking_mode": "machine",
    "log_level": "error",  # its per-measurement INFO lines would flood the app log
    "on_csv_write": "append",
    "logger_preamble": "",
    "force_cpu_power": None,
    "force_ram_power": None,
    "wue": 0.0,
    "force_carbon_intensity_g_co2e_kwh": None,
    "force_mode_cpu_load": False,
    "allow_multiple_runs": True,
    "rapl_include_dram": False,
    "rapl_prefer_psys": False,
    "metadata": None,
}


def check_output_dir(output_dir: Path) -> None:
    """Raise ``RuntimeError`` (with the fix) unless CodeCarbon can write its CSV there."""
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        probe = output_dir / f".probe-{os.getpid()}-{threading.get_ident()}"
        probe.write_text("ok", encoding="utf-8")
        probe.unlink()
    except OSError as exc:
        raise RuntimeError(
            f"cannot write CodeCarbon's output to {output_dir} ({exc.strerror or exc}); "
            "check the permissions of STORAGE_ROOT/logs"
        ) from exc


class Measured(Protocol):
    """What a tracker is built for: a meter's settings, identity and CodeCarbon callbacks."""

    settings: Settings
    kind: str
    emission_id: str
    interval_s: float
    output_dir: Path
    pue: float

    def on_measurement(self, total: Any) -> None: ...

    def on_final(self, total: Any) -> None: ...


def offline_tracker(meter: Measured) -> Any:
    """An ``OfflineEmissionsTracker`` in machine mode whose measurements go to ``meter``."""
    from codecarbon import OfflineEmissionsTracker
    from codecarbon.output_methods.base_output import BaseOutput, OutputMethod

    class _GardenOutput(BaseOutput):
        """CodeCarbon's public output hook: every measurement becomes a reading."""

        def live_out(self, total: Any, delta: Any) -> None:
            meter.on_measurement(total)

        def out(self, total: Any, delta: Any) -> None:
            meter.on_final(total)

    logging.getLogger("codecarbon").setLevel(logging.ERROR)
    tracker = OfflineEmissionsTracker(
        country_iso_code=meter.settings.carbon_country_code,
        region=(meter.settings.carbon_region or "").lower() or None,
        experiment_name=meter.kind,
        experiment_id=meter.emission_id,
        measure_power_secs=meter.interval_s,
        output_dir=str(meter.output_dir),
        output_file=f"{meter.emission_id}.csv",
        output_methods=[OutputMethod.CSV],  # derives every save_to_* flag
        output_handlers=[_GardenOutput()],
        pue=meter.pue,
        **_OFFLINE_TRACKER,
    )
    if not hasattr(tracker, "_scheduler") or not hasattr(tracker, "_output_handlers"):
        raise RuntimeError("CodeCarbon's tracker could not be created (see the codecarbon log)")
    # A deprecated token in a user config file would otherwise enable the online API.
    tracker._electricitymaps_api_token = None
    return tracker


def power_source(tracker: Any) -> str:
    """How each part's power is obtained: "CPU estimated from TDP (65 W) and load; …"."""
    parts: list[str] = []
    for hw in tracker._hardware:
        name = type(hw).__name__
        mode = getattr(hw, "_mode", None)
        tdp = getattr(hw, "_tdp", "?")
        if name == "CPU" and mode in _MEASURED_CPU_MODES:
            parts.append(f"CPU {_MEASURED_CPU_MODES[mode]}")
        elif name == "CPU":
            how = " and load" if mode == "cpu_load" else ", constant"
            parts.append(f"CPU estimated from TDP ({tdp} W){how}")
        elif name == "GPU":
            parts.append("GPU measured (NVML)")
        elif name == "RAM":
            parts.append("RAM estimated from installed memory")
        else:
            parts.append(f"{name} ({hw.description()})")
    return "; ".join(parts) or "unknown"
