"""What the API shows of a view: server paths relative to STORAGE_ROOT, never absolute."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, TypeVar

from garden.api.errors import ApiError
from garden.services import web
from garden.services.base import View

V = TypeVar("V", bound=View)

PATH_FIELDS = ("path", "train_path", "eval_path", "raw_path", "output_dir", "adapter_path")
TEXT_FIELDS = ("error", "source", "problem")


def public(view: V) -> V:
    """``view`` with its path fields relative to STORAGE_ROOT and paths in its texts shortened."""
    fields = type(view).model_fields
    updates: dict[str, object] = {}
    for name in PATH_FIELDS:
        if name in fields and getattr(view, name):
            updates[name] = web.relative_path(getattr(view, name))
    for name in TEXT_FIELDS:
        if name in fields and isinstance(getattr(view, name), str):
            updates[name] = web.safe_text(getattr(view, name))
    return view.model_copy(update=updates) if updates else view


def public_list(views: list[V]) -> list[V]:
    return [public(view) for view in views]


class Named(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def name(self) -> str: ...


N = TypeVar("N", bound=Named)


def find(views: Iterable[N], id_or_name: str, what: str, list_route: str) -> N:
    """The view whose id or name is ``id_or_name``; ``404`` naming ``list_route`` otherwise."""
    for view in views:
        if id_or_name in (view.id, view.name):
            return view
    raise ApiError(
        404, f"There is no {what} {id_or_name[:80]!r}.", hint=f"GET {list_route} lists them."
    )
