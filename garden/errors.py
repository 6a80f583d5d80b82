"""Typed errors. Each message says what went wrong and what the person can do about it."""

from __future__ import annotations

from typing import Any


class GardenError(Exception):
    """Base of every error Model Garden shows to a person; ``kind`` names the failure class."""

    kind = "error"

    def __init_subclass__(cls, *, kind: str = "error", **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.kind = kind

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} {self.hint}" if self.hint else self.message


class ConfigError(GardenError, kind="config"):
    """A setting is missing or invalid."""


class DatasetError(GardenError, kind="bad_data"):
    """A dataset cannot be read, detected or used."""


class ModelLoadError(GardenError, kind="model_load"):
    """A model cannot be found or loaded."""


class OutOfMemoryError(GardenError, kind="out_of_memory"):
    """Training or serving ran out of memory."""


class DiskFullError(GardenError, kind="disk_full"):
    """Not enough free disk space."""


class JobError(GardenError, kind="job"):
    """A training job cannot be started, stopped or resumed as asked."""


class ServingError(GardenError, kind="serving"):
    """A chat engine cannot answer."""


class CarbonError(GardenError, kind="carbon"):
    """Carbon data cannot be computed or read."""


class ExportError(GardenError, kind="export"):
    """A model cannot be exported or pushed as asked."""


class AccessError(GardenError, kind="forbidden"):
    """The caller may not do this here (a public demo's visitor, another visitor's work)."""


class LimitError(GardenError, kind="limit"):
    """A shared app's cap is reached; the same request may succeed later."""
