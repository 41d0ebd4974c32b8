"""A server that mounts another AGFS server with proxyfs, itself mounted with agfs-fuse: the
remote ``reload`` control file inside the proxyfs mount shows as the write-only file it is,
writing it reconnects the proxy, and files read and write through both hops."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.mount.agfs_http import AgfsHttp
from tests.mount.conftest import run, seen
from tests.support.mount import Mount
from tests.support.server import ServerProcess, start_server


@dataclass
class Proxied:
    """A front server with the backend's tree at /remote, and an HTTP checker on the
    backend."""

    front: ServerProcess
    backend: ServerProcess
    http: AgfsHttp


@pytest.fixture
def proxied(tmp_path: Path) -> Iterator[Proxied]:
    backend = start_server(
        tmp_path / "backend", config={"plugins": {"memfs": {"enabled": True, "path": "/memfs"}}}
    )
    proxy: dict[str, Any] = {
        "name": "remote",
        "enabled": True,
        "path": "/remote",
        "config": {"base_url": backend.url},
    }
    front = start_server(
        tmp_path / "front",
        config={"plugins": {"memfs": {"enabled": True, "path": "/memfs"}, "proxyfs": [proxy]}},
    )
    http = AgfsHttp(backend.url)
    try:
        yield Proxied(front, backend, http)
    finally:
        http.close()
        front.stop()
        backend.stop()


def test_a_proxied_reload_is_write_only_and_writing_it_reconnects(
    proxied: Proxied, make_mount: Callable[..., Mount]
) -> None:
    mount = make_mount(proxied.front.url)
    reload = mount.path / "remote" / "reload"
    assert "reload" in os.listdir(mount.path / "remote")
    info = os.stat(reload)
    assert stat.S_ISREG(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o200
    assert run(["ls", "-l", str(reload)]).stdout.decode().startswith("--w-------")
    run(f"echo > '{reload}'")
    run(f"echo again > '{reload}'")
    # root may still open it: the plugin answers its help line, as on the wire
    assert reload.read_bytes() == b"Write to this file to reload the proxy connection\n"
    front_http = AgfsHttp(proxied.front.url)
    try:
        backend_url = front_http.stat("/remote/reload")["meta"]["Content"]["remote-url"]
    finally:
        front_http.close()
    assert backend_url.endswith("/api/v1")


def test_writing_a_proxied_reload_fails_while_the_remote_is_down(
    proxied: Proxied, make_mount: Callable[..., Mount]
) -> None:
    mount = make_mount(proxied.front.url)
    reload = mount.path / "remote" / "reload"
    os.stat(reload)
    proxied.backend.stop()
    with pytest.raises(OSError) as raised, open(reload, "wb") as f:
        f.write(b"\n")  # the PUT goes at close (sh's echo ignores close's error)
    assert raised.value.errno == errno.EIO


def test_files_read_and_write_through_a_proxyfs_mount(
    proxied: Proxied, make_mount: Callable[..., Mount]
) -> None:
    mount = make_mount(proxied.front.url)
    memfs = mount.path / "remote" / "memfs"
    (memfs / "d").mkdir()
    data = os.urandom(300_000)
    (memfs / "d" / "f.bin").write_bytes(data)
    assert proxied.http.read("/memfs/d/f.bin") == data
    proxied.http.write("/memfs/d/from-backend", b"written on the backend")
    assert seen(memfs / "d" / "from-backend").read_bytes() == b"written on the backend"
    os.rename(memfs / "d" / "f.bin", memfs / "d" / "g.bin")
    assert sorted(os.listdir(memfs / "d")) == ["from-backend", "g.bin"]
    (memfs / "d" / "g.bin").write_bytes(b"short")  # an in-place rewrite, no truncate route
    assert proxied.http.read("/memfs/d/g.bin") == b"short"
