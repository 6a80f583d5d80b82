"""Bounds on the live job streams (``/ws/jobs/{id}``): open at once in all, and per client.

Each open stream wakes once a second on the shared thread pool (its reads of the job are shared
with the job's other streams: ``shared_reads.py``), so an unbounded number of them (one visitor
opening thousands) would still starve every other request.
A stream over a bound is refused with one line that says which bound and what to do.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from garden.errors import GardenError


class FollowerLimitError(GardenError):
    """Too many live job streams are open (in all, or from one client)."""


class Followers:
    """Counts open streams in all and per client address; thread-safe."""

    def __init__(self, max_total: int, max_per_client: int) -> None:
        self.max_total = max_total
        self.max_per_client = max_per_client
        self._open: Counter[str] = Counter()
        self._lock = threading.Lock()

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self._open.values())

    def open_from(self, client: str) -> int:
        with self._lock:
            return self._open[client]

    @contextmanager
    def slot(self, client: str) -> Iterator[None]:
        """Hold one stream's place while the block runs; ``FollowerLimitError`` when full."""
        with self._lock:
            if self._open[client] >= self.max_per_client:
                raise FollowerLimitError(
                    f"This client already follows {self._open[client]} jobs live "
                    f"(at most {self.max_per_client} at once).",
                    hint="Close a stream you no longer read, or poll "
                    "GET /api/v1/training/jobs/{id} instead.",
                )
            if sum(self._open.values()) >= self.max_total:
                raise FollowerLimitError(
                    f"The server already streams {self.max_total} live job follows, its limit.",
                    hint="Try again in a minute, or poll GET /api/v1/training/jobs/{id}.",
                )
            self._open[client] += 1
        try:
            yield
        finally:
            with self._lock:
                self._open[client] -= 1
                if self._open[client] <= 0:
                    del self._open[client]
