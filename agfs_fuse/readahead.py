"""Readahead: sequential readers get large, concurrent range GETs fetched ahead of them.

The kernel asks for at most its readahead window (128 KiB) at a time and waits for each
answer, so a plain ranged read per kernel request costs one round trip per 128 KiB. Once
a handle reads sequentially, this fetches whole chunks ahead of the reader, several at
once, and serves the kernel's requests from them. The window grows while the reader stays
sequential and collapses at the first jump (random access pays no extra bytes). Memory is
bounded per handle (the window) and for the whole mount (``Budget``): when the budget is
spent, chunks are still fetched as the reader needs them, just not ahead.

The window's cap grows with the bandwidth-delay product (``LinkGauge``): on a link with a
long round trip, ``MAX_WINDOW`` in flight is less than the link could carry, and the
reader waits for chunks that arrive no slower than the fastest ever did. After a few such
waits in a row (one can be chance: the first of a burst of fetches), the cap doubles, up to
``GROWN_WINDOW``. A link that is full instead (fetches take longer the more
are in flight) or a reader slower than the fetches leaves it where it is.

Never used for files whose reads are destructive or whose size is untrusted (those are
read once per open), nor while the file has local, unuploaded changes.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import trio

CHUNK = 1 << 20
MAX_WINDOW = 4 << 20  # per handle: at most this many bytes fetched ahead of the reader
GLOBAL_BUDGET = 128 << 20  # for the whole mount
GROWN_WINDOW = 32 << 20  # per handle, on a link whose bandwidth-delay product needs more
LONG_FETCH = 0.005  # s: below this, MAX_WINDOW in flight covers ~800 MB/s; no growth
QUEUEING = 1.5  # a fetch this many times the fastest one: the link is full, not far
WAITS_TO_GROW = 4  # waits in a row to blame on the round trip before the cap doubles

Fetch = Callable[[int, int], Awaitable[bytes]]
Clock = Callable[[], float]


class LinkGauge:
    """What one handle's fetches tell of the link: the fastest fetch seen (a round trip
    plus one chunk's transfer with nothing queued) and whether a given fetch was that
    fast, i.e. whether more in flight would have come back as quickly."""

    def __init__(self) -> None:
        self.fastest: float | None = None

    def fetched(self, seconds: float) -> None:
        if self.fastest is None or seconds < self.fastest:
            self.fastest = seconds

    def more_would_help(self, seconds: float) -> bool:
        """A fetch of ``seconds``, which the reader waited for: True when the round trip,
        not the link's bandwidth, made it wait (long fetches, none queued)."""
        fastest = self.fastest
        return fastest is not None and fastest >= LONG_FETCH and seconds < QUEUEING * fastest


class Budget:
    """Bytes of readahead the whole mount may hold at once."""

    def __init__(self, limit: int = GLOBAL_BUDGET) -> None:
        self.limit = limit
        self.used = 0

    def take(self, n: int) -> bool:
        if self.used + n > self.limit:
            return False
        self.used += n
        return True

    def give(self, n: int) -> None:
        self.used -= n


@dataclass(eq=False)
class _Chunk:
    index: int
    charged: int  # bytes taken from the budget (0 for a chunk the reader needed now)
    ahead: bool = False  # fetched before the reader asked for it
    seconds: float | None = None  # how long its fetch took, once done
    waiters: int = 0  # reads waiting for it: never cancelled under them
    done: trio.Event = field(default_factory=trio.Event)
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    data: bytes = b""
    error: BaseException | None = None


class ReadAhead:
    """Prefetching for one open file handle."""

    def __init__(
        self,
        fetch: Fetch,
        size: int,
        nursery: trio.Nursery,
        budget: Budget,
        *,
        chunk: int = CHUNK,
        max_window: int = MAX_WINDOW,
        grown_window: int = GROWN_WINDOW,
        clock: Clock = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._size = size  # as stat said at open; reads past it go straight to the server
        self._nursery = nursery
        self._budget = budget
        self._chunk = chunk
        self._max_window = max(max_window, chunk)  # the cap now: grows on a long link
        self._grown_window = max(grown_window, self._max_window)
        self._clock = clock
        self._link = LinkGauge()
        self._far_waits = 0  # waits in a row that more in flight would have saved
        self._chunks: dict[int, _Chunk] = {}
        self._next = 0  # where a sequential reader reads next
        self._window = 0  # bytes to keep fetched ahead; 0 = not sequential (yet)
        self.requests = 0  # range GETs sent, for tests and stats

    @property
    def window(self) -> int:
        return self._window

    @property
    def cap(self) -> int:
        """The most the window may grow to now."""
        return self._max_window

    async def read(self, offset: int, size: int) -> bytes:
        # The kernel may send its readahead requests slightly out of order: a read inside
        # what is already being fetched is still sequential.
        sequential = offset > 0 and (offset == self._next or offset // self._chunk in self._chunks)
        self._next = max(self._next, offset + size) if sequential else offset + size
        if not sequential:
            self._window = 0
            self.drop()
        elif self._window == 0:
            self._window = 2 * self._chunk
        else:
            self._window = min(self._max_window, self._window * 2)
        if self._window == 0 or offset >= self._size:
            self.requests += 1
            return await self._fetch(offset, size)
        first = offset // self._chunk
        last = (min(offset + size, self._size) - 1) // self._chunk
        ahead = (min(offset + size + self._window, self._size) - 1) // self._chunk
        for index in [i for i in self._chunks if i < first]:
            self._discard(self._chunks.pop(index))
        for index in range(first, ahead + 1):
            if index not in self._chunks:
                needed = index <= last
                charged = 0 if needed else self._chunk
                if not needed and not self._budget.take(charged):
                    break  # the mount's budget is spent: fetch only what is read
                self._start(_Chunk(index, charged, ahead=not needed))
        return await self._assemble(offset, size, first, last)

    def _start(self, chunk: _Chunk) -> None:
        self._chunks[chunk.index] = chunk
        self.requests += 1
        self._nursery.start_soon(self._load, chunk)

    async def _load(self, chunk: _Chunk) -> None:
        started = self._clock()
        with chunk.scope:
            try:
                chunk.data = await self._fetch(chunk.index * self._chunk, self._chunk)
                chunk.seconds = self._clock() - started
                self._link.fetched(chunk.seconds)
            except Exception as exc:  # handed to the reader that needs this chunk
                chunk.error = exc
        chunk.done.set()

    async def _assemble(self, offset: int, size: int, first: int, last: int) -> bytes:
        # Take the chunks now: a concurrent reader further on may drop them from the
        # table meanwhile, but a chunk somebody waits for is never cancelled.
        wanted = []
        for index in range(first, last + 1):
            chunk = self._chunks.get(index)
            if chunk is None:
                chunk = _Chunk(index, 0)
                self._start(chunk)
            chunk.waiters += 1
            wanted.append(chunk)
        parts = []
        try:
            for chunk in wanted:
                caught_up = not chunk.done.is_set()
                await chunk.done.wait()
                if caught_up:
                    self._waited_for(chunk)
                if chunk.error is not None:
                    if self._chunks.get(chunk.index) is chunk:
                        self._discard(self._chunks.pop(chunk.index))
                    raise chunk.error
                base = chunk.index * self._chunk
                parts.append(chunk.data[max(0, offset - base) : offset + size - base])
                if len(chunk.data) < self._chunk:
                    break  # end of file came early: the file shrank since it was opened
        finally:
            for chunk in wanted:
                chunk.waiters -= 1
        return b"".join(parts)

    def _waited_for(self, chunk: _Chunk) -> None:
        """The reader caught up with a chunk fetched ahead: with the window at its cap and
        a round trip to blame, more in flight would keep it busy."""
        if not chunk.ahead or chunk.seconds is None or self._window < self._max_window:
            return
        if not self._link.more_would_help(chunk.seconds):
            self._far_waits = 0
            return
        self._far_waits += 1
        if self._far_waits >= WAITS_TO_GROW:
            self._far_waits = 0
            self._max_window = min(self._grown_window, 2 * self._max_window)

    def _discard(self, chunk: _Chunk) -> None:
        if chunk.waiters == 0:
            chunk.scope.cancel()
        if chunk.charged:
            self._budget.give(chunk.charged)
            chunk.charged = 0

    def drop(self) -> None:
        """Forget every chunk (a jump, a local change, the handle closed)."""
        for chunk in self._chunks.values():
            self._discard(chunk)
        self._chunks.clear()
