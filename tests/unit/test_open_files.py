"""The open-file layer without a kernel or a server: a stub core records what it is asked.

These drive ``OpenFiles`` the way the FUSE adapter does (open, read, write, flush,
release by handle number) and check the decisions it hands back to the kernel: when the
page cache is kept, when I/O is direct, who appends, which source a read is served from,
what the control files say and do, and when a replaced file kept aside is deleted.
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
import trio

from agfs_fuse import errors
from agfs_fuse.control_files import RELOAD, RELOAD_HELP, SPOOLS, STATS
from agfs_fuse.file_key import FileKey, FileKeys
from agfs_fuse.inodes import InodeTable
from agfs_fuse.models import FileInfo
from agfs_fuse.open_files import Opened, OpenFiles
from agfs_fuse.rename import KeptAside
from agfs_fuse.writes import MessageWriter

CONTENT = b"0123456789"


def info(name: str = "f", *, size: int = 10, mtime_ns: int = 1_000, **kw) -> FileInfo:
    return FileInfo(
        name=name, size=size, perm=0o644, is_dir=False, is_symlink=False, mtime_ns=mtime_ns, **kw
    )


class LocalWriter:
    """A spool: holds the file's content locally once ``local`` is set."""

    def __init__(self, path: str, local: bytes | None = None) -> None:
        self.path = path
        self.local = local
        self.writes: list[tuple[int, bytes, bool]] = []
        self.flushes = 0

    async def write(self, offset: int, data: bytes, *, append: bool = False) -> int:
        self.writes.append((offset, data, append))
        return len(data)

    async def read(self, offset: int, size: int) -> bytes | None:
        return None if self.local is None else self.local[offset : offset + size]

    async def flush(self) -> None:
        self.flushes += 1

    def local_size(self) -> int | None:
        return None if self.local is None else len(self.local)


class RecordedMessages(MessageWriter):
    """A message writer that records its writes instead of sending them."""

    def __init__(self, path: str) -> None:
        super().__init__(lambda: None, path)  # type: ignore[arg-type,return-value]
        self.writes: list[tuple[int, bytes, bool]] = []

    async def write(self, offset: int, data: bytes, *, append: bool = False) -> int:
        self.writes.append((offset, data, append))
        return len(data)


class Prefetch:
    def __init__(self) -> None:
        self.dropped = False

    async def read(self, offset: int, size: int) -> bytes:
        assert not self.dropped, "read through a dropped readahead"
        return b"ahead"[offset : offset + size]

    def drop(self) -> None:
        self.dropped = True


class Stream:
    def __init__(self) -> None:
        self.started_in: object = None
        self.closed = False

    def start(self, nursery: object) -> None:
        self.started_in = nursery

    async def read(self, offset: int, size: int) -> bytes:
        return b"stream"[offset : offset + size]

    def close(self) -> None:
        self.closed = True


class StubCore:
    """The filesystem core as the open-file layer sees it, with no server behind."""

    def __init__(self) -> None:
        self.infos: dict[str, FileInfo] = {}
        self.volatile: set[str] = set()
        self.streams: set[str] = set()
        self.messages: set[str] = set()
        self.keys = FileKeys()
        self.spools: dict[FileKey, LocalWriter] = {}
        self.released: list[tuple[FileKey, object]] = []
        self.truncated: list[tuple[FileKey, str, int]] = []
        self.prefetches: list[Prefetch] = []
        self.followers: list[Stream] = []
        self.fetched: list[str] = []
        self.plain_reads: list[str] = []
        self.commands: list[str] = []
        self.discarded: list[KeptAside] = []
        self.on_stat: Callable[[str], None] = lambda path: None
        self.stats: list[tuple[str, bool]] = []  # (path, fresh) of every stat asked
        self.the_nursery = object()

    def new_file_key(self, path: str | None = None) -> FileKey:
        return self.keys.mint()

    async def upload_settled(self, path: str) -> None:
        """No background uploads here."""

    def is_volatile(self, path: str, info: FileInfo) -> bool:
        return path in self.volatile

    def is_stream(self, path: str, info: FileInfo) -> bool:
        return path in self.streams

    async def stat(self, path: str, *, fresh: bool = False) -> FileInfo:
        self.stats.append((path, fresh))
        self.on_stat(path)
        return self.infos[path]

    async def settled_path(self, path_now: Callable[[], str | None]) -> str | None:
        return path_now()

    def open_writer(self, key: FileKey, path: str, info: FileInfo, flags: int):
        if path in self.messages:
            return RecordedMessages(path)
        return self.spools.setdefault(key, LocalWriter(path))

    def open_new_file(self, key: FileKey, path: str, mode: int = 0o644):
        self.spools[key] = LocalWriter(path, b"")
        return self.spools[key]

    def spool_of(self, key: FileKey) -> LocalWriter | None:
        return self.spools.get(key)

    async def truncate(self, key: FileKey, path: str, size: int) -> None:
        self.truncated.append((key, path, size))

    async def release_writer(self, key: FileKey, writer: object) -> None:
        self.released.append((key, writer))

    def read_ahead(self, path_now: Callable[[], str | None], info: FileInfo) -> Prefetch:
        self.prefetches.append(Prefetch())
        return self.prefetches[-1]

    def follow_stream(self, path: str) -> Stream:
        self.followers.append(Stream())
        return self.followers[-1]

    async def fetch_all(self, path: str) -> bytes:
        self.fetched.append(path)
        return b"fetched"

    async def read(self, path: str, offset: int, size: int) -> bytes:
        self.plain_reads.append(path)
        return b"plain"[offset : offset + size]

    def nursery(self) -> object:
        return self.the_nursery

    def kept_spools(self) -> list:
        return []

    async def kept_spool_command(self, text: str) -> None:
        self.commands.append(text)

    def snapshot(self) -> dict[str, object]:
        return {"url": "http://stub"}

    async def rename(self, old, new, *, noreplace=False, keep_replaced=None):
        replaced = self.infos.pop(new, None)
        self.infos[new] = self.infos.pop(old)
        if replaced is not None and keep_replaced is not None and keep_replaced():
            return KeptAside("/.agfs-fuse-replaced-00000000-00000000", Path("record"))
        return None

    async def discard_kept(self, kept: KeptAside) -> None:
        self.discarded.append(kept)


class Layer:
    """An ``OpenFiles`` over a stub core and a real inode table, with a fixed clock."""

    def __init__(self, *, writeback_cache: bool = False) -> None:
        self.core = StubCore()
        self.inodes = InodeTable("/")
        self.reloads: list[str] = []
        self.now_ns = 5_000_000_000

        async def reload(text: str) -> None:
            self.reloads.append(text)

        self.files = OpenFiles(
            self.core,  # type: ignore[arg-type]
            self.inodes,
            reload=reload,
            writeback_cache=writeback_cache,
            clock_ns=lambda: self.now_ns,
        )

    def add(self, path: str, file: FileInfo | None = None) -> int:
        """A file on the "server", looked up by the kernel: returns its inode."""
        self.core.infos[path] = file or info(path.rsplit("/", 1)[1])
        return self.inodes.ref(path)

    async def open(self, inode: int, flags: int = os.O_RDONLY) -> Opened:
        return await self.files.open(inode, flags)

    def key(self, inode: int) -> FileKey:
        """The key the layer names ``inode``'s pending writes by in the core."""
        return self.files.file_key(inode)


def run(test: Callable[[Layer], object], **kw) -> None:
    layer = Layer(**kw)

    async def main() -> None:
        await test(layer)  # type: ignore[misc]

    trio.run(main)
    layer.inodes.check()


# -- the page cache ---------------------------------------------------------------


def test_a_file_unchanged_since_its_pages_were_read_keeps_them() -> None:
    async def test(layer: Layer) -> None:
        inode = layer.add("/f")
        first = await layer.open(inode)
        second = await layer.open(inode)
        assert (first.keep_cache, second.keep_cache) == (False, True)
        assert not first.direct_io and not second.direct_io
        stats = layer.files.snapshot()["page_cache"]
        assert (stats["opens_kept"], stats["opens_dropped"]) == (1, 1)

    run(test)


@pytest.mark.parametrize(
    ("flags", "fresh"),
    [
        (os.O_RDONLY, False),
        (os.O_WRONLY, True),
        (os.O_RDWR, True),
        (os.O_RDONLY | os.O_TRUNC, True),
    ],
    ids=["read", "write", "read-write", "truncate"],
)
def test_a_reader_opens_by_cached_attributes_a_writer_asks_the_server(
    flags: int, fresh: bool
) -> None:
    """A reader may go by attributes younger than attr_timeout; a writer's spool needs
    what the server holds now."""

    async def test(layer: Layer) -> None:
        inode = layer.add("/f")
        await layer.open(inode, flags)
        assert layer.core.stats == [("/f", fresh)]

    run(test)


@pytest.mark.parametrize("change", [{"size": 11}, {"mtime_ns": 2_000}])
def test_a_file_changed_in_size_or_mtime_drops_its_pages(change: dict) -> None:
    async def test(layer: Layer) -> None:
        inode = layer.add("/f")
        await layer.open(inode)
        layer.core.infos["/f"] = info("f", **change)
        changed = await layer.open(inode)
        again = await layer.open(inode)
        assert (changed.keep_cache, again.keep_cache) == (False, True)

    run(test)


def test_a_file_with_mtime_zero_never_keeps_its_pages() -> None:
    async def test(layer: Layer) -> None:
        inode = layer.add("/f", info("f", mtime_ns=0))
        opens = [await layer.open(inode) for _ in range(3)]
        assert [o.keep_cache for o in opens] == [False, False, False]
        assert layer.files.snapshot()["page_cache"]["opens_dropped"] == 3

    run(test)


def test_a_volatile_file_is_direct_io_and_never_keeps_or_counts_pages() -> None:
    async def test(layer: Layer) -> None:
        inode = layer.add("/status")
        layer.core.volatile.add("/status")
        opens = [await layer.open(inode) for _ in range(2)]
        assert [(o.direct_io, o.keep_cache) for o in opens] == [(True, False), (True, False)]
        assert layer.inodes.entry(inode).cached is None
        stats = layer.files.snapshot()["page_cache"]
        assert (stats["opens_kept"], stats["opens_dropped"]) == (0, 0)

    run(test)


def test_a_file_just_created_neither_keeps_pages_nor_appends() -> None:
    async def test(layer: Layer) -> None:
        inode = layer.inodes.ref("/new")
        opened = layer.files.open_created(inode, "/new")
        assert (opened.direct_io, opened.keep_cache) == (False, False)
        assert await layer.files.write(opened.fh, 0, b"x") == 1
        assert layer.core.spools[layer.key(inode)].writes == [(0, b"x", False)]
        await layer.files.release(opened.fh)

    run(test)


# -- append mode ------------------------------------------------------------------

APPEND = os.O_WRONLY | os.O_APPEND


def test_without_writeback_cache_the_layer_appends() -> None:
    async def test(layer: Layer) -> None:
        inode = layer.add("/log")
        opened = await layer.open(inode, APPEND)
        await layer.files.write(opened.fh, 0, b"line\n")
        assert layer.core.spools[layer.key(inode)].writes == [(0, b"line\n", True)]
        assert not opened.direct_io

    run(test)


def test_under_writeback_cache_the_kernel_appends_with_offsets() -> None:
    async def test(layer: Layer) -> None:
        inode = layer.add("/log")
        opened = await layer.open(inode, APPEND)
        await layer.files.write(opened.fh, 10, b"line\n")
        assert layer.core.spools[layer.key(inode)].writes == [(10, b"line\n", False)]
        assert not opened.direct_io

    run(test, writeback_cache=True)


def test_under_writeback_cache_a_message_writer_is_direct_io_and_appends_itself() -> None:
    async def test(layer: Layer) -> None:
        inode = layer.add("/queue/enqueue")
        layer.core.messages.add("/queue/enqueue")
        opened = await layer.open(inode, APPEND)
        assert opened.direct_io
        handle = layer.files._files[opened.fh]
        await layer.files.write(opened.fh, 0, b"job")
        assert handle.writer.writes == [(0, b"job", True)]  # type: ignore[attr-defined]

    run(test, writeback_cache=True)


def test_without_writeback_cache_a_message_writer_is_not_direct_io() -> None:
    async def test(layer: Layer) -> None:
        inode = layer.add("/queue/enqueue")
        layer.core.messages.add("/queue/enqueue")
        assert not (await layer.open(inode, os.O_WRONLY)).direct_io

    run(test)


# -- where reads come from ------------------------------------------------------


def test_a_stream_is_read_from_its_follower_even_when_volatile_and_written() -> None:
    async def test(layer: Layer) -> None:
        inode = layer.add("/streams/s")
        layer.core.streams.add("/streams/s")
        layer.core.volatile.add("/streams/s")
        layer.core.spools[layer.key(inode)] = LocalWriter("/streams/s", b"local")
        opened = await layer.open(inode, os.O_RDWR)
        assert await layer.files.read(opened.fh, 0, 6) == b"stream"
        [follower] = layer.core.followers
        assert follower.started_in is layer.core.the_nursery
        assert layer.core.fetched == [] and layer.core.prefetches == []
        await layer.files.release(opened.fh)
        assert follower.closed

    run(test)


def test_a_stream_opened_write_only_follows_nothing() -> None:
    async def test(layer: Layer) -> None:
        inode = layer.add("/streams/s")
        layer.core.streams.add("/streams/s")
        await layer.open(inode, os.O_WRONLY)
        assert layer.core.followers == [] and layer.core.prefetches == []

    run(test)


def test_a_volatile_file_is_fetched_once_per_open_before_any_local_writes() -> None:
    async def test(layer: Layer) -> None:
        inode = layer.add("/status")
        layer.core.volatile.add("/status")
        layer.core.spools[layer.key(inode)] = LocalWriter("/status", b"local")
        opened = await layer.open(inode, os.O_RDWR)
        assert await layer.files.read(opened.fh, 0, 7) == b"fetched"
        assert await layer.files.read(opened.fh, 3, 4) == b"ched"
        assert layer.core.fetched == ["/status"]
        other = await layer.open(inode)
        await layer.files.read(other.fh, 0, 1)
        assert layer.core.fetched == ["/status", "/status"]

    run(test)


def test_local_writes_are_read_before_readahead_which_is_then_dropped() -> None:
    async def test(layer: Layer) -> None:
        inode = layer.add("/f")
        opened = await layer.open(inode, os.O_RDWR)
        layer.core.spools[layer.key(inode)].local = b"local"
        assert await layer.files.read(opened.fh, 0, 5) == b"local"
        assert layer.core.prefetches[0].dropped
        assert layer.core.plain_reads == []

    run(test)


def test_a_writer_without_local_bytes_leaves_the_read_to_readahead() -> None:
    async def test(layer: Layer) -> None:
        inode = layer.add("/f")
        opened = await layer.open(inode)
        assert await layer.files.read(opened.fh, 0, 5) == b"ahead"
        # another handle opened it for writing
        layer.core.spools[layer.key(inode)] = LocalWriter("/f")
        assert await layer.files.read(opened.fh, 0, 5) == b"plain"  # readahead is gone
        assert layer.core.prefetches[0].dropped
        assert layer.core.plain_reads == ["/f"]

    run(test)


def test_a_read_of_a_removed_file_without_local_bytes_is_enoent() -> None:
    async def test(layer: Layer) -> None:
        inode = layer.add("/f")
        opened = await layer.open(inode)
        layer.inodes.detach("/f")
        with pytest.raises(errors.NotFound):
            await layer.files.read(opened.fh, 0, 5)
        await layer.files.release(opened.fh)

    run(test)


def test_a_control_file_is_read_from_its_own_text() -> None:
    async def test(layer: Layer) -> None:
        opened = await layer.open(RELOAD.inode)
        assert (opened.direct_io, opened.keep_cache) == (True, False)
        assert await layer.files.read(opened.fh, 0, 1 << 16) == RELOAD_HELP
        assert layer.core.plain_reads == [] and layer.core.prefetches == []

    run(test)


# -- control files ----------------------------------------------------------------


def test_stats_is_read_only_and_reports_the_open_files() -> None:
    async def test(layer: Layer) -> None:
        inode = layer.add("/f")
        await layer.open(inode)
        for flags in (os.O_WRONLY, os.O_RDWR):
            with pytest.raises(errors.AccessRefused) as refused:
                await layer.open(STATS.inode, flags)
            assert refused.value.errno == errno.EACCES
        opened = await layer.open(STATS.inode)
        stats = json.loads(await layer.files.read(opened.fh, 0, 1 << 16))
        assert stats["url"] == "http://stub"
        assert stats["open_files"] == 1  # control files are not counted
        assert stats["page_cache"] == {"opens_kept": 0, "opens_dropped": 1, "writeback": False}
        with pytest.raises(errors.NotOpenForWriting) as bad_handle:
            await layer.files.write(opened.fh, 0, b"x")
        assert bad_handle.value.errno == errno.EBADF

    run(test)


def test_reload_and_spools_take_one_text_command_per_write() -> None:
    async def test(layer: Layer) -> None:
        reload = await layer.open(RELOAD.inode, os.O_WRONLY)
        assert await layer.files.write(reload.fh, 0, b"http://other:8080/api/v1\n") == 25
        spools = await layer.open(SPOOLS.inode, os.O_RDWR)
        assert json.loads(await layer.files.read(spools.fh, 0, 1 << 16)) == []
        await layer.files.write(spools.fh, 0, b"discard abc")
        assert layer.reloads == ["http://other:8080/api/v1\n"]
        assert layer.core.commands == ["discard abc"]
        with pytest.raises(errors.InvalidArgument):
            await layer.files.write(spools.fh, 0, b"\xff\xfe")
        assert layer.core.commands == ["discard abc"]
        for opened in (reload, spools):
            await layer.files.release(opened.fh)
        assert layer.inodes.entry(1).pins == 0

    run(test)


def test_control_files_pin_no_inode() -> None:
    async def test(layer: Layer) -> None:
        opened = await layer.open(RELOAD.inode)
        assert layer.files.snapshot()["open_files"] == 0
        await layer.files.release(opened.fh)
        assert len(layer.inodes) == 1  # the root only

    run(test)


# -- writes, release, truncate ------------------------------------------------------


def test_a_read_only_handle_refuses_writes_and_counts_none() -> None:
    async def test(layer: Layer) -> None:
        inode = layer.add("/f")
        opened = await layer.open(inode)
        with pytest.raises(errors.NotOpenForWriting):
            await layer.files.write(opened.fh, 0, b"x")
        writer = await layer.open(inode, os.O_WRONLY)
        await layer.files.write(writer.fh, 0, b"x")
        assert layer.files.snapshot()["write_requests"] == 1

    run(test)


def test_flush_sends_and_release_hands_the_writer_back_under_its_file_key() -> None:
    async def test(layer: Layer) -> None:
        inode = layer.add("/f")
        opened = await layer.open(inode, os.O_WRONLY)
        await layer.files.flush(opened.fh)
        spool = layer.core.spools[layer.key(inode)]
        assert spool.flushes == 1
        assert layer.inodes.entry(inode).pins == 1
        await layer.files.release(opened.fh)
        assert layer.core.released == [(layer.key(inode), spool)]
        assert layer.inodes.entry(inode).pins == 0
        await layer.files.flush(opened.fh)  # a closed handle: nothing to send
        assert spool.flushes == 1

    run(test)


def test_truncating_an_open_file_makes_its_times_now() -> None:
    async def test(layer: Layer) -> None:
        closed = layer.add("/closed")
        await layer.files.truncate(closed, "/closed", 0)
        assert layer.inodes.entry(closed).local is None
        inode = layer.add("/f")
        await layer.open(inode, os.O_WRONLY)
        await layer.files.truncate(inode, "/f", 3)
        expected = [(layer.key(closed), "/closed", 0), (layer.key(inode), "/f", 3)]
        assert layer.core.truncated == expected
        local = layer.inodes.entry(inode).local
        assert local is not None and local.mtime_ns == local.ctime_ns == layer.now_ns

    run(test)


def test_opening_a_directory_is_eisdir() -> None:
    async def test(layer: Layer) -> None:
        inode = layer.add("/d", FileInfo("d", 0, 0o755, True, False, 1))
        with pytest.raises(errors.IsADirectory):
            await layer.open(inode)
        assert layer.inodes.entry(inode).pins == 0

    run(test)


# -- renames and replaced files -----------------------------------------------------


def test_an_inode_whose_file_was_replaced_is_stale() -> None:
    async def test(layer: Layer) -> None:
        inode = layer.add("/f")
        layer.inodes.detach("/f")
        with pytest.raises(errors.StaleFile) as stale:
            await layer.open(inode)
        assert stale.value.errno == errno.ESTALE

    run(test)


def test_a_file_replaced_while_its_open_waits_for_stat_is_stale_and_unpinned() -> None:
    async def test(layer: Layer) -> None:
        inode = layer.add("/f")
        layer.core.on_stat = lambda path: layer.inodes.detach(path)
        with pytest.raises(errors.StaleFile):
            await layer.open(inode)
        assert layer.inodes.entry(inode).pins == 0

    run(test)


def test_a_file_renamed_while_its_open_waits_for_stat_is_opened_at_its_new_name() -> None:
    async def test(layer: Layer) -> None:
        inode = layer.add("/f")
        layer.core.infos["/g"] = info("g", size=4)

        def renamed(path: str) -> None:
            layer.core.on_stat = lambda path: None
            layer.inodes.rename("/f", "/g")

        layer.core.on_stat = renamed
        opened = await layer.open(inode)
        assert await layer.files.read(opened.fh, 0, 5) == b"ahead"
        assert layer.inodes.entry(inode).cached == (4, 1_000)

    run(test)


def test_a_replaced_open_file_stays_readable_until_its_last_close() -> None:
    async def test(layer: Layer) -> None:
        old = layer.add("/target")
        layer.add("/source")
        first = await layer.open(old)
        second = await layer.open(old)
        await layer.files.kept.rename("/source", "/target", noreplace=False)
        aside = "/.agfs-fuse-replaced-00000000-00000000"
        assert layer.inodes.entry(old).path == aside
        assert await layer.files.read(first.fh, 0, 5) == b"ahead"
        await layer.files.release(first.fh)
        assert layer.core.discarded == []
        await layer.files.release(second.fh)
        assert [kept.aside for kept in layer.core.discarded] == [aside]
        assert layer.inodes.find(aside) is None

    run(test)


def test_a_replaced_file_nobody_has_open_is_not_kept() -> None:
    async def test(layer: Layer) -> None:
        old = layer.add("/target")
        layer.add("/source")
        opened = await layer.open(old)
        await layer.files.release(opened.fh)
        await layer.files.kept.rename("/source", "/target", noreplace=False)
        assert layer.core.discarded == []
        assert layer.inodes.entry(old).path is None

    run(test)
