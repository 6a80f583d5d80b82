"""The catalog of imported datasets: their records in the store and their files on disk."""

from __future__ import annotations

import json
import shutil
import sqlite3
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import IO, Any

from garden.config import Settings, get_settings
from garden.data.formats import KIND_BY_FORMAT
from garden.data.kinds import DatasetKind, row_kind
from garden.errors import DatasetError
from garden.store import get_store

# The fields stored as JSON, in columns named ``<field>_json``, and what a missing value reads as.
JSON_FIELDS: dict[str, type] = {"mapping": dict, "token_stats": dict, "warnings": list}
STORE_COLUMNS = {name: f"{name}_json" for name in JSON_FIELDS}
# Fields not stored in the store but derived on read (``kind``: from the processed rows).
DERIVED_FIELDS = ("kind",)


@dataclass
class DatasetRecord:
    """A processed dataset: ``train.jsonl`` and ``eval.jsonl`` under ``path``."""

    id: str
    name: str
    source: str
    format: str
    mapping: dict[str, Any]
    rows: int
    train_rows: int
    eval_rows: int
    eval_fraction: float
    seed: int
    token_stats: dict[str, Any]
    path: str
    created_at: float
    raw_path: str | None = None
    warnings: list[str] = field(default_factory=list)
    kind: DatasetKind = "chat"
    teacher: str | None = None  # set for a dataset synthesised from documents
    synthesis_emission_id: str | None = None
    synthesis_energy_kwh: float | None = None
    synthesis_emissions_kg: float | None = None

    @property
    def train_path(self) -> Path:
        return Path(self.path) / "train.jsonl"

    @property
    def eval_path(self) -> Path:
        return Path(self.path) / "eval.jsonl"

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> DatasetRecord:
        values: dict[str, Any] = {
            name: row.get(STORE_COLUMNS.get(name, name)) for name in FIELD_NAMES
        }
        for name, empty in JSON_FIELDS.items():
            values[name] = values[name] or empty()
        values["kind"] = processed_kind(Path(values["path"]), values["format"])
        return cls(**values)

    def to_row(self) -> dict[str, Any]:
        return {
            STORE_COLUMNS.get(name, name): value
            for name, value in asdict(self).items()
            if name not in DERIVED_FIELDS
        }

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["train_path"] = str(self.train_path)
        data["eval_path"] = str(self.eval_path)
        return data


FIELD_NAMES = tuple(f.name for f in fields(DatasetRecord) if f.name not in DERIVED_FIELDS)


def processed_kind(folder: Path, fmt: str) -> DatasetKind:
    """The kind of a processed dataset, from its first row (by its format when unreadable)."""
    for name in ("train.jsonl", "eval.jsonl"):
        try:
            with (folder / name).open(encoding="utf-8") as handle:
                line = handle.readline()
            if line.strip():
                return row_kind(json.loads(line))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
            continue
    return KIND_BY_FORMAT.get(fmt, "chat")


def check_name(name: str, settings: Settings) -> str:
    name = " ".join(str(name or "").split())
    if not name:
        raise DatasetError(
            "The dataset needs a name.", hint="Type a short name, e.g. garden-facts."
        )
    if len(name) > 100:
        raise DatasetError("The dataset name is longer than 100 characters.", hint="Shorten it.")
    if get_store(settings.db_path).list("datasets", where={"name": name}, limit=1):
        raise DatasetError(
            f"A dataset named {name!r} already exists.",
            hint="Choose another name, or delete the existing dataset first.",
        )
    return name


def save_record(record: DatasetRecord, settings: Settings) -> None:
    try:
        get_store(settings.db_path).insert("datasets", record.to_row())
    except sqlite3.IntegrityError as exc:  # the database enforces unique names
        raise DatasetError(
            f"A dataset named {record.name!r} already exists.",
            hint="Choose another name, or delete the existing dataset first.",
        ) from exc


def get_dataset(id_or_name: str, settings: Settings | None = None) -> DatasetRecord:
    settings = settings or get_settings()
    store = get_store(settings.db_path)
    key = str(id_or_name).strip()
    row = store.get("datasets", key)
    if row is None:
        rows = store.list("datasets", where={"name": key}, limit=1)
        row = rows[0] if rows else None
    if row is None:
        raise DatasetError(
            f"There is no dataset {key!r}.",
            hint="Import one first (Data tab or `model-garden data import`); "
            "`model-garden data list` shows what exists.",
        )
    return DatasetRecord.from_row(row)


def list_datasets(settings: Settings | None = None) -> list[DatasetRecord]:
    """Every imported dataset, newest first."""
    settings = settings or get_settings()
    rows = get_store(settings.db_path).list("datasets", order_by="created_at DESC")
    return [DatasetRecord.from_row(row) for row in rows]


def dataset_choices(settings: Settings | None = None) -> list[tuple[str, str]]:
    """``(label, id)`` pairs for a dropdown, newest first."""
    return [
        (f"{d.name} — {d.rows:,} rows, {d.kind}, {d.format} ({d.id})", d.id)
        for d in list_datasets(settings)
    ]


def delete_dataset(id_or_name: str, settings: Settings | None = None) -> DatasetRecord:
    """Remove a processed dataset (its files, its raw copy and its store row)."""
    settings = settings or get_settings()
    record = get_dataset(id_or_name, settings)
    store = get_store(settings.db_path)
    folder = Path(record.path).resolve()
    if settings.processed_datasets_path.resolve() in folder.parents:
        shutil.rmtree(folder, ignore_errors=True)
    if record.raw_path:
        raw = Path(record.raw_path).resolve()
        shared = store.query(
            "SELECT COUNT(*) AS n FROM datasets WHERE raw_path = ? AND id != ?",
            (record.raw_path, record.id),
        )[0]["n"]
        if not shared and settings.raw_datasets_path.resolve() in raw.parents:
            raw.unlink(missing_ok=True)
    store.delete("datasets", record.id)
    return record


def read_rows(
    id_or_name: str,
    split: str = "train",
    offset: int = 0,
    limit: int = 10,
    settings: Settings | None = None,
) -> list[dict[str, Any]]:
    """A page of a processed dataset's rows (streamed, so any offset is cheap in memory)."""
    record = get_dataset(id_or_name, settings)
    path = record.eval_path if split == "eval" else record.train_path
    out: list[dict[str, Any]] = []
    if not path.is_file():
        return out
    handle: IO[str]
    try:
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle):
                if number < offset:
                    continue
                if len(out) >= limit:
                    break
                out.append(json.loads(line))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(
            f"The {split} rows of dataset {record.name!r} cannot be read ({type(exc).__name__}).",
            hint="The processed files are damaged: delete the dataset and import it again.",
        ) from exc
    return out
