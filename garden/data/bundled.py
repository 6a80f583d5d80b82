"""The sample datasets shipped in ``assets/datasets``: a ``NAME.jsonl`` and its ``NAME.md``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

BUNDLED_DIR = Path(__file__).resolve().parent.parent.parent / "assets" / "datasets"


@dataclass(frozen=True)
class BundledDataset:
    name: str
    path: Path
    description: str


def list_bundled() -> list[BundledDataset]:
    """Every bundled sample; the description is the first line of its notes."""
    found = []
    for path in sorted(BUNDLED_DIR.glob("*.jsonl")):
        description = ""
        notes = path.with_suffix(".md")
        if notes.is_file():
            description = notes.read_text(encoding="utf-8").strip().splitlines()[0].lstrip("# ")
        found.append(BundledDataset(path.stem, path, description))
    return found


def bundled_path(name: str) -> Path | None:
    """The file of the bundled sample ``name`` (``bundled:`` prefix allowed), if there is one."""
    stem = name.removeprefix("bundled:").removesuffix(".jsonl")
    candidate = BUNDLED_DIR / f"{stem}.jsonl"
    if "/" in stem or "\\" in stem or not candidate.is_file():
        return None
    return candidate
