"""How many HTTP requests common programs cost, counted by a relay in front of the server.

Design requirements: a directory listing fills the attribute cache (``ls -l`` of N files is
not N+1 requests); a written file goes up as one PUT; an unchanged file keeps the kernel page
cache (a second ``cat`` reads nothing from the server); a destructive file (queue
``dequeue``) is fetched once per open.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from agfs_fuse.mount import READ_AHEAD_KB
from tests.mount.conftest import run


@pytest.fixture
def counted(make_server, make_mount):
    """(server, mount) with request counters; /memfs/d holds 50 small files."""
    server = make_server(localfs=False, counted=True)
    server.http.mkdir("/memfs/d")
    for i in range(50):
        server.http.write(f"/memfs/d/f{i:02d}", b"x" * i)
    mount = make_mount(server.url)
    return server, mount


def _delta(server, before: dict[str, int]) -> dict[str, int]:
    return server.relay.delta(before)


def test_ls_l_of_50_files_is_not_51_requests(counted) -> None:
    server, mount = counted
    before = server.request_counts()
    out = run(["ls", "-l", str(mount.path / "memfs" / "d")]).stdout.decode()
    assert len(out.splitlines()) == 51
    delta = _delta(server, before)
    assert delta.get("GET /directories", 0) <= 2, delta
    assert delta.get("GET /stat", 0) <= 3, delta
    assert sum(delta.values()) <= 6, delta


def test_cp_uploads_with_one_put(counted, tmp_path) -> None:
    server, mount = counted
    src = tmp_path / "src"
    src.write_bytes(os.urandom(5 << 20))
    before = server.request_counts()
    run(["cp", str(src), str(mount.path / "memfs" / "copied")])
    assert _delta(server, before).get("PUT /files", 0) == 1, _delta(server, before)
    assert server.http.read("/memfs/copied") == src.read_bytes()
    before = server.request_counts()
    run(f"echo one line > '{mount.path / 'memfs' / 'echoed'}'")
    assert _delta(server, before).get("PUT /files", 0) == 1, _delta(server, before)


def test_second_cat_of_unchanged_file_reads_nothing(counted) -> None:
    server, mount = counted
    data = os.urandom(1 << 20)
    server.http.write("/memfs/cached", data)
    path = mount.path / "memfs" / "cached"
    assert run(["cat", str(path)]).stdout == data
    before = server.request_counts()
    assert run(["cat", str(path)]).stdout == data
    assert _delta(server, before).get("GET /files", 0) == 0, _delta(server, before)


def test_dequeue_is_one_get_per_open(counted) -> None:
    server, mount = counted
    server.http.mkdir("/queuefs/cq")
    for i in range(3):
        server.http.write("/queuefs/cq/enqueue", f"m{i}".encode())
    before = server.request_counts()
    out = run(["cat", str(mount.path / "queuefs" / "cq" / "dequeue")]).stdout
    assert b'"m0"' in out
    assert _delta(server, before).get("GET /files", 0) == 1, _delta(server, before)
    assert server.http.read("/queuefs/cq/size") == b"2"


def test_stat_of_every_file_in_a_directory_lists_it_once(counted) -> None:
    """``stat`` of each name (a build tool, ``find -newer``): after a few lookups the mount
    lists the directory once instead of asking for every name."""
    server, mount = counted
    before = server.request_counts()
    names = [f"f{i:02d}" for i in range(50)]
    run(["stat", "-c", "%s", *[str(mount.path / "memfs" / "d" / n) for n in names]])
    delta = _delta(server, before)
    assert delta.get("GET /stat", 0) <= 6, delta
    assert delta.get("GET /directories", 0) <= 2, delta


def test_sequential_read_of_a_big_file_uses_few_large_requests(counted) -> None:
    server, mount = counted
    data = os.urandom(24 << 20)
    server.http.write("/memfs/big", data)
    before = server.request_counts()
    assert (mount.path / "memfs" / "big").read_bytes() == data
    reads = _delta(server, before).get("GET /files", 0)
    # 128 KiB kernel requests would be 192 GETs; readahead fetches 1 MiB chunks
    assert reads <= 24 + 4, reads


def test_dir_cache_timeout_answers_missing_names_from_the_listing(make_server, make_mount):
    """With ``-o dir_cache_timeout``, new files cost a create and a PUT, no lookup each."""
    server = make_server(localfs=False, counted=True)
    server.http.mkdir("/memfs/new")
    mount = make_mount(server.url, options=["dir_cache_timeout=30"])
    target = mount.path / "memfs" / "new"
    os.listdir(target)
    before = server.request_counts()
    for i in range(40):
        (target / f"n{i}").write_bytes(b"content %d" % i)
    delta = _delta(server, before)
    assert sum(delta.values()) <= 2 * 40 + 3, delta
    assert server.http.names("/memfs/new") == {f"n{i}" for i in range(40)}


def test_a_second_ls_within_attr_timeout_costs_nothing(make_server, make_mount) -> None:
    """``ls`` right after ``ls`` reads the listing the first one fetched (attr_timeout is
    long here so a slow machine cannot let it expire between the two)."""
    server = make_server(localfs=False, counted=True)
    server.http.mkdir("/memfs/twice")
    for i in range(20):
        server.http.write(f"/memfs/twice/f{i:02d}", b"x" * i)
    mount = make_mount(server.url, options=["attr_timeout=30", "entry_timeout=30"])
    target = str(mount.path / "memfs" / "twice")
    first = run(["ls", "-l", target]).stdout
    before = server.request_counts()
    assert run(["ls", "-l", target]).stdout == first
    assert _delta(server, before) == {}
    (mount.path / "memfs" / "twice" / "new").write_bytes(b"made here")
    assert "new" in run(["ls", target]).stdout.decode().split()


def test_the_mount_raises_the_kernel_readahead(counted) -> None:
    """Root may raise the bdi's readahead: the kernel then asks for more at a time."""
    _, mount = counted
    target = os.path.realpath(mount.path)
    with open("/proc/self/mountinfo") as f:
        device = next(line.split()[2] for line in f if line.split()[4] == target)
    knob = Path(f"/sys/class/bdi/{device}/read_ahead_kb")
    want = READ_AHEAD_KB if os.geteuid() == 0 else 128
    deadline = time.monotonic() + 10  # raised just after the mount answers its first request
    while int(knob.read_text()) != want and time.monotonic() < deadline:
        time.sleep(0.01)
    assert int(knob.read_text()) == want


def test_chmod_and_utime_after_a_listing_cost_only_the_chmod(counted) -> None:
    """What tar does to every file it makes: set mode and times, each a setattr."""
    server, mount = counted
    target = mount.path / "memfs" / "d" / "f07"
    os.listdir(target.parent)  # the listing caches every entry's attributes
    before = server.request_counts()
    os.chmod(target, 0o600)
    os.utime(target, ns=(1_000_000_000_000_000_000, 1_000_000_000_000_000_000))
    assert _delta(server, before) == {"POST /chmod": 1}
    st = os.stat(target)
    assert (st.st_mode & 0o777, st.st_mtime_ns) == (0o600, 1_000_000_000_000_000_000)


@pytest.fixture
def long_attrs(make_server, make_mount):
    """(server, mount) with request counters and a 30 s attribute timeout (long, so a slow
    machine cannot let the listing expire between two steps of a test)."""
    server = make_server(localfs=False, counted=True)
    mount = make_mount(server.url, options=["attr_timeout=30", "entry_timeout=30"])
    return server, mount


def test_cat_right_after_ls_sends_no_stat(long_attrs) -> None:
    """The listing's attributes are young enough to open by: one GET, no stat."""
    server, mount = long_attrs
    server.http.mkdir("/memfs/listed")
    for i in range(5):
        server.http.write(f"/memfs/listed/f{i}", b"content %d" % i)
    target = mount.path / "memfs" / "listed"
    assert sorted(os.listdir(target)) == [f"f{i}" for i in range(5)]
    before = server.request_counts()
    assert run(["cat", str(target / "f3")]).stdout == b"content 3"
    assert _delta(server, before) == {"GET /files": 1}


def test_grep_r_costs_a_listing_per_directory_and_a_get_per_file(long_attrs) -> None:
    """A recursive read opens every file by the attributes its directory's listing
    brought: no stat per file."""
    server, mount = long_attrs
    directories, per_directory = 4, 10
    server.http.mkdir("/memfs/tree")
    for d in range(directories):
        server.http.mkdir(f"/memfs/tree/d{d}")
        for f in range(per_directory):
            server.http.write(f"/memfs/tree/d{d}/f{f}.c", b"int x = %d;\n" % f)
    files = directories * per_directory
    before = server.request_counts()
    out = run(["grep", "-r", "-l", "int x", str(mount.path / "memfs" / "tree")]).stdout
    assert len(out.splitlines()) == files
    delta = _delta(server, before)
    assert delta.get("GET /directories", 0) <= directories + 1, delta
    assert delta.get("GET /files", 0) == files, delta
    assert sum(delta.values()) <= directories + 1 + files + 3, delta


def test_a_change_by_another_client_is_seen_at_open_once_attr_timeout_passed(
    make_server, make_mount
) -> None:
    """Opening by cached attributes stays close-to-open within ``attr_timeout``: content
    another client changed (same size, so only the mtime tells) is read anew once that
    time passed, and the kernel's kept pages are dropped."""
    server = make_server(localfs=False, counted=True)
    server.http.write("/memfs/shared", b"old content")
    mount = make_mount(server.url, options=["attr_timeout=0.5", "entry_timeout=0.5"])
    path = mount.path / "memfs" / "shared"
    assert path.read_bytes() == b"old content"
    changed_at = time.monotonic()
    time.sleep(0.01)  # a later mtime than the first version's, even on a coarse clock
    server.http.write("/memfs/shared", b"new content")
    deadline = time.monotonic() + 10
    while path.read_bytes() != b"new content":
        assert time.monotonic() < deadline, "the change was never seen"
        time.sleep(0.05)
    assert time.monotonic() - changed_at < 0.5 + 2  # the timeout, and slack for a slow box


def test_chmod_to_the_mode_a_listing_showed_costs_no_request(counted) -> None:
    """A chmod to the bits the file has (``chmod -R``, ``cp -a``, an untar over a tree)
    sends nothing; to other bits, one request."""
    server, mount = counted
    target = mount.path / "memfs" / "d" / "f11"
    os.listdir(target.parent)
    before = server.request_counts()
    os.chmod(target, 0o644)
    assert _delta(server, before) == {}
    os.chmod(target, 0o640)
    assert _delta(server, before) == {"POST /chmod": 1}
    assert os.stat(target).st_mode & 0o777 == 0o640
    assert server.http.stat("/memfs/d/f11")["mode"] & 0o777 == 0o640


def test_a_new_file_set_to_the_mode_it_was_made_with_costs_no_chmod(counted) -> None:
    """What tar does: make the file with its final mode, write it, set that mode again
    before and after closing it. Only making it with bits other than the server's default
    costs a chmod, once."""
    server, mount = counted
    path = mount.path / "memfs" / "made"
    before = server.request_counts()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, b"extracted")
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    os.chmod(path, 0o600)
    assert _delta(server, before).get("POST /chmod", 0) <= 1, _delta(server, before)
    assert server.http.stat("/memfs/made")["mode"] & 0o777 == 0o600
    assert server.http.read("/memfs/made") == b"extracted"
