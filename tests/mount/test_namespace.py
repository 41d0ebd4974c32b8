"""Directories, renames, symlinks, POSIX errnos and odd file names through the mount.

Run on memfs and on localfs (``ws``); results are checked on the server over HTTP.
memfs refuses to rename over an existing file: the mount must still replace it (POSIX).
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat

import pytest

from tests.mount.agfs_http import AgfsHttp
from tests.mount.conftest import Workspace, run, seen
from tests.support.mount import Mount

# -- mkdir / rmdir ----------------------------------------------------------------------


def test_mkdir_p_and_rmdir(ws: Workspace) -> None:
    run(["mkdir", "-p", str(ws.p("a", "b", "c"))])
    for path in ("a", "a/b", "a/b/c"):
        info = ws.http.stat(ws.r(path))
        assert info is not None and info["isDir"], path
    assert ws.p("a", "b", "c").is_dir()
    run(["mkdir", "-p", str(ws.p("a", "b", "c"))])  # exists: fine with -p
    run(["rmdir", str(ws.p("a", "b", "c"))])
    assert not ws.http.exists(ws.r("a/b/c"))
    assert ws.http.names(ws.r("a/b")) == set()
    proc = run(["rmdir", str(ws.p("a"))], check=False)
    assert proc.returncode != 0 and b"Directory not empty" in proc.stderr
    assert ws.http.exists(ws.r("a/b"))


def test_mkdir_existing_says_file_exists(ws: Workspace) -> None:
    ws.http.mkdir(ws.r("d"))
    proc = run(["mkdir", str(ws.p("d"))], check=False)
    assert proc.returncode != 0 and b"File exists" in proc.stderr


def test_ls_missing_says_no_such_file(ws: Workspace) -> None:
    proc = run(["ls", str(ws.p("missing"))], check=False)
    assert proc.returncode != 0 and b"No such file or directory" in proc.stderr


# -- rename ------------------------------------------------------------------------------


def test_mv_over_existing_file(ws: Workspace) -> None:
    ws.http.write(ws.r("src"), b"new content")
    ws.http.write(ws.r("dst"), b"old content that is longer")
    assert ws.p("dst").read_bytes() == b"old content that is longer"  # known to the kernel
    run(["mv", str(ws.p("src")), str(ws.p("dst"))])
    assert ws.http.read(ws.r("dst")) == b"new content"
    # the source is gone and no moved-aside temporary is left behind
    assert ws.http.names(ws.remote) == {"dst"}
    assert os.listdir(ws.local) == ["dst"]
    assert ws.p("dst").read_bytes() == b"new content"


def test_mv_f_and_os_replace(ws: Workspace) -> None:
    ws.p("a").write_bytes(b"A")
    ws.p("b").write_bytes(b"B")
    run(["mv", "-f", str(ws.p("a")), str(ws.p("b"))])
    assert ws.http.read(ws.r("b")) == b"A"
    ws.p("c").write_bytes(b"C")
    os.replace(ws.p("c"), ws.p("b"))
    assert ws.http.read(ws.r("b")) == b"C"
    assert ws.http.names(ws.remote) == {"b"}


def test_mv_file_and_directory(ws: Workspace) -> None:
    ws.http.write(ws.r("f"), b"x")
    ws.http.mkdir(ws.r("d"))
    ws.http.write(ws.r("d/inner"), b"inner")
    run(["mv", str(ws.p("f")), str(ws.p("g"))])
    assert not ws.http.exists(ws.r("f")) and ws.http.read(ws.r("g")) == b"x"
    run(["mv", str(ws.p("d")), str(ws.p("e"))])
    assert not ws.http.exists(ws.r("d"))
    assert ws.http.read(ws.r("e/inner")) == b"inner"
    assert ws.p("e", "inner").read_bytes() == b"inner"
    run(["mv", str(ws.p("g")), str(ws.p("e"))])  # into a directory
    assert ws.http.read(ws.r("e/g")) == b"x"


def test_a_directory_replaces_an_empty_directory(ws: Workspace) -> None:
    """POSIX rename replaces an empty directory; Go's localfs refuses ("file exists", as
    Go's os.Rename does over any directory) and memfs refuses, so the mount sets it aside."""
    ws.http.mkdir(ws.r("src"))
    ws.http.write(ws.r("src/inner"), b"inner")
    ws.http.mkdir(ws.r("dst"))
    os.rename(ws.p("src"), ws.p("dst"))
    assert ws.http.names(ws.remote) == {"dst"}
    assert ws.http.read(ws.r("dst/inner")) == b"inner"
    ws.http.mkdir(ws.r("full"))
    ws.http.write(ws.r("full/x"), b"x")
    with pytest.raises(OSError) as info:
        os.rename(ws.p("dst"), ws.p("full"))
    assert info.value.errno == errno.ENOTEMPTY
    assert ws.http.names(ws.remote) == {"dst", "full"}


def _renameat2(old: os.PathLike[str], new: os.PathLike[str], flags: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    at_fdcwd = -100
    res = libc.renameat2(at_fdcwd, os.fsencode(old), at_fdcwd, os.fsencode(new), flags)
    if res != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), str(new))


RENAME_NOREPLACE = 1


def test_rename_noreplace(ws: Workspace) -> None:
    ws.p("a").write_bytes(b"A")
    ws.p("b").write_bytes(b"B")
    with pytest.raises(OSError) as info:
        _renameat2(ws.p("a"), ws.p("b"), RENAME_NOREPLACE)
    assert info.value.errno == errno.EEXIST
    assert ws.http.read(ws.r("a")) == b"A" and ws.http.read(ws.r("b")) == b"B"
    _renameat2(ws.p("a"), ws.p("c"), RENAME_NOREPLACE)
    assert ws.http.names(ws.remote) == {"b", "c"}
    assert ws.http.read(ws.r("c")) == b"A"


RENAME_EXCHANGE = 2


def test_rename_exchange_is_einval_and_changes_nothing(ws: Workspace) -> None:
    """AGFS cannot swap two names in one step, so an exchange is refused, not faked."""
    ws.p("a").write_bytes(b"A")
    ws.p("b").write_bytes(b"B")
    with pytest.raises(OSError) as info:
        _renameat2(ws.p("a"), ws.p("b"), RENAME_EXCHANGE)
    assert info.value.errno == errno.EINVAL
    assert ws.http.read(ws.r("a")) == b"A" and ws.http.read(ws.r("b")) == b"B"


def test_vi_style_save(ws: Workspace) -> None:
    """Write a temporary file, fsync it, rename it over the original."""
    ws.http.write(ws.r("doc.txt"), b"original\n")
    assert ws.p("doc.txt").read_bytes() == b"original\n"
    tmp = ws.p(".doc.txt.swp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        os.write(fd, b"edited line 1\nedited line 2\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, ws.p("doc.txt"))
    assert ws.http.read(ws.r("doc.txt")) == b"edited line 1\nedited line 2\n"
    assert ws.http.names(ws.remote) == {"doc.txt"}
    assert ws.p("doc.txt").read_bytes() == b"edited line 1\nedited line 2\n"


def test_rename_open_file_then_close(ws: Workspace) -> None:
    """A file renamed while open for writing is uploaded under its new name."""
    f = open(ws.p("before"), "wb")  # noqa: SIM115
    try:
        f.write(b"written before the rename")
        f.flush()
        os.rename(ws.p("before"), ws.p("after"))
    finally:
        f.close()
    assert ws.http.read(ws.r("after")) == b"written before the rename"
    assert not ws.http.exists(ws.r("before"))


# -- symlinks ----------------------------------------------------------------------------


def test_ln_s_and_readlink(ws: Workspace) -> None:
    ws.http.write(ws.r("target.txt"), b"through the link")
    run(["ln", "-s", "target.txt", str(ws.p("link"))])
    assert ws.http.meta_type(ws.r("link")) == "symlink"
    assert ws.http.readlink(ws.r("link")) == "target.txt"
    assert run(["readlink", str(ws.p("link"))]).stdout == b"target.txt\n"
    assert os.readlink(ws.p("link")) == "target.txt"
    assert stat.S_ISLNK(os.lstat(ws.p("link")).st_mode)
    assert run(["cat", str(ws.p("link"))]).stdout == b"through the link"
    assert "link" in run(["ls", "-l", str(ws.local)]).stdout.decode()
    run(["rm", str(ws.p("link"))])
    assert not ws.http.exists(ws.r("link"))
    assert ws.http.read(ws.r("target.txt")) == b"through the link"


def test_symlink_made_on_server(ws: Workspace) -> None:
    ws.http.mkdir(ws.r("dir"))
    ws.http.symlink("dir", ws.r("dlink"))
    assert os.readlink(ws.p("dlink")) == "dir"
    assert stat.S_ISLNK(os.lstat(ws.p("dlink")).st_mode)


def test_mv_symlink(ws: Workspace) -> None:
    """Renaming a link is emulated (AGFS cannot rename links)."""
    ws.http.write(ws.r("t"), b"x")
    os.symlink("t", ws.p("l1"))
    run(["mv", str(ws.p("l1")), str(ws.p("l2"))])
    assert os.readlink(ws.p("l2")) == "t"
    assert ws.http.readlink(ws.r("l2")) == "t"
    assert not ws.http.exists(ws.r("l1"))
    assert not os.path.lexists(ws.p("l1"))


def test_dangling_symlink(ws: Workspace) -> None:
    os.symlink("nowhere", ws.p("dangling"))
    assert os.readlink(ws.p("dangling")) == "nowhere"
    with pytest.raises(OSError) as info:
        open(ws.p("dangling"), "rb")  # noqa: SIM115
    assert info.value.errno == errno.ENOENT


# -- errnos ------------------------------------------------------------------------------


def _errno_of(fn, *args) -> int:
    with pytest.raises(OSError) as info:
        fn(*args)
    return info.value.errno


def test_enoent(ws: Workspace) -> None:
    missing = ws.p("missing")
    assert _errno_of(os.stat, missing) == errno.ENOENT
    assert _errno_of(open, missing, "rb") == errno.ENOENT
    assert _errno_of(os.unlink, missing) == errno.ENOENT
    assert _errno_of(os.rmdir, missing) == errno.ENOENT
    assert _errno_of(os.listdir, missing) == errno.ENOENT
    assert _errno_of(os.rename, missing, ws.p("x")) == errno.ENOENT
    assert _errno_of(os.mkdir, ws.p("no", "parent")) == errno.ENOENT
    assert _errno_of(open, ws.p("no", "parent"), "wb") == errno.ENOENT
    assert not ws.http.exists(ws.r("no"))


def test_eexist(ws: Workspace) -> None:
    ws.http.write(ws.r("f"), b"keep")
    ws.http.mkdir(ws.r("d"))
    assert _errno_of(os.mkdir, ws.p("d")) == errno.EEXIST
    assert _errno_of(os.mkdir, ws.p("f")) == errno.EEXIST
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    assert _errno_of(os.open, ws.p("f"), flags) == errno.EEXIST
    assert _errno_of(os.symlink, "x", ws.p("f")) == errno.EEXIST
    assert ws.http.read(ws.r("f")) == b"keep"


def test_enotempty(ws: Workspace) -> None:
    ws.http.mkdir(ws.r("d"))
    ws.http.write(ws.r("d/f"), b"x")
    ws.http.mkdir(ws.r("e"))
    assert _errno_of(os.rmdir, ws.p("d")) == errno.ENOTEMPTY
    assert ws.http.read(ws.r("d/f")) == b"x"
    ws.http.write(ws.r("e/g"), b"y")
    # rename of a directory over a non-empty directory
    assert _errno_of(os.rename, ws.p("d"), ws.p("e")) in (errno.ENOTEMPTY, errno.EEXIST)
    assert ws.http.read(ws.r("e/g")) == b"y" and ws.http.read(ws.r("d/f")) == b"x"


def test_eisdir(ws: Workspace) -> None:
    ws.http.mkdir(ws.r("d"))
    ws.http.write(ws.r("f"), b"x")
    assert _errno_of(open, ws.p("d"), "wb") == errno.EISDIR
    assert _errno_of(os.unlink, ws.p("d")) == errno.EISDIR
    assert _errno_of(os.rename, ws.p("f"), ws.p("d")) == errno.EISDIR
    assert ws.http.stat(ws.r("d"))["isDir"] and ws.http.read(ws.r("f")) == b"x"


def test_enotdir(ws: Workspace) -> None:
    ws.http.write(ws.r("f"), b"x")
    ws.http.mkdir(ws.r("d"))
    assert _errno_of(os.listdir, ws.p("f")) == errno.ENOTDIR
    assert _errno_of(os.stat, ws.p("f", "child")) == errno.ENOTDIR
    assert _errno_of(os.rmdir, ws.p("f")) == errno.ENOTDIR
    assert _errno_of(os.mkdir, ws.p("f", "sub")) == errno.ENOTDIR
    assert _errno_of(os.rename, ws.p("d"), ws.p("f")) == errno.ENOTDIR
    assert ws.http.read(ws.r("f")) == b"x"


def test_exdev_across_agfs_mounts(mounted: Mount, http: AgfsHttp, request) -> None:
    tag = f"exdev-{os.getpid()}-{request.node.name}"[:50]
    http.mkdir(f"/memfs/{tag}")
    http.mkdir(f"/local/{tag}")
    http.write(f"/memfs/{tag}/a", b"from memfs")
    http.write(f"/local/{tag}/b", b"from localfs")
    mp = mounted.path
    memdir, localdir = mp / "memfs" / tag, mp / "local" / tag
    seen(memdir / "a"), seen(localdir / "b")  # made by another client: within attr_timeout
    assert _errno_of(os.rename, memdir / "a", localdir / "a") == errno.EXDEV
    assert _errno_of(os.rename, localdir / "b", memdir / "b") == errno.EXDEV
    assert _errno_of(os.rename, memdir / "a", mp / "queuefs" / "a") == errno.EXDEV
    assert http.read(f"/memfs/{tag}/a") == b"from memfs"
    assert http.read(f"/local/{tag}/b") == b"from localfs"
    # mv falls back to copy + delete
    run(["mv", str(memdir / "a"), str(localdir / "a")])
    assert http.read(f"/local/{tag}/a") == b"from memfs"
    assert not http.exists(f"/memfs/{tag}/a")


def test_root_listing(mounted: Mount) -> None:
    names = set(os.listdir(mounted.path))
    assert {"memfs", "local", "queuefs"} <= names
    assert os.path.isdir(mounted.path / "memfs")


# -- odd names ---------------------------------------------------------------------------

ODD_NAMES = [
    "with space",
    "plus+sign",
    "100%",
    "pct%20enc",
    "hash#tag",
    "what?",
    "a&b",
    "k=v",
    "it's",
    'say "hi"',
    "ünïcødé-日本語-😀",
    "-leading-dash",
    "semi;colon",
    "tilde~",
    "brackets[1]",
]


def test_odd_names_through_mount(ws: Workspace) -> None:
    for i, name in enumerate(ODD_NAMES):
        ws.p(name).write_bytes(f"content {i}".encode())
    ws.p("dir with space+%#?").mkdir()
    ws.p("dir with space+%#?", "inner &=").write_bytes(b"nested")
    assert ws.http.names(ws.remote) == set(ODD_NAMES) | {"dir with space+%#?"}
    for i, name in enumerate(ODD_NAMES):
        assert ws.http.read(ws.r(name)) == f"content {i}".encode(), name
    assert ws.http.read(ws.r("dir with space+%#?/inner &=")) == b"nested"
    listed = run(["ls", "-1", "-A", str(ws.local)]).stdout.decode().splitlines()
    assert set(listed) == set(ODD_NAMES) | {"dir with space+%#?"}
    assert run(["cat", "--", str(ws.p("-leading-dash"))]).stdout == b"content 11"
    os.rename(ws.p("plus+sign"), ws.p("renamed %2B+"))
    assert ws.http.read(ws.r("renamed %2B+")) == b"content 1"
    assert not ws.http.exists(ws.r("plus+sign"))
    os.unlink(ws.p("what?"))
    assert not ws.http.exists(ws.r("what?"))


def test_odd_names_from_server(ws: Workspace) -> None:
    for i, name in enumerate(ODD_NAMES):
        ws.http.write(ws.r(name), f"server {i}".encode())
    assert set(os.listdir(ws.local)) == set(ODD_NAMES)
    for i, name in enumerate(ODD_NAMES):
        assert ws.p(name).read_bytes() == f"server {i}".encode(), name
        assert os.stat(ws.p(name)).st_size == len(f"server {i}")


def test_invalid_utf8_name_is_einval(ws: Workspace) -> None:
    bad = os.fsencode(ws.local) + b"/bad-\xff-name"
    assert _errno_of(os.open, bad, os.O_WRONLY | os.O_CREAT, 0o644) == errno.EINVAL
