"""Kept spools: capped by ``-o max_kept``, listed by ``agfs-fuse spools`` and ``.agfs-stats``,
re-uploaded or discarded from the command line, found again by the next mount."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import sys
from pathlib import Path

import pytest

from tests.mount.conftest import run
from tests.support.mount import wait_until

LIMIT = 1 << 20


def spools(mountpoint: Path, *args: str, check: bool = True):
    return run([sys.executable, "-m", "agfs_fuse", "spools", str(mountpoint), *args], check=check)


def listed(mountpoint: Path, *args: str) -> list[dict]:
    return json.loads(spools(mountpoint, "--json", *args).stdout)


def write_over_limit(path: Path, data: bytes) -> int:
    """Write ``data``; returns the errno close() reported (0 when it succeeded)."""
    try:
        with open(path, "wb") as f:
            f.write(data)
    except OSError as exc:
        return exc.errno or -1
    return 0


@pytest.mark.timeout(90)
def test_kept_spools_are_capped_listed_and_discarded(make_server, make_mount) -> None:
    server = make_server(localfs=True, max_body=LIMIT)
    server.http.mkdir("/local/kept")
    mount = make_mount(server.url, options=["max_kept=2M"])
    local = mount.path / "local" / "kept"
    first, second = os.urandom(LIMIT + LIMIT // 2), os.urandom(LIMIT + LIMIT // 2)
    assert write_over_limit(local / "a", first) == errno.EFBIG
    assert write_over_limit(local / "b", second) == errno.EFBIG  # now 3 MiB kept: over 2 MiB

    def both_kept() -> list[dict]:
        kept = mount.stats()["kept_spools"]
        return kept if len(kept) == 2 else []

    kept = wait_until(both_kept, 10, message="two kept spools in .agfs-stats")
    assert sorted(k["remote_path"] for k in kept) == ["/local/kept/a", "/local/kept/b"]
    assert all("FileTooLarge" in k["reason"] for k in kept), kept

    with pytest.raises(OSError) as refused:
        (local / "c").write_bytes(b"small")
    assert refused.value.errno == errno.ENOSPC
    assert not server.http.exists("/local/kept/c")  # refused before the server saw it
    assert "agfs-fuse spools " + str(mount.path) in mount.log(), mount.describe()
    assert all(Path(k["path"]).exists() for k in kept)  # never deleted to make room

    listing = listed(mount.path)
    assert sorted((k["remote_path"], k["size"]) for k in listing) == [
        ("/local/kept/a", len(first)),
        ("/local/kept/b", len(second)),
    ]
    a = next(k for k in listing if k["remote_path"] == "/local/kept/a")
    assert Path(a["path"]).read_bytes() == first
    table = spools(mount.path).stdout.decode()
    assert "/local/kept/b" in table and "FileTooLarge" in table

    # a re-upload that fails again keeps the spool and says so
    failed = spools(mount.path, "--upload", a["id"][:8], check=False)
    assert failed.returncode == 1
    assert b"File too large" in failed.stderr and b"still kept" in failed.stderr
    assert Path(a["path"]).read_bytes() == first

    spools(mount.path, "--discard", a["id"][:8])
    assert not Path(a["path"]).exists()
    assert [k["remote_path"] for k in listed(mount.path)] == ["/local/kept/b"]
    (local / "c").write_bytes(b"small")  # under the cap again: writes work
    assert server.http.read("/local/kept/c") == b"small"

    unknown = spools(mount.path, "--discard", "nonexistent", check=False)
    assert unknown.returncode == 1
    assert unknown.stderr.decode().startswith("agfs-fuse: error: 'nonexistent' matches no")


@pytest.mark.timeout(90)
def test_a_crash_spool_is_found_by_the_next_mount_and_reuploaded(
    make_server, make_mount, tmp_path: Path
) -> None:
    server = make_server(localfs=False)
    server.http.mkdir("/memfs/crash")
    cache = tmp_path / "shared-cache"
    first = make_mount(server.url, options=[f"cache_dir={cache}"])
    data = os.urandom(300_000)
    fd = os.open(first.path / "memfs" / "crash" / "x", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        rest = memoryview(data)
        while rest:  # into the spool; uploaded only at close, which never comes
            rest = rest[os.write(fd, rest) :]
        first.kill()
    finally:
        with contextlib.suppress(OSError):  # the mount is gone: closing it only frees the fd
            os.close(fd)
    [offline] = listed(first.path, "--cache-dir", str(cache))  # no mount: from the disk
    assert (offline["remote_path"], offline["size"]) == ("/memfs/crash/x", len(data))
    second = make_mount(server.url, options=[f"cache_dir={cache}"], mountpoint=first.path)
    [kept] = listed(second.path)
    assert kept["remote_path"] == "/memfs/crash/x"
    assert kept["size"] == len(data)
    assert "stopped before uploading" in kept["reason"]
    spools(second.path, "--upload", kept["id"])
    assert server.http.read("/memfs/crash/x") == data
    assert listed(second.path) == []
    assert not Path(kept["path"]).exists()
