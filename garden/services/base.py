"""What every service shares: the frozen view base class and settings resolution."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from garden.config import Settings, get_settings


class View(BaseModel):
    """An immutable, typed answer of a service (also a REST schema)."""

    model_config = ConfigDict(frozen=True, extra="forbid")


def resolve(settings: Settings | None) -> Settings:
    return settings if settings is not None else get_settings()
