"""Readahead without a kernel: a fake fetch records the ranges asked of the "server"."""

from __future__ import annotations

import random

import pytest
import trio
import trio.testing

from agfs_fuse.readahead import Budget, ReadAhead

KIB = 1 << 10
CHUNK = 64 * KIB


class FakeServer:
    def __init__(self, size: int, fail_at: int | None = None) -> None:
        self.data = random.Random(size).randbytes(size)
        self.asked: list[tuple[int, int]] = []
        self.fail_at = fail_at

    async def fetch(self, offset: int, size: int) -> bytes:
        self.asked.append((offset, size))
        await trio.sleep(0)
        if self.fail_at is not None and offset <= self.fail_at < offset + size:
            raise OSError("server went away")
        return self.data[offset : offset + size]


def run_reads(server: FakeServer, reads, budget: Budget | None = None, **kw):
    """Run ``reads`` (offset, size) in order through one ReadAhead; returns it and the
    bytes each read gave."""
    out: list[bytes] = []

    async def main():
        async with trio.open_nursery() as nursery:
            ahead = ReadAhead(
                server.fetch,
                len(server.data),
                nursery,
                budget or Budget(),
                chunk=CHUNK,
                max_window=kw.get("max_window", 4 * CHUNK),
            )
            for offset, size in reads:
                out.append(await ahead.read(offset, size))
            ahead.drop()
            result.append(ahead)

    result: list[ReadAhead] = []
    trio.run(main)
    return result[0], out


def sequential(total: int, step: int = 16 * KIB):
    return [(offset, step) for offset in range(0, total, step)]


def test_sequential_reads_get_whole_chunks_and_right_bytes():
    server = FakeServer(20 * CHUNK + 123)
    ahead, out = run_reads(server, sequential(len(server.data)))
    assert b"".join(out) == server.data
    kernel_reads = len(sequential(len(server.data)))
    # a few small first reads, then one GET per chunk: far fewer than one per kernel read
    assert ahead.requests <= 2 + 21
    assert ahead.requests < kernel_reads / 3
    assert all(size == CHUNK for offset, size in server.asked[2:])


def test_window_grows_to_its_cap_while_sequential():
    server = FakeServer(64 * CHUNK)
    windows = []

    async def main():
        async with trio.open_nursery() as nursery:
            ahead = ReadAhead(
                server.fetch,
                len(server.data),
                nursery,
                Budget(),
                chunk=CHUNK,
                max_window=8 * CHUNK,
            )
            for offset, size in sequential(40 * CHUNK, CHUNK // 2):
                await ahead.read(offset, size)
                windows.append(ahead.window)
            ahead.drop()

    trio.run(main)
    assert windows[0] == 0  # the first read proves nothing
    assert windows[1] == 2 * CHUNK
    assert max(windows) == 8 * CHUNK
    assert windows == sorted(windows)


def test_random_reads_fetch_exactly_what_is_read():
    server = FakeServer(50 * CHUNK)
    rng = random.Random(7)
    reads = [(rng.randrange(0, len(server.data) - 4096), 4096) for _ in range(40)]
    ahead, out = run_reads(server, reads)
    assert out == [server.data[o : o + n] for o, n in reads]
    assert server.asked == reads  # no readahead bytes for a random reader


def test_a_jump_resets_the_window():
    server = FakeServer(40 * CHUNK)
    reads = sequential(6 * CHUNK) + [(30 * CHUNK, 4096)]
    ahead, out = run_reads(server, reads)
    assert ahead.window == 0
    assert out[-1] == server.data[30 * CHUNK : 30 * CHUNK + 4096]
    assert server.asked[-1] == (30 * CHUNK, 4096)


def test_nothing_is_fetched_past_the_size_known_at_open():
    server = FakeServer(3 * CHUNK + 10)
    run_reads(server, sequential(len(server.data)))
    assert all(offset < len(server.data) for offset, _ in server.asked)


def test_spent_budget_fetches_only_what_is_read():
    server = FakeServer(30 * CHUNK)
    budget = Budget(limit=0)
    ahead, out = run_reads(server, sequential(len(server.data), CHUNK), budget)
    assert b"".join(out) == server.data
    assert len(server.asked) == 30  # one chunk per read, none ahead
    assert budget.used == 0


def test_budget_is_given_back_when_chunks_are_dropped():
    server = FakeServer(30 * CHUNK)
    budget = Budget(limit=100 * CHUNK)
    run_reads(server, sequential(10 * CHUNK), budget)
    assert budget.used == 0


def test_a_failed_chunk_fails_the_read_that_needs_it_and_is_fetched_again():
    server = FakeServer(20 * CHUNK, fail_at=5 * CHUNK + 1)
    out: list[object] = []

    async def main():
        async with trio.open_nursery() as nursery:
            ahead = ReadAhead(server.fetch, len(server.data), nursery, Budget(), chunk=CHUNK)
            for offset, size in sequential(5 * CHUNK):
                await ahead.read(offset, size)
            with pytest.raises(OSError):
                await ahead.read(5 * CHUNK, 16 * KIB)
            server.fail_at = None
            out.append(await ahead.read(5 * CHUNK, 16 * KIB))
            ahead.drop()

    trio.run(main)
    assert out == [server.data[5 * CHUNK : 5 * CHUNK + 16 * KIB]]


def test_out_of_order_reads_inside_the_fetched_range_stay_sequential():
    server = FakeServer(20 * CHUNK)
    reads = sequential(3 * CHUNK)
    reads[5], reads[6] = reads[6], reads[5]
    ahead, out = run_reads(server, reads)
    assert out == [server.data[o : o + n] for o, n in reads]
    assert ahead.window > 0


def test_a_chunk_one_reader_waits_for_is_not_dropped_under_it_by_a_reader_further_on():
    """The kernel sends several readahead requests at once: the reader further on must
    not cancel the chunk the one behind it still waits for (that would be a short read,
    which the kernel takes for the end of the file)."""
    server = FakeServer(20 * CHUNK)
    release = trio.Event()
    results: dict[str, bytes] = {}

    async def slow_fetch(offset: int, size: int) -> bytes:
        if offset == 2 * CHUNK:
            await release.wait()
        return await server.fetch(offset, size)

    async def main():
        async with trio.open_nursery() as nursery:
            ahead = ReadAhead(slow_fetch, len(server.data), nursery, Budget(), chunk=CHUNK)
            for offset, size in sequential(2 * CHUNK):
                await ahead.read(offset, size)

            async def read(name: str, offset: int) -> None:
                results[name] = await ahead.read(offset, 16 * KIB)

            nursery.start_soon(read, "behind", 2 * CHUNK)
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(read, "ahead", 3 * CHUNK + 16 * KIB)
            await trio.testing.wait_all_tasks_blocked()
            release.set()
            await trio.testing.wait_all_tasks_blocked()
            ahead.drop()

    trio.run(main)
    assert results["behind"] == server.data[2 * CHUNK : 2 * CHUNK + 16 * KIB]
    assert results["ahead"] == server.data[3 * CHUNK + 16 * KIB : 3 * CHUNK + 32 * KIB]


class FarServer(FakeServer):
    """A link in virtual time: each fetch takes ``round_trip`` plus ``transfer`` through
    one pipe, which carries one chunk at a time (fetches in flight queue for it)."""

    def __init__(self, size: int, round_trip: float, transfer: float = 0.0):
        super().__init__(size)
        self.round_trip = round_trip
        self.transfer = transfer
        self.pipe_free_at = 0.0

    async def fetch(self, offset: int, size: int) -> bytes:
        self.asked.append((offset, size))
        now = trio.current_time()
        self.pipe_free_at = max(now, self.pipe_free_at) + self.transfer
        await trio.sleep(self.pipe_free_at - now + self.round_trip)
        return self.data[offset : offset + size]


def read_through_a_link(server: FakeServer, pause: float = 0.0) -> ReadAhead:
    """Read all of ``server`` chunk by chunk, ``pause`` seconds of virtual time between
    reads, through one ReadAhead whose clock is trio's virtual one; return it."""
    result: list[ReadAhead] = []

    async def main():
        async with trio.open_nursery() as nursery:
            ahead = ReadAhead(
                server.fetch,
                len(server.data),
                nursery,
                Budget(),
                chunk=CHUNK,
                max_window=4 * CHUNK,
                grown_window=16 * CHUNK,
                clock=trio.current_time,
            )
            got = []
            for offset in range(0, len(server.data), CHUNK):
                got.append(await ahead.read(offset, CHUNK))
                await trio.sleep(pause)
            assert b"".join(got) == server.data
            ahead.drop()
            result.append(ahead)

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    return result[0]


def test_the_window_cap_grows_on_a_link_with_a_long_round_trip():
    """20 ms per fetch whatever is in flight: more in flight is faster, up to the ceiling."""
    ahead = read_through_a_link(FarServer(64 * CHUNK, round_trip=0.02))
    assert ahead.cap == 16 * CHUNK


def test_the_window_cap_stays_on_a_short_round_trip():
    ahead = read_through_a_link(FarServer(64 * CHUNK, round_trip=0.001))
    assert ahead.cap == 4 * CHUNK


def test_the_window_cap_stays_on_a_link_that_is_full():
    """Fetches in flight queue for the link (bandwidth, not distance, is the limit): more
    in flight would only hold more memory."""
    ahead = read_through_a_link(FarServer(64 * CHUNK, round_trip=0.0, transfer=0.01))
    assert ahead.cap == 4 * CHUNK


def test_the_window_cap_stays_for_a_reader_slower_than_the_link():
    ahead = read_through_a_link(FarServer(64 * CHUNK, round_trip=0.02), pause=0.05)
    assert ahead.cap == 4 * CHUNK
