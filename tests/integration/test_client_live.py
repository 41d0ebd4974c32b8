"""``AgfsClient`` against the running reference server: every method, every error mapping."""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from agfs_fuse import errors
from agfs_fuse.client import UPLOAD_CHUNK
from tests.integration.conftest import SMALL_BODY, LiveServer, RawHttp, Workspace, dead_url

pytestmark = pytest.mark.timeout(30)

ODD_NAMES = [
    "plus+sign",
    "per%cent",
    "%2B literal",
    "hash#tag",
    "q?mark",
    "amp&and=eq",
    "it's",
    'say "hi"',
    "  spaces  around ",
    "ünïcödé-日本語-🙂",
    "new\nline",
    "-leading-dash",
    "a+b c%20d",
]


def pattern(size: int) -> bytes:
    """Deterministic, position-dependent bytes (an off-by-one shows up as a mismatch)."""
    block = bytes(range(251))  # prime length: no alignment with powers of two
    return (block * (size // len(block) + 1))[:size]


# -- server ------------------------------------------------------------------------------


def test_health_reports_a_healthy_ready_server(arun, make_client):
    health = arun(lambda: make_client().health())
    assert health.status == "healthy"
    assert health.ready is True
    assert health.degraded is False
    assert health.version


def test_mounts_lists_every_configured_plugin(arun, make_client):
    mounts = arun(lambda: make_client().mounts())
    by_path = {m.path: m.plugin for m in mounts}
    assert by_path["/memfs"] == "memfs"
    assert by_path["/queuefs"] == "queuefs"
    assert by_path["/local"] == "localfs"


def test_url_without_api_suffix_gets_it_appended(arun, make_client, server: LiveServer):
    bare = server.url.removesuffix("/api/v1")
    assert bare != server.url

    async def body():
        client = make_client(bare + "/")
        return client.base_url, await client.health(), await client.stat("/memfs")

    base_url, health, info = arun(body)
    assert base_url == server.url
    assert health.status == "healthy"
    assert info.is_dir and info.name == "memfs"


# -- metadata ----------------------------------------------------------------------------


def test_stat_of_file_dir_and_mount_point(arun, make_client, ws: Workspace, raw: RawHttp):
    raw.write(f"{ws.mem}/f.txt", b"hello")

    async def body():
        client = make_client()
        return (
            await client.stat(f"{ws.mem}/f.txt"),
            await client.stat(ws.mem),
            await client.stat("/memfs"),
        )

    f, d, mount = arun(body)
    assert (f.name, f.size, f.perm, f.is_dir, f.is_symlink) == ("f.txt", 5, 0o644, False, False)
    assert f.meta_name == "memfs" and f.meta_type == "file"
    assert f.mtime_ns > 0
    assert (d.is_dir, d.perm, d.meta_type) == (True, 0o755, "dir")
    assert (mount.name, mount.is_dir, mount.perm) == ("memfs", True, 0o755)


def test_list_gives_entries_and_empty_dir_gives_empty_list(
    arun, make_client, ws: Workspace, raw: RawHttp
):
    raw.mkdir(f"{ws.mem}/empty")
    raw.mkdir(f"{ws.mem}/full")
    raw.write(f"{ws.mem}/full/a", b"1")
    raw.write(f"{ws.mem}/full/bb", b"22")
    raw.mkdir(f"{ws.mem}/full/sub")
    # The server really answers {"files": null} for an empty directory.
    assert raw.listing(f"{ws.mem}/empty") == {"files": None}

    async def body():
        client = make_client()
        return await client.list(f"{ws.mem}/empty"), await client.list(f"{ws.mem}/full")

    empty, full = arun(body)
    assert empty == []
    by_name = {info.name: info for info in full}
    assert set(by_name) == {"a", "bb", "sub"}
    assert by_name["bb"].size == 2 and not by_name["bb"].is_dir
    assert by_name["sub"].is_dir


def test_list_of_virtual_root_shows_mount_points(arun, make_client):
    entries = arun(lambda: make_client().list("/"))
    names = {e.name for e in entries}
    assert {"memfs", "queuefs", "local"} <= names
    assert all(e.is_dir for e in entries if e.name in ("memfs", "queuefs", "local"))


# -- reads -------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["mem", "local"])
def test_read_ranges_including_past_eof(arun, make_client, ws: Workspace, raw: RawHttp, where):
    path = f"{getattr(ws, where)}/data.bin"
    content = pattern(1000)
    raw.write(path, content)

    async def body():
        client = make_client()
        return [
            await client.read(path),
            await client.read(path, 0, 10),
            await client.read(path, 10),
            await client.read(path, 500, 100),
            await client.read(path, 990, 100),
            await client.read(path, 1000, 10),
            await client.read(path, 5000, 10),
            await client.read(path, 0, 0),
        ]

    got = arun(body)
    assert got == [
        content,
        content[:10],
        content[10:],
        content[500:600],
        content[990:],
        b"",
        b"",
        b"",
    ]


@pytest.mark.parametrize("where", ["mem", "local"])
def test_read_into_streams_whole_file(arun, make_client, ws: Workspace, raw: RawHttp, where):
    path = f"{getattr(ws, where)}/big.bin"
    content = pattern(3 * UPLOAD_CHUNK + 12345)
    raw.write(path, content)
    chunks: list[bytes] = []

    total = arun(lambda: make_client().read_into(path, chunks.append))
    assert total == len(content)
    assert b"".join(chunks) == content


def test_read_into_empty_file_and_missing_file(arun, make_client, ws: Workspace, raw: RawHttp):
    raw.write(f"{ws.mem}/empty", b"")
    chunks: list[bytes] = []

    async def body():
        client = make_client()
        total = await client.read_into(f"{ws.mem}/empty", chunks.append)
        with pytest.raises(errors.NotFound):
            await client.read_into(f"{ws.mem}/missing", chunks.append)
        return total

    assert arun(body) == 0
    assert b"".join(chunks) == b""


# -- writes ------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["mem", "local"])
def test_write_replaces_whole_file(arun, make_client, ws: Workspace, raw: RawHttp, where):
    path = f"{getattr(ws, where)}/w.txt"

    async def body():
        client = make_client()
        await client.write(path, b"first version, long")
        await client.write(path, b"second")
        return await client.read(path)

    assert arun(body) == b"second"
    assert raw.read(path) == b"second"


@pytest.mark.parametrize("where", ["mem", "local"])
def test_write_from_uploads_exact_bytes(
    arun, make_client, ws: Workspace, raw: RawHttp, tmp_path: Path, where
):
    path = f"{getattr(ws, where)}/upload.bin"
    content = os.urandom(3 * UPLOAD_CHUNK + 777)  # several upload chunks and a tail
    source = tmp_path / "source.bin"
    source.write_bytes(content)

    async def body():
        client = make_client()
        with open(source, "rb") as f:
            await client.write_from(path, f, len(content))
        return await client.stat(path)

    info = arun(body)
    assert info.size == len(content)
    assert raw.read(path) == content


def test_write_from_sends_only_size_bytes(arun, make_client, ws: Workspace, raw, tmp_path):
    path = f"{ws.mem}/prefix.bin"
    source = tmp_path / "source.bin"
    source.write_bytes(pattern(5000))

    async def body():
        with open(source, "rb") as f:
            await make_client().write_from(path, f, 1234)

    arun(body)
    assert raw.read(path) == pattern(1234)


def test_write_from_zero_bytes_empties_file(arun, make_client, ws: Workspace, raw, tmp_path):
    path = f"{ws.mem}/zero.bin"
    raw.write(path, b"old content")
    source = tmp_path / "empty.bin"
    source.write_bytes(b"")

    async def body():
        with open(source, "rb") as f:
            await make_client().write_from(path, f, 0)

    arun(body)
    assert raw.read(path) == b""


# -- namespace ---------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["mem", "local"])
def test_create_makes_empty_file_and_refuses_existing(
    arun, make_client, ws: Workspace, raw: RawHttp, where
):
    path = f"{getattr(ws, where)}/new.txt"

    async def body():
        client = make_client()
        await client.create(path)
        info = await client.stat(path)
        with pytest.raises(errors.AlreadyExists) as excinfo:
            await client.create(path)
        return info, excinfo.value

    info, exc = arun(body)
    assert info.size == 0 and not info.is_dir
    assert exc.errno == errno.EEXIST
    assert raw.read(path) == b""


def test_mkdir_honours_mode_and_refuses_existing(arun, make_client, ws: Workspace):
    async def body():
        client = make_client()
        await client.mkdir(f"{ws.mem}/d700", 0o700)
        await client.mkdir(f"{ws.mem}/d750", 0o750)
        await client.mkdir(f"{ws.mem}/ddef")
        await client.mkdir(f"{ws.local}/l750", 0o750)
        infos = [
            await client.stat(f"{ws.mem}/d700"),
            await client.stat(f"{ws.mem}/d750"),
            await client.stat(f"{ws.mem}/ddef"),
            await client.stat(f"{ws.local}/l750"),
        ]
        with pytest.raises(errors.AlreadyExists) as mem_exc:
            await client.mkdir(f"{ws.mem}/d700", 0o700)
        with pytest.raises(errors.AlreadyExists) as local_exc:
            await client.mkdir(f"{ws.local}/l750", 0o750)
        return infos, mem_exc.value, local_exc.value

    infos, mem_exc, local_exc = arun(body)
    assert [(i.is_dir, i.perm) for i in infos] == [
        (True, 0o700),
        (True, 0o750),
        (True, 0o755),
        (True, 0o750),
    ]
    assert stat.S_IMODE(os.stat(ws.disk / "l750").st_mode) == 0o750
    assert mem_exc.errno == local_exc.errno == errno.EEXIST


def test_mkdir_missing_parent_is_enoent(arun, make_client, ws: Workspace):
    async def body():
        with pytest.raises(errors.NotFound) as excinfo:
            await make_client().mkdir(f"{ws.mem}/no/such/parent", 0o755)
        return excinfo.value

    assert arun(body).errno == errno.ENOENT


@pytest.mark.parametrize("where", ["mem", "local"])
def test_delete_file(arun, make_client, ws: Workspace, raw: RawHttp, where):
    path = f"{getattr(ws, where)}/gone.txt"
    raw.write(path, b"x")

    async def body():
        client = make_client()
        await client.delete(path)
        with pytest.raises(errors.NotFound):
            await client.delete(path)

    arun(body)
    assert not raw.exists(path)


@pytest.mark.parametrize("where", ["mem", "local"])
def test_delete_recursive_removes_tree(arun, make_client, ws: Workspace, raw: RawHttp, where):
    root = f"{getattr(ws, where)}/tree"
    raw.mkdir(root)
    raw.mkdir(f"{root}/a")
    raw.mkdir(f"{root}/a/b")
    raw.write(f"{root}/a/b/f", b"deep")
    raw.write(f"{root}/top", b"top")

    async def body():
        client = make_client()
        with pytest.raises(errors.DirectoryNotEmpty) as excinfo:
            await client.delete(root)
        still_there = await client.read(f"{root}/a/b/f")
        await client.delete(root, recursive=True)
        return excinfo.value, still_there

    exc, still_there = arun(body)
    assert exc.errno == errno.ENOTEMPTY
    assert still_there == b"deep"
    assert not raw.exists(root)
    assert "tree" not in raw.names(getattr(ws, where))


@pytest.mark.parametrize("where", ["mem", "local"])
def test_rmdir_empty_and_not_empty(arun, make_client, ws: Workspace, raw: RawHttp, where):
    base = getattr(ws, where)
    raw.mkdir(f"{base}/empty")
    raw.mkdir(f"{base}/full")
    raw.write(f"{base}/full/f", b"keep me")

    async def body():
        client = make_client()
        await client.rmdir(f"{base}/empty")
        with pytest.raises(errors.DirectoryNotEmpty) as excinfo:
            await client.rmdir(f"{base}/full")
        return excinfo.value

    assert arun(body).errno == errno.ENOTEMPTY
    assert raw.names(base) == {"full"}
    assert raw.read(f"{base}/full/f") == b"keep me"


def test_rename_moves_file_and_directory(arun, make_client, ws: Workspace, raw: RawHttp):
    raw.write(f"{ws.mem}/a.txt", b"aaa")
    raw.mkdir(f"{ws.mem}/dir")
    raw.write(f"{ws.mem}/dir/inner", b"in")

    async def body():
        client = make_client()
        await client.rename(f"{ws.mem}/a.txt", f"{ws.mem}/b.txt")
        await client.rename(f"{ws.mem}/dir", f"{ws.mem}/moved")

    arun(body)
    assert raw.names(ws.mem) == {"b.txt", "moved"}
    assert raw.read(f"{ws.mem}/b.txt") == b"aaa"
    assert raw.read(f"{ws.mem}/moved/inner") == b"in"


def test_rename_onto_existing_target_memfs_refuses(arun, make_client, ws: Workspace, raw):
    raw.write(f"{ws.mem}/src", b"source")
    raw.write(f"{ws.mem}/dst", b"target")

    async def body():
        with pytest.raises(errors.AlreadyExists) as excinfo:
            await make_client().rename(f"{ws.mem}/src", f"{ws.mem}/dst")
        return excinfo.value

    assert arun(body).errno == errno.EEXIST
    assert raw.read(f"{ws.mem}/src") == b"source"
    assert raw.read(f"{ws.mem}/dst") == b"target"


def test_rename_onto_existing_target_localfs_replaces(arun, make_client, ws: Workspace, raw):
    raw.write(f"{ws.local}/src", b"source")
    raw.write(f"{ws.local}/dst", b"target")

    arun(lambda: make_client().rename(f"{ws.local}/src", f"{ws.local}/dst"))
    assert raw.names(ws.local) == {"dst"}
    assert raw.read(f"{ws.local}/dst") == b"source"
    assert (ws.disk / "dst").read_bytes() == b"source"


def test_rename_across_mounts_is_exdev(arun, make_client, ws: Workspace, raw: RawHttp):
    raw.write(f"{ws.mem}/f", b"stay")

    async def body():
        with pytest.raises(errors.CrossDevice) as excinfo:
            await make_client().rename(f"{ws.mem}/f", f"{ws.local}/f")
        return excinfo.value

    assert arun(body).errno == errno.EXDEV
    assert raw.read(f"{ws.mem}/f") == b"stay"
    assert not (ws.disk / "f").exists()


@pytest.mark.parametrize("where", ["mem", "local"])
def test_chmod_sets_permission_bits(arun, make_client, ws: Workspace, raw: RawHttp, where):
    path = f"{getattr(ws, where)}/c.txt"
    raw.write(path, b"x")

    async def body():
        client = make_client()
        await client.chmod(path, 0o600)
        first = await client.stat(path)
        await client.chmod(path, 0o100751)  # type bits are masked off before sending
        return first, await client.stat(path)

    first, second = arun(body)
    assert first.perm == 0o600
    assert second.perm == 0o751
    if where == "local":
        assert stat.S_IMODE(os.stat(ws.disk / "c.txt").st_mode) == 0o751


@pytest.mark.parametrize("where", ["mem", "local"])
def test_truncate_grows_and_shrinks(arun, make_client, ws: Workspace, raw: RawHttp, where):
    path = f"{getattr(ws, where)}/t.bin"
    raw.write(path, b"0123456789")

    async def body():
        client = make_client()
        await client.truncate(path, 15)
        grown = await client.read(path)
        await client.truncate(path, 4)
        shrunk = await client.read(path)
        await client.truncate(path, 0)
        return grown, shrunk, await client.stat(path)

    grown, shrunk, info = arun(body)
    assert grown == b"0123456789" + b"\0" * 5
    assert shrunk == b"0123"
    assert info.size == 0
    assert raw.read(path) == b""


@pytest.mark.parametrize("where", ["mem", "local"])
def test_touch_creates_missing_and_existing_is_eio(
    arun, make_client, ws: Workspace, raw: RawHttp, where
):
    base = getattr(ws, where)
    raw.write(f"{base}/existing", b"data")

    async def body():
        client = make_client()
        await client.touch(f"{base}/fresh")
        with pytest.raises(errors.AgfsError) as excinfo:
            await client.touch(f"{base}/existing")
        return await client.stat(f"{base}/fresh"), excinfo.value

    info, exc = arun(body)
    assert info.size == 0 and not info.is_dir
    # The real server's bug: touching an existing file answers 500 "EOF".
    assert isinstance(exc, errors.ServerError)
    assert exc.errno == errno.EIO
    assert exc.status == 500
    assert raw.read(f"{base}/existing") == b"data"


def test_symlink_and_readlink(arun, make_client, ws: Workspace, raw: RawHttp):
    raw.write(f"{ws.mem}/target.txt", b"pointed at")
    raw.mkdir(f"{ws.mem}/tdir")

    async def body():
        client = make_client()
        await client.symlink(f"{ws.mem}/target.txt", f"{ws.mem}/link")
        await client.symlink(f"{ws.mem}/tdir", f"{ws.mem}/dlink")
        await client.symlink("relative/../whatever", f"{ws.mem}/rel")
        with pytest.raises(errors.AlreadyExists) as excinfo:
            await client.symlink("/elsewhere", f"{ws.mem}/link")
        return (
            await client.readlink(f"{ws.mem}/link"),
            await client.readlink(f"{ws.mem}/rel"),
            await client.stat(f"{ws.mem}/link"),
            await client.stat(f"{ws.mem}/dlink"),
            excinfo.value,
        )

    target, rel, link_info, dlink_info, exc = arun(body)
    assert target == f"{ws.mem}/target.txt"
    assert rel == "relative/../whatever"
    assert link_info.is_symlink and not link_info.is_dir
    assert link_info.size == len(target)
    assert dlink_info.is_symlink and dlink_info.is_dir
    assert exc.errno == errno.EEXIST
    assert raw.readlink(f"{ws.mem}/link") == target


# -- handles -----------------------------------------------------------------------------


def test_handle_open_read_write_close_on_memfs(arun, make_client, ws: Workspace, raw: RawHttp):
    path = f"{ws.mem}/h.txt"

    async def body():
        client = make_client()
        handle = await client.open_handle(path, os.O_RDWR | os.O_CREAT, 0o640)
        written = [
            await client.handle_write(handle, 0, b"hello"),
            await client.handle_write(handle, 5, b" world"),
            await client.handle_write(handle, 0, b"J"),
        ]
        reads = [
            await client.handle_read(handle, 0, 100),
            await client.handle_read(handle, 6, 5),
            await client.handle_read(handle, 11, 5),
        ]
        await client.close_handle(handle)
        with pytest.raises(errors.NotFound):
            await client.handle_read(handle, 0, 10)
        return written, reads, await client.stat(path)

    written, reads, info = arun(body)
    assert written == [5, 6, 1]
    assert reads == [b"Jello world", b"world", b""]
    assert info.perm == 0o640
    assert raw.read(path) == b"Jello world"


def test_handle_flags_are_translated(arun, make_client, ws: Workspace, raw: RawHttp):
    path = f"{ws.mem}/flags.txt"
    raw.write(path, b"previous content")

    async def body():
        client = make_client()
        with pytest.raises(errors.AlreadyExists):
            await client.open_handle(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        with pytest.raises(errors.NotFound):
            await client.open_handle(f"{ws.mem}/missing", os.O_RDONLY)
        handle = await client.open_handle(path, os.O_WRONLY | os.O_TRUNC)
        await client.handle_write(handle, 0, b"new")
        await client.close_handle(handle)
        reader = await client.open_handle(path, os.O_RDONLY)
        try:
            with pytest.raises(errors.AgfsError):
                await client.handle_write(reader, 0, b"refused on a read-only handle")
            return await client.handle_read(reader, 0, 100)
        finally:
            await client.close_handle(reader)

    assert arun(body) == b"new"
    assert raw.read(path) == b"new"


def test_handle_open_on_localfs_is_eopnotsupp(arun, make_client, ws: Workspace, raw: RawHttp):
    raw.write(f"{ws.local}/f", b"x")

    async def body():
        with pytest.raises(errors.NotSupported) as excinfo:
            await make_client().open_handle(f"{ws.local}/f", os.O_RDONLY)
        return excinfo.value

    exc = arun(body)
    assert exc.errno == errno.EOPNOTSUPP
    assert exc.status == 501


# -- names -------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["mem", "local"])
def test_odd_names_round_trip(arun, make_client, ws: Workspace, where):
    base = getattr(ws, where)

    async def body():
        client = make_client()
        for name in ODD_NAMES:
            await client.write(f"{base}/{name}", name.encode())
        listed = {info.name for info in await client.list(base)}
        contents = {name: await client.read(f"{base}/{name}") for name in ODD_NAMES}
        infos = {name: await client.stat(f"{base}/{name}") for name in ODD_NAMES}
        return listed, contents, infos

    listed, contents, infos = arun(body)
    assert listed == set(ODD_NAMES)
    assert contents == {name: name.encode() for name in ODD_NAMES}
    assert {name: info.name for name, info in infos.items()} == {n: n for n in ODD_NAMES}
    if where == "local":
        assert set(os.listdir(ws.disk)) == set(ODD_NAMES)


def test_odd_directory_names_nest(arun, make_client, ws: Workspace, raw: RawHttp):
    outer = f"{ws.mem}/d+ir #1?&="
    inner = f"{outer}/ü x%41"

    async def body():
        client = make_client()
        await client.mkdir(outer, 0o755)
        await client.mkdir(inner, 0o755)
        await client.write(f"{inner}/f+", b"nested")
        return [i.name for i in await client.list(outer)], await client.read(f"{inner}/f+")

    names, data = arun(body)
    assert names == ["ü x%41"]
    assert data == b"nested"
    assert raw.read(f"{inner}/f+") == b"nested"


# -- localfs mode bits -------------------------------------------------------------------


def test_localfs_go_mode_bits_parse_to_permissions(arun, make_client, ws: Workspace, raw):
    os.mkdir(ws.disk / "sub")
    os.chmod(ws.disk / "sub", 0o755)
    (ws.disk / "file").write_bytes(b"12345")
    os.chmod(ws.disk / "file", 0o644)
    raw_dir = raw.stat(f"{ws.local}/sub")
    assert raw_dir is not None and raw_dir["mode"] == (1 << 31) | 0o755  # Go's ModeDir

    async def body():
        client = make_client()
        return (
            await client.stat(f"{ws.local}/sub"),
            await client.stat(f"{ws.local}/file"),
            {i.name: i for i in await client.list(ws.local)},
        )

    sub, file, listed = arun(body)
    assert (sub.perm, sub.is_dir, sub.is_symlink) == (0o755, True, False)
    assert (file.perm, file.is_dir, file.size) == (0o644, False, 5)
    assert file.meta_type == "local"
    assert (listed["sub"].perm, listed["file"].perm) == (0o755, 0o644)


# -- errors ------------------------------------------------------------------------------


def test_missing_path_is_enoent(arun, make_client, ws: Workspace):
    async def body():
        client = make_client()
        found = []
        for call in (
            lambda: client.stat(f"{ws.mem}/nope"),
            lambda: client.read(f"{ws.mem}/nope"),
            lambda: client.list(f"{ws.mem}/nope"),
            lambda: client.stat(f"{ws.local}/nope"),
            lambda: client.stat("/no-such-mount/x"),
        ):
            with pytest.raises(errors.NotFound) as excinfo:
                await call()
            found.append(excinfo.value.errno)
        return found

    assert arun(body) == [errno.ENOENT] * 5


def test_file_used_as_directory_is_enotdir(arun, make_client, ws: Workspace, raw: RawHttp):
    raw.write(f"{ws.mem}/plain", b"x")

    async def body():
        client = make_client()
        with pytest.raises(errors.NotADirectory) as a:
            await client.list(f"{ws.mem}/plain")
        with pytest.raises(errors.NotADirectory) as b:
            await client.stat(f"{ws.mem}/plain/child")
        return a.value.errno, b.value.errno

    assert arun(body) == (errno.ENOTDIR, errno.ENOTDIR)


def test_directory_used_as_file_is_eisdir(arun, make_client, ws: Workspace, raw: RawHttp):
    raw.mkdir(f"{ws.mem}/d")

    async def body():
        client = make_client()
        with pytest.raises(errors.IsADirectory) as a:
            await client.read(f"{ws.mem}/d")
        with pytest.raises(errors.IsADirectory) as b:
            await client.write(f"{ws.mem}/d", b"x")
        return a.value.errno, b.value.errno

    assert arun(body) == (errno.EISDIR, errno.EISDIR)
    assert raw.stat(f"{ws.mem}/d")["isDir"] is True


def test_creating_at_virtual_root_is_eacces(arun, make_client):
    async def body():
        client = make_client()
        caught = []
        for call in (lambda: client.create("/rootfile"), lambda: client.mkdir("/rootdir")):
            with pytest.raises(errors.PermissionDenied) as excinfo:
                await call()
            caught.append((excinfo.value.errno, excinfo.value.status))
        return caught, {e.name for e in await client.list("/")}

    caught, names = arun(body)
    assert caught == [(errno.EACCES, 403), (errno.EACCES, 403)]
    assert not {"rootfile", "rootdir"} & names


def test_body_over_server_limit_is_efbig(arun, make_client, small_server: LiveServer, tmp_path):
    big = pattern(SMALL_BODY + 1)
    source = tmp_path / "big.bin"
    source.write_bytes(big)

    async def body():
        client = make_client(small_server.url)
        await client.write("/memfs/fits", pattern(SMALL_BODY))
        with pytest.raises(errors.FileTooLarge) as plain:
            await client.write("/memfs/too-big", big)
        with open(source, "rb") as f, pytest.raises(errors.FileTooLarge) as streamed:
            await client.write_from("/memfs/too-big-streamed", f, len(big))
        names = {i.name for i in await client.list("/memfs")}
        return plain.value, streamed.value, names, await client.read("/memfs/fits")

    plain, streamed, names, fits = arun(body)
    assert plain.errno == streamed.errno == errno.EFBIG
    assert plain.status == streamed.status == 413
    assert fits == pattern(SMALL_BODY)
    assert "fits" in names
    assert not {"too-big", "too-big-streamed"} & names


def test_connection_refused_is_server_unreachable_not_enoent(arun, make_client):
    url = dead_url()

    async def body():
        client = make_client(url, timeout=5.0)
        caught = []
        for call in (
            client.health,
            lambda: client.stat("/memfs/x"),
            lambda: client.read("/memfs/x"),
            lambda: client.write("/memfs/x", b"data"),
        ):
            with pytest.raises(errors.ServerUnreachable) as excinfo:
                await call()
            caught.append(excinfo.value)
        return caught

    caught = arun(body)
    assert [exc.errno for exc in caught] == [errno.EIO] * 4
    assert not any(isinstance(exc, errors.NotFound) for exc in caught)


@pytest.fixture
def plain_http_server(tmp_path: Path) -> Iterator[str]:
    """``python -m http.server`` on a free loopback port; yields its root URL."""
    docroot = tmp_path / "www"
    (docroot / "api" / "v1").mkdir(parents=True)
    (docroot / "api" / "v1" / "health").write_text('{"hello": "not agfs"}')
    (docroot / "index.html").write_text("<html>hi</html>")
    proc = subprocess.Popen(
        [sys.executable, "-u", "-m", "http.server", "0", "--bind", "127.0.0.1"],
        cwd=docroot,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()  # "Serving HTTP on 127.0.0.1 port N (...)"
        assert "port" in line, line
        port = int(line.split(" port ", 1)[1].split()[0])
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def test_non_agfs_http_server_is_protocol_error(arun, make_client, plain_http_server: str):
    async def body():
        client = make_client(plain_http_server)
        caught = []
        for call in (
            client.health,  # 200 JSON without "status"
            lambda: client.stat("/memfs/x"),  # 404 HTML page
            lambda: client.list("/"),  # 404 HTML page
            lambda: client.read("/memfs/x"),  # 404 HTML page
        ):
            with pytest.raises(errors.ProtocolError) as excinfo:
                await call()
            caught.append(excinfo.value)
        return client.base_url, caught

    base_url, caught = arun(body)
    assert base_url == plain_http_server + "/api/v1"
    assert [exc.errno for exc in caught] == [errno.EIO] * 4
    assert not any(isinstance(exc, errors.NotFound) for exc in caught)
