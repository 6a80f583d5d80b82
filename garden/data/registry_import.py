"""Import the datasets of a peer's registry (LLaMA-Factory's ``dataset_info.json``) in one go.

Each entry's rows are renamed (``llamafactory.RowConverter``) into a JSONL file in a private
temp folder, which the ordinary importer then reads with a fixed mapping and saves under the
entry's name; the temp folder is removed whatever happens. One entry failing never stops the
others: every entry gets a result (imported, skipped or failed, and why).
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from garden.config import Settings, get_settings
from garden.data.catalog import check_name
from garden.data.importer import import_dataset
from garden.data.kinds import DatasetKind
from garden.data.limits import check_free_space, writing
from garden.data.llamafactory import (
    MAPPINGS,
    Entry,
    RowConverter,
    find_registry,
    read_entry,
    read_registry,
    select,
)
from garden.data.readers import RowReader
from garden.data.row_errors import RowError
from garden.data.scan import Progress, ReadOptions, say
from garden.data.sources import resolve_source
from garden.data.uploads import sanitize_filename
from garden.errors import DatasetError, GardenError

Status = Literal["imported", "skipped", "failed"]
MAX_NAME = 100


@dataclass(frozen=True)
class RegistryResult:
    """What became of one entry: the dataset it was saved as (``name``, ``dataset_id``), its
    kind and rows, or why it was skipped or failed (``reason``)."""

    entry: str
    name: str
    status: Status
    reason: str = ""
    kind: DatasetKind | None = None
    rows: int = 0
    dataset_id: str | None = None


def import_registry(
    path: Path,
    names: Sequence[str] = (),
    *,
    name_prefix: str = "",
    options: ReadOptions | None = None,
    eval_fraction: float = 0.1,
    seed: int = 42,
    drop_invalid: bool = False,
    settings: Settings | None = None,
    progress: Progress | None = None,
) -> list[RegistryResult]:
    """Import the entries ``names`` (all of them when empty) of the registry at ``path``.

    With no names, entries that name a hub or a script, or whose file is not here, are skipped;
    a named entry that cannot be imported fails. A bad registry or an unknown name raises
    ``DatasetError`` before anything is imported.
    """
    settings = settings or get_settings()
    settings.ensure_storage()
    registry_path = find_registry(path)
    registry = read_registry(registry_path)
    chosen = select(registry, names, registry_path)
    results = []
    for number, key in enumerate(chosen):
        say(progress, number / len(chosen), f"Importing {key} ({number + 1} of {len(chosen)})…")
        entry = read_entry(key, registry[key], registry_path.parent)
        name = dataset_name(name_prefix, key)
        if entry.problem is not None:
            status: Status = (
                "skipped" if not names and (entry.remote or entry.missing) else "failed"
            )
            results.append(RegistryResult(key, name, status, entry.problem))
            continue
        try:
            result = _import_entry(
                entry, name, options or ReadOptions(), eval_fraction=eval_fraction, seed=seed,
                drop_invalid=drop_invalid, settings=settings,
            )  # fmt: skip
        except GardenError as exc:
            result = RegistryResult(key, name, "failed", " ".join(str(exc).split()))
        results.append(result)
    say(progress, 1.0, f"{sum(r.status == 'imported' for r in results)} of {len(chosen)} imported")
    return results


def dataset_name(prefix: str, entry: str) -> str:
    """The name an entry is saved under: ``prefix`` + its registry name, spaces collapsed."""
    return " ".join(f"{prefix}{entry}".split())[:MAX_NAME]


def _import_entry(
    entry: Entry,
    name: str,
    options: ReadOptions,
    *,
    eval_fraction: float,
    seed: int,
    drop_invalid: bool,
    settings: Settings,
) -> RegistryResult:
    name = check_name(name, settings)
    folder = settings.temp_path / f"llamafactory-{secrets.token_hex(8)}"
    converted = folder / f"{sanitize_filename(entry.name)}.jsonl"
    try:
        folder.mkdir(parents=True, mode=0o700)
        size = sum(path.stat().st_size for path in entry.files)
        check_free_space(settings.temp_path, 2 * size, "the converted rows")
        with writing(settings.temp_path, "the converted rows"):
            kind, dropped = _convert(entry, converted, settings, drop_invalid=drop_invalid)
        record = import_dataset(
            converted, name, dataclasses.replace(options, mapping=MAPPINGS[kind]),
            eval_fraction=eval_fraction, seed=seed, drop_invalid=drop_invalid, settings=settings,
        )  # fmt: skip
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    notes = [*entry.notes, *([f"{dropped} rows could not be converted"] if dropped else [])]
    notes += [w for w in record.warnings[:1] if w.endswith("invalid rows were dropped")]
    return RegistryResult(
        entry.name, record.name, "imported", "; ".join(notes), record.kind, record.rows, record.id
    )


def _convert(
    entry: Entry, target: Path, settings: Settings, *, drop_invalid: bool
) -> tuple[DatasetKind, int]:
    """Write the entry's rows, renamed, to ``target``: their kind and how many were dropped.

    A row that cannot be converted fails the entry, naming it, unless ``drop_invalid``."""
    convert = RowConverter(entry)
    written = dropped = 0
    with target.open("w", encoding="utf-8") as out:
        for where, row, problem in _rows(entry, settings):
            if problem is None and row is not None:
                try:
                    out.write(json.dumps(convert(row), ensure_ascii=False) + "\n")
                    written += 1
                    continue
                except RowError as exc:
                    problem = str(exc)
            if not drop_invalid:
                raise DatasetError(
                    f"{where}: {problem}.",
                    hint="Fix the row, or import with --drop-invalid to skip such rows.",
                )
            dropped += 1
    if convert.kind is None or written == 0:
        raise DatasetError(
            f"None of the rows of {entry.name} could be read.", hint="Check its file and columns."
        )
    return convert.kind, dropped


def _rows(
    entry: Entry, settings: Settings
) -> Iterator[tuple[str, dict[str, Any] | None, str | None]]:
    """``(where, row, problem)`` for every record of the entry's files."""
    for path in entry.files:
        for raw in RowReader(resolve_source(path, settings)):
            where = f"{path.name} {raw.location}"
            yield where, raw.data, raw.error
