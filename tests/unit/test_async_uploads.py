"""The background uploader of ``-o async_upload``, on trio's mock clock: how many uploads
run at once, the retry delays and the give-up, what ``sync`` and ``drain`` report, and that
two contents of one path never race."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import trio
import trio.testing

from agfs_fuse.async_uploads import AsyncUploads, Failure
from agfs_fuse.capabilities import Capabilities
from agfs_fuse.errors import AgfsError, PermissionDenied, ServerUnreachable
from agfs_fuse.spool import SIDECAR_SUFFIX, SpoolDir
from agfs_fuse.writes import SpoolWriter


class GatedClient:
    """Takes uploads (``write_from``), each held until ``gate`` is set; records what
    arrived, when, and how many ran at once; ``fail`` makes the next ones fail."""

    def __init__(self) -> None:
        self.gate = trio.Event()
        self.gate.set()
        self.running = 0
        self.most_at_once = 0
        self.landed: list[tuple[str, bytes]] = []
        self.tries_at: list[float] = []
        self.fail: Callable[[], AgfsError] | None = None

    async def write_from(self, path: str, source, size: int) -> None:
        self.tries_at.append(trio.current_time())
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        try:
            await self.gate.wait()
            if self.fail is not None:
                raise self.fail()
            self.landed.append((path, source.pread(0, size)))
        finally:
            self.running -= 1


def closed_writer(client: GatedClient, spool_dir: SpoolDir, path: str, data: bytes):
    """A deferred spool writer holding ``data``, its one handle closed (as release does)."""

    async def make() -> SpoolWriter:
        writer = SpoolWriter(
            lambda: client, spool_dir, path, None, "http://x/api/v1", Capabilities()
        )
        writer.deferred = True
        writer.handle_opened()
        writer.start_new(0o644)
        await writer.write(0, data)
        await writer.flush()  # a close's flush: deferred, sends nothing
        assert writer.handle_released()
        return writer

    return make()


def uploader(forgotten: list[SpoolWriter], **kw) -> AsyncUploads:
    return AsyncUploads(forgotten.append, **kw)


def run(main) -> None:
    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_at_most_four_run_at_once_and_each_spool_goes_once_uploaded(tmp_path: Path) -> None:
    client = GatedClient()
    spool_dir = SpoolDir(tmp_path / "spools")
    forgotten: list[SpoolWriter] = []

    async def main() -> None:
        uploads = uploader(forgotten)
        client.gate = trio.Event()
        writers = [
            await closed_writer(client, spool_dir, f"/m/f{n}", f"content {n}".encode())
            for n in range(10)
        ]
        assert client.landed == []  # the close's flush sent nothing
        async with trio.open_nursery() as nursery:
            nursery.start_soon(uploads.run)
            for writer in writers:
                uploads.submit(writer)
            await trio.testing.wait_all_tasks_blocked()
            assert (uploads.in_flight_count(), uploads.queued_count()) == (4, 6)
            client.gate.set()
            assert await uploads.sync() == []
            nursery.cancel_scope.cancel()
        assert client.most_at_once == 4
        assert sorted(client.landed) == sorted(
            (f"/m/f{n}", f"content {n}".encode()) for n in range(10)
        )
        assert {id(w) for w in forgotten} == {id(w) for w in writers}  # all let go
        assert uploads.uploaded == 10

    run(main)
    assert list(spool_dir.root.iterdir()) == []  # every spool removed once uploaded


def test_an_unreachable_server_is_tried_5_times_on_2_10_60_300_s_then_kept(
    tmp_path: Path,
) -> None:
    client = GatedClient()
    client.fail = lambda: ServerUnreachable("connection refused")
    spool_dir = SpoolDir(tmp_path / "spools")
    forgotten: list[SpoolWriter] = []
    reports: list[list[Failure]] = []

    async def main() -> None:
        uploads = uploader(forgotten)
        writer = await closed_writer(client, spool_dir, "/m/f", b"precious")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(uploads.run)
            start = trio.current_time()
            uploads.submit(writer)
            await trio.sleep(1000)
            reports.append(await uploads.sync())
            reports.append(await uploads.sync())
            nursery.cancel_scope.cancel()
        gaps = [round(t - start, 3) for t in client.tries_at]
        assert gaps == [0, 2, 12, 72, 372]
        assert forgotten == [writer]

    run(main)
    assert [f.path for f in reports[0]] == ["/m/f"] and reports[0][0].kept
    assert "after 5 tries" in reports[0][0].error
    assert reports[1] == []  # a failure is reported once
    sidecars = list(spool_dir.root.glob(f"*{SIDECAR_SUFFIX}"))
    assert len(sidecars) == 1 and "ServerUnreachable" in sidecars[0].read_text()


def test_a_refusal_is_kept_at_once_and_sync_sends_what_waits_for_its_backoff(
    tmp_path: Path,
) -> None:
    client = GatedClient()
    spool_dir = SpoolDir(tmp_path / "spools")
    forgotten: list[SpoolWriter] = []

    async def main() -> None:
        uploads = uploader(forgotten)
        refused = await closed_writer(client, spool_dir, "/m/refused", b"a")
        waiting = await closed_writer(client, spool_dir, "/m/waiting", b"b")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(uploads.run)
            client.fail = lambda: PermissionDenied("permission denied")
            uploads.submit(refused)
            await trio.testing.wait_all_tasks_blocked()
            assert forgotten == [refused]  # not retried: kept at once
            client.fail = lambda: ServerUnreachable("connection refused")
            uploads.submit(waiting)
            await trio.testing.wait_all_tasks_blocked()
            assert uploads.queued_count() == 1  # waiting 2 s for its next try
            client.fail = None
            before = trio.current_time()
            failures = await uploads.sync()
            assert trio.current_time() == before  # sent at once, not after its backoff
            nursery.cancel_scope.cancel()
        assert [(f.path, f.kept) for f in failures] == [("/m/refused", True)]
        assert client.landed == [("/m/waiting", b"b")]

    run(main)


def test_two_contents_of_one_path_never_upload_at_once_and_the_newer_lands_last(
    tmp_path: Path,
) -> None:
    client = GatedClient()
    spool_dir = SpoolDir(tmp_path / "spools")
    forgotten: list[SpoolWriter] = []

    async def main() -> None:
        uploads = uploader(forgotten)
        client.gate = trio.Event()
        older = await closed_writer(client, spool_dir, "/m/f", b"older")
        newer = await closed_writer(client, spool_dir, "/m/f", b"newer")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(uploads.run)
            uploads.submit(older)
            uploads.submit(newer)
            await trio.testing.wait_all_tasks_blocked()
            assert (uploads.in_flight_count(), uploads.queued_count()) == (1, 1)
            client.gate.set()
            await uploads.sync()
            nursery.cancel_scope.cancel()
        assert client.most_at_once == 1
        assert client.landed == [("/m/f", b"older"), ("/m/f", b"newer")]

    run(main)


def test_drain_retries_on_the_delays_then_keeps_what_is_left(tmp_path: Path) -> None:
    client = GatedClient()
    client.fail = lambda: ServerUnreachable("connection refused")
    spool_dir = SpoolDir(tmp_path / "spools")
    forgotten: list[SpoolWriter] = []

    async def main() -> None:
        uploads = uploader(forgotten)
        writer = await closed_writer(client, spool_dir, "/m/f", b"x")
        uploads.submit(writer)  # no ``run``: an unmount drains by itself
        with trio.move_on_after(30):  # the unmount's grace
            await uploads.drain()
        assert len(client.tries_at) == 3  # at 0, 2 and 12 s; the next (72 s) is past it
        assert forgotten == [writer]
        assert uploads.failed["/m/f"].kept

    run(main)
    sidecar = next(spool_dir.root.glob(f"*{SIDECAR_SUFFIX}")).read_text()
    assert "unmounted before the server took the upload" in sidecar
    assert '"closed": true' in sidecar
