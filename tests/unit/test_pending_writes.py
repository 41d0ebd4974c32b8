"""The registry of pending writes, without a kernel or a server: handles of one file share
its spool and only the last close uploads; writers follow renames and never upload over
a name that is gone; a failed upload is parked and still counts as pending; kept spools
take room that new writes get ENOSPC for, and the kept-spool command re-uploads or
discards them."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import pytest
import trio
import trio.testing

from agfs_fuse.capabilities import Capabilities
from agfs_fuse.errors import InvalidArgument, NoSpace, NotFound, ServerUnreachable
from agfs_fuse.file_key import FileKey
from agfs_fuse.models import FileInfo
from agfs_fuse.pending_writes import CAP_LOG_INTERVAL, PendingWrites
from agfs_fuse.spool import Spool, SpoolDir, SpoolMeta
from agfs_fuse.writes import SpoolWriter

pytestmark = pytest.mark.timeout(10)

URL = "http://agfs.test/api/v1"


class MemoryServer:
    """The few client calls a whole-file spool makes, over a dict; ``down`` makes every
    upload fail as if the server were unreachable."""

    def __init__(self, files: dict[str, bytes] | None = None) -> None:
        self.files = dict(files or {})
        self.uploads: list[str] = []
        self.down = False

    async def read_into(self, path: str, sink: Callable[[bytes], object]) -> int:
        sink(self.files[path])
        return len(self.files[path])

    async def write_from(self, path: str, source: Spool, size: int) -> None:
        if self.down:
            raise ServerUnreachable("connection refused", path=path)
        self.uploads.append(path)
        self.files[path] = os.pread(source.fileno(), size, 0)


class ManualClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _info(path: str, size: int) -> FileInfo:
    return FileInfo(path.rsplit("/", 1)[1], size, 0o644, False, False, 1)


async def _no_file(path: str) -> FileInfo | None:
    return None


def _registry(
    tmp_path: Path,
    server: MemoryServer,
    *,
    max_kept: int = 1 << 30,
    clock: ManualClock | None = None,
    async_for: Callable[[str], bool] = lambda path: True,
) -> PendingWrites:
    spool_dir = SpoolDir(tmp_path / "spools")

    def new_writer(path: str, base: FileInfo | None, kept: Spool | None) -> SpoolWriter:
        client = server  # the calls a whole-file spool makes, nothing else
        return SpoolWriter(lambda: client, spool_dir, path, base, URL, Capabilities(), spool=kept)

    return PendingWrites(
        spool_dir,
        new_writer,
        _no_file,
        max_kept=max_kept,
        clock=clock or ManualClock(),
        async_for=async_for,
    )


def _run(body: Callable[[], object]) -> object:
    """Run ``body`` (async) on trio's mock clock: parking reads trio's time."""
    return trio.run(body, clock=trio.testing.MockClock(autojump_threshold=0))


def _keep_a_spool(spool_dir: SpoolDir, remote_path: str, content: bytes, url: str = URL) -> str:
    """Leave a kept spool on disk, as a failed upload would; returns its id."""
    spool = spool_dir.new_spool(SpoolMeta(remote_path, url, None, None, created=0.0))
    spool.pwrite(0, content)
    return spool.keep("ServerUnreachable: connection refused").name


def test_keys_are_never_minted_twice(tmp_path: Path) -> None:
    pending = _registry(tmp_path, MemoryServer())
    keys = [pending.new_key() for _ in range(100)]
    assert len(set(keys)) == 100


def test_handles_of_one_file_share_its_spool_and_the_last_close_uploads(tmp_path: Path) -> None:
    server = MemoryServer({"/m/f": b"old"})
    pending = _registry(tmp_path, server)
    key, other = pending.new_key(), pending.new_key()

    async def body() -> None:
        first = pending.open_spool(key, "/m/f", _info("/m/f", 3))
        second = pending.open_spool(key, "/m/f", _info("/m/f", 3))
        assert first is second and pending.spool_of(key) is first
        assert pending.spool_of(other) is None  # another file's key finds nothing
        await first.write(3, b"+new")
        assert pending.pending_count() == 1
        await pending.release(key, first)
        assert server.uploads == [] and pending.open_count() == 1  # one handle still open
        await pending.release(key, second)

    _run(body)
    assert server.files["/m/f"] == b"old+new"
    assert server.uploads == ["/m/f"]
    assert pending.spool_of(key) is None and pending.open_count() == pending.pending_count() == 0
    assert list((tmp_path / "spools").iterdir()) == []  # uploaded: the spool is gone


def test_an_open_spool_follows_a_rename_of_its_directory(tmp_path: Path) -> None:
    server = MemoryServer()
    pending = _registry(tmp_path, server)
    key = pending.new_key()

    async def body() -> None:
        writer = pending.open_new_spool(key, "/m/d/f", 0o644)
        await writer.write(0, b"moved")
        pending.renamed("/m/d", "/m/e")
        assert writer.path == "/m/e/f"
        await pending.release(key, writer)

    _run(body)
    assert server.files == {"/m/e/f": b"moved"}


def test_a_file_whose_name_is_gone_never_uploads_over_it(tmp_path: Path) -> None:
    """Unlinked (or replaced by a rename) while open: the close uploads nothing, not even
    to a name that something else holds now; a file moved in over it still uploads."""
    server = MemoryServer()
    pending = _registry(tmp_path, server)
    gone, moved = pending.new_key(), pending.new_key()

    async def body() -> None:
        orphan = pending.open_new_spool(gone, "/m/f", 0o644)
        survivor = pending.open_new_spool(moved, "/m/g", 0o644)
        await orphan.write(0, b"orphaned")
        await survivor.write(0, b"survives")
        pending.replaced("/m/f", moved_in="/m/g")
        assert orphan.unlinked and not survivor.unlinked
        await pending.release(gone, orphan)
        await pending.release(moved, survivor)

    _run(body)
    assert server.uploads == ["/m/g"]
    assert list((tmp_path / "spools").iterdir()) == []  # the orphan's spool is not kept


def test_a_failed_last_close_parks_the_spool_which_stays_pending_and_in_use(
    tmp_path: Path,
) -> None:
    server = MemoryServer()
    server.down = True
    pending = _registry(tmp_path, server)
    key = pending.new_key()

    async def body() -> list[str]:
        writer = pending.open_new_spool(key, "/m/f", 0o644)
        await writer.write(0, b"waiting")
        await pending.release(key, writer)  # never raises: the program saw it at close()
        assert (pending.open_count(), pending.parked_count(), pending.pending_count()) == (0, 1, 1)
        assert pending.kept() == []  # parked, not kept: it is still this mount's
        return await pending.flush_all()

    assert _run(body) == ["/m/f"]  # still not on the server


def test_flush_all_uploads_what_open_files_changed(tmp_path: Path) -> None:
    server = MemoryServer()
    pending = _registry(tmp_path, server)
    key = pending.new_key()

    async def body() -> list[str]:
        writer = pending.open_new_spool(key, "/m/f", 0o644)
        await writer.write(0, b"at unmount")
        return await pending.flush_all()

    assert _run(body) == []
    assert server.files == {"/m/f": b"at unmount"}
    assert pending.pending_count() == 0 and pending.open_count() == 1  # still open


def test_kept_spools_over_max_kept_refuse_new_spools_except_their_own_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """ENOSPC for new writes while kept spools are over ``max_kept``; rewriting the file a
    spool was kept for stays allowed; the refusal is logged once a minute, not per open."""
    clock = ManualClock()
    pending = _registry(tmp_path, MemoryServer(), max_kept=4, clock=clock)
    _keep_a_spool(pending.spool_dir, "/m/kept", b"more than four bytes")
    caplog.set_level(logging.ERROR, logger="agfs_fuse.pending_writes")

    def refusals() -> int:
        return sum("over max_kept" in r.getMessage() for r in caplog.records)

    for _ in range(3):
        with pytest.raises(NoSpace):
            pending.new_spool("/m/new", None)
    assert refusals() == 1
    clock.now += CAP_LOG_INTERVAL
    with pytest.raises(NoSpace):
        pending.check_room_for("/m/new")
    assert refusals() == 2
    pending.new_spool("/m/kept", None).discard()  # its own file: how one re-uploads it


def test_kept_spool_command_uploads_a_kept_spool_and_removes_it(tmp_path: Path) -> None:
    server = MemoryServer()
    pending = _registry(tmp_path, server)
    spool_id = _keep_a_spool(pending.spool_dir, "/m/f", b"kept content")

    _run(lambda: pending.kept_spool_command(f"upload {spool_id}\n", URL))
    assert server.files == {"/m/f": b"kept content"}
    assert pending.kept() == []


def test_kept_spool_command_discards_and_refuses_what_it_cannot_do(tmp_path: Path) -> None:
    pending = _registry(tmp_path, MemoryServer())
    elsewhere = _keep_a_spool(pending.spool_dir, "/m/f", b"x", url="http://other/api/v1")
    doomed = _keep_a_spool(pending.spool_dir, "/m/g", b"y")

    for text, error in [
        ("upload", InvalidArgument),
        ("rewrite " + doomed, InvalidArgument),
        ("upload nosuchspool", NotFound),
        (f"upload {elsewhere}", InvalidArgument),  # written for another server
    ]:
        with pytest.raises(error):
            _run(lambda text=text: pending.kept_spool_command(text, URL))
    _run(lambda: pending.kept_spool_command(f"discard {doomed}", URL))
    assert [kept.id for kept in pending.kept()] == [elsewhere]


def test_a_key_finds_its_spool_by_value_until_the_last_close(tmp_path: Path) -> None:
    """A key is a value: the same serial finds the same open spool, which is no longer
    registered once its last handle is closed."""
    pending = _registry(tmp_path, MemoryServer())
    key = pending.new_key()
    writer = pending.open_new_spool(key, "/m/f", 0o644)
    assert pending.spool_of(FileKey(key.serial)) is writer  # keys compare by value
    _run(lambda: pending.release(key, writer))
    assert pending.spool_of(key) is None


def test_async_mode_keeps_a_closed_spool_answering_until_its_background_upload(
    tmp_path: Path,
) -> None:
    """``-o async_upload``: the last close hands the spool over and returns; until the
    upload the registry answers for the file (size, key for a new inode); a reopen takes
    it back (and a crash then must not upload it); ``sync`` sends it."""
    server = MemoryServer({"/m/f": b"old"})
    pending = _registry(tmp_path, server)
    background = pending.enable_async_uploads()
    key = pending.new_key()
    sidecar_closed: list[bool] = []

    async def body() -> None:
        writer = pending.open_spool(key, "/m/f", _info("/m/f", 3))
        await writer.write(3, b"+new")
        await writer.flush()  # a close's flush: deferred
        await pending.release(key, writer)
        assert server.uploads == [] and background.holds(writer)
        assert pending.waiting_info("/m/f", _info("/m/f", 3)).size == len(b"old+new")
        assert pending.new_key("/m/f") is key  # a new inode of the path finds the spool
        assert pending.pending_paths() == ["/m/f"]
        sidecar_closed.append(writer.spool.meta.closed)
        again = pending.open_spool(key, "/m/f", _info("/m/f", 3))
        assert again is writer
        sidecar_closed.append(writer.spool.meta.closed)
        await writer.write(7, b"!")
        await pending.release(key, writer)
        assert await pending.sync_all() == []

    _run(body)
    assert sidecar_closed == [True, False]
    assert server.files["/m/f"] == b"old+new!" and server.uploads == ["/m/f"]
    assert pending.spool_of(key) is None and pending.pending_count() == 0
    assert list((tmp_path / "spools").iterdir()) == []


def test_only_the_paths_the_settings_name_go_to_the_background_uploader(tmp_path: Path) -> None:
    """Per backend: a close under an async path returns before the upload, one elsewhere
    uploads at close; an uploader enabled while the registry runs (a backend mounted
    with ``async_upload``) sends what it is given."""
    server = MemoryServer()
    pending = _registry(tmp_path, server, async_for=lambda path: path.startswith("/lazy/"))

    async def write_and_close(path: str) -> None:
        key = pending.new_key()
        writer = pending.open_new_spool(key, path, 0o644)
        await writer.write(0, path.encode())
        await writer.flush()  # a close's flush
        await pending.release(key, writer)

    async def body() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(pending.run)
            await write_and_close("/lazy/before")  # no uploader yet: uploaded at close
            assert server.uploads == ["/lazy/before"]
            background = pending.enable_async_uploads()
            assert pending.enable_async_uploads() is background  # once is enough
            await write_and_close("/lazy/f")  # handed over: no checkpoint since
            assert server.uploads == ["/lazy/before"]
            assert pending.pending_paths() == ["/lazy/f"]
            await write_and_close("/eager/f")  # (the uploader may run meanwhile)
            assert "/eager/f" in server.uploads
            while pending.pending_count():  # the running uploader sends it by itself
                await trio.sleep(0.01)
            nursery.cancel_scope.cancel()

    _run(body)
    assert server.files == {p: p.encode() for p in ("/lazy/before", "/eager/f", "/lazy/f")}


class GatedServer(MemoryServer):
    """Uploads wait for ``gate``; ``started`` is set once one is in flight."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = trio.Event()
        self.started = trio.Event()

    async def write_from(self, path: str, source: Spool, size: int) -> None:
        self.started.set()
        await self.gate.wait()
        await super().write_from(path, source, size)


def test_a_directory_chmod_waits_for_uploads_under_it_only_when_it_takes_owner_write_away(
    tmp_path: Path,
) -> None:
    """tar sets each directory's mode after queueing its files' uploads: a mode that keeps
    the owner's write bit goes at once; one without it (the server might refuse the
    uploads then) waits for the upload in flight under the directory."""
    server = GatedServer()
    pending = _registry(tmp_path, server)
    pending.enable_async_uploads()
    order: list[str] = []

    async def strict_chmod() -> None:
        async with pending.uploads_held("/d"):
            order.append("chmod 0555 /d")

    async def body() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(pending.run)
            key = pending.new_key()
            writer = pending.open_new_spool(key, "/d/f", 0o644)
            await writer.write(0, b"x")
            await writer.flush()
            await pending.release(key, writer)
            await server.started.wait()  # its background upload is in flight
            async with pending.uploads_held("/d", below=False):
                order.append("chmod 0755 /d")
            nursery.start_soon(strict_chmod)
            await trio.sleep(1)  # trio's mock clock: the strict chmod had every chance
            order.append("upload lands")
            server.gate.set()
            while pending.pending_count():
                await trio.sleep(0.01)
            nursery.cancel_scope.cancel()

    _run(body)
    assert order == ["chmod 0755 /d", "upload lands", "chmod 0555 /d"]
    assert server.files == {"/d/f": b"x"}
