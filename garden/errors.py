"""Typed errors. Each message says what went wrong and what the person can do about it."""

from __future__ import annotations


class GardenError(Exception):
    """Base of every error Model Garden shows to a person."""

    kind = "error"

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} {self.hint}" if self.hint else self.message


class ConfigError(GardenError):
    kind = "config"


class DatasetError(GardenError):
    kind = "bad_data"


class ModelLoadError(GardenError):
    kind = "model_load"


class OutOfMemoryError(GardenError):
    kind = "out_of_memory"


class DiskFullError(GardenError):
    kind = "disk_full"


class JobError(GardenError):
    kind = "job"


class ServingError(GardenError):
    kind = "serving"


class CarbonError(GardenError):
    kind = "carbon"
