"""A full ``cache_dir``: ENOSPC reaches the program, no server handle stays open, nothing
torn is kept, and the mount works again once there is space.

The cache lives on a 20 MiB tmpfs mounted here (and unmounted after); the server's body
limit is 1 MiB, so uploads go through handles. The mount talks to the server through a
counting relay (``tests/support/counting.py``) that keeps every handle id the server gave
out, and asks the server about each (``GET /handles/{id}``), which works on the real
server too.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.mount.conftest import run
from tests.support.mount import wait_until
from tests.support.tmpfs import small_tmpfs

LIMIT = 1 << 20
TMPFS_SIZE = 20 << 20


@pytest.fixture
def small_cache(tmp_path: Path) -> Iterator[Path]:
    """A 20 MiB tmpfs of our own; unmounted at teardown (after the mounts using it)."""
    with small_tmpfs(tmp_path / "small-cache", TMPFS_SIZE) as where:
        yield where


def fill(directory: Path) -> Path:
    """Fill the filesystem of ``directory`` to the last byte; returns the filler file."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (1 << 20, 4096, 1):
            while True:
                try:
                    os.write(fd, b"\0" * size)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC
                    break
    finally:
        os.close(fd)
    return filler


def files_under(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file())


@pytest.mark.timeout(90)
def test_full_cache_leaks_no_handle_and_recovers(
    small_cache: Path, make_server, make_mount, tmp_path: Path
) -> None:
    server = make_server(localfs=False, max_body=LIMIT, counted=True)
    assert server.relay is not None
    server.http.mkdir("/memfs/full")
    mount = make_mount(server.url, options=[f"cache_dir={small_cache / 'cache'}"])
    remote = mount.path / "memfs" / "full"

    # 1. The spool is written, then the cache disk fills before the upload through a handle.
    data = os.urandom(8 << 20)
    with open(remote / "late", "wb") as f:
        f.write(data)
        f.flush()
        filler = fill(small_cache)
    assert server.http.read("/memfs/full/late") == data
    assert server.relay.proxy.opened_handles(), "the upload went through a handle"
    filler.unlink()

    # 2. A write larger than the cache disk: ENOSPC, then nothing of it is kept.
    source = tmp_path / "big"
    source.write_bytes(os.urandom(50 << 20))
    proc = run(["cp", str(source), str(remote / "big")], check=False)
    assert proc.returncode != 0
    assert b"No space left on device" in proc.stderr, proc.stderr
    assert server.relay.open_handles() == [], mount.describe()

    # 3. Nothing torn left behind (spools, empty .json.tmp files), and the mount recovers.
    # The kernel sends release (which removes the spool) after close() returned.
    wait_until(
        lambda: files_under(small_cache) == [],
        10,
        message="the cache dir to hold nothing (no spool, no .json.tmp)",
    )
    small = os.urandom(5 << 20)
    (remote / "after").write_bytes(small)
    assert server.http.read("/memfs/full/after") == small
    assert server.relay.open_handles() == []


@pytest.mark.timeout(60)
def test_server_disk_full_is_enospc_at_close_and_kept_not_retried(
    make_server, make_mount
) -> None:
    server = make_server(localfs=True)
    with small_tmpfs(server.local_dir, 4 << 20):
        mount = make_mount(server.url)
        data = os.urandom(6 << 20)
        with pytest.raises(OSError) as info, open(mount.path / "local" / "big", "wb") as f:
            f.write(data)
        assert info.value.errno == errno.ENOSPC, info.value

        def kept() -> list[dict]:
            stats = mount.stats()
            assert stats["parked_uploads"] == 0, "a full disk was parked for retries"
            return stats["kept_spools"]

        [spool] = wait_until(kept, 10, message="the spool to be kept")
        assert spool["remote_path"] == "/local/big"
        assert "NoSpace" in spool["reason"], spool
        assert Path(spool["path"]).read_bytes() == data
        mount.unmount()  # before the tmpfs goes
