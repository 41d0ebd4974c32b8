"""Fixtures for the access tests: TLS and auth, permissions, logs and stats of real mounts.

- ``access_tmp``: a short, world-traversable (0755) directory for the session, so a mount
  made by another user (uid 65534) can reach its mountpoint; everything mounted under it
  is unmounted at the end.
- ``certs``: a throwaway CA with a server certificate for 127.0.0.1 and a client
  certificate (``tests/support/tls.py``).
- ``server``: the session's reference AGFS server (memfs at /memfs), plain HTTP, with a
  direct HTTP checker (``server.http``).
- ``make_proxy``: TLS proxies in front of ``server`` (mTLS, token, header checks),
  always stopped.
- ``make_mount``: ``agfs-fuse mount -f`` processes, always unmounted and stopped.
- ``remote_dir``: a fresh directory on the server's memfs for one test.
- ``mount_fails``: runs ``agfs-fuse mount`` (background mode, as a user would) expecting a
  mount-time error, and checks that nothing was mounted and no process is left.

A test that cannot mount fails; nothing here skips.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.mount.agfs_http import AgfsHttp
from tests.support.mount import (
    Mount,
    force_unmount,
    is_mounted,
    mount_command,
    pids_with_arg,
    run_mount_cli,
    scratch_dir,
    wait_until,
)
from tests.support.server import ServerProcess, start_server
from tests.support.tls import Certs, TlsProxy, make_certs

_counter = itertools.count()


@pytest.fixture(scope="session")
def access_tmp() -> Iterator[Path]:
    # other users must reach it, so not under a private $TMPDIR
    with scratch_dir("agfs-acc-", mode=0o755, parent="/tmp") as path:
        yield path


@pytest.fixture(scope="session")
def certs(access_tmp: Path) -> Certs:
    return make_certs(access_tmp / "pki")


@dataclass
class Server:
    url: str
    http: AgfsHttp
    handle: ServerProcess


@pytest.fixture(scope="session")
def server(access_tmp: Path) -> Iterator[Server]:
    handle = start_server(access_tmp / "server")
    server = Server(handle.url, AgfsHttp(handle.url), handle)
    try:
        yield server
    finally:
        server.http.close()
        handle.stop()


@pytest.fixture
def workdir(access_tmp: Path, request: pytest.FixtureRequest) -> Path:
    """A fresh, world-traversable directory for one test."""
    name = re.sub(r"[^A-Za-z0-9_-]", "_", request.node.name)[:40]
    path = access_tmp / f"{next(_counter)}-{name}"
    path.mkdir()
    path.chmod(0o755)
    return path


@pytest.fixture
def remote_dir(server: Server, workdir: Path) -> str:
    """A fresh directory on memfs, e.g. ``/memfs/7-test_x``."""
    path = f"/memfs/{workdir.name}"
    server.http.mkdir(path)
    return path


@pytest.fixture
def make_proxy(server: Server, certs: Certs) -> Iterator[Callable[..., TlsProxy]]:
    """``make_proxy(client_cert=False, token=None, require_header=None, upstream=None)``:
    a started TLS proxy in front of ``server``; all stopped at teardown."""
    proxies: list[TlsProxy] = []

    def make(**kwargs: object) -> TlsProxy:
        upstream = kwargs.pop("upstream", None) or server.url
        proxy = TlsProxy(str(upstream), certs, **kwargs)  # type: ignore[arg-type]
        proxies.append(proxy)
        return proxy.start()

    try:
        yield make
    finally:
        for proxy in reversed(proxies):
            proxy.stop()


class AccessMount(Mount):
    """A :class:`Mount` that may log to stderr instead of ``--log-file`` (for journald)."""

    def __init__(self, *args: object, log_to_file: bool = True, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.log_to_file = log_to_file

    @property
    def command(self) -> list[str]:
        return mount_command(
            self.url,
            self.path,
            options=self.options,
            log_file=self.log_file if self.log_to_file else None,
            extra_args=self.extra_args,
        )


@pytest.fixture
def make_mount(workdir: Path) -> Iterator[Callable[..., AccessMount]]:
    """``make_mount(url, options=[...], extra_args=[...], env=None, log_to_file=True,
    start=True)``; every mount is unmounted (lazily if needed) and its process stopped."""
    mounts: list[AccessMount] = []

    def make(
        url: str,
        *,
        options: list[str] | tuple[str, ...] = (),
        extra_args: list[str] | tuple[str, ...] = (),
        env: dict[str, str] | None = None,
        log_to_file: bool = True,
        start: bool = True,
    ) -> AccessMount:
        n = len(mounts)
        work = workdir / f"mount{n}"
        work.mkdir(parents=True, exist_ok=True)
        opts = list(options)
        if not any(o.startswith("cache_dir=") for o in opts):
            opts.append(f"cache_dir={work / 'cache'}")
        mount = AccessMount(
            url,
            work / "mnt",
            workdir=work,
            options=opts,
            extra_args=extra_args,
            env=env,
            name=f"mount{n}",
            log_to_file=log_to_file,
        )
        mounts.append(mount)
        if start:
            mount.start()
        return mount

    try:
        yield make
    finally:
        for mount in reversed(mounts):
            mount.unmount()
            # captured: pytest shows it only when the test failed
            print(f"=== {mount.path} (exit {mount.returncode})\n{mount.describe()}")


@dataclass
class Failure:
    """A mount that was refused: exit status and its one error line."""

    returncode: int
    line: str
    stdout: str


@pytest.fixture
def mount_fails(workdir: Path) -> Callable[..., Failure]:
    """``mount_fails(url, options=[...], env=None)``: run ``agfs-fuse mount URL MP -o ...``
    (background mode) and check it exits 1 with exactly one ``agfs-fuse: error:`` line,
    mounts nothing and leaves no process; returns that line."""

    def run(url: str, *, options: list[str] | tuple[str, ...] = (), env=None) -> Failure:
        mp = workdir / f"refused{next(_counter)}"
        mp.mkdir()
        args = ["mount", url, str(mp), "-o", f"cache_dir={workdir / 'cache'}"]
        for opt in options:
            args += ["-o", opt]
        try:
            done = run_mount_cli(args, env=env, timeout=60)
        finally:
            mounted = is_mounted(mp)
            force_unmount(mp)
        assert not mounted, f"{mp} was mounted although the mount failed"
        wait_until(
            lambda: not pids_with_arg(str(mp)),
            timeout=10,
            message=f"the mount process for {mp} to exit",
        )
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 1, f"exit {done.returncode}, stderr: {done.stderr!r}"
        assert len(lines) == 1, f"expected one error line, got: {done.stderr!r}"
        assert lines[0].startswith("agfs-fuse: error: "), lines[0]
        assert os.listdir(mp) == []
        return Failure(done.returncode, lines[0], done.stdout)

    return run
