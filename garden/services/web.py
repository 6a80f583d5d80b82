"""What the web may name: imported datasets, listed models and strict hub ids, never a host path.

The web front ends (UI, REST) check every free-text value with these before a service reads
anything; the CLI, run by the machine's owner, may still pass local paths. ``safe_text`` keeps
absolute server paths out of what a browser is shown.
"""

from __future__ import annotations

import re
from pathlib import Path

from garden.config import Settings
from garden.data.hub import HUB_REPO, is_strict_hub_id
from garden.errors import DatasetError, GardenError, ModelLoadError
from garden.services.base import resolve

MODEL_HUB_ID = re.compile(rf"^{HUB_REPO}$")
ABSOLUTE_PATH = re.compile(r"(?<![\w.:/~-])/[^\s'\"`<>()\[\],;|]+")
HUB_HINT = "Type a hub id such as org/name, org/name:split or org/name@subset:split."


def check_hub_dataset(value: str | None) -> str:
    """A hub dataset id the web may pass on; ``DatasetError`` for anything path-like."""
    text = (value or "").strip().removeprefix("hf://").removeprefix("hub:")
    if not text:
        raise DatasetError("No hub id typed.", hint=HUB_HINT)
    if not is_strict_hub_id(text):
        raise DatasetError(f"{text[:80]!r} is not a hub dataset id.", hint=HUB_HINT)
    return text


def check_model(value: str | None, *, settings: Settings | None = None) -> str | None:
    """A listed model's id, or a strict hub id that names no local folder; None = the default."""
    from garden.models import list_models

    text = (value or "").strip()
    if not text:
        return None
    try:
        listed = {key for m in list_models(resolve(settings)) for key in (m.id, m.name)}
    except GardenError:
        listed = set()
    if text in listed:
        return text
    if MODEL_HUB_ID.match(text) and ".." not in text and not Path(text).exists():
        return text
    raise ModelLoadError(
        f"{text[:80]!r} is not a listed model or a hub id.",
        hint="Pick a model in the list (↻ refreshes it), or type a hub id such as org/name.",
    )


def check_dataset(value: str | None, *, settings: Settings | None = None) -> str:
    """The id of the imported dataset named ``value`` (id or name); never a file."""
    from garden.data import get_dataset

    text = (value or "").strip()
    if not text:
        raise DatasetError("No dataset picked.", hint="Pick one imported in the Data tab.")
    if "/" in text or "\\" in text or text.startswith("."):
        raise DatasetError(
            f"{text[:80]!r} is not an imported dataset.",
            hint="The web accepts only datasets imported in the Data tab (upload a file there).",
        )
    return get_dataset(text, resolve(settings)).id


def relative_path(path: str | Path | None, *, settings: Settings | None = None) -> str | None:
    """``path`` relative to STORAGE_ROOT when inside it, else only its last part."""
    if path is None:
        return None
    target = Path(path)
    root = resolve(settings).storage_root
    for base in (root, root.resolve()):
        try:
            return str(target.relative_to(base))
        except ValueError:
            continue
    return target.name


def safe_text(text: str, *, settings: Settings | None = None) -> str:
    """``text`` with each absolute path made relative to STORAGE_ROOT, or cut to its last part."""

    def shorten(match: re.Match[str]) -> str:
        path = match.group(0).rstrip(".:")
        return (relative_path(path, settings=settings) or "") + match.group(0)[len(path) :]

    return ABSOLUTE_PATH.sub(shorten, text)
