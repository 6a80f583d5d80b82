"""Who may change what on a public demo: each visitor only its own work, and only so much of it.

A visitor is one browser session of the tabs (Gradio's session hash). ``None`` stands for the
machine's owner: the CLI, a REST call with a token, or any app that is not a public demo; the
rules here apply only where ``PUBLIC_DEMO`` is on. A stranger's REST call on a public demo is
read-only apart from chat (``check_rest_write``): a script could name any visitor it likes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

from garden.config import Settings
from garden.engine.training import ACTIVE_STATUSES
from garden.errors import AccessError, LimitError
from garden.services.base import resolve
from garden.store import Store, get_store, now

ItemKind = Literal["dataset", "job"]
Work = Literal["evaluation", "export", "synthesis"]

REST_WRITES_OPEN = frozenset({"/api/v1/chat", "/api/v1/chat/stream", "/api/v1/auth/token"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
DEMO_IN_FLIGHT = 1  # evaluations, and exports, running at once on a public demo
OWN_ONLY_HINT = "On this public demo you may change only what you made in this browser session."


@dataclass(frozen=True)
class Visitor:
    """One browser session of a public demo."""

    key: str

    @classmethod
    def of_session(cls, session_hash: str | None) -> Visitor:
        return cls(f"session:{session_hash or 'unknown'}")


def _store(settings: Settings) -> Store:
    return get_store(settings.db_path)


def _demo_visitor(settings: Settings, visitor: Visitor | None) -> str | None:
    """The key of ``visitor`` where the rules apply (a public demo), else None (the owner)."""
    return visitor.key if settings.public_demo and visitor is not None else None


def check_rest_write(settings: Settings, method: str, path: str, user: str | None) -> None:
    """A public demo's REST API is read-only for callers without a token, chat apart."""
    if not settings.public_demo or user or method.upper() in SAFE_METHODS:
        return
    if path.rstrip("/") in REST_WRITES_OPEN:
        return
    raise AccessError(
        "This public demo's REST API is read-only: only chat is open to visitors.",
        hint="Use the tabs, or run your own copy (the app's owner can set ENABLE_AUTH and use a token).",
    )


def claim(
    kind: ItemKind, item_id: str, visitor: Visitor | None, *, settings: Settings | None = None
) -> None:
    """Record that ``visitor`` made ``item_id`` (nothing is recorded for the owner)."""
    settings = resolve(settings)
    if (key := _demo_visitor(settings, visitor)) is None:
        return
    _store(settings).execute(
        "INSERT OR REPLACE INTO visitor_items (kind, item_id, visitor, created_at)"
        " VALUES (?, ?, ?, ?)",
        (kind, item_id, key, now()),
    )


def check_may_change(
    kind: ItemKind, item_id: str, visitor: Visitor | None, *, settings: Settings | None = None
) -> None:
    """``AccessError`` unless ``visitor`` made the item (or is the owner, or this is no demo)."""
    settings = resolve(settings)
    if (key := _demo_visitor(settings, visitor)) is None:
        return
    rows = _store(settings).query(
        "SELECT visitor FROM visitor_items WHERE kind = ? AND item_id = ?", (kind, item_id)
    )
    if not rows or rows[0]["visitor"] != key:
        raise AccessError(f"This {kind} was made by someone else.", hint=OWN_ONLY_HINT)


_adding_lock = threading.Lock()
_pending: dict[tuple[ItemKind, str], int] = {}  # items being made now, by kind and visitor


@contextmanager
def adding(
    kind: ItemKind, visitor: Visitor | None, *, settings: Settings | None = None
) -> Iterator[Callable[[str], None]]:
    """Check ``visitor``'s cap, counting what it is making right now, then let the caller make
    one item and claim it with the callable given. Only the check and the reservation hold the
    lock, so two quick clicks cannot both pass the cap, and a long import blocks nobody."""
    settings = resolve(settings)
    if (who := _demo_visitor(settings, visitor)) is None:
        yield lambda item_id: None
        return
    key = (kind, who)
    with _adding_lock:
        check_may_add(kind, visitor, settings=settings)
        _pending[key] = _pending.get(key, 0) + 1
    try:
        yield lambda item_id: claim(kind, item_id, visitor, settings=settings)
    finally:
        with _adding_lock:
            _pending[key] -= 1
            if not _pending[key]:
                del _pending[key]


def check_may_add(
    kind: ItemKind, visitor: Visitor | None, *, settings: Settings | None = None
) -> None:
    """``LimitError`` when a demo visitor (or all of them, for runs) already has the most allowed,
    counting the items being made right now (``adding``)."""
    settings = resolve(settings)
    if (who := _demo_visitor(settings, visitor)) is None:
        return
    store = _store(settings)
    making = _pending.get((kind, who), 0)
    if kind == "dataset":
        mine = (
            making
            + store.query(
                "SELECT COUNT(*) AS n FROM visitor_items v JOIN datasets d ON d.id = v.item_id"
                " WHERE v.kind = 'dataset' AND v.visitor = ?",
                (who,),
            )[0]["n"]
        )
        cap = settings.public_demo_max_datasets_per_visitor
        if mine >= cap:
            raise LimitError(
                f"You have imported {mine} datasets on this demo, the most it allows ({cap}).",
                hint="Delete one of yours in the Data tab first.",
            )
        return
    marks = ", ".join("?" for _ in ACTIVE_STATUSES)
    active = store.query(
        f"SELECT j.id, v.visitor FROM jobs j LEFT JOIN visitor_items v"
        f" ON v.kind = 'job' AND v.item_id = j.id WHERE j.status IN ({marks})",
        tuple(ACTIVE_STATUSES),
    )
    mine = making + sum(1 for row in active if row["visitor"] == who)
    total = len(active) + sum(n for (what, _), n in _pending.items() if what == "job")
    if mine >= settings.public_demo_max_jobs_per_visitor:
        raise LimitError(
            f"You already have {mine} run(s) queued or running on this demo.",
            hint="Wait for it to end, or stop it, then start the next one.",
        )
    if total >= settings.public_demo_max_active_jobs:
        raise LimitError(
            f"This demo is busy: {total} runs are queued or running.",
            hint="Try again in a few minutes.",
        )


_in_flight: dict[Work, int] = {"evaluation": 0, "export": 0, "synthesis": 0}
_in_flight_lock = threading.Lock()


@contextmanager
def in_flight(work: Work, *, settings: Settings | None = None) -> Iterator[None]:
    """Hold one of a public demo's few slots for ``work`` (a worker process or a model in memory
    each) while it runs; ``LimitError`` at once when none is free. Not limited off a demo."""
    if not resolve(settings).public_demo:
        yield
        return
    with _in_flight_lock:
        if _in_flight[work] >= DEMO_IN_FLIGHT:
            raise LimitError(
                f"Another {work} is running on this demo.", hint="Try again in a minute."
            )
        _in_flight[work] += 1
    try:
        yield
    finally:
        with _in_flight_lock:
            _in_flight[work] -= 1
