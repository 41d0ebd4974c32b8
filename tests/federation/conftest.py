"""Fixtures for federated mounts: several reference servers behind one kernel mount.

- ``make_server``: a reference server (memfs at /memfs) on a fixed free port, so a test
  can kill it and start it again at the same URL; all stopped at teardown.
- ``make_federation``: ``agfs-fuse mount --map ... MOUNTPOINT`` (or ``-c FILE``) as a
  subprocess, always unmounted.
- ``fed``: three servers mounted as /dc1, /dc2, /dc3, with a short request ``timeout``.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.mount.agfs_http import AgfsHttp
from tests.support.mount import Mount, scratch_dir
from tests.support.server import ServerProcess, free_port, start_server

_counter = itertools.count()
TIMEOUT = 3  # seconds: the federated mounts' request deadline


@dataclass
class Server:
    """A reference server at a fixed ``port``: ``restart`` brings it back at the same URL."""

    workdir: Path
    port: int
    handle: ServerProcess
    http: AgfsHttp

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v1"

    def kill(self) -> None:
        self.http.close()
        self.handle.kill()

    def restart(self) -> None:
        self.handle = start_server(self.workdir, port=self.port)
        self.http = AgfsHttp(self.url)

    def stop(self) -> None:
        self.http.close()
        self.handle.stop()


class FederatedMount(Mount):
    """A ``Mount`` whose command line names backends (``--map``, ``-c``), not one URL."""

    def __init__(self, backend_args: Sequence[str], mountpoint: Path, **kw: object) -> None:
        super().__init__("", mountpoint, **kw)  # type: ignore[arg-type]
        self.backend_args = list(backend_args)

    @property
    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "agfs_fuse", "mount", *self.backend_args, str(self.path)]
        cmd += ["-f", "--log-file", str(self.log_file)]
        for opt in self.options:
            cmd += ["-o", opt]
        return cmd

    def control(self, name: str, text: str) -> None:
        """Write ``text`` to the control file ``name`` (relative to the mount) in one
        write; its errno comes back as ``OSError``."""
        fd = os.open(self.path / name, os.O_WRONLY | os.O_TRUNC)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)


@pytest.fixture
def fed_tmp() -> Iterator[Path]:
    with scratch_dir("agfs-fed-") as path:
        yield path


@pytest.fixture
def make_server(fed_tmp: Path) -> Iterator[Callable[[], Server]]:
    servers: list[Server] = []

    def make() -> Server:
        workdir = fed_tmp / f"server{next(_counter)}"
        port = free_port()
        handle = start_server(workdir, port=port)
        server = Server(workdir, port, handle, AgfsHttp(f"http://127.0.0.1:{port}/api/v1"))
        servers.append(server)
        return server

    try:
        yield make
    finally:
        for server in servers:
            server.stop()


@pytest.fixture
def make_federation(fed_tmp: Path) -> Iterator[Callable[..., FederatedMount]]:
    """``make_federation(["--map", "/dc1=URL", ...], options=[...])``: started, and
    always unmounted at teardown."""
    mounts: list[FederatedMount] = []

    def make(backend_args: Sequence[str], options: Sequence[str] = ()) -> FederatedMount:
        work = fed_tmp / f"mount{next(_counter)}"
        mount = FederatedMount(
            backend_args,
            work / "mnt",
            workdir=work,
            options=[f"cache_dir={work / 'cache'}", f"timeout={TIMEOUT}", *options],
        )
        mounts.append(mount)
        return mount.start()

    try:
        yield make
    finally:
        for mount in mounts:
            mount.unmount()


@dataclass
class Federation:
    mount: FederatedMount
    servers: dict[str, Server]

    def p(self, *parts: str) -> Path:
        return self.mount.path.joinpath(*parts)


@pytest.fixture
def fed(make_server, make_federation) -> Federation:
    """Three servers mounted as /dc1, /dc2 and /dc3 (each at its server's root)."""
    servers = {f"dc{i}": make_server() for i in (1, 2, 3)}
    maps = [arg for name, s in servers.items() for arg in ("--map", f"/{name}={s.url}")]
    return Federation(make_federation(maps), servers)


def run(cmd: Sequence[str], timeout: float = 30) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(list(cmd), capture_output=True, timeout=timeout, check=False)
