"""A readers-writer lock with the semantics of Go's ``sync.RWMutex``.

The Go plugins guard their state with an ``RWMutex``: reads (stat, list, read, open)
share it, mutations take it alone. One exclusive lock instead would make every reader
wait on the slowest one, e.g. every stat on a localfs mount behind a GET of a FIFO that
waits for a writer. Like Go's, the lock is not reentrant and a waiting writer blocks new
readers, so writers cannot starve (and a writer queued behind a stuck reader stalls the
readers after it, in Go as here).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class RWLock:
    """``read()`` is shared, ``write()`` exclusive; writers are preferred once waiting."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writing = False
        self._writers_waiting = 0

    @contextmanager
    def read(self) -> Iterator[None]:
        """Hold the lock shared (Go's ``RLock``/``RUnlock``)."""
        with self._cond:
            while self._writing or self._writers_waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        """Hold the lock alone (Go's ``Lock``/``Unlock``)."""
        with self._cond:
            self._writers_waiting += 1
            try:
                while self._writing or self._readers:
                    self._cond.wait()
            finally:
                self._writers_waiting -= 1
            self._writing = True
        try:
            yield
        finally:
            with self._cond:
                self._writing = False
                self._cond.notify_all()
