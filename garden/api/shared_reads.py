"""One read of a followed job per interval, shared by every live stream that follows it.

Each open ``/ws/jobs/{id}`` stream used to read its job from the database once a second, so 64
streams of one job made 64 reads a second on the shared thread pool. Now the first stream that
asks within an interval reads the job; the others asking within it get that same event.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

Value = TypeVar("Value")

# An entry unread for this long is dropped, so following many jobs over a day keeps no memory.
FORGET_AFTER_S = 60.0


class SharedReads(Generic[Value]):
    """``get(key)`` returns ``read(key)``, read at most once per ``max_age_s`` for each key,
    however many threads ask; thread-safe."""

    def __init__(
        self,
        read: Callable[[str], Value],
        max_age_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read = read
        self._max_age_s = max_age_s
        self._clock = clock
        self._latest: dict[str, tuple[float, Value]] = {}
        self._key_locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()
        self.reads = 0

    def get(self, key: str) -> Value:
        with self._lock:
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:  # a second asker waits for the first one's read, then shares it
            latest = self._latest.get(key)
            if latest is not None and self._clock() - latest[0] < self._max_age_s:
                return latest[1]
            value = self._read(key)
            now = self._clock()
            with self._lock:
                self.reads += 1
                self._latest[key] = (now, value)
                self._forget_older_than(now - FORGET_AFTER_S)
            return value

    def _forget_older_than(self, moment: float) -> None:
        for key in [key for key, (at, _) in self._latest.items() if at < moment]:
            del self._latest[key]
            lock = self._key_locks.get(key)
            if lock is not None and not lock.locked():
                del self._key_locks[key]
