"""Lookups that cost no request: names a young listing lacks, what this mount just made.

Counted by a relay in front of the server, with real programs (``tar``) and plain system
calls. Issue 15's targets: ``tar xf`` at most 1.5 requests per entry; a missing name after
a listing, and lookups in a directory this mount just made, none. Freshness is kept: a
name another client makes shows within ``attr_timeout`` (and the kernel's own
``negative_timeout``).
"""

from __future__ import annotations

import os
import tarfile
import time
from pathlib import Path

import pytest

from tests.mount.conftest import run

pytestmark = pytest.mark.timeout(120)


def _delta(server, before: dict[str, int]) -> dict[str, int]:
    return server.relay.delta(before)


@pytest.fixture
def long_attrs(make_server, make_mount):
    """(server, mount) with request counters and a 30 s attribute timeout (long, so a slow
    machine cannot let a listing expire between two steps of a test)."""
    server = make_server(localfs=False, counted=True)
    mount = make_mount(server.url, options=["attr_timeout=30", "entry_timeout=30"])
    return server, mount


def test_a_missing_name_after_a_listing_costs_no_request(long_attrs) -> None:
    server, mount = long_attrs
    server.http.mkdir("/memfs/listed")
    server.http.write("/memfs/listed/here", b"x")
    target = mount.path / "memfs" / "listed"
    assert os.listdir(target) == ["here"]
    before = server.request_counts()
    assert not (target / "absent").exists()
    assert not (target / ".gitignore").exists()
    assert (target / "here").exists()
    assert _delta(server, before) == {}


def test_lookups_in_a_directory_made_here_cost_nothing(long_attrs) -> None:
    """mkdir is the one request: the new directory's attributes, lookups in it (tar's,
    O_EXCL's) and a listing of it are known; a file made in it then costs its upload."""
    server, mount = long_attrs
    new = mount.path / "memfs" / "made"
    os.listdir(new.parent)  # so mkdir's own lookup of the name is answered
    before = server.request_counts()
    os.mkdir(new, 0o750)
    assert os.stat(new).st_mode & 0o777 == 0o750
    assert not (new / "a").exists() and not (new / "b").exists()
    assert os.listdir(new) == []
    assert _delta(server, before) == {"POST /directories": 1}
    fd = os.open(new / "a", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    os.write(fd, b"content")
    os.close(fd)
    assert _delta(server, before) == {"POST /directories": 1, "PUT /files": 1}
    assert server.http.read("/memfs/made/a") == b"content"
    assert os.listdir(new) == ["a"]


def _source_tree(root: Path) -> tuple[Path, int, int]:
    """A small source tree as a tarball (directories, files, a link, modes tar sets):
    (tarball, files, directories)."""
    tree = root / "tree"
    files = dirs = 0
    for d in ("src", "src/core", "src/util", "docs", "tests"):
        (tree / d).mkdir(parents=True)
        dirs += 1
        for i in range(6):
            (tree / d / f"f{i}.py").write_text(f"# {d} {i}\n")
            files += 1
    os.chmod(tree / "src" / "f0.py", 0o755)  # an executable: a chmod of its own
    os.symlink("f1.py", tree / "src" / "link.py")
    tarball = root / "tree.tar"
    with tarfile.open(tarball, "w") as tar:
        for entry in sorted(tree.iterdir()):
            tar.add(entry, arcname=entry.name)
    return tarball, files + 1, dirs


@pytest.mark.parametrize("owner", [[], ["--no-same-owner"]], ids=["as-root", "no-same-owner"])
def test_tar_x_costs_at_most_1_5_requests_per_entry(
    make_server, make_mount, tmp_path, owner
) -> None:
    """Default options: a new directory's lookups need nothing, its attributes come from
    the mkdir, and a file is its upload (plus a chmod where its mode is not 0644)."""
    server = make_server(localfs=False, counted=True)
    server.http.mkdir("/memfs/untar")
    mount = make_mount(server.url)
    tarball, files, dirs = _source_tree(tmp_path)
    before = server.request_counts()
    run(["tar", "xf", str(tarball), *owner, "-C", str(mount.path / "memfs" / "untar")])
    delta = _delta(server, before)
    entries = files + dirs
    assert sum(delta.values()) <= 1.5 * entries, delta
    assert delta.get("PUT /files") == files - 1 and delta.get("POST /directories") == dirs, delta
    assert delta.get("GET /stat", 0) <= 2, delta  # a new directory's names are known
    assert server.http.read("/memfs/untar/src/core/f3.py") == b"# src/core 3\n"
    assert os.readlink(mount.path / "memfs" / "untar" / "src" / "link.py") == "f1.py"
    assert server.http.stat("/memfs/untar/src/f0.py")["mode"] & 0o777 == 0o755


def test_a_file_another_client_makes_shows_within_attr_timeout(make_server, make_mount) -> None:
    """A listing answers for missing names no longer than ``attr_timeout``; the kernel's
    own negative entry adds ``negative_timeout``."""
    server = make_server(localfs=False, counted=True)
    server.http.mkdir("/memfs/shared")
    timeouts = ["attr_timeout=0.5", "entry_timeout=0.5", "negative_timeout=0.5"]
    mount = make_mount(server.url, options=timeouts)
    target = mount.path / "memfs" / "shared"
    assert os.listdir(target) == []
    assert not (target / "theirs").exists()
    made_at = time.monotonic()
    server.http.write("/memfs/shared/theirs", b"made elsewhere")
    deadline = made_at + 10
    while not (target / "theirs").exists():
        assert time.monotonic() < deadline, "another client's file was never seen"
        time.sleep(0.05)
    assert time.monotonic() - made_at < 0.5 + 0.5 + 2  # the timeouts, and slack


def test_appending_to_a_name_a_young_listing_lacks_keeps_another_clients_file(
    long_attrs,
) -> None:
    """``>>`` and ``touch`` of a file another client made after the listing: the lookup
    says it is missing, but their create asks the server and opens the file there
    instead of replacing it with an empty one."""
    server, mount = long_attrs
    server.http.mkdir("/memfs/shared")
    target = mount.path / "memfs" / "shared"
    assert os.listdir(target) == []
    server.http.write("/memfs/shared/log", b"theirs\n")
    server.http.write("/memfs/shared/touched", b"keep me")
    run(f"echo ours >> '{target / 'log'}'")
    run(["touch", str(target / "touched")])
    assert server.http.read("/memfs/shared/log") == b"theirs\nours\n"
    assert server.http.read("/memfs/shared/touched") == b"keep me"
