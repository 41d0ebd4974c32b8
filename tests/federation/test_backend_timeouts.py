"""Cache timeouts per backend, without a server or a kernel: what the config file and
``.mounts`` accept, which timeouts hold under which path, and what the filesystem core and
the kernel's attributes make of them, driven by an injected clock (no sleeps)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import trio

from agfs_fuse.backends import BackendTable
from agfs_fuse.errors import NotFound
from agfs_fuse.federated_client import FederatedClient
from agfs_fuse.federation_config import (
    Federation,
    FederationError,
    load_config,
    parse_mount_line,
)
from agfs_fuse.filesystem import AgfsFilesystem
from agfs_fuse.fuse_attrs import AttrPolicy, negative_entry
from agfs_fuse.fuse_entries import Entries
from agfs_fuse.inodes import InodeTable
from agfs_fuse.models import FileInfo
from agfs_fuse.options import MountOptions, parse_options
from agfs_fuse.path_settings import CacheTimeouts, ConstantSettings
from agfs_fuse.spool import SpoolDir
from agfs_fuse.stats import RequestStats

pytestmark = pytest.mark.timeout(20)

CONFIG = """
options:
  attr_timeout: 5
  negative_timeout: 2
backends:
  /fast:
    url: http://fast:8080
    attr_timeout: 0
    entry_timeout: 0
    negative_timeout: 0
  /archive:
    url: http://archive:8080
    attr_timeout: 60
    entry_timeout: 30
    dir_cache_timeout: 60
  /plain: http://plain:8080
"""


def _federation(tmp_path: Path, text: str = CONFIG, cli: list[str] | None = None) -> Federation:
    config = tmp_path / "fed.yaml"
    config.write_text(text)
    return load_config(config, cli or [])


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class ChangingServer:
    """One backend's server, which other clients change behind the mount's back (``files``
    is edited by the test); counts the stats and listings the mount sends it."""

    def __init__(self, url: str) -> None:
        self.base_url = url
        self.timeout = 30.0
        self.files: dict[str, int] = {}  # server path -> size
        self.requests: list[tuple[str, str]] = []

    def _info(self, path: str) -> FileInfo:
        if path not in self.files:
            raise NotFound("no such file or directory", path=path)
        name = path.rsplit("/", 1)[-1]
        return FileInfo(name, self.files[path], 0o644, False, False, 1)

    async def stat(self, path: str) -> FileInfo:
        self.requests.append(("stat", path))
        return self._info(path)

    async def list(self, path: str) -> list[FileInfo]:
        self.requests.append(("list", path))
        prefix = path.rstrip("/") + "/"
        return [self._info(p) for p in self.files if p.startswith(prefix)]

    def __getattr__(self, method: str) -> Any:
        async def nothing(*args: Any, **kw: Any) -> None:
            return None

        return nothing


def _table(federation: Federation) -> tuple[BackendTable, dict[str, ChangingServer]]:
    servers: dict[str, ChangingServer] = {}

    def maker(spec: Any, stats: RequestStats) -> Any:
        servers[spec.prefix] = ChangingServer(spec.url)
        return lambda url: servers[spec.prefix]

    table = BackendTable(RequestStats(), maker, defaults=CacheTimeouts.of(federation.options))
    for spec in federation.backends:
        table.add(table.build(spec))
    return table, servers


def test_each_backend_takes_its_own_timeouts_over_the_mount_wide_ones(tmp_path: Path) -> None:
    federation = _federation(tmp_path)
    fast, archive, plain = federation.backends
    assert fast.timeouts == CacheTimeouts(attr=0, entry=0, negative=0, dir_cache=0)
    assert archive.timeouts == CacheTimeouts(attr=60, entry=30, negative=2, dir_cache=60)
    assert plain.timeouts == CacheTimeouts(attr=5, entry=1, negative=2, dir_cache=0)


def test_the_command_line_sets_the_default_and_a_backend_still_overrides_it(
    tmp_path: Path,
) -> None:
    federation = _federation(tmp_path, cli=["attr_timeout=9"])
    fast, archive, plain = federation.backends
    assert (fast.timeouts.attr, archive.timeouts.attr, plain.timeouts.attr) == (0, 60, 9)


def test_a_mounts_line_takes_cache_timeouts() -> None:
    spec = parse_mount_line(
        ["/dc3", "http://h:1", "attr_timeout=0", "negative_timeout=0.5"],
        parse_options(["attr_timeout=3,entry_timeout=4"]),
        [],
    )
    assert spec.timeouts == CacheTimeouts(attr=0, entry=4, negative=0.5, dir_cache=0)


@pytest.mark.parametrize(
    ("setting", "says"),
    [
        ("attr_timeout: -1", "bad attr_timeout"),
        ("entry_timeout: nan", "bad entry_timeout"),
        ("negative_timeout: [1, 2]", "negative_timeout must be a single value"),
        ("attr_timout: 1", "unknown setting 'attr_timout'"),
    ],
)
def test_a_bad_timeout_is_one_line_naming_the_backend(
    tmp_path: Path, setting: str, says: str
) -> None:
    text = f"backends:\n  /dc1:\n    url: http://h:1\n    {setting}\n"
    with pytest.raises(FederationError, match=says) as error:
        _federation(tmp_path, text)
    assert "/dc1" in str(error.value) and "\n" not in str(error.value)


def test_the_table_answers_by_path_and_the_mount_wide_values_outside_backends(
    tmp_path: Path,
) -> None:
    table, _ = _table(_federation(tmp_path))
    assert table.timeouts("/fast/a/b").attr == 0
    assert table.timeouts("/fast").attr == 0  # the backend's own directory is its own
    assert table.timeouts("/archive/x").dir_cache == 60
    mount_wide = CacheTimeouts(attr=5, entry=1, negative=2, dir_cache=0)
    assert table.timeouts("/") == mount_wide
    assert table.timeouts("/.mounts") == mount_wide
    assert table.timeouts("/gone/x") == mount_wide


def _run_core(tmp_path: Path, federation: Federation, body: Any) -> dict[str, ChangingServer]:
    table, servers = _table(federation)
    clock = FakeClock()

    async def main() -> None:
        client = FederatedClient(table, federation.source)
        fs = AgfsFilesystem(
            client,
            SpoolDir(tmp_path / "spool"),
            client_factory=lambda url: client,
            settings=table,
            clock=clock,
        )
        try:
            await body(fs, servers, clock)
        finally:
            await fs.aclose()

    trio.run(main)
    return servers


def test_a_zero_timeout_backend_sees_another_clients_change_at_once_while_a_long_one_serves_its_cache(  # noqa: E501
    tmp_path: Path,
) -> None:
    async def body(fs: AgfsFilesystem, servers: dict[str, ChangingServer], clock: Any) -> None:
        fast, archive = servers["/fast"], servers["/archive"]
        fast.files["/f"] = archive.files["/f"] = 1
        assert (await fs.stat("/fast/f")).size == 1
        assert (await fs.stat("/archive/f")).size == 1
        fast.files["/f"] = archive.files["/f"] = 2  # another client writes both
        clock.now += 1
        assert (await fs.stat("/fast/f")).size == 2
        assert (await fs.stat("/archive/f")).size == 1  # cached for 60 s
        clock.now += 58.5
        assert (await fs.stat("/archive/f")).size == 1
        clock.now += 1
        assert (await fs.stat("/archive/f")).size == 2

    servers = _run_core(tmp_path, _federation(tmp_path), body)
    assert servers["/fast"].requests == [("stat", "/f")] * 2
    assert servers["/archive"].requests == [("stat", "/f")] * 2


def test_a_backends_dir_cache_timeout_answers_missing_names_from_its_listing_alone(
    tmp_path: Path,
) -> None:
    async def body(fs: AgfsFilesystem, servers: dict[str, ChangingServer], clock: Any) -> None:
        for prefix in ("/archive", "/plain"):
            servers[prefix].files["/d/a"] = 1
            await fs.list(f"{prefix}/d")
            servers[prefix].files["/d/new"] = 1  # another client makes a file
            clock.now += 6  # past /plain's attr_timeout (5), within /archive's 60
            if prefix == "/archive":
                with pytest.raises(NotFound):  # its listing says there is none, for 60 s
                    await fs.stat(f"{prefix}/d/new")
            else:
                assert (await fs.stat(f"{prefix}/d/new")).size == 1

    servers = _run_core(tmp_path, _federation(tmp_path), body)
    assert servers["/archive"].requests == [("list", "/d")]
    assert servers["/plain"].requests == [("list", "/d"), ("stat", "/d/new")]


def test_a_backend_mounted_at_run_time_brings_its_timeouts(tmp_path: Path) -> None:
    federation = _federation(tmp_path)
    table, servers = _table(federation)
    spec = parse_mount_line(["/late", "http://late:1", "attr_timeout=42"], federation.options, [])
    table.add(table.build(spec))
    assert table.timeouts("/late/x").attr == 42
    table.remove("/late")
    assert table.timeouts("/late/x").attr == 5


class StubCore:
    def is_volatile(self, path: str, info: FileInfo) -> bool:
        return False

    def hidden(self, parent: str, name: str, now: float) -> bool:
        return False


def test_the_kernel_gets_each_backends_attr_entry_and_negative_timeouts(tmp_path: Path) -> None:
    table, _ = _table(_federation(tmp_path))
    policy = AttrPolicy(uid=1, gid=1, settings=table)
    entries = Entries(InodeTable("/"), policy, StubCore(), lambda inode: None)
    info = FileInfo("f", 1, 0o644, False, False, 1)
    shown = {
        prefix: entries.found(f"{prefix}/f", info) for prefix in ("/fast", "/archive", "/plain")
    }
    assert [(a.attr_timeout, a.entry_timeout) for a in shown.values()] == [
        (0, 0),
        (60, 30),
        (5, 1),
    ]
    assert negative_entry(policy.timeouts("/fast/nope")).entry_timeout == 0
    assert negative_entry(policy.timeouts("/plain/nope")).entry_timeout == 2
    assert policy.timeouts(None) == table.timeouts("/")  # an unlinked open file


def test_a_single_server_mount_is_one_constant_everywhere() -> None:
    options = parse_options(["attr_timeout=7,entry_timeout=3,negative_timeout=0"])
    settings = ConstantSettings(CacheTimeouts.of(options))
    assert settings.timeouts("/a/b") == settings.timeouts("/") == CacheTimeouts(7, 3, 0, 0)
    defaults = CacheTimeouts.of(MountOptions())
    assert dataclasses.astuple(defaults) == (1.0, 1.0, 1.0, 0.0)
