"""A new file is created on the server by its first upload, not when it is opened.

Until its close uploads it, the mount answers for it from local state: stat, listing,
a second open, rename, unlink, chmod and truncate work on the mount and send nothing; the
server (another client) sees nothing at its path. Close still reports a failed upload.
"""

from __future__ import annotations

import errno
import os
import stat

import pytest

from tests.mount.conftest import Workspace, run
from tests.support.faultproxy import FaultProxy
from tests.support.mount import wait_until

NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL


def _delta(server, before: dict[str, int]) -> dict[str, int]:
    return server.relay.delta(before)


@pytest.fixture
def counted_mount(make_server, make_mount):
    """(server, mount, directory in the mount) with a request-counting relay in front."""
    server = make_server(localfs=False, counted=True)
    server.http.mkdir("/memfs/new")
    mount = make_mount(server.url)
    return server, mount, mount.path / "memfs" / "new"


# -- request counts -----------------------------------------------------------------------


def test_echo_into_a_new_file_is_one_put(make_server, make_mount) -> None:
    """Once a listing answers that the name is free, creating and writing a small file is
    exactly one request: the upload that creates it."""
    server = make_server(localfs=False, counted=True)
    server.http.mkdir("/memfs/one")
    mount = make_mount(server.url, options=["dir_cache_timeout=30"])
    target = mount.path / "memfs" / "one"
    os.listdir(target)
    before = server.request_counts()
    run(f"echo x > '{target / 'new'}'")
    assert _delta(server, before) == {"PUT /files": 1}
    assert server.http.read("/memfs/one/new") == b"x\n"


def test_two_hundred_small_files_cost_at_most_1_1_requests_each(counted_mount) -> None:
    """Half made as Python's ``open("wb")`` does, half with O_EXCL as ``tar x`` does."""
    server, _, target = counted_mount
    before = server.request_counts()
    for i in range(200):
        if i % 2:
            (target / f"f{i:03d}").write_bytes(b"small file %d" % i)
            continue
        fd = os.open(target / f"f{i:03d}", NEW, 0o644)
        os.write(fd, b"small file %d" % i)
        os.close(fd)
    delta = _delta(server, before)
    assert sum(delta.values()) <= 220, delta
    assert delta.get("PUT /files", 0) == 200, delta
    assert "POST /files" not in delta and "POST /chmod" not in delta, delta
    assert server.http.names("/memfs/new") == {f"f{i:03d}" for i in range(200)}


def test_a_new_file_with_another_mode_costs_one_chmod(counted_mount) -> None:
    server, _, target = counted_mount
    before = server.request_counts()
    fd = os.open(target / "private", NEW, 0o600)
    os.write(fd, b"secret")
    os.close(fd)
    delta = _delta(server, before)
    assert (delta.get("PUT /files"), delta.get("POST /chmod")) == (1, 1), delta
    assert "POST /files" not in delta, delta
    assert server.http.stat("/memfs/new/private")["mode"] & 0o777 == 0o600


def test_unlink_of_a_new_file_before_close_sends_nothing_of_it(counted_mount) -> None:
    server, _, target = counted_mount
    before = server.request_counts()
    with open(target / "scratch", "wb") as f:
        f.write(b"never uploaded")
        f.flush()
        os.unlink(target / "scratch")
        assert not (target / "scratch").exists()
    delta = _delta(server, before)
    assert not any(route.endswith(" /files") and route != "GET /files" for route in delta), delta
    assert server.http.names("/memfs/new") == set()


# -- what the mount shows before close ----------------------------------------------------


def test_stat_and_listing_show_a_new_file_before_its_close(ws: Workspace) -> None:
    fd = os.open(ws.p("made"), NEW, 0o640)
    try:
        os.write(fd, b"12345")
        info = os.stat(ws.p("made"))
        assert (info.st_size, stat.S_IMODE(info.st_mode)) == (5, 0o640)
        assert stat.S_ISREG(info.st_mode)
        assert os.listdir(ws.local) == ["made"]
        assert not ws.http.exists(ws.r("made")), "another client sees nothing before close"
        # (``ls`` in a child process closes an inherited copy of the descriptor: a flush)
        assert "made" in run(["ls", "-l", str(ws.local)]).stdout.decode()
    finally:
        os.close(fd)
    assert ws.http.read(ws.r("made")) == b"12345"
    assert ws.http.stat(ws.r("made"))["mode"] & 0o777 == 0o640


def test_chmod_and_truncate_of_a_new_file_before_close_are_uploaded(ws: Workspace) -> None:
    with open(ws.p("f"), "wb") as f:
        f.write(b"0123456789")
        f.flush()
        os.chmod(ws.p("f"), 0o700)
        os.truncate(ws.p("f"), 4)
        info = os.stat(ws.p("f"))
        assert (info.st_size, stat.S_IMODE(info.st_mode)) == (4, 0o700)
    assert ws.http.read(ws.r("f")) == b"0123"
    assert ws.http.stat(ws.r("f"))["mode"] & 0o777 == 0o700


def test_a_second_opener_of_a_new_file_shares_what_was_written(ws: Workspace) -> None:
    with open(ws.p("shared"), "wb") as first:
        first.write(b"abc")
        first.flush()
        with open(ws.p("shared"), "rb") as reader:
            assert reader.read() == b"abc"
        with open(ws.p("shared"), "r+b") as second:
            second.seek(3)
            second.write(b"def")
        assert ws.http.read(ws.r("shared")) == b"abcdef"  # the second close uploaded it
    assert ws.http.read(ws.r("shared")) == b"abcdef"


def test_o_excl_twice_on_the_same_mount_is_eexist(ws: Workspace) -> None:
    fd = os.open(ws.p("once"), NEW, 0o644)
    try:
        with pytest.raises(OSError) as info:
            os.open(ws.p("once"), NEW, 0o644)
        assert info.value.errno == errno.EEXIST
    finally:
        os.close(fd)
    # Nothing written: uploaded when its last descriptor goes, a moment after close.
    assert wait_until(lambda: ws.http.stat(ws.r("once")), message="the empty file uploaded")
    assert ws.http.read(ws.r("once")) == b""


def test_rename_of_a_new_file_before_close_uploads_it_under_the_new_name(ws: Workspace) -> None:
    ws.http.write(ws.r("target"), b"old target")
    with open(ws.p("draft"), "wb") as f:
        f.write(b"new content")
        f.flush()
        os.rename(ws.p("draft"), ws.p("target"))
        assert not ws.p("draft").exists()
        assert ws.p("target").read_bytes() == b"new content"
        assert os.listdir(ws.local) == ["target"]
    assert ws.http.names(ws.remote) == {"target"}
    assert ws.http.read(ws.r("target")) == b"new content"


def test_a_new_file_renamed_over_a_file_then_unlinked_removes_both(ws: Workspace) -> None:
    ws.http.write(ws.r("target"), b"replaced by the rename")
    with open(ws.p("draft"), "wb") as f:
        f.write(b"gone before its upload")
        f.flush()
        os.rename(ws.p("draft"), ws.p("target"))
        os.unlink(ws.p("target"))
    assert ws.http.names(ws.remote) == set()


def test_rmdir_of_a_directory_holding_a_new_file_is_enotempty(ws: Workspace) -> None:
    os.mkdir(ws.p("d"))
    with open(ws.p("d", "f"), "wb") as f:
        f.write(b"x")
        with pytest.raises(OSError) as info:
            os.rmdir(ws.p("d"))
        assert info.value.errno == errno.ENOTEMPTY
    assert ws.http.read(ws.r("d/f")) == b"x"


# -- failures -----------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_close_of_a_new_file_reports_a_failed_upload(make_server, make_mount) -> None:
    server = make_server(localfs=False)
    mount = make_mount(server.url, options=["timeout=3"])
    target = mount.path / "memfs" / "lost"
    fd = os.open(target, NEW, 0o644)
    os.write(fd, b"the server goes away before this is uploaded")
    server.stop()
    with pytest.raises(OSError) as info:
        os.close(fd)
    assert info.value.errno == errno.EIO
    assert mount.alive()


def test_a_new_file_whose_upload_failed_stays_listed_until_the_retry_lands(
    make_server, make_mount
) -> None:
    """close() reports EIO and the upload is parked: the file must not vanish. ``ls``,
    ``stat`` and ``cat`` show it from the spool while the server refuses it (a proxy
    answers its PUT with 503); once the server takes it, the background retry lands."""
    server = make_server(localfs=False)
    with FaultProxy(server.url, lifetime=120.0) as proxy:
        mount = make_mount(proxy.url, options=["timeout=3"])
        target = mount.path / "memfs" / "waiting.txt"
        data = b"written while the server refused it\n" * 50
        refusal = proxy.fail(503, "PUT", "/files", path="/memfs/waiting.txt")
        fd = os.open(target, NEW, 0o644)
        os.write(fd, data)
        with pytest.raises(OSError) as info:
            os.close(fd)
        assert info.value.errno == errno.EIO
        wait_until(lambda: mount.stats()["parked_uploads"] == 1, timeout=15)

        listing = run(["ls", "-l", str(mount.path / "memfs")]).stdout.decode()
        assert "waiting.txt" in listing and f" {len(data)} " in listing, listing
        assert target.stat().st_size == len(data)
        assert run(["cat", str(target)]).stdout == data
        assert not server.http.exists("/memfs/waiting.txt")

        proxy.remove(refusal)
        wait_until(
            lambda: server.http.exists("/memfs/waiting.txt"),
            timeout=45,
            message="the parked upload to land once the server takes it",
        )
        assert server.http.read("/memfs/waiting.txt") == data
        wait_until(lambda: mount.stats()["parked_uploads"] == 0, timeout=15)
        assert target.read_bytes() == data
        mount.unmount()


def test_a_new_file_renamed_to_another_agfs_mount_before_close_is_exdev(ws: Workspace) -> None:
    """As for a file on the server: ``mv`` then copies and deletes by itself."""
    other = "local" if ws.plugin == "memfs" else "memfs"
    elsewhere = ws.mount.path / other / f"{ws.local.name}-moved"
    with open(ws.p("f"), "wb") as f:
        f.write(b"stays here")
        f.flush()
        with pytest.raises(OSError) as info:
            os.rename(ws.p("f"), elsewhere)
        assert info.value.errno == errno.EXDEV
    assert ws.http.read(ws.r("f")) == b"stays here"
    assert not elsewhere.exists()


# -- listing right after close ------------------------------------------------------------

ROUNDS = 150
"""Files per test below: ``ls`` right after each ``close()``, whichever order the kernel's
release (which uploads an empty new file) and the listing take on an idle machine. The
order where the upload lands while the listing is in flight is forced in
tests/faults/test_listing_races.py and tests/integration/test_new_file_listing.py."""


def _touch(path: str) -> None:
    os.close(os.open(path, NEW, 0o644))


def test_ls_right_after_close_of_an_empty_new_file_shows_it(ws: Workspace) -> None:
    expected: set[str] = set()
    for i in range(ROUNDS):
        name = f"e{i:03d}"
        _touch(ws.p(name))
        expected.add(name)
        assert set(os.listdir(ws.local)) == expected, name
    assert wait_until(lambda: ws.http.names(ws.remote) == expected)


def test_ls_right_after_close_of_a_new_file_renamed_before_its_upload(ws: Workspace) -> None:
    expected: set[str] = set()
    for i in range(ROUNDS // 3):
        fd = os.open(ws.p(f"tmp{i:03d}"), NEW, 0o644)
        os.rename(ws.p(f"tmp{i:03d}"), ws.p(f"r{i:03d}"))
        os.close(fd)
        expected.add(f"r{i:03d}")
        assert set(os.listdir(ws.local)) == expected, i
    assert wait_until(lambda: ws.http.names(ws.remote) == expected)


def test_ls_right_after_close_of_a_new_file_unlinked_before_its_upload(ws: Workspace) -> None:
    _touch(ws.p("kept"))
    for i in range(ROUNDS // 3):
        fd = os.open(ws.p(f"u{i:03d}"), NEW, 0o644)
        os.unlink(ws.p(f"u{i:03d}"))
        os.close(fd)
        assert os.listdir(ws.local) == ["kept"], i
    assert ws.http.names(ws.remote) == {"kept"}
