"""``AgfsFilesystem`` edges a review found: a rename whose intent cannot be recorded on
the cache disk, files replaced or moved while open for writing, and unmount flushes.

State is checked over plain HTTP (``raw``), never through the code under test.
"""

from __future__ import annotations

import errno
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import trio
import trio.testing

from agfs_fuse import names, paths
from agfs_fuse.asides import HIDDEN_FOR, UPLOAD_PREFIX
from agfs_fuse.file_key import FileKey
from agfs_fuse.filesystem import AgfsFilesystem
from agfs_fuse.rename_journal import RenameJournal
from agfs_fuse.spool import SpoolDir
from tests.integration.conftest import RawHttp, Workspace

pytestmark = pytest.mark.timeout(30)

KEY, OTHER_KEY = FileKey(5151), FileKey(5252)


def unwritable_journal(tmp_path: Path) -> RenameJournal:
    """A journal whose directory cannot be made (its parent is a file): every record
    fails with a real OSError, as on a full or broken cache disk."""
    blocker = tmp_path / "not-a-directory"
    blocker.write_bytes(b"")
    return RenameJournal(blocker / "renames")


def test_rename_over_goes_on_when_its_record_cannot_be_written(
    arun, make_fs, ws: Workspace, raw: RawHttp, tmp_path: Path
):
    raw.write(f"{ws.mem}/src", b"new")
    raw.write(f"{ws.mem}/dst", b"old")

    async def body():
        fs = make_fs()
        fs.rename_journal = unwritable_journal(tmp_path)
        await fs.rename(f"{ws.mem}/src", f"{ws.mem}/dst")

    arun(body)
    assert raw.names(ws.mem) == {"dst"}
    assert raw.read(f"{ws.mem}/dst") == b"new"


def test_upload_moved_into_place_survives_an_unwritable_journal(
    arun, make_fs, make_server, tmp_path: Path
):
    """A file over the body limit goes up to a temporary moved over the real name by a
    journalled rename; a cache disk that cannot take the record must not throw away the
    intact spool (it did: the OSError marked it broken and the upload was lost)."""
    limited = make_server(max_body=128 << 10)
    directory = f"/memfs/unrec-{uuid.uuid4().hex[:8]}"
    path = f"{directory}/f"
    content = os.urandom(300 << 10)
    with httpx.Client(base_url=limited.url) as http:
        http.post("/directories", params={"path": directory}).raise_for_status()
        http.put("/files", params={"path": path}, content=b"old").raise_for_status()

    async def body():
        fs = make_fs(limited.url, spool=SpoolDir(tmp_path / "spools"))
        fs.rename_journal = unwritable_journal(tmp_path)
        await fs.refresh_mounts()
        writer = fs.open_writer(KEY, path, await fs.stat(path), os.O_WRONLY | os.O_TRUNC)
        await writer.write(0, content)
        await writer.flush()
        assert writer.broken is None
        await fs.release_writer(KEY, writer)

    arun(body)
    with httpx.Client(base_url=limited.url) as http:
        assert http.get("/files", params={"path": path}).content == content
        listing = http.get("/directories", params={"path": directory}).json()["files"]
        assert [entry["name"] for entry in listing] == ["f"]


def test_closing_a_file_replaced_while_open_for_writing_keeps_the_replacement(
    arun, make_fs, ws: Workspace, raw: RawHttp
):
    """``mv src dst`` while ``dst`` is open for writing: as with POSIX's orphaned inode,
    the late close of the old ``dst`` must not upload over the file that replaced it."""
    src, dst = f"{ws.mem}/src", f"{ws.mem}/dst"
    raw.write(src, b"the replacement")
    raw.write(dst, b"old")

    async def body():
        fs = make_fs()
        writer = fs.open_writer(KEY, dst, await fs.stat(dst), os.O_WRONLY | os.O_TRUNC)
        await writer.write(0, b"written to the replaced file")
        await fs.rename(src, dst)
        await fs.release_writer(KEY, writer)

    arun(body)
    assert raw.names(ws.mem) == {"dst"}
    assert raw.read(dst) == b"the replacement"


def test_a_file_moved_over_its_own_open_name_still_uploads(
    arun, make_fs, ws: Workspace, raw: RawHttp
):
    """The writer of the file being moved is retargeted, not mistaken for the replaced
    one: both open, only the moved file's content lands under the new name."""
    src, dst = f"{ws.mem}/src", f"{ws.mem}/dst"
    raw.write(src, b"")
    raw.write(dst, b"old")

    async def body():
        fs = make_fs()
        moving = fs.open_writer(KEY, src, await fs.stat(src), os.O_WRONLY)
        replaced = fs.open_writer(OTHER_KEY, dst, await fs.stat(dst), os.O_WRONLY)
        await moving.write(0, b"moved and written")
        await replaced.write(0, b"lost with its inode")
        await fs.rename(src, dst)
        await fs.release_writer(OTHER_KEY, replaced)
        await fs.release_writer(KEY, moving)

    arun(body)
    assert raw.names(ws.mem) == {"dst"}
    assert raw.read(dst) == b"moved and written"


def test_flush_all_skips_a_torn_spool_and_uploads_the_rest(
    arun, make_fs, ws: Workspace, raw: RawHttp
):
    """At unmount (SIGTERM) ``flush_all`` must return, whatever one spool says: a spool
    torn by a full cache disk raised out of it and left the mount dead."""
    torn, fine = f"{ws.mem}/torn", f"{ws.mem}/fine"

    async def body():
        fs = make_fs()
        broken = fs.open_new_file(KEY, torn)
        await broken.write(0, b"half")
        # What a failed local write leaves (see SpoolWriter._local_io).
        broken.broken = OSError(errno.ENOSPC, "No space left on device")
        good = fs.open_new_file(OTHER_KEY, fine)
        await good.write(0, b"whole")
        return await fs.flush_all()

    assert arun(body) == []
    assert raw.read(fine) == b"whole"
    assert not raw.exists(torn)


class RenameHeldUntilUploadWaits(httpx.AsyncBaseTransport):
    """The real transport, but the user's rename of ``held`` is sent only once the upload
    through a temporary has set its mode (its last step before the move into place) and
    every other task is blocked: the move then waits at the rename gate, as when a
    program renames the file while its close uploads it."""

    def __init__(self, held: str) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.held = held
        self.temporary_ready = trio.Event()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        route = request.url.path.removeprefix("/api/v1")
        path = request.url.params.get("path")
        if request.method == "POST" and route == "/rename" and path == self.held:
            await self.temporary_ready.wait()
            await trio.testing.wait_all_tasks_blocked()
        response = await self.inner.handle_async_request(request)
        if route == "/chmod" and UPLOAD_PREFIX in (path or ""):
            self.temporary_ready.set()
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.mark.parametrize("renamed", ["file", "directory"])
def test_upload_moved_into_place_follows_a_rename_it_waited_for(
    arun, make_fs, make_server, tmp_path: Path, renamed: str
):
    """The move read the file's path before waiting at the gate: a rename to X holding
    it retargeted the writer, yet the upload landed under the old name and X kept the
    old content. A rename of its directory takes the temporary along."""
    limited = make_server(max_body=128 << 10)
    directory = f"/memfs/follow-{uuid.uuid4().hex[:8]}"
    path = f"{directory}/f"
    old, new = (path, f"{directory}/x") if renamed == "file" else (directory, directory + "-e")
    moved = paths.rebase(path, old, new)
    content = os.urandom(300 << 10)
    with httpx.Client(base_url=limited.url) as http:
        http.post("/directories", params={"path": directory}).raise_for_status()
        http.put("/files", params={"path": path}, content=b"old").raise_for_status()
    transport = RenameHeldUntilUploadWaits(held=old)

    async def body():
        fs = make_fs(limited.url, spool=SpoolDir(tmp_path / "spools"), transport=transport)
        await fs.refresh_mounts()
        writer = fs.open_writer(KEY, path, await fs.stat(path), os.O_WRONLY | os.O_TRUNC)
        await writer.write(0, content)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer.flush)
            nursery.start_soon(fs.rename, old, new)
        await fs.release_writer(KEY, writer)

    arun(body)
    with httpx.Client(base_url=limited.url) as http:
        parent = paths.split(moved)[0]
        listing = http.get("/directories", params={"path": parent}).json()["files"]
        assert [entry["name"] for entry in listing] == [paths.split(moved)[1]]
        assert http.get("/files", params={"path": moved}).content == content


LATER = HIDDEN_FOR * 3  # seconds: long past the age that hides generated names by itself


def test_a_replaced_file_kept_open_stays_hidden_however_old(
    arun, make_fs, ws: Workspace, raw: RawHttp
):
    """A file replaced while open is kept under its aside name until its last close;
    age alone showed it in ``ls`` after 10 minutes."""
    src, dst = f"{ws.mem}/src", f"{ws.mem}/dst"
    raw.write(src, b"new")
    raw.write(dst, b"old, still open")

    async def body():
        fs = make_fs()
        kept = await fs.rename(src, dst, keep_replaced=lambda: True)
        assert kept is not None
        _, name = paths.split(kept.aside)
        when_open = fs.hidden(ws.mem, name, time.time() + LATER)
        await fs.discard_kept(kept)
        return when_open, fs.hidden(ws.mem, name, time.time() + LATER)

    assert arun(body) == (True, False)
    assert raw.names(ws.mem) == {"dst"}


class CheckWhileTemporaryExists(httpx.AsyncBaseTransport):
    """The real transport; once an upload's temporary has its mode set (the upload is
    all but done), ``check(temporary)`` is called; temporaries and answers are kept."""

    def __init__(self, check: Callable[[str], bool]) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.check = check
        self.seen: list[tuple[str, bool]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        path = request.url.params.get("path") or ""
        if request.url.path.endswith("/chmod") and UPLOAD_PREFIX in path:
            self.seen.append((path, self.check(path)))
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


def test_a_running_uploads_temporary_stays_hidden_however_old(
    arun, make_fs, make_server, tmp_path: Path
):
    """A huge file on a slow link may take longer than 10 minutes to go up: its
    temporary must not show up in ``ls`` meanwhile, only once nothing explains it."""
    limited = make_server(max_body=128 << 10)
    directory = f"/memfs/hide-{uuid.uuid4().hex[:8]}"
    path = f"{directory}/f"
    with httpx.Client(base_url=limited.url) as http:
        http.post("/directories", params={"path": directory}).raise_for_status()
        http.put("/files", params={"path": path}, content=b"old").raise_for_status()
    made: list[AgfsFilesystem] = []

    def hidden_later(temporary: str) -> bool:
        return made[0].hidden(directory, paths.split(temporary)[1], time.time() + LATER)

    transport = CheckWhileTemporaryExists(hidden_later)

    async def body():
        fs = make_fs(limited.url, spool=SpoolDir(tmp_path / "spools"), transport=transport)
        made.append(fs)
        await fs.refresh_mounts()
        writer = fs.open_writer(KEY, path, await fs.stat(path), os.O_WRONLY | os.O_TRUNC)
        await writer.write(0, os.urandom(300 << 10))
        await fs.release_writer(KEY, writer)  # the last close uploads
        [(temporary, while_running)] = transport.seen
        return while_running, hidden_later(temporary)

    assert arun(body) == (True, False)


def test_a_readdir_records_escaped_names_once(arun, make_fs, ws: Workspace, raw: RawHttp, caplog):
    """One listing, one record: a name whose escaped form is taken is logged once per
    ``ls``, not once by the filesystem and again by the FUSE layer."""
    long_name = "L" * 300
    raw.write(f"{ws.mem}/{long_name}", b"long")
    raw.write(f"{ws.mem}/{names.escape(long_name)}", b"plain file holding the escaped name")

    async def body():
        fs = make_fs()
        return await fs.entries_for_reading(ws.mem)

    shown = arun(body)
    assert [name for name, _ in shown] == [names.escape(long_name)]
    assert shown[0][1].name == names.escape(long_name)  # the plain file, not the long one
    assert len([r for r in caplog.records if "is taken" in r.message]) == 1
