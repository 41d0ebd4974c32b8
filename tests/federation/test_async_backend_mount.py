"""``async_upload`` per backend through the kernel: two servers in one mount, one whose
closes leave the upload to the background and one whose closes upload before returning.

The async backend is mounted through the fault proxy, whose ``pause`` holds its uploads
until the test lets them go: that ``close`` returned while its server has nothing yet is
seen, not guessed from timing. The other backend's server has each file as soon as the
program that wrote it exits.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.support.faultproxy import FaultProxy
from tests.support.mount import wait_until

pytestmark = pytest.mark.timeout(90)

AGFS_FUSE = str(Path(sys.executable).with_name("agfs-fuse"))


@pytest.fixture
def proxied(make_server) -> Iterator[tuple[object, FaultProxy]]:
    """A server and the fault proxy in front of it (the async backend's)."""
    server = make_server()
    with FaultProxy(server.url) as proxy:
        yield server, proxy


def write(path: Path, text: str) -> None:
    """A program writes ``path`` and exits: its close has returned once this does."""
    done = subprocess.run(
        ["sh", "-c", f"printf %s '{text}' > '{path}'"], capture_output=True, timeout=20
    )
    assert done.returncode == 0, done.stderr


def sync(mountpoint: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([AGFS_FUSE, "sync", str(mountpoint)], stderr=subprocess.PIPE)


def mounts_lines(mountpoint: Path) -> dict[str, list[str]]:
    lines = (mountpoint / ".mounts").read_text().splitlines()[1:]
    return {line.split("\t")[0]: line.split("\t") for line in lines}


def test_closes_on_the_async_backend_return_first_those_on_the_other_upload(
    make_server, make_federation, fed_tmp, proxied
) -> None:
    lazy, proxy = proxied
    eager = make_server()
    config = fed_tmp / "fed.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "backends": {
                    "/lazy": {"url": proxy.url, "root": "/memfs", "async_upload": True},
                    "/eager": {"url": eager.url, "root": "/memfs"},
                }
            }
        )
    )
    mount = make_federation(["-c", str(config)])
    assert mounts_lines(mount.path)["/lazy"][-1] == "async"
    assert mounts_lines(mount.path)["/eager"][-1] == "at-close"
    backends = mount.stats()["backends"]
    assert (backends["/lazy"]["async_upload"], backends["/eager"]["async_upload"]) == (True, False)

    held = proxy.pause("PUT", "/files")
    try:
        write(mount.path / "lazy" / "f", "lazy content")
        write(mount.path / "eager" / "f", "eager content")
        assert eager.http.read("/memfs/f") == b"eager content"  # before its close returned
        wait_until(lambda: held.hits == 1, message="the async upload reaches the proxy")
        assert not lazy.http.exists("/memfs/f")
        assert (mount.path / "lazy" / "f").read_bytes() == b"lazy content"
        assert "f" in os.listdir(mount.path / "lazy")
        assert mounts_lines(mount.path)["/lazy"][3] == "1"  # one file, counted once
        assert mounts_lines(mount.path)["/eager"][3] == "0"
        with pytest.raises(OSError) as busy:  # unmount waits for it, not at all here
            mount.control(".mounts", "unmount /lazy wait=0")
        assert busy.value.errno == 16  # EBUSY
        waiter = sync(mount.path)
        assert waiter.poll() is None  # sync waits for the held upload
    finally:
        held.release()
    assert waiter.wait(timeout=30) == 0, waiter.stderr
    assert lazy.http.read("/memfs/f") == b"lazy content"
    mount.control(".mounts", "unmount /lazy wait=5")
    assert "/lazy" not in mounts_lines(mount.path)


def test_a_backend_mounted_later_with_async_upload_leaves_its_uploads_to_the_background(
    make_server, make_federation, proxied
) -> None:
    late, proxy = proxied
    eager = make_server()
    mount = make_federation(["--map", f"/eager={eager.url}"])  # nothing async at first
    assert "async_uploads" not in mount.stats()
    mount.control(".mounts", f"mount /late {proxy.url} root=/memfs async_upload")
    assert mounts_lines(mount.path)["/late"][-1] == "async"

    held = proxy.pause("PUT", "/files")
    try:
        write(mount.path / "late" / "f", "written late")
        write(mount.path / "eager" / "memfs" / "f", "at close")
        assert eager.http.read("/memfs/f") == b"at close"
        wait_until(lambda: held.hits == 1, message="the async upload reaches the proxy")
        assert not late.http.exists("/memfs/f")
        assert (mount.path / "late" / "f").read_bytes() == b"written late"
        assert json.loads((mount.path / ".agfs-stats").read_bytes())["async_uploads"]
        waiter = sync(mount.path)
        assert waiter.poll() is None
    finally:
        held.release()
    assert waiter.wait(timeout=30) == 0, waiter.stderr
    assert late.http.read("/memfs/f") == b"written late"
