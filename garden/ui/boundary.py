"""The UI boundary: any exception becomes one line a person can act on; the trace goes to the log.

Every tab wraps its event handlers with ``guard`` (or ``guard_stream`` for generators), so no
raw exception text, traceback or absolute server path reaches the browser.
"""

from __future__ import annotations

import functools
import html
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import gradio as gr

from garden.config import Settings
from garden.errors import GardenError
from garden.services import visitors, web

log = logging.getLogger("garden.ui")

T = TypeVar("T")
MARKDOWN_SPECIAL = re.compile(r"([\\`\[\]])")
UNEXPECTED = "Something went wrong ({name}) while {doing}."
UNEXPECTED_HINT = "Try again; if it keeps failing, the app log has the details."


def visitor() -> visitors.Visitor:
    """The browser session whose event is running: a public demo's visitor."""
    from gradio.context import LocalContext

    request = LocalContext.request.get(None)
    return visitors.Visitor.of_session(getattr(request, "session_hash", None))


def one_line(
    exc: BaseException, doing: str = "handling this", settings: Settings | None = None
) -> str:
    """What went wrong and what to do, on one line, with no server path in it."""
    if isinstance(exc, GardenError):
        text = f"{exc.message} {exc.hint}" if exc.hint else exc.message
    else:
        text = f"{UNEXPECTED.format(name=type(exc).__name__, doing=doing)} {UNEXPECTED_HINT}"
    return web.safe_text(" ".join(text.split()), settings=settings)


def report(exc: BaseException, doing: str, settings: Settings | None = None) -> str:
    """Log ``exc`` (with its trace unless it is a typed error), warn the browser, return the line."""
    if isinstance(exc, GardenError):
        log.info("%s failed: %s", doing, exc)
    else:
        log.exception("%s failed", doing, exc_info=exc)
    message = one_line(exc, doing, settings)
    gr.Warning(message)
    return message


def guard(
    doing: str, fallback: Callable[[str], T], settings: Settings | None = None
) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """Decorate a handler: an exception is reported and ``fallback(message)`` is returned."""

    def wrap(handler: Callable[..., T]) -> Callable[..., T]:
        @functools.wraps(handler)
        def guarded(*args: Any, **kwargs: Any) -> T:
            try:
                return handler(*args, **kwargs)
            except Exception as exc:  # the boundary: nothing raw goes past it
                return fallback(report(exc, doing, settings))

        return guarded

    return wrap


def guard_stream(
    doing: str, fallback: Callable[[str], T], settings: Settings | None = None
) -> Callable[[Callable[..., Iterator[T]]], Callable[..., Iterator[T]]]:
    """``guard`` for a generator handler: a failure mid-stream yields ``fallback(message)``."""

    def wrap(handler: Callable[..., Iterator[T]]) -> Callable[..., Iterator[T]]:
        @functools.wraps(handler)
        def guarded(*args: Any, **kwargs: Any) -> Iterator[T]:
            try:
                yield from handler(*args, **kwargs)
            except Exception as exc:  # the boundary: nothing raw goes past it
                yield fallback(report(exc, doing, settings))

        return guarded

    return wrap


def plain(value: object) -> str:
    """Untrusted text for a Markdown component: shown as typed, never as HTML or markup."""
    return MARKDOWN_SPECIAL.sub(r"\\\1", html.escape(str(value), quote=False))


def code(value: object) -> str:
    """Untrusted text as an inline code span (HTML escaped, backticks cannot close it)."""
    return f"<code>{html.escape(str(value))}</code>"


def code_block(value: str) -> str:
    """Untrusted text as a fenced code block whose fence no run of backticks in it can close."""
    longest = max((len(run) for run in re.findall(r"`+", value)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}\n{value}\n{fence}"


@dataclass(frozen=True)
class OnShow:
    """What a tab does when a person opens it: ``handler`` refreshes ``outputs`` (lists that
    another tab may have changed), and its ``timers`` tick only while it is the open tab."""

    handler: Callable[..., Any]
    outputs: list[Any]
    timers: tuple[Any, ...] = ()
