"""A reader-writer lock: many threads share it, or one holds it alone.

The in-memory vector index and metadata columns are read by every search and changed only
when they catch up with a write. FAISS searches are safe for concurrent readers, changes are
not: searches hold the lock shared, catching up holds it exclusively. A waiting exclusive
holder stops new shared holders (writers are not starved by a stream of searches).

Both modes are re-entrant in one thread, and a thread holding it exclusively may also take
it shared; taking it exclusively while holding it only shared is refused (two such threads
would wait for each other forever).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class ReadWriteLock:
    """Shared / exclusive lock (see the module docstring)."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0  # threads holding it shared
        self._owner: int | None = None  # thread holding it exclusively
        self._depth = 0  # the owner's re-entries
        self._waiting = 0  # threads waiting to hold it exclusively
        self._mine = threading.local()  # this thread's shared re-entries

    def _shared_depth(self) -> int:
        return int(getattr(self._mine, "depth", 0))

    @contextmanager
    def shared(self) -> Iterator[None]:
        """Hold the lock shared (with other readers) inside the block."""
        me = threading.get_ident()
        depth = self._shared_depth()
        if depth or self._owner == me:  # re-entry: already excludes every writer
            self._mine.depth = depth + 1
            try:
                yield
            finally:
                self._mine.depth = depth
            return
        with self._cond:
            while self._owner is not None or self._waiting:
                self._cond.wait()
            self._readers += 1
        self._mine.depth = 1
        try:
            yield
        finally:
            self._mine.depth = 0
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold the lock alone inside the block."""
        me = threading.get_ident()
        with self._cond:
            if self._owner == me:
                self._depth += 1
            else:
                if self._shared_depth():
                    raise RuntimeError("ReadWriteLock: cannot upgrade a shared hold")
                self._waiting += 1
                try:
                    while self._owner is not None or self._readers:
                        self._cond.wait()
                finally:
                    self._waiting -= 1
                self._owner, self._depth = me, 1
        try:
            yield
        finally:
            with self._cond:
                self._depth -= 1
                if not self._depth:
                    self._owner = None
                    self._cond.notify_all()
