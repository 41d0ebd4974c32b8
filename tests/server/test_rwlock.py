"""The readers-writer lock behind localfs: Go's ``sync.RWMutex`` semantics."""

from __future__ import annotations

import threading

import pytest

from agfs_fuse.server.rwlock import RWLock
from tests.support.mount import wait_until

pytestmark = pytest.mark.timeout(10)


def test_readers_share_the_lock() -> None:
    lock = RWLock()
    inside = threading.Barrier(3, timeout=5)

    def reader() -> None:
        with lock.read():
            inside.wait()  # all three must be inside at once, or this times out

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    reader()
    for t in threads:
        t.join()


def test_writer_excludes_readers_and_waiting_writer_blocks_new_readers() -> None:
    lock = RWLock()
    order: list[str] = []
    writer_waiting = threading.Event()
    first_reader = lock.read()
    first_reader.__enter__()

    def writer() -> None:
        writer_waiting.set()
        with lock.write():
            order.append("writer")

    def late_reader() -> None:
        with lock.read():
            order.append("late reader")

    # daemon threads, and the first reader let go in ``finally``: a failing assert must not
    # leave threads blocked on the lock that pytest would wait for at exit
    w = threading.Thread(target=writer, daemon=True)
    r = threading.Thread(target=late_reader, daemon=True)
    released = False
    try:
        w.start()
        writer_waiting.wait(5)
        wait_until(lambda: lock._writers_waiting, timeout=5)  # queued behind the first reader
        r.start()
        r.join(0.2)  # "stays blocked" cannot be polled for: give it a moment to get in wrongly
        assert r.is_alive() and order == []
        first_reader.__exit__(None, None, None)
        released = True
        w.join(5)
        r.join(5)
        assert order == ["writer", "late reader"]  # Go: a waiting writer goes before new readers
    finally:
        if not released:
            first_reader.__exit__(None, None, None)
