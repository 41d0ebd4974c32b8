"""Entries the server holds that the mount cannot show as they are, through the mount.

- memfs names the kernel cannot take (a NUL, over 255 bytes), made over HTTP: listed
  under an escaped name that leads back to the real one, and removable with ``rm -rf``;
- on-disk links inside a localfs directory: shown as what the server's stat says (file or
  directory), a dangling one left out and logged;
- localfs names that differ only in bytes that are not UTF-8: one entry, whose size is
  what a read serves.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from agfs_fuse.names import escape
from tests.mount.conftest import Server, Workspace, run
from tests.support.mount import wait_until

pytestmark = pytest.mark.timeout(60)

NUL_NAME = "nul\0inside"
LONG_NAME = "L" * 299 + "!"
ORDINARY = ["new\nline", "x" * 255, "backup~deadbeef", "ünï +%#?"]

memfs_only = pytest.mark.parametrize("ws", ["memfs"], indirect=True)
localfs_only = pytest.mark.parametrize("ws", ["localfs"], indirect=True)


def _errno_of(fn, *args) -> int:
    with pytest.raises(OSError) as info:
        fn(*args)
    return info.value.errno


def _disk_dir(ws: Workspace, server: Server) -> Path:
    """The on-disk twin of a localfs workspace."""
    assert server.local_dir is not None
    return server.local_dir / ws.remote.removeprefix("/local/")


# -- names the kernel cannot take ----------------------------------------------------------


@memfs_only
def test_rm_rf_removes_a_nul_name_and_a_300_byte_name(ws: Workspace) -> None:
    odd = ws.r("odd")
    ws.http.mkdir(odd)
    ws.http.write(f"{odd}/{NUL_NAME}", b"nul")
    ws.http.write(f"{odd}/{LONG_NAME}", b"long")
    ws.http.write(f"{odd}/plain", b"plain")
    ws.http.mkdir(f"{odd}/{NUL_NAME}-dir")
    ws.http.write(f"{odd}/{NUL_NAME}-dir/{LONG_NAME}", b"nested")
    run(["rm", "-rf", str(ws.p("odd"))])
    assert not ws.http.exists(odd)


@memfs_only
def test_escaped_names_are_listed_and_lead_back(ws: Workspace) -> None:
    content = {NUL_NAME: b"nul", LONG_NAME: b"long", **{n: n.encode() for n in ORDINARY}}
    for name, data in content.items():
        ws.http.write(ws.r(name), data)
    shown = {name: escape(name) if name in (NUL_NAME, LONG_NAME) else name for name in content}
    assert set(os.listdir(ws.local)) == set(shown.values())  # ordinary names exactly as they are
    for name, data in content.items():
        assert run(["cat", str(ws.p(shown[name]))]).stdout == data, name
        assert os.stat(ws.p(shown[name])).st_size == len(data)
    ws.p(shown[NUL_NAME]).write_bytes(b"written through the escaped name")
    assert ws.http.read(ws.r(NUL_NAME)) == b"written through the escaped name"
    os.rename(ws.p(shown[LONG_NAME]), ws.p("short"))
    assert ws.http.read(ws.r("short")) == b"long"
    assert not ws.http.exists(ws.r(LONG_NAME))
    os.unlink(ws.p(shown[NUL_NAME]))
    assert not ws.http.exists(ws.r(NUL_NAME))
    assert ws.http.exists(ws.r("backup~deadbeef"))


@memfs_only
def test_an_escaped_name_leads_back_before_any_listing(ws: Workspace) -> None:
    """A path typed by hand: the mount lists the directory to learn what it stands for."""
    fresh = ws.r("fresh")
    ws.http.mkdir(fresh)
    ws.http.write(f"{fresh}/{NUL_NAME}", b"typed")
    typed = ws.p("fresh", escape(NUL_NAME))
    assert run(["cat", str(typed)]).stdout == b"typed"
    run(["rm", str(typed)])
    assert not ws.http.exists(f"{fresh}/{NUL_NAME}")
    assert _errno_of(os.stat, typed) == errno.ENOENT


# -- links on a localfs disk -----------------------------------------------------------------


@localfs_only
def test_disk_links_show_as_what_they_point_to(ws: Workspace, agfs_server: Server) -> None:
    disk = _disk_dir(ws, agfs_server)
    (disk / "target.txt").write_bytes(b"hello\n")
    (disk / "sub").mkdir()
    (disk / "sub" / "inner").write_bytes(b"in")
    os.symlink("target.txt", disk / "link.txt")
    os.symlink("sub", disk / "subl")
    os.symlink("nowhere", disk / "dangling")

    assert set(os.listdir(ws.local)) == {"target.txt", "sub", "link.txt", "subl"}
    link = os.lstat(ws.p("link.txt"))
    assert stat.S_ISREG(link.st_mode) and link.st_size == 6
    assert run(["cat", str(ws.p("link.txt"))]).stdout == b"hello\n"
    assert stat.S_ISDIR(os.lstat(ws.p("subl")).st_mode)
    assert run(["cat", str(ws.p("subl", "inner"))]).stdout == b"in"
    listing = run(["ls", "-l", str(ws.local)]).stdout.decode()
    assert not [line for line in listing.splitlines() if line.startswith("l")], listing
    assert _errno_of(os.lstat, ws.p("dangling")) == errno.ENOENT
    dangling = f"'{ws.remote}/dangling': left out of the listing: a dangling link"
    wait_until(lambda: dangling in ws.mount.log(), message="the dangling link is logged")


# -- names that differ only in bytes that are not UTF-8 ----------------------------------------


@localfs_only
def test_names_differing_in_invalid_utf8_are_one_entry(ws: Workspace, agfs_server: Server) -> None:
    """The server lists all three as ``caf\\ufffd.txt``; a path of that name reaches only
    the one truly named so (6 bytes): that is the entry shown, with its size."""
    disk = os.fsencode(_disk_dir(ws, agfs_server))
    for raw, data in ((b"caf\xe9.txt", b"x" * 55), (b"caf\xff.txt", b"y" * 40)):
        with open(os.path.join(disk, raw), "wb") as out:
            out.write(data)
    with open(os.path.join(disk, "caf\ufffd.txt".encode()), "wb") as out:
        out.write(b"123456")

    assert os.listdir(ws.local) == ["caf\ufffd.txt"]
    shown = ws.p("caf\ufffd.txt")
    assert os.stat(shown).st_size == 6
    assert run(["cat", str(shown)]).stdout == b"123456"
    collision = f"'{ws.remote}/caf\ufffd.txt': listed more than once"
    wait_until(lambda: collision in ws.mount.log(), message="the collision is logged")
