"""Import a peer's dataset registry (LLaMA-Factory's ``dataset_info.json``) in one call.

The registry names its data files by host path (relative to its folder), so this is a CLI
feature: the web never names host paths (docs/security.md), and no REST route calls it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

from garden.config import Settings
from garden.data import DatasetKind, ReadOptions
from garden.data.registry_import import import_registry as import_entries
from garden.services.base import View, resolve


class RegistryImportView(View):
    """One registry entry: imported as the dataset ``name`` (``dataset_id``, ``kind``,
    ``rows``), skipped (a hub or script entry, or a file not here, when no names were given)
    or failed; ``reason`` says why, or what an import left out."""

    entry: str
    name: str
    status: Literal["imported", "skipped", "failed"]
    reason: str = ""
    kind: DatasetKind | None = None
    rows: int = 0
    dataset_id: str | None = None


def import_registry(
    path: str | Path,
    names: Sequence[str] = (),
    *,
    name_prefix: str = "",
    options: ReadOptions | None = None,
    eval_fraction: float = 0.1,
    seed: int = 42,
    drop_invalid: bool = False,
    progress: Callable[[float, str], None] | None = None,
    settings: Settings | None = None,
) -> list[RegistryImportView]:
    """Import the registry's entries ``names`` (every entry whose file is here when empty),
    each under ``name_prefix`` + its name, with its columns and tags; one view per entry.

    A registry that cannot be read or an unknown name raises ``DatasetError`` (one line, the
    close names listed) before anything is imported."""
    results = import_entries(
        Path(path), names, name_prefix=name_prefix, options=options,
        eval_fraction=eval_fraction, seed=seed, drop_invalid=drop_invalid,
        settings=resolve(settings), progress=progress,
    )  # fmt: skip
    return [RegistryImportView.model_validate(result.__dict__) for result in results]
