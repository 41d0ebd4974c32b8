"""The federated client's routing, with recording stand-ins for each backend's client (no
server, no kernel): which backend gets a request, under which server path, and what the
mount makes up itself."""

from __future__ import annotations

import dataclasses
import errno
import inspect
from typing import Any

import pytest
import trio

from agfs_fuse.backends import BackendTable
from agfs_fuse.client import AgfsClient
from agfs_fuse.errors import AgfsError, NotFound, ServerUnreachable
from agfs_fuse.federated_client import FederatedClient
from agfs_fuse.federation_config import from_maps
from agfs_fuse.models import FileInfo, Health, MountPoint
from agfs_fuse.options import MountOptions
from agfs_fuse.stats import RequestStats


def _file(name: str) -> FileInfo:
    return FileInfo(name=name, size=1, perm=0o644, is_dir=False, is_symlink=False, mtime_ns=1)


class RecordingClient:
    """Stands for one backend's ``AgfsClient``: records each call, answers plainly."""

    def __init__(self, url: str, calls: list[tuple[str, str, tuple[Any, ...]]]) -> None:
        self.base_url = url
        self.timeout = 30.0
        self.calls = calls
        self.down = False
        self.plugin_mounts = [MountPoint("/memfs", "memfs"), MountPoint("/queuefs", "queuefs")]

    def __getattr__(self, method: str) -> Any:
        async def call(*args: Any, **kw: Any) -> Any:
            self.calls.append((self.base_url, method, args))
            if self.down:
                raise ServerUnreachable("connection refused", path=args[0] if args else None)
            if method == "stat" and args[0].endswith("missing"):
                raise NotFound("no such file", path=args[0])
            return {
                "stat": _file("x"),
                "list": [_file("a")],
                "read": b"data",
                "open_handle": 7,
                "mounts": self.plugin_mounts,
                "health": Health("healthy", "", True, False),
            }.get(method)

        return call


def _federation(**roots: str) -> tuple[FederatedClient, list[tuple[str, str, tuple[Any, ...]]]]:
    calls: list[tuple[str, str, tuple[Any, ...]]] = []
    maps = [f"/{name}=http://{name}:8080" for name in ("dc1", "dc2")]
    specs = from_maps(maps, MountOptions()).backends
    if roots:
        specs = tuple(
            dataclasses.replace(s, options=dataclasses.replace(s.options, root=roots[s.name]))
            if s.name in roots
            else s
            for s in specs
        )

    def maker(spec: Any, stats: RequestStats) -> Any:
        return lambda url: RecordingClient(url, calls)

    table = BackendTable(RequestStats(), maker)
    for spec in specs:
        table.add(table.build(spec))
    return FederatedClient(table, "agfs-federation"), calls


def test_each_path_goes_to_its_backend_at_its_root() -> None:
    client, calls = _federation(dc2="/memfs")

    async def main() -> None:
        await client.write("/dc1/memfs/f", b"x")
        await client.read("/dc2/sub/g", 0, 4)
        await client.list("/dc2")
        await client.rename("/dc1/a", "/dc1/b")

    trio.run(main)
    assert calls == [
        ("http://dc1:8080/api/v1", "write", ("/memfs/f", b"x")),
        ("http://dc2:8080/api/v1", "read", ("/memfs/sub/g", 0, 4)),
        ("http://dc2:8080/api/v1", "list", ("/memfs",)),
        ("http://dc1:8080/api/v1", "rename", ("/a", "/b")),
    ]


def test_the_root_and_backend_directories_never_ask_a_server() -> None:
    client, calls = _federation()

    async def main() -> None:
        root = await client.stat("/")
        dc1 = await client.stat("/dc1")
        listed = await client.list("/")
        assert root.is_dir and dc1.is_dir and dc1.name == "dc1"
        assert [info.name for info in listed] == ["dc1", "dc2"]
        with pytest.raises(NotFound):
            await client.stat("/nope")

    trio.run(main)
    assert calls == []


def test_what_crosses_backends_or_touches_the_root_is_refused() -> None:
    client, calls = _federation()

    async def refused(call: Any) -> int:
        with pytest.raises(AgfsError) as error:
            await call
        return error.value.errno

    async def main() -> None:
        assert await refused(client.rename("/dc1/a", "/dc2/a")) == errno.EXDEV
        assert await refused(client.mkdir("/new")) == errno.EPERM
        assert await refused(client.mkdir("/dc1")) == errno.EEXIST
        assert await refused(client.rmdir("/dc2")) == errno.EPERM
        assert await refused(client.rename("/dc1", "/dc1x")) == errno.EPERM

    trio.run(main)
    assert calls == []


def test_handles_go_back_to_the_backend_that_opened_them() -> None:
    client, calls = _federation()

    async def main() -> None:
        first = await client.open_handle("/dc1/f", 0)
        second = await client.open_handle("/dc2/g", 0)
        assert first != second
        await client.handle_write(second, 0, b"x")
        await client.close_handle(first)
        with pytest.raises(NotFound):
            await client.close_handle(first)

    trio.run(main)
    assert [(url.split("//")[1][:3], method) for url, method, _ in calls] == [
        ("dc1", "open_handle"),
        ("dc2", "open_handle"),
        ("dc2", "handle_write"),
        ("dc1", "close_handle"),
    ]
    assert calls[2][2] == (7, 0, b"x")  # the server's own handle id


def test_plugin_mounts_are_shown_where_the_mount_shows_them() -> None:
    client, _ = _federation(dc2="/memfs")
    found = trio.run(client.mounts)
    assert sorted((m.path, m.plugin) for m in found) == [
        ("/dc1/memfs", "memfs"),
        ("/dc1/queuefs", "queuefs"),
        ("/dc2", "memfs"),  # dc2's root is /memfs: the whole directory is memfs
    ]


def test_a_down_backend_fails_alone_and_its_errors_name_mount_paths() -> None:
    client, _ = _federation(dc2="/memfs")
    dc2 = client.table.get("/dc2")
    dc2.client.down = True  # type: ignore[attr-defined]

    async def main() -> None:
        with pytest.raises(ServerUnreachable) as error:
            await client.stat("/dc2/f")
        assert error.value.path == "/dc2/f"
        assert not dc2.up and client.table.get("/dc1").up
        await client.stat("/dc1/f")
        dc2.client.down = False  # type: ignore[attr-defined]
        await client.stat("/dc2/f")
        assert dc2.up

    trio.run(main)


def test_every_request_method_of_the_client_is_routed() -> None:
    """A request method added to ``AgfsClient`` later must be routed here too: one that is
    not would reach the session plumbing the federated client does not have."""
    public = {
        name
        for name, member in inspect.getmembers(AgfsClient, inspect.iscoroutinefunction)
        if not name.startswith("_")
    }
    routed = {name for name in public if name in vars(FederatedClient)}
    assert public - routed == set()
