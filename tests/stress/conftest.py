"""Fixtures of the stress and model tests: a reference server and a real kernel mount.

- ``stack``: one server (memfs at /memfs, localfs at /local) and one ``agfs-fuse`` mount of
  it through a relay that counts requests and open handles (``tests/support/counting.py``),
  per test module. Each
  test module gets its own pair, so a module's load never weighs on the next one.
- ``make_stack``: the same, but a fresh pair for one test (the soak measures a mount that
  nothing else has touched).
- ``plugin_dir(stack, plugin, name)``: a fresh, empty directory on one plugin, seen through the
  mount and on the server.

Every mount is unmounted and every server stopped at teardown, whatever happened; a mount
whose process died during a test fails that test with the mount's log.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.mount.agfs_http import AgfsHttp
from tests.support.counting import CountingRelay
from tests.support.mount import Mount, force_unmount, mounts_under, scratch_dir, wait_until
from tests.support.server import ServerProcess, plugins_config, start_server

PLUGIN_ROOTS = {"memfs": "/memfs", "localfs": "/local"}
_counter = itertools.count()


@dataclass
class Stack:
    """A server, a mount of it through a counting relay, and a plain HTTP checker of the
    server (not counted)."""

    server: ServerProcess
    relay: CountingRelay
    mount: Mount
    http: AgfsHttp
    base: Path  # scratch space on the local disk (not in the mount)

    @property
    def url(self) -> str:
        return self.server.url

    def open_handles(self) -> list[int]:
        """Handles the mount opened that the server still holds open."""
        return self.relay.open_handles()

    def request_counts(self) -> dict[str, int]:
        """The mount's requests so far, by ``"METHOD /route"``."""
        return self.relay.counts()

    def close(self) -> None:
        try:
            self.mount.unmount()
        finally:
            self.relay.close()
            self.http.close()
            self.server.stop()


@dataclass
class Dir:
    """One test directory: ``local`` through the mount, ``remote`` on the server."""

    plugin: str
    local: Path
    remote: str

    def p(self, *parts: str) -> Path:
        return self.local.joinpath(*parts)

    def r(self, *parts: str) -> str:
        return "/".join([self.remote, *parts])


def _debug_option() -> list[str]:
    """``AGFS_STRESS_DEBUG=1``: mount with ``-o debug`` (every FUSE op and request logged)."""
    return ["debug"] if os.environ.get("AGFS_STRESS_DEBUG") else []


def new_stack(base: Path, options: list[str] | None = None) -> Stack:
    """Start a server (memfs + localfs) and mount it through a counting relay; the caller
    closes it."""
    base.mkdir(parents=True, exist_ok=True)
    local_data = base / "local-data"
    local_data.mkdir(exist_ok=True)
    server = start_server(base / "server", config=plugins_config(local_data))
    http = AgfsHttp(server.url)
    relay = CountingRelay(server.url)
    mount = Mount(
        relay.url,
        base / "mnt",
        workdir=base / "mountwork",
        options=[f"cache_dir={base / 'cache'}", *(options or []), *_debug_option()],
    )
    try:
        mount.start()
    except BaseException:
        relay.close()
        http.close()
        server.stop()
        raise
    return Stack(server=server, relay=relay, mount=mount, http=http, base=base)


def plugin_dir(stack: Stack, plugin: str, name: str) -> Dir:
    """A fresh empty directory named after ``name`` on ``plugin`` (made over HTTP, as
    another client would: the mount shows it within ``attr_timeout``, once a listing of
    the plugin's root it may have taken just before is older than that)."""
    remote = f"{PLUGIN_ROOTS[plugin]}/{name}-{next(_counter)}"
    stack.http.mkdir(remote)
    local = stack.mount.path / remote.lstrip("/")
    wait_until(local.is_dir, message=f"the mount never showed {remote}")
    return Dir(plugin, local, remote)


def _check_alive(stack: Stack) -> None:
    if not stack.mount.alive():
        pytest.fail("the mount died during this test\n" + stack.mount.describe(), pytrace=False)


@pytest.fixture(scope="module")
def _module_tmp() -> Iterator[Path]:
    with scratch_dir("agfs-st-") as path:
        yield path


@pytest.fixture(scope="module")
def _module_stack(_module_tmp: Path) -> Iterator[Stack]:
    stack = new_stack(_module_tmp / "stack")
    try:
        yield stack
    finally:
        stack.close()


@pytest.fixture
def stack(_module_stack: Stack) -> Iterator[Stack]:
    """The module's server and mount (the test fails if the mount dies during it)."""
    _check_alive(_module_stack)
    yield _module_stack
    _check_alive(_module_stack)


@pytest.fixture
def make_stack(tmp_path: Path) -> Iterator[Callable[..., Stack]]:
    """Factory of fresh (server, mount) pairs for one test; all closed at teardown."""
    stacks: list[Stack] = []

    def make(options: list[str] | None = None) -> Stack:
        base = Path(tempfile.mkdtemp(prefix="agfs-sk-"))
        try:
            stack = new_stack(base, options)
        except BaseException:
            shutil.rmtree(base, ignore_errors=True)
            raise
        stacks.append(stack)
        return stack

    try:
        yield make
    finally:
        for stack in reversed(stacks):
            try:
                stack.close()
            finally:
                for mountpoint in mounts_under(stack.base):
                    force_unmount(mountpoint)
                shutil.rmtree(stack.base, ignore_errors=True)
