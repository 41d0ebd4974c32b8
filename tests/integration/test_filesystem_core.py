"""``AgfsFilesystem`` (the POSIX core, no kernel) against the running reference server.

State is always checked over plain HTTP (``raw``), not through the code under test.
Faults are injected with a transport wrapper around the real ``httpx`` transport.
"""

from __future__ import annotations

import errno
import json
import os
import uuid
from collections import Counter
from pathlib import Path

import httpx
import pytest
import trio

from agfs_fuse import errors
from agfs_fuse.asides import ASIDE_PREFIX, UPLOAD_PREFIX
from agfs_fuse.errors import NotFound
from agfs_fuse.file_key import FileKey
from agfs_fuse.filesystem import AgfsFilesystem, ReloadFailed
from agfs_fuse.spool import SIDECAR_SUFFIX, SpoolDir
from agfs_fuse.writes import MessageWriter, SpoolWriter
from tests.integration.conftest import (
    SMALL_BODY,
    LiveServer,
    RawHttp,
    Workspace,
    dead_url,
)

pytestmark = pytest.mark.timeout(30)

KEY = FileKey(4242)  # the key under which the filesystem keeps a file's spool


async def _on_server(fs: AgfsFilesystem, path: str) -> bool:
    """Whether the server has ``path`` now (a fresh stat, no cached answer)."""
    try:
        await fs.stat(path, fresh=True)
    except NotFound:
        return False
    return True


class FaultyTransport(httpx.AsyncBaseTransport):
    """The real transport, except that chosen requests get a 500 JSON error.

    ``fail`` maps ``"METHOD /route"`` (route without ``/api/v1``) to the 1-based numbers of
    the matching requests that must fail. Every request is recorded in ``seen`` as
    ``(method, route, path)``; failed ones also in ``failed``.
    """

    def __init__(self, fail: dict[str, set[int]] | None = None) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.fail = fail or {}
        self.counts: Counter[str] = Counter()
        self.seen: list[tuple[str, str, str | None]] = []
        self.failed: list[tuple[str, str, str | None]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        route = request.url.path.removeprefix("/api/v1")
        key = f"{request.method} {route}"
        self.counts[key] += 1
        entry = (request.method, route, request.url.params.get("path"))
        self.seen.append(entry)
        if self.counts[key] in self.fail.get(key, ()):
            self.failed.append(entry)
            await request.aread()
            return httpx.Response(500, json={"error": "injected failure"}, request=request)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()

    def calls(self, key: str) -> list[str | None]:
        method, route = key.split(" ", 1)
        return [p for m, r, p in self.seen if (m, r) == (method, route)]


def asides(raw: RawHttp, directory: str) -> set[str]:
    return {n for n in raw.names(directory) if n.startswith(ASIDE_PREFIX)}


# -- rename ------------------------------------------------------------------------------


def test_rename_replaces_existing_file_on_memfs(arun, make_fs, ws: Workspace, raw: RawHttp):
    raw.write(f"{ws.mem}/new", b"new content")
    raw.write(f"{ws.mem}/target", b"old content that is longer")

    arun(lambda: make_fs().rename(f"{ws.mem}/new", f"{ws.mem}/target"))
    assert raw.names(ws.mem) == {"target"}
    assert raw.read(f"{ws.mem}/target") == b"new content"


def test_rename_replaces_empty_directory_on_memfs(arun, make_fs, ws: Workspace, raw: RawHttp):
    raw.mkdir(f"{ws.mem}/src")
    raw.write(f"{ws.mem}/src/inside", b"moved along")
    raw.mkdir(f"{ws.mem}/dst")

    arun(lambda: make_fs().rename(f"{ws.mem}/src", f"{ws.mem}/dst"))
    assert raw.names(ws.mem) == {"dst"}
    assert raw.names(f"{ws.mem}/dst") == {"inside"}
    assert raw.read(f"{ws.mem}/dst/inside") == b"moved along"


def test_rename_replaces_existing_file_on_localfs(arun, make_fs, ws: Workspace, raw: RawHttp):
    raw.write(f"{ws.local}/new", b"fresh")
    raw.write(f"{ws.local}/target", b"stale")

    arun(lambda: make_fs().rename(f"{ws.local}/new", f"{ws.local}/target"))
    assert sorted(os.listdir(ws.disk)) == ["target"]
    assert (ws.disk / "target").read_bytes() == b"fresh"


def test_rename_onto_non_empty_directory_is_enotempty(arun, make_fs, ws: Workspace, raw):
    raw.mkdir(f"{ws.mem}/src")
    raw.mkdir(f"{ws.mem}/dst")
    raw.write(f"{ws.mem}/dst/keep", b"kept")

    async def body():
        with pytest.raises(errors.DirectoryNotEmpty) as excinfo:
            await make_fs().rename(f"{ws.mem}/src", f"{ws.mem}/dst")
        return excinfo.value

    assert arun(body).errno == errno.ENOTEMPTY
    assert raw.names(ws.mem) == {"src", "dst"}
    assert raw.read(f"{ws.mem}/dst/keep") == b"kept"


def test_rename_file_onto_directory_is_eisdir(arun, make_fs, ws: Workspace, raw: RawHttp):
    raw.write(f"{ws.mem}/file", b"f")
    raw.mkdir(f"{ws.mem}/dir")

    async def body():
        with pytest.raises(errors.IsADirectory) as excinfo:
            await make_fs().rename(f"{ws.mem}/file", f"{ws.mem}/dir")
        return excinfo.value

    assert arun(body).errno == errno.EISDIR
    assert raw.names(ws.mem) == {"file", "dir"}
    assert raw.read(f"{ws.mem}/file") == b"f"
    assert raw.stat(f"{ws.mem}/dir")["isDir"] is True


def test_rename_directory_onto_file_is_enotdir(arun, make_fs, ws: Workspace, raw: RawHttp):
    raw.mkdir(f"{ws.mem}/dir")
    raw.write(f"{ws.mem}/file", b"f")

    async def body():
        with pytest.raises(errors.NotADirectory) as excinfo:
            await make_fs().rename(f"{ws.mem}/dir", f"{ws.mem}/file")
        return excinfo.value

    assert arun(body).errno == errno.ENOTDIR
    assert raw.names(ws.mem) == {"file", "dir"}
    assert raw.read(f"{ws.mem}/file") == b"f"


@pytest.mark.parametrize("where", ["mem", "local"])
def test_rename_noreplace_refuses_existing_target(arun, make_fs, ws: Workspace, raw, where):
    base = getattr(ws, where)
    raw.write(f"{base}/a", b"a")
    raw.write(f"{base}/b", b"b")

    async def body():
        fs = make_fs()
        with pytest.raises(errors.AlreadyExists) as excinfo:
            await fs.rename(f"{base}/a", f"{base}/b", noreplace=True)
        await fs.rename(f"{base}/a", f"{base}/c", noreplace=True)
        return excinfo.value

    assert arun(body).errno == errno.EEXIST
    assert raw.names(base) == {"b", "c"}
    assert raw.read(f"{base}/b") == b"b"
    assert raw.read(f"{base}/c") == b"a"


def test_rename_symlink_recreates_it(arun, make_fs, ws: Workspace, raw: RawHttp):
    raw.write(f"{ws.mem}/target", b"pointed at")
    raw.symlink(f"{ws.mem}/target", f"{ws.mem}/old-link")

    arun(lambda: make_fs().rename(f"{ws.mem}/old-link", f"{ws.mem}/new-link"))
    assert raw.readlink(f"{ws.mem}/new-link") == f"{ws.mem}/target"
    assert raw.stat(f"{ws.mem}/new-link")["meta"]["Type"] == "symlink"
    assert not raw.exists(f"{ws.mem}/old-link")
    assert raw.read(f"{ws.mem}/target") == b"pointed at"


def test_rename_symlink_onto_existing_file_replaces_it(arun, make_fs, ws: Workspace, raw):
    raw.write(f"{ws.mem}/target", b"pointed at")
    raw.write(f"{ws.mem}/victim", b"replaced")
    raw.symlink(f"{ws.mem}/target", f"{ws.mem}/link")

    arun(lambda: make_fs().rename(f"{ws.mem}/link", f"{ws.mem}/victim"))
    assert raw.readlink(f"{ws.mem}/victim") == f"{ws.mem}/target"
    assert raw.read(f"{ws.mem}/victim") == b"pointed at"
    assert not raw.exists(f"{ws.mem}/link")


def test_rename_file_onto_existing_symlink_replaces_the_link(arun, make_fs, ws, raw):
    """POSIX: renaming a file onto a symlink replaces the link itself."""
    raw.write(f"{ws.mem}/src", b"source data")
    raw.write(f"{ws.mem}/pointee", b"pointee data")
    raw.symlink(f"{ws.mem}/pointee", f"{ws.mem}/link")

    arun(lambda: make_fs().rename(f"{ws.mem}/src", f"{ws.mem}/link"))
    info = raw.stat(f"{ws.mem}/link")
    assert info is not None and info["meta"].get("Type") != "symlink"
    assert raw.read(f"{ws.mem}/link") == b"source data"
    assert raw.read(f"{ws.mem}/pointee") == b"pointee data"
    assert not raw.exists(f"{ws.mem}/src")


def test_rename_into_itself_is_einval(arun, make_fs, ws: Workspace, raw: RawHttp):
    raw.mkdir(f"{ws.mem}/d")
    raw.mkdir(f"{ws.mem}/d/sub")

    async def body():
        fs = make_fs()
        caught = []
        for new in (f"{ws.mem}/d/inner", f"{ws.mem}/d/sub/deeper"):
            with pytest.raises(errors.InvalidArgument) as excinfo:
                await fs.rename(f"{ws.mem}/d", new)
            caught.append(excinfo.value.errno)
        await fs.rename(f"{ws.mem}/d", f"{ws.mem}/d")  # same path: a no-op
        await fs.rename(f"{ws.mem}/d", f"{ws.mem}/d-sibling")  # a prefix, not a parent
        return caught

    assert arun(body) == [errno.EINVAL, errno.EINVAL]
    assert raw.names(ws.mem) == {"d-sibling"}
    assert raw.names(f"{ws.mem}/d-sibling") == {"sub"}


def test_rename_retargets_an_open_spool(arun, make_fs, ws: Workspace, raw: RawHttp):
    path, moved = f"{ws.mem}/writing", f"{ws.mem}/renamed"
    raw.write(path, b"")

    async def body():
        fs = make_fs()
        writer = fs.open_writer(KEY, path, await fs.stat(path), os.O_WRONLY | os.O_TRUNC)
        await writer.write(0, b"written before the rename")
        await fs.rename(path, moved)
        sidecar = json.loads(writer.spool.sidecar_path.read_text())
        await fs.release_writer(KEY, writer)
        return sidecar

    sidecar = arun(body)
    assert sidecar["remote_path"] == moved
    assert raw.names(ws.mem) == {"renamed"}
    assert raw.read(moved) == b"written before the rename"


# -- rename: fault injection -------------------------------------------------------------


def test_failed_rename_after_move_aside_restores_target(arun, make_fs, ws: Workspace, raw):
    raw.write(f"{ws.mem}/src", b"source")
    raw.write(f"{ws.mem}/dst", b"precious target")
    # 1: src->dst (refused, exists); 2: dst->aside; 3: src->dst (injected); 4: aside->dst
    transport = FaultyTransport({"POST /rename": {3}})

    async def body():
        with pytest.raises(errors.AgfsError) as excinfo:
            await make_fs(transport=transport).rename(f"{ws.mem}/src", f"{ws.mem}/dst")
        return excinfo.value

    exc = arun(body)
    assert exc.errno == errno.EIO and "injected" in str(exc)
    renames = transport.calls("POST /rename")
    assert len(renames) == 4
    assert renames[:3] == [f"{ws.mem}/src", f"{ws.mem}/dst", f"{ws.mem}/src"]
    assert renames[3].startswith(f"{ws.mem}/{ASIDE_PREFIX}")  # the aside moved back
    assert raw.names(ws.mem) == {"src", "dst"}
    assert raw.read(f"{ws.mem}/dst") == b"precious target"
    assert raw.read(f"{ws.mem}/src") == b"source"


def test_failed_rename_restores_replaced_directory(arun, make_fs, ws: Workspace, raw):
    raw.mkdir(f"{ws.mem}/srcdir")
    raw.write(f"{ws.mem}/srcdir/s", b"s")
    raw.mkdir(f"{ws.mem}/dstdir", mode="700")
    transport = FaultyTransport({"POST /rename": {3}})

    async def body():
        with pytest.raises(errors.AgfsError):
            await make_fs(transport=transport).rename(f"{ws.mem}/srcdir", f"{ws.mem}/dstdir")

    arun(body)
    assert raw.names(ws.mem) == {"srcdir", "dstdir"}
    dst = raw.stat(f"{ws.mem}/dstdir")
    assert dst["isDir"] is True and dst["mode"] == 0o700
    assert raw.listing(f"{ws.mem}/dstdir") == {"files": None}
    assert raw.read(f"{ws.mem}/srcdir/s") == b"s"


def test_failed_move_aside_changes_nothing(arun, make_fs, ws: Workspace, raw: RawHttp):
    raw.write(f"{ws.mem}/src", b"source")
    raw.write(f"{ws.mem}/dst", b"target")
    transport = FaultyTransport({"POST /rename": {2}})

    async def body():
        with pytest.raises(errors.AgfsError) as excinfo:
            await make_fs(transport=transport).rename(f"{ws.mem}/src", f"{ws.mem}/dst")
        return excinfo.value

    assert arun(body).errno == errno.EIO
    assert len(transport.calls("POST /rename")) == 2
    assert raw.names(ws.mem) == {"src", "dst"}
    assert raw.read(f"{ws.mem}/dst") == b"target"
    assert raw.read(f"{ws.mem}/src") == b"source"


def test_failed_restore_still_keeps_target_content(arun, make_fs, ws: Workspace, raw):
    """Even when moving the target back fails too, its content is never deleted."""
    raw.write(f"{ws.mem}/src", b"source")
    raw.write(f"{ws.mem}/dst", b"never lose me")
    transport = FaultyTransport({"POST /rename": {3, 4}})

    async def body():
        with pytest.raises(errors.AgfsError):
            await make_fs(transport=transport).rename(f"{ws.mem}/src", f"{ws.mem}/dst")

    arun(body)
    assert transport.calls("DELETE /files") == []
    kept = asides(raw, ws.mem)
    assert len(kept) == 1
    assert raw.read(f"{ws.mem}/{kept.pop()}") == b"never lose me"
    assert raw.read(f"{ws.mem}/src") == b"source"


def test_failed_delete_of_aside_still_completes_rename(arun, make_fs, ws: Workspace, raw):
    raw.write(f"{ws.mem}/src", b"source")
    raw.write(f"{ws.mem}/dst", b"target")
    transport = FaultyTransport({"DELETE /files": {1}})

    arun(lambda: make_fs(transport=transport).rename(f"{ws.mem}/src", f"{ws.mem}/dst"))
    assert raw.read(f"{ws.mem}/dst") == b"source"
    assert not raw.exists(f"{ws.mem}/src")
    kept = asides(raw, ws.mem)
    assert len(kept) == 1  # the old copy stays rather than being lost
    assert raw.read(f"{ws.mem}/{kept.pop()}") == b"target"


def test_failed_rename_over_symlink_recreates_link(arun, make_fs, ws: Workspace, raw):
    """Replacing a link: the link is deleted first (the server's rename would otherwise
    hide the file under it), so when the rename then fails the link must come back: it
    holds the only copy of its target string.
    """
    raw.write(f"{ws.mem}/src", b"source")
    raw.write(f"{ws.mem}/pointee", b"pointee")
    raw.symlink(f"{ws.mem}/pointee", f"{ws.mem}/link")
    transport = FaultyTransport({"POST /rename": {1}})

    async def body():
        with pytest.raises(errors.AgfsError):
            await make_fs(transport=transport).rename(f"{ws.mem}/src", f"{ws.mem}/link")

    arun(body)
    assert transport.calls("DELETE /files") == [f"{ws.mem}/link"]
    assert transport.calls("POST /symlink") == [f"{ws.mem}/link"]  # recreated
    assert raw.readlink(f"{ws.mem}/link") == f"{ws.mem}/pointee"
    assert raw.read(f"{ws.mem}/src") == b"source"


# -- truncate of a closed file -----------------------------------------------------------


@pytest.mark.parametrize("where", ["mem", "local"])
def test_truncate_closed_file(arun, make_fs, ws: Workspace, raw: RawHttp, where):
    path = f"{getattr(ws, where)}/t.bin"
    raw.write(path, b"0123456789")
    seen = []

    async def body():
        fs = make_fs()
        await fs.truncate(KEY, path, 16)
        seen.append(raw.read(path))
        await fs.truncate(KEY, path, 3)
        seen.append(raw.read(path))
        await fs.truncate(KEY, path, 0)
        seen.append(raw.read(path))
        await fs.truncate(KEY, path, 5)
        seen.append(raw.read(path))
        return (await fs.stat(path, fresh=True)).size

    size = arun(body)
    assert seen == [b"0123456789" + b"\0" * 6, b"012", b"", b"\0" * 5]
    assert size == 5


def test_truncate_closed_file_leaves_no_spool(arun, make_fs, ws, raw, tmp_path: Path):
    path = f"{ws.mem}/t.bin"
    raw.write(path, b"abcdef")
    spool = SpoolDir(tmp_path / "spools")

    arun(lambda: make_fs(spool=spool).truncate(KEY, path, 2))
    assert raw.read(path) == b"ab"
    assert list(spool.leftovers()) == []
    assert list(spool.root.iterdir()) == []


def test_truncate_of_open_file_goes_through_its_spool(arun, make_fs, ws: Workspace, raw):
    path = f"{ws.mem}/open.bin"
    raw.write(path, b"abcdefgh")

    async def body():
        fs = make_fs()
        info = await fs.stat(path)
        writer = fs.open_writer(KEY, path, info, os.O_RDWR)
        await fs.truncate(KEY, path, 3)
        before = raw.read(path)
        await writer.write(3, b"XYZ")
        await fs.release_writer(KEY, writer)
        return before

    assert arun(body) == b"abcdefgh"  # nothing uploaded before the release
    assert raw.read(path) == b"abcXYZ"


def test_truncate_of_control_file_sends_no_message(arun, make_fs, raw: RawHttp):
    queue = f"/queuefs/t{uuid.uuid4().hex[:8]}"
    raw.mkdir(queue)

    arun(lambda: make_fs().truncate(KEY, f"{queue}/enqueue", 0))
    assert raw.read(f"{queue}/size") == b"0"


# -- SpoolWriter -------------------------------------------------------------------------


def test_spool_fills_existing_file_on_write(arun, make_fs, ws: Workspace, raw: RawHttp):
    path = f"{ws.mem}/f.txt"
    raw.write(path, b"abcdefghij")
    transport = FaultyTransport()
    seen = []

    async def body():
        fs = make_fs(transport=transport)
        info = await fs.stat(path)
        writer = fs.open_writer(KEY, path, info, os.O_WRONLY)
        assert isinstance(writer, SpoolWriter)
        assert writer.local_size() is None  # not filled before the first write
        await writer.write(3, b"XY")
        assert writer.local_size() == 10
        assert await writer.read(0, 100) == b"abcXYfghij"
        seen.append(raw.read(path))  # not uploaded yet
        await writer.flush()
        seen.append(raw.read(path))
        await fs.release_writer(KEY, writer)  # clean: nothing more to send
        return writer.spool

    spool = arun(body)
    assert seen == [b"abcdefghij", b"abcXYfghij"]
    assert raw.read(path) == b"abcXYfghij"
    assert transport.calls("PUT /files") == [path]
    assert transport.calls("GET /files") == [path]  # one fill
    assert not spool.data_path.exists() and not spool.sidecar_path.exists()


def test_spool_write_past_end_and_append(arun, make_fs, ws: Workspace, raw: RawHttp):
    path = f"{ws.mem}/grow.txt"
    raw.write(path, b"abc")

    async def body():
        fs = make_fs()
        writer = fs.open_writer(KEY, path, await fs.stat(path), os.O_WRONLY | os.O_APPEND)
        await writer.write(0, b"-tail", append=True)  # the kernel's offset is ignored
        await writer.write(10, b"!")
        await fs.release_writer(KEY, writer)

    arun(body)
    assert raw.read(path) == b"abc-tail\0\0!"


def test_spool_start_empty_does_not_fetch(arun, make_fs, ws: Workspace, raw: RawHttp):
    path = f"{ws.mem}/trunc.txt"
    raw.write(path, b"old content that must vanish")
    transport = FaultyTransport()

    async def body():
        fs = make_fs(transport=transport)
        writer = fs.open_writer(KEY, path, await fs.stat(path), os.O_WRONLY | os.O_TRUNC)
        assert writer.local_size() == 0
        await writer.write(0, b"new")
        await fs.release_writer(KEY, writer)

    arun(body)
    assert raw.read(path) == b"new"
    assert transport.calls("GET /files") == []


def test_spool_o_trunc_without_write_empties_file(arun, make_fs, ws: Workspace, raw):
    path = f"{ws.mem}/emptied.txt"
    raw.write(path, b"content")

    async def body():
        fs = make_fs()
        writer = fs.open_writer(KEY, path, await fs.stat(path), os.O_WRONLY | os.O_TRUNC)
        await fs.release_writer(KEY, writer)

    arun(body)
    assert raw.read(path) == b""


def test_spool_shared_by_handles_uploads_at_last_release(arun, make_fs, ws, raw: RawHttp):
    path = f"{ws.mem}/shared.txt"
    raw.write(path, b"0000000000")
    seen = []

    async def body():
        fs = make_fs()
        info = await fs.stat(path)
        first = fs.open_writer(KEY, path, info, os.O_WRONLY)
        second = fs.open_writer(KEY, path, info, os.O_RDWR)
        assert first is second
        await first.write(0, b"AA")
        await second.write(8, b"BB")
        await fs.release_writer(KEY, first)
        seen.append(raw.read(path))  # one handle still open: nothing sent
        await fs.release_writer(KEY, second)
        return fs.spool_of(KEY)

    assert arun(body) is None
    assert seen == [b"0000000000"]
    assert raw.read(path) == b"AA000000BB"


def test_new_file_spool_uploads_on_release(arun, make_fs, ws: Workspace, raw, tmp_path: Path):
    path = f"{ws.mem}/created.bin"
    content = os.urandom(2 * (1 << 20) + 3)
    spool = SpoolDir(tmp_path / "spools")

    async def body():
        fs = make_fs(spool=spool)
        await fs.create(path, 0o600)
        writer = fs.open_new_file(KEY, path, 0o600)
        for offset in range(0, len(content), 128 * 1024):
            await writer.write(offset, content[offset : offset + 128 * 1024])
        await fs.release_writer(KEY, writer)

    arun(body)
    assert raw.read(path) == content
    assert raw.stat(path)["mode"] == 0o600
    assert list(spool.root.iterdir()) == []


def test_unlinked_open_file_is_not_resurrected(arun, make_fs, ws: Workspace, raw: RawHttp):
    path = f"{ws.mem}/doomed.txt"
    raw.write(path, b"x")

    async def body():
        fs = make_fs()
        writer = fs.open_writer(KEY, path, await fs.stat(path), os.O_WRONLY | os.O_TRUNC)
        await writer.write(0, b"written after open")
        await fs.unlink(path)
        await fs.release_writer(KEY, writer)

    arun(body)
    assert not raw.exists(path)
    assert raw.names(ws.mem) == set()


def test_failed_upload_keeps_spool_and_sidecar(
    arun, make_fs, small_server: LiveServer, tmp_path: Path
):
    path = f"/memfs/big-{uuid.uuid4().hex[:8]}.bin"
    content = os.urandom(SMALL_BODY * 4)
    spool = SpoolDir(tmp_path / "spools")

    async def body():
        fs = make_fs(small_server.url, spool=spool)
        writer = fs.open_new_file(KEY, path)
        await writer.write(0, content)
        with pytest.raises(errors.FileTooLarge) as excinfo:
            await writer.flush()  # what close() reports to the program
        await fs.release_writer(KEY, writer)  # release keeps the spool, raises nothing
        return excinfo.value

    exc = arun(body)
    assert exc.errno == errno.EFBIG
    left = list(spool.leftovers())
    assert len(left) == 1
    data_path, meta = left[0]
    assert data_path.read_bytes() == content
    assert data_path.with_name(data_path.name + SIDECAR_SUFFIX).exists()
    assert meta is not None
    assert meta.remote_path == path
    assert meta.server_url == small_server.url
    status, _ = small_server.process.get_json("/health")
    assert status == 200
    with httpx.Client() as http:
        answer = http.get(small_server.url + "/stat", params={"path": path})
    assert answer.status_code != 200  # nothing half-written on the server


def test_failed_move_into_place_removes_the_temporary_and_keeps_the_old_file(
    arun, make_fs, make_server, tmp_path: Path
):
    """Over the body limit on memfs: pwrites go to a hidden temporary, whose rename over
    the file fails here; the temporary is deleted and the old content stays whole."""
    limited = make_server(max_body=128 << 10)  # handle chunks go down to 64 KiB
    directory = f"/memfs/tmpup-{uuid.uuid4().hex[:8]}"
    path = f"{directory}/f"
    with httpx.Client(base_url=limited.url) as http:
        http.post("/directories", params={"path": directory}).raise_for_status()
        http.put("/files", params={"path": path}, content=b"old").raise_for_status()
    transport = FaultyTransport({"POST /rename": {1}})

    async def body():
        fs = make_fs(limited.url, spool=SpoolDir(tmp_path / "spools"), transport=transport)
        await fs.refresh_mounts()
        writer = fs.open_writer(KEY, path, await fs.stat(path), os.O_WRONLY | os.O_TRUNC)
        await writer.write(0, os.urandom(300 << 10))
        with pytest.raises(errors.AgfsError, match="injected"):
            await writer.flush()

    arun(body)
    [temporary] = transport.calls("POST /rename")
    assert temporary.startswith(f"{directory}/{UPLOAD_PREFIX}")
    assert ("DELETE", "/files", temporary) in transport.seen
    with httpx.Client(base_url=limited.url) as http:
        listing = http.get("/directories", params={"path": directory}).json()["files"]
        assert [entry["name"] for entry in listing] == ["f"]
        assert http.get("/files", params={"path": path}).content == b"old"


def test_failed_flush_is_not_retried_at_release(
    arun, make_fs, small_server: LiveServer, tmp_path: Path
):
    path = f"/memfs/flush-{uuid.uuid4().hex[:8]}.bin"
    spool = SpoolDir(tmp_path / "spools")
    transport = FaultyTransport()

    async def body():
        fs = make_fs(small_server.url, spool=spool, transport=transport)
        writer = fs.open_new_file(KEY, path)
        await writer.write(0, b"z" * (SMALL_BODY + 1))
        with pytest.raises(errors.FileTooLarge):
            await writer.flush()
        await fs.release_writer(KEY, writer)  # same content: kept, not sent again

    arun(body)
    assert transport.calls("PUT /files") == [path]
    left = list(spool.leftovers())
    assert [(meta.remote_path if meta else None) for _, meta in left] == [path]


# -- MessageWriter -----------------------------------------------------------------------


def queue_messages(raw: RawHttp, queue: str) -> list[str]:
    messages = []
    while True:
        body = json.loads(raw.read(f"{queue}/dequeue"))
        if not body:
            return messages
        messages.append(body["data"])


def test_message_writer_sends_one_message_per_flush(arun, make_fs, raw: RawHttp):
    queue = f"/queuefs/q{uuid.uuid4().hex[:8]}"
    raw.mkdir(queue)
    sizes = []

    async def body():
        fs = make_fs()
        await fs.refresh_mounts()
        info = await fs.stat(f"{queue}/enqueue")
        assert fs.wants_messages(f"{queue}/enqueue", info)
        writer = fs.open_writer(KEY, f"{queue}/enqueue", info, os.O_WRONLY | os.O_TRUNC)
        assert isinstance(writer, MessageWriter)
        await writer.write(0, b"first")
        await writer.flush()
        sizes.append(raw.read(f"{queue}/size"))
        await writer.write(5, b"second,")
        await writer.write(12, b" in two writes")
        await writer.flush()
        await writer.flush()  # nothing new: nothing sent
        await fs.release_writer(KEY, writer)

    arun(body)
    assert sizes == [b"1"]
    assert queue_messages(raw, queue) == ["first", "second, in two writes"]


def test_message_writer_sends_nothing_when_nothing_written(arun, make_fs, raw: RawHttp):
    queue = f"/queuefs/q{uuid.uuid4().hex[:8]}"
    raw.mkdir(queue)
    transport = FaultyTransport()

    async def body():
        fs = make_fs(transport=transport)
        info = await fs.stat(f"{queue}/enqueue")
        writer = fs.open_writer(KEY, f"{queue}/enqueue", info, os.O_WRONLY)
        await writer.flush()
        await fs.release_writer(KEY, writer)

    arun(body)
    assert transport.calls("PUT /files") == []
    assert raw.read(f"{queue}/size") == b"0"


def test_message_writer_keeps_message_after_failed_send(arun, make_fs, raw: RawHttp):
    queue = f"/queuefs/q{uuid.uuid4().hex[:8]}"
    raw.mkdir(queue)
    transport = FaultyTransport({"PUT /files": {1}})

    async def body():
        fs = make_fs(transport=transport)
        info = await fs.stat(f"{queue}/enqueue")
        writer = fs.open_writer(KEY, f"{queue}/enqueue", info, os.O_WRONLY)
        await writer.write(0, b"retry me")
        with pytest.raises(errors.AgfsError):
            await writer.flush()
        await fs.release_writer(KEY, writer)

    arun(body)
    assert queue_messages(raw, queue) == ["retry me"]


# -- reload ------------------------------------------------------------------------------


def test_reload_empty_keeps_url_with_fresh_client(arun, make_fs, server: LiveServer, ws, raw):
    raw.write(f"{ws.mem}/still-here", b"yes")

    async def body():
        fs = make_fs()
        old = fs.client
        url = await fs.reload("")
        url_again = await fs.reload("  \n")
        return url, url_again, fs.client is not old, await fs.read(f"{ws.mem}/still-here", 0, 10)

    url, url_again, fresh, data = arun(body)
    assert url == url_again == server.url
    assert fresh
    assert data == b"yes"


def test_reload_switches_server_after_uploading_pending_writes(
    arun, make_fs, make_server, server: LiveServer, raw: RawHttp, ws: Workspace
):
    other = make_server()
    path = f"{ws.mem}/pending.txt"
    raw.write(path, b"before")

    async def body():
        fs = make_fs()
        writer = fs.open_writer(KEY, path, await fs.stat(path), os.O_WRONLY | os.O_TRUNC)
        await writer.write(0, b"dirty, not yet flushed")
        url = await fs.reload(other.url.removesuffix("/api/v1"))
        state = (url, fs.url, raw.read(path))
        await fs.client.write("/memfs/on-other", b"new server")
        await fs.release_writer(KEY, writer)
        return state

    url, fs_url, old_server_content = arun(body)
    assert url == fs_url == other.url
    assert old_server_content == b"dirty, not yet flushed"
    assert raw.read(path) == b"dirty, not yet flushed"
    assert not raw.exists("/memfs/on-other")
    with httpx.Client() as http:
        on_other = http.get(other.url + "/files", params={"path": "/memfs/on-other"})
        missing = http.get(other.url + "/stat", params={"path": path})
    assert on_other.content == b"new server"
    assert missing.status_code != 200


def test_reload_to_dead_port_keeps_old_client(arun, make_fs, server: LiveServer, ws, raw):
    raw.write(f"{ws.mem}/f", b"still served")

    async def body():
        fs = make_fs()
        old = fs.client
        with pytest.raises(ReloadFailed) as excinfo:
            await fs.reload(dead_url())
        return excinfo.value, fs.client is old, fs.url, await fs.read(f"{ws.mem}/f", 0, 100)

    exc, same, url, data = arun(body)
    assert exc.errno == errno.EIO
    assert same
    assert url == server.url
    assert data == b"still served"


def test_reload_refused_when_pending_upload_fails(
    arun, make_fs, make_server, small_server: LiveServer, tmp_path: Path
):
    other = make_server()
    path = f"/memfs/stuck-{uuid.uuid4().hex[:8]}"

    async def body():
        fs = make_fs(small_server.url, spool=SpoolDir(tmp_path / "spools"))
        old = fs.client
        writer = fs.open_new_file(KEY, path)
        await writer.write(0, b"q" * (SMALL_BODY + 10))
        with pytest.raises(ReloadFailed) as excinfo:
            await fs.reload(other.url)
        return excinfo.value, fs.client is old, fs.url

    exc, same, url = arun(body)
    assert exc.errno == errno.EIO
    assert same and url == small_server.url


@pytest.mark.parametrize("text", ["foo", "ftp://example.org/", "/memfs"])
def test_reload_garbage_is_einval(arun, make_fs, server: LiveServer, text):
    async def body():
        fs = make_fs()
        old = fs.client
        with pytest.raises(errors.InvalidArgument) as excinfo:
            await fs.reload(text)
        return excinfo.value, fs.client is old

    exc, same = arun(body)
    assert exc.errno == errno.EINVAL
    assert same


def test_filesystem_stat_and_list_use_live_server(arun, make_fs, ws: Workspace, raw):
    raw.write(f"{ws.mem}/a", b"12")
    raw.mkdir(f"{ws.mem}/sub")

    async def body():
        fs: AgfsFilesystem = make_fs()
        await fs.refresh_mounts()
        entries = {e.name: e for e in await fs.list(ws.mem)}
        return (
            entries,
            await _on_server(fs, f"{ws.mem}/a"),
            await _on_server(fs, f"{ws.mem}/zzz"),
            fs.caps.plugin_for(f"{ws.mem}/a"),
            fs.caps.plugin_for("/queuefs/x/dequeue"),
            fs.caps.plugin_for(f"{ws.local}/x"),
        )

    entries, yes, no, mem_plugin, queue_plugin, local_plugin = arun(body)
    assert entries["a"].size == 2 and entries["sub"].is_dir
    assert (yes, no) == (True, False)
    assert (mem_plugin, queue_plugin, local_plugin) == ("memfs", "queuefs", "localfs")


# -- readdir from a fresh listing ---------------------------------------------------------


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_second_readdir_within_attr_timeout_needs_no_request(
    arun, closer, ws: Workspace, raw: RawHttp
):
    raw.write(f"{ws.mem}/a", b"1")
    raw.write(f"{ws.mem}/b", b"22")
    clock = _Clock()

    async def body() -> list[tuple[list[str], int]]:
        client = closer.client()
        fs = AgfsFilesystem(
            client, SpoolDir(closer.spool_root), client_factory=closer.client, clock=clock
        )
        closer.filesystems.append(fs)
        seen = []

        async def readdir() -> None:
            entries = await fs.list_for_reading(ws.mem)
            seen.append(
                (sorted(e.name for e in entries), client.stats.requests["GET /directories"])
            )

        await readdir()
        await readdir()  # within the second: from the cache
        raw.write(f"{ws.mem}/other", b"made elsewhere")
        clock.now += 0.5
        await readdir()  # still cached: another client's file is not seen yet
        clock.now += 0.6
        await readdir()  # over attr_timeout: listed again, and there it is
        await fs.create(f"{ws.mem}/mine", 0o644)
        await fs.release_writer(KEY, fs.open_new_file(KEY, f"{ws.mem}/mine"))  # uploaded
        await readdir()  # our own change: listed again at once
        return seen

    assert arun(body) == [
        (["a", "b"], 1),
        (["a", "b"], 1),
        (["a", "b"], 1),
        (["a", "b", "other"], 2),
        (["a", "b", "mine", "other"], 3),
    ]


class HeldListingTransport(httpx.AsyncBaseTransport):
    """The real transport, except that the first listing's answer, once the server has
    given it, is held until ``release`` is set: a listing that was on its way while the
    mount changed the directory."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.answered = trio.Event()
        self.release = trio.Event()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.url.path.endswith("/directories") and not self.answered.is_set():
            await response.aread()
            self.answered.set()
            await self.release.wait()
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


def test_a_listing_answered_before_a_rename_is_not_served_after_it(
    arun, make_fs, ws: Workspace, raw: RawHttp
):
    """The atomic publish of the load test: a listing sent before ``NAME.tmp`` became
    ``NAME`` arrives after; the next readdir must list ``NAME``, not the old names."""
    raw.write(f"{ws.mem}/NAME.tmp", b"published")
    transport = HeldListingTransport()

    async def body() -> tuple[list[str], list[str], bool]:
        fs: AgfsFilesystem = make_fs(transport=transport)
        seen: dict[str, list[str]] = {}

        async def first_readdir() -> None:
            seen["first"] = sorted(e.name for e in await fs.list_for_reading(ws.mem))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(first_readdir)
            await transport.answered.wait()
            await fs.rename(f"{ws.mem}/NAME.tmp", f"{ws.mem}/NAME")
            transport.release.set()
        after = sorted(e.name for e in await fs.list_for_reading(ws.mem))
        return seen["first"], after, await _on_server(fs, f"{ws.mem}/NAME.tmp")

    first, after, tmp_exists = arun(body)
    assert first == ["NAME.tmp"]  # what the server said when it was asked
    assert after == ["NAME"]
    assert not tmp_exists
