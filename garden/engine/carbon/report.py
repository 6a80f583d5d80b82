"""Reporting helpers: the period a report starts at, the status a record is shown with, CSV."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from garden.engine.carbon.records import CarbonRecord
from garden.errors import CarbonError


def parse_since(value: str | None) -> float | None:
    """Epoch seconds of an ISO date/time (local time when no zone is given), or None."""
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.strip()).timestamp()
    except ValueError:
        raise CarbonError(
            f"Cannot read the date {value!r}.", hint="Use YYYY-MM-DD or YYYY-MM-DDTHH:MM."
        ) from None


def shown_status(record: CarbonRecord) -> str:
    """The record's status, "interrupted" for a running record whose meter went silent."""
    return "interrupted" if record.is_stale() else record.status


def write_csv(path: Path | str, columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> Path:
    """Write rows as CSV in ``columns`` order; ``None`` as an empty cell, floats in full."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({key: "" if row.get(key) is None else row[key] for key in columns})
    return path


def read_csv(path: Path | str) -> list[dict[str, str | None]]:
    """Rows of a CSV written by ``write_csv``, with empty cells as ``None``."""
    with Path(path).open(newline="", encoding="utf-8") as handle:
        return [
            {key: value if value != "" else None for key, value in raw.items()}
            for raw in csv.DictReader(handle)
        ]
