"""Hugging Face hub datasets, streamed; an unreachable hub fails in seconds with a hint."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from garden.data.sources import RawRow, Source
from garden.errors import DatasetError

UNREACHABLE_WORDS = (
    "offline",
    "connect",
    "couldn't reach",
    "network",
    "timed out",
    "timeout",
    "unreachable",
    "name or service not known",
    "localentrynotfound",
)


HUB_REPO = r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*"
HUB_ID = re.compile(
    rf"^(?P<id>{HUB_REPO})(?:@[A-Za-z0-9][A-Za-z0-9._-]*)?(?::[A-Za-z0-9][\w.\[\]%:-]*)?$"
)


def is_strict_hub_id(value: str) -> bool:
    """``org/name[@subset][:split]`` with no ``..`` and no leading ``/`` or ``.``."""
    return bool(HUB_ID.match(value)) and ".." not in value


def check_remote(source: Source) -> None:
    """Refuse a hub id that could be read from this machine: ``datasets.load_dataset`` opens
    a local folder or file of the same name first, so such a name never reaches it."""
    hub_id, subset = source.hub_id or "", source.subset or ""
    looks_local = not HUB_ID.match(hub_id) or ".." in f"{hub_id}{subset}" or "/" in subset
    if looks_local or Path(hub_id).exists() or Path(hub_id).is_symlink():
        raise DatasetError(
            f"{hub_id[:80]!r} is not a hub dataset id that can be loaded.",
            hint="Use org/name, org/name:split or org/name@subset:split; "
            "local files are uploaded, not named.",
        )


def hub_offline() -> bool:
    flags = (os.environ.get("HF_HUB_OFFLINE", ""), os.environ.get("HF_DATASETS_OFFLINE", ""))
    return any(flag.strip().lower() in ("1", "true", "yes", "on") for flag in flags)


def hub_error(source: Source, exc: BaseException | None) -> DatasetError:
    detail = f" ({type(exc).__name__}: {str(exc)[:200]})" if exc else ""
    text = f"{type(exc).__name__} {exc}".lower() if exc else "offline"
    if exc is None or any(word in text for word in UNREACHABLE_WORDS):
        return DatasetError(
            f"The Hugging Face hub is unreachable, so {source.hub_id} cannot be loaded{detail}.",
            hint="Download the dataset elsewhere and upload it as a JSONL, CSV or Parquet file, "
            "or connect to the internet (and unset HF_HUB_OFFLINE).",
        )
    return DatasetError(
        f"Loading hub dataset {source.label} failed{detail}.",
        hint="Check the id, the subset (org/name@subset) and the split (org/name:split).",
    )


def probe_hub(timeout_s: float = 3.0) -> OSError | None:
    """A quick TCP connect to the hub, so an unreachable hub fails in seconds, not after retries."""
    import socket
    from urllib.parse import urlparse

    endpoint = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        with socket.create_connection((endpoint.hostname or "huggingface.co", port), timeout_s):
            return None
    except OSError as exc:
        return exc


def iter_hub(source: Source) -> Iterator[RawRow]:
    check_remote(source)
    if hub_offline():
        raise hub_error(source, None)
    if (unreachable := probe_hub()) is not None:
        raise hub_error(source, ConnectionError(f"cannot connect to the hub: {unreachable}"))
    from datasets import load_dataset

    try:
        dataset = load_dataset(source.hub_id, source.subset, split=source.split, streaming=True)
        iterator = iter(dataset)
    except Exception as exc:
        raise hub_error(source, exc) from exc
    yield from bounded_rows(source, iterator)


def bounded_rows(source: Source, records: Iterator[Any]) -> Iterator[RawRow]:
    """The hub's records as rows, their JSON bytes counted as they stream: past the source's
    ``max_bytes`` (``MAX_UPLOAD_MB``, as for a file) the import stops with one line."""
    index = read = 0
    while True:
        try:
            record = next(records)
        except StopIteration:
            return
        except Exception as exc:
            raise hub_error(source, exc) from exc
        row = dict(record)
        read += len(json.dumps(row, default=str).encode())
        if source.max_bytes is not None and read > source.max_bytes:
            raise DatasetError(
                f"{source.hub_id} is larger than {source.max_bytes // 2**20} MB "
                f"(stopped at row {index + 1}).",
                hint="Pick a smaller split, such as org/name:train[:1000], or raise MAX_UPLOAD_MB.",
            )
        yield RawRow(index, f"row {index + 1}", row)
        index += 1
