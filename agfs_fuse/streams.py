"""Reading a never-ending stream (streamfs) through a file handle.

``GET /files?stream=true`` replays what the server's ring buffer still holds, then follows
live writes forever. A reader of a FUSE file needs an end, so each open handle follows the
stream in the background into a bounded buffer, and a read past what has arrived waits
only until the stream has been quiet for a moment: ``cat`` shows what the server holds now
and ends; ``tail -f``, which polls the size and reads again, sees new data as it comes.

Offsets are counted from the first byte this handle received. They match the server's
only while its ring buffer still holds the whole stream; older bytes are gone for good.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import trio

from .client import AgfsClient
from .errors import AgfsError

log = logging.getLogger(__name__)

QUIET_SECONDS = 0.25  # a stream silent this long counts as caught up
FIRST_BYTE_SECONDS = 1.0  # how long a first read waits for the replay to start
MAX_BUFFER = 64 << 20  # per handle; older bytes are dropped (and reads there are empty)


class StreamFollower:
    def __init__(self, client: Callable[[], AgfsClient], path: str) -> None:
        self._client = client
        self.path = path
        self._buffer = bytearray()
        self._dropped = 0
        self._arrived = trio.Event()
        self._finished = False
        self._error: AgfsError | None = None
        self._scope: trio.CancelScope | None = None
        self._started = False

    @property
    def end(self) -> int:
        return self._dropped + len(self._buffer)

    def start(self, nursery: trio.Nursery) -> None:
        if not self._started:
            self._started = True
            nursery.start_soon(self._follow)

    async def _follow(self) -> None:
        with trio.CancelScope() as scope:
            self._scope = scope
            try:
                await self._client().follow(self.path, self._take)
            except AgfsError as exc:
                self._error = exc
                log.warning("stream %s ended: %s", self.path, exc)
            finally:
                self._finished = True
                self._wake()

    def _take(self, chunk: bytes) -> None:
        self._buffer += chunk
        excess = len(self._buffer) - MAX_BUFFER
        if excess > 0:
            del self._buffer[:excess]
            self._dropped += excess
        self._wake()

    def _wake(self) -> None:
        self._arrived.set()
        self._arrived = trio.Event()

    async def read(self, offset: int, size: int) -> bytes:
        """Bytes at ``offset``, waiting only while the stream is still delivering."""
        patience = FIRST_BYTE_SECONDS if self.end == 0 else QUIET_SECONDS
        while offset >= self.end and not self._finished:
            with trio.move_on_after(patience) as waited:
                await self._arrived.wait()
            if waited.cancelled_caught:
                break
            patience = QUIET_SECONDS
        if offset >= self.end and self._error is not None and self.end == 0:
            raise self._error
        start = max(offset, self._dropped) - self._dropped
        return bytes(self._buffer[start : start + size]) if offset >= self._dropped else b""

    def close(self) -> None:
        if self._scope is not None:
            self._scope.cancel()
