"""POSIX attribute details through the mount, on memfs (which stores none of them).

- a directory's mtime and ctime move when entries come and go through the mount (memfs
  keeps the server's time), and an open file's ``ftruncate`` moves its mtime at once;
- link counts: 2 + subdirectories for a directory just listed, 1 ("unknown") otherwise,
  0 for an open file that was unlinked;
- a symlink keeps one mtime (the server says "now" on every stat) and a local ``lchown``;
- special files and hard links keep their clear errors.

The time tests use a mount whose kernel caches no attributes (``attr_timeout=0``): every
stat reaches the mount, so what is tested is how long the mount keeps what it knows.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import sys

import pytest

from tests.mount.conftest import Server, Workspace, _workspace, run
from tests.support.mount import Mount

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def uncached(make_mount, agfs_server: Server, request: pytest.FixtureRequest) -> Workspace:
    """A memfs workspace through a mount with ``attr_timeout=0``."""
    mount = make_mount(agfs_server.url, options=["attr_timeout=0"])
    return _workspace("memfs", mount, agfs_server.http, request)


@pytest.fixture
def mem(mounted: Mount, agfs_server: Server, request: pytest.FixtureRequest) -> Workspace:
    """A memfs workspace through the session's mount (default timeouts)."""
    return _workspace("memfs", mounted, agfs_server.http, request)


def test_directory_times_move_when_entries_come_and_go(uncached: Workspace) -> None:
    d = uncached.p("d")
    os.mkdir(d)
    changes = {
        "create": lambda: (d / "f").write_bytes(b"x"),
        "mkdir": lambda: os.mkdir(d / "sub"),
        "symlink": lambda: os.symlink("f", d / "link"),
        "rename": lambda: os.rename(d / "f", d / "g"),
        "unlink of a link": lambda: os.unlink(d / "link"),
        "rmdir": lambda: os.rmdir(d / "sub"),
        "unlink": lambda: os.unlink(d / "g"),
    }
    last = os.stat(d)
    for what, change in changes.items():
        change()
        now = os.stat(d)
        assert now.st_mtime_ns > last.st_mtime_ns, what
        assert now.st_ctime_ns > last.st_ctime_ns, what
        os.listdir(d)  # a listing does not bring back the server's unchanged time
        assert os.stat(d).st_mtime_ns == now.st_mtime_ns, what
        last = now


def test_ftruncate_of_an_open_file_moves_its_mtime_at_once(uncached: Workspace) -> None:
    uncached.http.write(uncached.r("f"), b"0123456789")
    fd = os.open(uncached.p("f"), os.O_RDWR)
    try:
        before = os.fstat(fd)
        os.ftruncate(fd, 4)
        after = os.fstat(fd)
        assert after.st_size == 4
        assert after.st_mtime_ns > before.st_mtime_ns
        assert after.st_ctime_ns > before.st_ctime_ns
    finally:
        os.close(fd)
    assert uncached.http.read(uncached.r("f")) == b"0123"
    assert os.stat(uncached.p("f")).st_mtime_ns >= after.st_mtime_ns  # the upload's time


def test_directory_link_count_is_two_plus_subdirectories_once_listed(mem: Workspace) -> None:
    for name in ("a", "b", "c"):
        mem.http.mkdir(mem.r(name))
    mem.http.write(mem.r("file"), b"x")
    os.symlink("a", mem.p("link-to-dir"))
    assert os.stat(mem.p("a")).st_nlink == 1  # never listed: unknown, as find reads it
    os.listdir(mem.local)
    assert os.stat(mem.local).st_nlink == 2 + 3
    os.mkdir(mem.p("d"))
    assert os.stat(mem.local).st_nlink == 2 + 4
    os.rmdir(mem.p("d"))
    os.rmdir(mem.p("c"))
    assert os.stat(mem.local).st_nlink == 2 + 2
    os.listdir(mem.p("a"))
    assert os.stat(mem.p("a")).st_nlink == 2


def test_an_open_unlinked_file_has_no_links(mem: Workspace) -> None:
    with open(mem.p("f"), "wb") as f:
        f.write(b"data")
        f.flush()
        assert os.fstat(f.fileno()).st_nlink == 1
        os.unlink(mem.p("f"))
        assert os.fstat(f.fileno()).st_nlink == 0


def test_a_symlink_keeps_its_time_and_local_owner(uncached: Workspace) -> None:
    link = uncached.p("link")
    os.symlink("target", link)
    first = os.lstat(link)
    os.lchown(link, 1234, 4321)
    for _ in range(3):  # each lstat asks the server, which says mtime = now
        again = os.lstat(link)
        assert again.st_mtime_ns == first.st_mtime_ns
        assert (again.st_uid, again.st_gid) == (1234, 4321)
    assert os.readlink(link) == "target"


def test_special_files_and_hard_links_are_refused_clearly(mem: Workspace) -> None:
    mem.http.write(mem.r("f"), b"x")
    refusals = {
        "mkfifo": (lambda: os.mkfifo(mem.p("fifo")), errno.ENOSYS),
        "mknod": (lambda: os.mknod(mem.p("node"), stat.S_IFREG | 0o644), errno.ENOSYS),
        "link": (lambda: os.link(mem.p("f"), mem.p("hard")), errno.EPERM),
    }
    for what, (attempt, expected) in refusals.items():
        with pytest.raises(OSError) as caught:
            attempt()
        assert caught.value.errno == expected, what
    # A socket's path is short: bind it from inside the directory.
    bind = "import socket; socket.socket(socket.AF_UNIX).bind('sock')"
    done = run([sys.executable, "-c", bind], cwd=mem.local, check=False)
    assert done.returncode != 0 and b"Function not implemented" in done.stderr, done.stderr
    assert mem.http.names(mem.remote) == {"f"}


def test_xattrs_are_not_supported_and_locks_hold_only_on_this_mount(mem: Workspace) -> None:
    """AGFS has neither xattrs nor locks: xattrs are refused with ENOTSUP, and ``flock``
    is the kernel's own lock, which holds between programs on this mount."""
    mem.http.write(mem.r("f"), b"x")
    with pytest.raises(OSError) as caught:
        os.setxattr(mem.p("f"), "user.note", b"v")
    assert caught.value.errno == errno.ENOTSUP
    with pytest.raises(OSError) as caught:
        os.getxattr(mem.p("f"), "user.note")
    assert caught.value.errno == errno.ENOTSUP
    with open(mem.p("f"), "rb") as holder, open(mem.p("f"), "rb") as other:
        fcntl.flock(holder, fcntl.LOCK_EX)
        with pytest.raises(BlockingIOError):
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(holder, fcntl.LOCK_UN)
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
    assert mem.http.read(mem.r("f")) == b"x"
