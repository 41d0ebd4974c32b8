"""Files created here and not uploaded yet, without a kernel or a server: the mount answers
for them from their spool, their first upload creates them (with one chmod only for a mode
other than the server's default), a flush before anything is written sends nothing, and
rename, unlink and chmod change only the local state."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
import trio.testing

from agfs_fuse.errors import AlreadyExists, IsADirectory, NotFound
from agfs_fuse.models import FileInfo
from agfs_fuse.new_files import NewFiles
from agfs_fuse.spool import Spool
from tests.unit.test_pending_writes import MemoryServer, _registry, _run

pytestmark = pytest.mark.timeout(10)


class NamespaceServer(MemoryServer):
    """``MemoryServer`` with the calls a new file's namespace makes: chmod, delete, stat."""

    def __init__(self, files: dict[str, bytes] | None = None) -> None:
        super().__init__(files)
        self.modes: dict[str, int] = {}
        self.calls: list[str] = []
        self.dirs: set[str] = set()

    async def write_from(self, path: str, source: Spool, size: int) -> None:
        self.calls.append(f"PUT {path}")
        await super().write_from(path, source, size)

    async def chmod(self, path: str, mode: int) -> None:
        self.calls.append(f"chmod {path}")
        self.modes[path] = mode

    async def delete(self, path: str) -> None:
        self.calls.append(f"delete {path}")
        if self.files.pop(path, None) is None:
            raise NotFound("no such file", path=path)

    async def stat_or_none(self, path: str) -> FileInfo | None:
        if path in self.dirs:
            return FileInfo(path.rsplit("/", 1)[1], 0, 0o755, True, False, 1)
        if path not in self.files:
            return None
        return FileInfo(path.rsplit("/", 1)[1], len(self.files[path]), 0o644, False, False, 1)


def _setup(tmp_path: Path, server: NamespaceServer):
    pending = _registry(tmp_path, server)
    new_files = NewFiles(pending, lambda: server, server.stat_or_none)  # type: ignore[arg-type, return-value]
    return pending, new_files


def test_a_new_file_is_answered_for_locally_until_its_upload(tmp_path: Path) -> None:
    server = NamespaceServer()
    pending, new_files = _setup(tmp_path, server)
    key = pending.new_key()

    async def body() -> None:
        writer = pending.open_new_spool(key, "/m/d/f", 0o640)
        await writer.write(0, b"12345")
        info = new_files.info("/m/d/f")
        assert info is not None and (info.name, info.size, info.perm) == ("f", 5, 0o640)
        listed = new_files.with_new_files("/m/d", [FileInfo("e", 1, 0o644, False, False, 1)])
        assert [entry.name for entry in listed] == ["e", "f"]
        assert server.calls == []  # nothing reached the server yet
        await pending.release(key, writer)
        assert new_files.info("/m/d/f") is None  # on the server now: it answers

    _run(body)
    assert server.files == {"/m/d/f": b"12345"}
    assert server.calls == ["PUT /m/d/f", "chmod /m/d/f"]  # 0o640 is not the default


def test_a_new_file_with_the_default_mode_costs_only_its_put(tmp_path: Path) -> None:
    server = NamespaceServer()
    pending, _ = _setup(tmp_path, server)
    key = pending.new_key()

    async def body() -> None:
        writer = pending.open_new_spool(key, "/m/f", 0o644)
        await writer.write(0, b"x")
        await pending.release(key, writer)

    _run(body)
    assert server.calls == ["PUT /m/f"]


def test_a_flush_before_any_write_sends_nothing_and_the_last_close_creates_it(
    tmp_path: Path,
) -> None:
    """A shell's ``> file`` closes one descriptor before the program writes: that flush
    must not cost an upload of the empty file; an untouched file still goes up at the end."""
    server = NamespaceServer()
    pending, _ = _setup(tmp_path, server)
    written, untouched = pending.new_key(), pending.new_key()

    async def body() -> None:
        first = pending.open_new_spool(written, "/m/echoed", 0o644)
        await first.flush()
        await first.write(0, b"x\n")
        await first.flush()
        await pending.release(written, first)
        second = pending.open_new_spool(untouched, "/m/touched", 0o644)
        await second.flush()
        assert server.calls == ["PUT /m/echoed"]
        await pending.release(untouched, second)

    _run(body)
    assert server.calls == ["PUT /m/echoed", "PUT /m/touched"]
    assert server.files == {"/m/echoed": b"x\n", "/m/touched": b""}


def test_unlink_and_chmod_of_a_new_file_change_only_local_state(tmp_path: Path) -> None:
    server = NamespaceServer()
    pending, new_files = _setup(tmp_path, server)
    doomed, kept = pending.new_key(), pending.new_key()

    async def body() -> None:
        gone = pending.open_new_spool(doomed, "/m/gone", 0o644)
        await gone.write(0, b"never uploaded")
        assert await new_files.unlink("/m/gone")
        assert new_files.info("/m/gone") is None
        assert not await new_files.unlink("/m/not-new")  # not ours: the server's to do
        mine = pending.open_new_spool(kept, "/m/mine", 0o644)
        assert await new_files.chmod("/m/mine", 0o600)
        info = new_files.info("/m/mine")
        assert info is not None and info.perm == 0o600
        assert server.calls == []
        await pending.release(doomed, gone)
        await pending.release(kept, mine)

    _run(body)
    assert server.calls == ["PUT /m/mine", "chmod /m/mine"]
    assert server.modes == {"/m/mine": 0o600}
    assert list((tmp_path / "spools").iterdir()) == []


def test_make_way_refuses_a_name_taken_here_or_with_o_excl_on_the_server(tmp_path: Path) -> None:
    server = NamespaceServer({"/m/there": b"on the server"})
    pending, new_files = _setup(tmp_path, server)
    pending.open_new_spool(pending.new_key(), "/m/pending", 0o644)

    async def body() -> None:
        for path, exclusive in (("/m/pending", False), ("/m/there", True)):
            with pytest.raises(AlreadyExists):
                await new_files.make_way(path, exclusive=exclusive)
        await new_files.make_way("/m/there", exclusive=False)  # replaced at upload
        await new_files.make_way("/m/free", exclusive=True)

    _run(body)


def test_a_new_file_renamed_over_a_server_file_replaces_it(tmp_path: Path) -> None:
    server = NamespaceServer({"/m/target": b"old"})
    server.dirs.add("/m/dir")
    pending, new_files = _setup(tmp_path, server)
    key = pending.new_key()

    async def body() -> None:
        writer = pending.open_new_spool(key, "/m/draft", 0o644)
        await writer.write(0, b"new")
        with pytest.raises(AlreadyExists):
            await new_files.rename("/m/draft", "/m/target", noreplace=True)
        with pytest.raises(IsADirectory):
            await new_files.rename("/m/draft", "/m/dir", noreplace=False)
        assert await new_files.rename("/m/draft", "/m/target", noreplace=False)
        assert new_files.info("/m/draft") is None
        info = new_files.info("/m/target")
        assert info is not None and info.size == 3
        assert server.files == {"/m/target": b"old"}  # others see the old one until close
        await pending.release(key, writer)

    _run(body)
    assert server.files == {"/m/target": b"new"}


def test_a_new_file_renamed_over_a_server_file_and_unlinked_removes_that_file(
    tmp_path: Path,
) -> None:
    server = NamespaceServer({"/m/target": b"old"})
    pending, new_files = _setup(tmp_path, server)
    key = pending.new_key()

    async def body() -> None:
        writer = pending.open_new_spool(key, "/m/draft", 0o644)
        assert await new_files.rename("/m/draft", "/m/target", noreplace=False)
        assert await new_files.unlink("/m/target")
        await pending.release(key, writer)

    _run(body)
    assert server.files == {}
    assert server.calls == ["delete /m/target"]


def test_rmdir_guard_sees_new_files_below_a_directory(tmp_path: Path) -> None:
    pending, _ = _setup(tmp_path, NamespaceServer())
    pending.open_new_spool(pending.new_key(), "/m/d/sub/f", 0o644)
    assert pending.has_new_files_within("/m/d")
    assert not pending.has_new_files_within("/m/other")


class HeldServer(NamespaceServer):
    """Uploads wait for ``go`` once ``started`` is set: an upload in flight."""

    def __init__(self) -> None:
        super().__init__()
        self.started = trio.Event()
        self.go = trio.Event()

    async def write_from(self, path: str, source: Spool, size: int) -> None:
        self.started.set()
        await self.go.wait()
        await super().write_from(path, source, size)


def test_a_new_file_in_its_last_upload_is_still_shown_and_renames_wait_for_it(
    tmp_path: Path,
) -> None:
    """Between the last close and the end of its upload (the kernel's release may come
    after the program renames the file), the file is neither lost from the mount nor
    renamed locally under an upload already sent to the old name."""
    server = HeldServer()
    pending, new_files = _setup(tmp_path, server)
    key = pending.new_key()
    outcome: list[bool] = []

    async def body() -> None:
        writer = pending.open_new_spool(key, "/m/tmp", 0o644)
        await writer.write(0, b"content")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(pending.release, key, writer)
            await server.started.wait()
            info = new_files.info("/m/tmp")
            assert info is not None and info.size == 7  # still this mount's to show

            async def rename() -> None:
                outcome.append(await new_files.rename("/m/tmp", "/m/final", noreplace=False))

            nursery.start_soon(rename)
            await trio.testing.wait_all_tasks_blocked()
            assert outcome == []  # waits for the upload in flight
            server.go.set()

    _run(body)
    assert outcome == [False]  # uploaded meanwhile: the server's to rename
    assert server.files == {"/m/tmp": b"content"}
