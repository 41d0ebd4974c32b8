"""The domain objects: FileInfo, Health, MountPoint."""

from __future__ import annotations

import dataclasses

import pytest

from agfs_fuse.models import UNTRUSTED_TYPES, FileInfo, Health, MountPoint


def fi(**kw: object) -> FileInfo:
    base: dict[str, object] = dict(
        name="a", size=1, perm=0o644, is_dir=False, is_symlink=False, mtime_ns=5
    )
    base.update(kw)
    return FileInfo(**base)  # type: ignore[arg-type]


def test_defaults() -> None:
    info = fi()
    assert (info.meta_name, info.meta_type, info.meta_content) == ("", "", None)


def test_frozen() -> None:
    info = fi()
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.size = 2  # type: ignore[misc]


def test_slots() -> None:
    assert not hasattr(fi(), "__dict__")


def test_equality_ignores_meta_content() -> None:
    assert fi(meta_content={"a": "1"}) == fi(meta_content={"b": "2"})
    assert fi(meta_content={"a": "1"}) == fi()


def test_equality_covers_the_other_fields() -> None:
    for change in (
        {"name": "b"},
        {"size": 2},
        {"perm": 0o600},
        {"is_dir": True},
        {"is_symlink": True},
        {"mtime_ns": 6},
        {"meta_name": "memfs"},
        {"meta_type": "file"},
    ):
        assert fi(**change) != fi(), change


def test_hashable_even_with_a_content_map() -> None:
    a = fi(meta_content={"k": "v"})
    b = fi()
    assert hash(a) == hash(b)
    assert len({a, b}) == 1


@pytest.mark.parametrize(
    "kind",
    [
        "control",
        "status",
        "stream",
        "info",
        "traffic",
        "keepalive",
        "ctl",
        "session-ctl",
        "query",
        "device",
    ],
)
def test_untrusted_types(kind: str) -> None:
    assert kind in UNTRUSTED_TYPES
    assert fi(meta_type=kind).untrusted


@pytest.mark.parametrize(
    "kind",
    [
        "",
        "file",
        "dir",
        "local",
        "root",
        "mount-point",
        "symlink",
        "doc",
        "queue",
        "directory",
        "Control",
    ],
)
def test_trusted_types(kind: str) -> None:
    assert not fi(meta_type=kind).untrusted


def test_untrusted_types_is_immutable() -> None:
    assert isinstance(UNTRUSTED_TYPES, frozenset)


@pytest.mark.parametrize(
    ("perm", "is_dir", "expected"),
    [
        (0o200, False, True),  # proxyfs reload
        (0o222, False, True),  # queuefs enqueue / clear
        (0o000, False, True),
        (0o4200, False, True),
        (0o444, False, False),  # queuefs dequeue
        (0o400, False, False),
        (0o040, False, False),
        (0o004, False, False),
        (0o644, False, False),
        (0o222, True, False),  # a directory is never "write-only"
        (0o000, True, False),
    ],
)
def test_write_only(perm: int, is_dir: bool, expected: bool) -> None:
    assert fi(perm=perm, is_dir=is_dir).write_only is expected


def test_health() -> None:
    h = Health(status="healthy", version="1.0", ready=True, degraded=False)
    assert h == Health("healthy", "1.0", True, False)
    with pytest.raises(dataclasses.FrozenInstanceError):
        h.ready = False  # type: ignore[misc]


def test_mount_point() -> None:
    m = MountPoint(path="/memfs", plugin="memfs")
    assert m.status == ""
    assert m == MountPoint("/memfs", "memfs", "")
    assert m != MountPoint("/memfs", "memfs", "mounted")
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.path = "/x"  # type: ignore[misc]
