"""Turning AGFS JSON into domain objects: FileInfo, times, listings, health, mounts."""

from __future__ import annotations

import calendar
import errno
import json
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
import trio

from agfs_fuse.client import AgfsClient
from agfs_fuse.errors import ProtocolError
from agfs_fuse.models import FileInfo, Health, MountPoint
from agfs_fuse.wire import parse_file_info, parse_mtime_ns

BASE = "http://agfs.test:8080/api/v1"
GO_DIR = 1 << 31
GO_SYMLINK = 1 << 27
GO_SETUID = 1 << 23
GO_SETGID = 1 << 22
GO_STICKY = 1 << 20


def utc_ns(*fields: int, nanos: int = 0) -> int:
    return calendar.timegm((*fields, 0, 0, 0)) * 1_000_000_000 + nanos


def call(body: Any, fn: Callable[[AgfsClient], Awaitable[Any]], *, raw: bytes | None = None):
    def handler(request: httpx.Request) -> httpx.Response:
        if raw is not None:
            return httpx.Response(200, content=raw, headers={"Content-Type": "application/json"})
        return httpx.Response(200, json=body)

    async def main() -> Any:
        client = AgfsClient(BASE, transport=httpx.MockTransport(handler))
        try:
            return await fn(client)
        finally:
            await client.aclose()

    return trio.run(main)


def info(**overrides: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "name": "a.txt",
        "size": 5,
        "mode": 420,
        "modTime": "2026-05-11T13:56:07.123456789-07:00",
        "isDir": False,
        "meta": {"Name": "memfs", "Type": "file", "Content": None},
    }
    obj.update(overrides)
    return obj


# -- FileInfo ----------------------------------------------------------------------------


def test_parse_protocol_example_exactly() -> None:
    fi = parse_file_info(info())
    assert fi == FileInfo(
        name="a.txt",
        size=5,
        perm=0o644,
        is_dir=False,
        is_symlink=False,
        mtime_ns=utc_ns(2026, 5, 11, 20, 56, 7, nanos=123_456_789),
        meta_name="memfs",
        meta_type="file",
    )
    assert fi.meta_content is None


def test_lowercase_meta_keys() -> None:
    fi = parse_file_info(
        info(meta={"name": "localfs", "type": "local", "content": {"k": "v"}}),
    )
    assert fi.meta_name == "localfs"
    assert fi.meta_type == "local"
    assert fi.meta_content == {"k": "v"}


def test_capitalised_meta_content_map() -> None:
    content = {"description": "Write to this file to reload proxy connection"}
    fi = parse_file_info(
        info(
            name="reload",
            size=0,
            mode=0o200,
            meta={"Name": "proxyfs", "Type": "control", "Content": content},
        )
    )
    assert fi.meta_content == content
    assert fi.meta_type == "control"
    assert fi.perm == 0o200
    assert fi.write_only and fi.untrusted


def test_capitalised_keys_win_over_lowercase() -> None:
    fi = parse_file_info(info(meta={"Type": "symlink", "type": "file", "Name": "A", "name": "b"}))
    assert fi.meta_type == "symlink"
    assert fi.meta_name == "A"


@pytest.mark.parametrize("meta", [None, {}, {"Name": None, "Type": None, "Content": None}])
def test_missing_or_null_meta(meta: Any) -> None:
    obj = info(meta=meta)
    fi = parse_file_info(obj)
    assert (fi.meta_name, fi.meta_type, fi.meta_content) == ("", "", None)
    assert not fi.is_symlink


def test_meta_not_an_object_is_protocol_error() -> None:
    with pytest.raises(ProtocolError):
        parse_file_info(info(meta="file"))


def test_meta_content_that_is_not_a_map_is_dropped() -> None:
    assert parse_file_info(info(meta={"Type": "doc", "Content": "text"})).meta_content is None


@pytest.mark.parametrize(
    ("mode", "is_dir", "perm"),
    [
        (2147484141, True, 0o755),  # localfs 0755 dir: 1<<31 | 0o755
        (GO_DIR | 0o700, True, 0o700),
        (493, True, 0o755),  # memfs dir
        (420, False, 0o644),
        (0o600, False, 0o600),
        (0o222, False, 0o222),
        (GO_SETUID | 0o755, False, 0o4755),
        (GO_SETGID | 0o750, False, 0o2750),
        (GO_DIR | GO_STICKY | 0o777, True, 0o1777),
        ((1 << 30) | (1 << 29) | (1 << 19) | 0o640, False, 0o640),  # append/excl/irregular bits
    ],
)
def test_go_mode_bits_are_masked(mode: int, is_dir: bool, perm: int) -> None:
    fi = parse_file_info(info(mode=mode, isDir=is_dir))
    assert fi.perm == perm
    assert fi.perm <= 0o7777
    assert fi.is_dir is is_dir


def test_localfs_dir_example() -> None:
    fi = parse_file_info(
        info(
            name="d",
            size=4096,
            mode=2147484141,
            isDir=True,
            meta={"Name": "localfs", "Type": "local"},
        )
    )
    assert (fi.perm, fi.is_dir, fi.is_symlink) == (0o755, True, False)


def test_is_dir_comes_from_isdir_not_mode() -> None:
    # a Go dir bit without isDir does not make a directory; isDir without the bit does
    assert parse_file_info(info(mode=GO_DIR | 0o755, isDir=False)).is_dir is False
    assert parse_file_info(info(mode=0o755, isDir=True)).is_dir is True


def test_symlink_from_meta_type() -> None:
    fi = parse_file_info(
        info(name="l", size=9, mode=0o777, isDir=False, meta={"Name": "memfs", "Type": "symlink"})
    )
    assert fi.is_symlink
    assert fi.perm == 0o777
    assert fi.size == 9


def test_symlink_to_directory_keeps_isdir() -> None:
    fi = parse_file_info(info(mode=0o777, isDir=True, meta={"Type": "symlink"}))
    assert fi.is_symlink and fi.is_dir


def test_symlink_from_lowercase_meta_type() -> None:
    assert parse_file_info(info(meta={"type": "symlink"})).is_symlink


def test_symlink_from_go_mode_bit() -> None:
    fi = parse_file_info(info(mode=GO_SYMLINK | 0o777, meta={"Type": "local"}))
    assert fi.is_symlink
    assert fi.perm == 0o777


def test_other_meta_types_are_not_symlinks() -> None:
    for kind in ("file", "dir", "local", "root", "mount-point", "control", "Symlink "):
        assert not parse_file_info(info(meta={"Type": kind})).is_symlink, kind


def test_minimal_object_gets_defaults() -> None:
    fi = parse_file_info({})
    assert fi == FileInfo(name="", size=0, perm=0, is_dir=False, is_symlink=False, mtime_ns=0)


def test_null_fields_get_defaults() -> None:
    fi = parse_file_info(
        {"name": None, "size": None, "mode": None, "modTime": None, "isDir": None, "meta": None}
    )
    assert (fi.name, fi.size, fi.perm, fi.is_dir, fi.mtime_ns) == ("", 0, 0, False, 0)


def test_negative_size_is_clamped() -> None:
    assert parse_file_info(info(size=-1)).size == 0


def test_large_size() -> None:
    assert parse_file_info(info(size=1 << 40)).size == 1 << 40


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("name", 5),
        ("name", ["a"]),
        ("size", "5"),
        ("size", 5.0),
        ("size", True),
        ("mode", "420"),
        ("mode", "0644"),
        ("mode", 420.0),
        ("mode", False),
        ("isDir", 1),
        ("isDir", "true"),
        ("modTime", 1715435767),
        ("modTime", {"sec": 1}),
    ],
)
def test_wrong_field_types_are_protocol_errors(key: str, value: Any) -> None:
    with pytest.raises(ProtocolError) as exc:
        parse_file_info(info(**{key: value}))
    assert exc.value.errno == errno.EIO


@pytest.mark.parametrize("obj", [None, [], "a.txt", 5, [info()]])
def test_not_an_object_is_protocol_error(obj: Any) -> None:
    with pytest.raises(ProtocolError):
        parse_file_info(obj)


def test_synthesised_root() -> None:
    fi = parse_file_info(
        {
            "name": "/",
            "size": 0,
            "mode": 493,
            "modTime": "2026-05-11T13:56:07Z",
            "isDir": True,
            "meta": {"Name": "rootfs", "Type": "root"},
        }
    )
    assert (fi.is_dir, fi.perm, fi.meta_type, fi.untrusted) == (True, 0o755, "root", False)


# -- times -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-05-11T13:56:07Z", utc_ns(2026, 5, 11, 13, 56, 7)),
        ("2026-05-11T13:56:07z", utc_ns(2026, 5, 11, 13, 56, 7)),
        ("2026-05-11T13:56:07.1Z", utc_ns(2026, 5, 11, 13, 56, 7, nanos=100_000_000)),
        ("2026-05-11T13:56:07.12Z", utc_ns(2026, 5, 11, 13, 56, 7, nanos=120_000_000)),
        ("2026-05-11T13:56:07.123Z", utc_ns(2026, 5, 11, 13, 56, 7, nanos=123_000_000)),
        ("2026-05-11T13:56:07.1234Z", utc_ns(2026, 5, 11, 13, 56, 7, nanos=123_400_000)),
        ("2026-05-11T13:56:07.12345Z", utc_ns(2026, 5, 11, 13, 56, 7, nanos=123_450_000)),
        ("2026-05-11T13:56:07.123456Z", utc_ns(2026, 5, 11, 13, 56, 7, nanos=123_456_000)),
        ("2026-05-11T13:56:07.1234567Z", utc_ns(2026, 5, 11, 13, 56, 7, nanos=123_456_700)),
        ("2026-05-11T13:56:07.12345678Z", utc_ns(2026, 5, 11, 13, 56, 7, nanos=123_456_780)),
        ("2026-05-11T13:56:07.123456789Z", utc_ns(2026, 5, 11, 13, 56, 7, nanos=123_456_789)),
        ("2026-05-11T13:56:07.000000001Z", utc_ns(2026, 5, 11, 13, 56, 7, nanos=1)),
        ("2026-05-11T13:56:07.999999999Z", utc_ns(2026, 5, 11, 13, 56, 7, nanos=999_999_999)),
        (
            "2026-05-11T13:56:07.123456789-07:00",
            utc_ns(2026, 5, 11, 20, 56, 7, nanos=123_456_789),
        ),
        ("2026-05-11T13:56:07+05:30", utc_ns(2026, 5, 11, 8, 26, 7)),
        ("2026-05-11T13:56:07.5+00:00", utc_ns(2026, 5, 11, 13, 56, 7, nanos=500_000_000)),
        ("2026-01-01T02:00:00.000000042+03:00", utc_ns(2025, 12, 31, 23, 0, 0, nanos=42)),
        ("1970-01-01T00:00:00Z", 0),
        ("1970-01-01T00:00:00.000000001Z", 1),
        ("2262-04-11T23:47:16.854775807Z", 2**63 - 1),
        ("2400-02-29T00:00:00Z", utc_ns(2400, 2, 29, 0, 0, 0)),
    ],
)
def test_parse_mtime_ns_exact(text: str, expected: int) -> None:
    assert parse_mtime_ns(text) == expected


def test_same_instant_in_different_offsets() -> None:
    a = parse_mtime_ns("2026-05-11T13:56:07.123456789-07:00")
    b = parse_mtime_ns("2026-05-11T20:56:07.123456789Z")
    c = parse_mtime_ns("2026-05-12T05:56:07.123456789+09:00")
    assert a == b == c


def test_times_before_the_epoch_are_clamped_to_zero() -> None:
    assert parse_mtime_ns("1969-12-31T23:59:59.5Z") == 0
    assert parse_mtime_ns("0001-01-01T00:00:00Z") == 0  # Go's zero time


@pytest.mark.parametrize(
    "text",
    [
        "",
        "yesterday",
        "2026-05-11",
        "2026-05-11T13:56:07",  # no offset
        "2026-05-11 13:56:07Z",  # space separator
        "2026-05-11T13:56:07.Z",  # empty fraction
        "2026-05-11T13:56:07.1234567890Z",  # ten digits
        "2026-05-11T13:56:07+0700",  # offset without colon
        "2026-05-11T13:56:07Z ",
        "2026-05-11T13:56Z",
    ],
)
def test_parse_mtime_ns_rejects_non_rfc3339(text: str) -> None:
    with pytest.raises(ProtocolError):
        parse_mtime_ns(text)


@pytest.mark.parametrize(
    "text",
    [
        "2026-02-30T00:00:00Z",  # 30 February
        "2026-13-01T00:00:00Z",  # month 13
        "2026-05-11T25:00:00Z",  # hour 25
        "2026-05-11T13:56:07+24:00",  # offset out of range
    ],
)
def test_parse_mtime_ns_rejects_impossible_dates_as_protocol_errors(text: str) -> None:
    # These match the RFC 3339 shape but are not real instants; the client promises
    # ProtocolError for a bad modTime, not a bare ValueError that escapes the error model.
    with pytest.raises(ProtocolError):
        parse_mtime_ns(text)


def test_year_zero_does_not_escape_the_error_model() -> None:
    # RFC 3339 allows year 0000, and Go prints its zero time that way in a zone west of
    # UTC. It is before the epoch, so 0 is the natural answer; a ProtocolError is
    # acceptable too, but never a bare ValueError.
    try:
        result = parse_mtime_ns("0000-12-31T16:07:02-07:52")
    except ProtocolError:
        return
    assert result == 0


def test_impossible_mod_time_in_stat_is_protocol_error() -> None:
    with pytest.raises(ProtocolError):
        call(info(modTime="2026-02-30T00:00:00Z"), lambda c: c.stat("/memfs/a.txt"))


def test_bad_mod_time_in_file_info_is_protocol_error() -> None:
    with pytest.raises(ProtocolError):
        parse_file_info(info(modTime="11 May 2026"))


def test_empty_mod_time_is_zero() -> None:
    assert parse_file_info(info(modTime="")).mtime_ns == 0


# -- through the client ------------------------------------------------------------------


def test_stat_returns_parsed_info() -> None:
    fi = call(info(), lambda c: c.stat("/memfs/a.txt"))
    assert fi == parse_file_info(info())


def test_list_null_files_is_empty() -> None:
    assert call({"files": None}, lambda c: c.list("/memfs/empty")) == []


def test_list_missing_files_key_is_empty() -> None:
    assert call({}, lambda c: c.list("/memfs/empty")) == []


def test_list_empty_array() -> None:
    assert call({"files": []}, lambda c: c.list("/memfs/empty")) == []


def test_list_parses_every_entry_in_order() -> None:
    body = {
        "files": [
            info(name="b", isDir=True, mode=2147484141, meta={"Name": "localfs", "Type": "local"}),
            info(name="a.txt"),
            info(name="l", mode=0o777, meta={"Type": "symlink"}),
        ]
    }
    files = call(body, lambda c: c.list("/memfs"))
    assert [(f.name, f.is_dir, f.is_symlink, f.perm) for f in files] == [
        ("b", True, False, 0o755),
        ("a.txt", False, False, 0o644),
        ("l", False, True, 0o777),
    ]


def test_virtual_root_listing() -> None:
    entry = {
        "name": "memfs",
        "size": 0,
        "mode": 493,
        "modTime": "2026-05-11T13:56:07Z",
        "isDir": True,
        "meta": {"Name": "rootfs", "Type": "mount-point"},
    }
    files = call({"files": [entry, {**entry, "name": "dev"}]}, lambda c: c.list("/"))
    assert [f.name for f in files] == ["memfs", "dev"]
    assert all(f.is_dir and f.perm == 0o755 and f.meta_type == "mount-point" for f in files)


@pytest.mark.parametrize(
    "body",
    [
        {"files": {"a": 1}},
        {"files": "a.txt"},
        {"files": [1, 2]},
        {"files": [info(size="5")]},
        [info()],
        "files",
    ],
)
def test_list_bad_shapes_are_protocol_errors(body: Any) -> None:
    with pytest.raises(ProtocolError):
        call(body, lambda c: c.list("/memfs"))


def test_stat_truncated_json_is_protocol_error() -> None:
    raw = json.dumps(info()).encode()[:-10]
    with pytest.raises(ProtocolError) as exc:
        call(None, lambda c: c.stat("/memfs/a.txt"), raw=raw)
    assert exc.value.errno == errno.EIO


def test_stat_empty_body_is_protocol_error() -> None:
    with pytest.raises(ProtocolError):
        call(None, lambda c: c.stat("/memfs/a.txt"), raw=b"")


def test_list_truncated_json_is_protocol_error() -> None:
    with pytest.raises(ProtocolError):
        call(None, lambda c: c.list("/memfs"), raw=b'{"files":[{"name":"a"')


def test_readlink_target() -> None:
    assert call({"target": "../x y"}, lambda c: c.readlink("/memfs/l")) == "../x y"


@pytest.mark.parametrize("body", [{}, {"target": None}, {"target": 5}, ["x"], "x"])
def test_readlink_without_target_is_protocol_error(body: Any) -> None:
    with pytest.raises(ProtocolError):
        call(body, lambda c: c.readlink("/memfs/l"))


def test_health_full_body() -> None:
    body = {
        "status": "degraded",
        "version": "1.4.0",
        "gitCommit": "abc",
        "buildTime": "now",
        "ready": False,
        "degraded": True,
        "mounts": {"total": 3, "pending": 0, "mounted": 2, "failed": 1},
    }
    assert call(body, lambda c: c.health()) == Health(
        status="degraded", version="1.4.0", ready=False, degraded=True
    )


def test_health_minimal_body_defaults() -> None:
    assert call({"status": "healthy"}, lambda c: c.health()) == Health(
        status="healthy", version="", ready=True, degraded=False
    )


@pytest.mark.parametrize("body", [{}, {"message": "ok"}, ["healthy"], "healthy", None])
def test_health_not_agfs_is_protocol_error(body: Any) -> None:
    with pytest.raises(ProtocolError):
        call(body, lambda c: c.health())


def test_health_html_is_protocol_error() -> None:
    with pytest.raises(ProtocolError):
        call(None, lambda c: c.health(), raw=b"<html><body>It works!</body></html>")


def test_mounts_parsed() -> None:
    body = {
        "mounts": [
            {
                "path": "/memfs",
                "pluginName": "memfs",
                "instance": "x",
                "status": "mounted",
                "error": "",
                "config": {},
            },
            {"path": "/local", "pluginName": "localfs"},
            "junk",
        ]
    }
    assert call(body, lambda c: c.mounts()) == [
        MountPoint(path="/memfs", plugin="memfs", status="mounted"),
        MountPoint(path="/local", plugin="localfs", status=""),
    ]


@pytest.mark.parametrize("body", [{"mounts": None}, {}, {"mounts": []}])
def test_mounts_empty(body: Any) -> None:
    assert call(body, lambda c: c.mounts()) == []


@pytest.mark.parametrize(
    "body", [{"handle_id": "7"}, {"handle_id": True}, {"handle_id": None}, {}, [7], 7.0]
)
def test_open_handle_without_integer_id_is_protocol_error(body: Any) -> None:
    with pytest.raises(ProtocolError):
        call(body, lambda c: c.open_handle("/memfs/a", 0))


def test_open_handle_id_zero_is_valid() -> None:
    assert call({"handle_id": 0}, lambda c: c.open_handle("/memfs/a", 0)) == 0


@pytest.mark.parametrize("body", [{"bytes_written": "4"}, {}, {"bytes_written": None}, [4]])
def test_handle_write_without_count_is_protocol_error(body: Any) -> None:
    with pytest.raises(ProtocolError):
        call(body, lambda c: c.handle_write(1, 0, b"abcd"))


def test_handle_write_returns_count() -> None:
    assert call({"bytes_written": 3, "position": 0}, lambda c: c.handle_write(1, 0, b"abcd")) == 3
