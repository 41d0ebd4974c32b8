"""Pure helpers that mirror Go library behaviour."""

from __future__ import annotations

import errno
import os
import time

import pytest

from agfs_fuse.server import gojson, pathutil
from agfs_fuse.server.httprequest import parse_query
from agfs_fuse.server.jsonbody import JSONBodyError, decode
from agfs_fuse.server.plugins.localfs import go_file_mode, go_syscall_mode
from agfs_fuse.server.routes.params import parse_int, parse_octal


@pytest.mark.parametrize(
    "raw,expected",
    [
        ("", "/"),
        ("/", "/"),
        ("a/b", "/a/b"),
        ("/a/b/", "/a/b"),
        ("//a//b", "/a/b"),
        ("/a/../../b", "/b"),
        ("/./a/.", "/a"),
        ("..", "/"),
    ],
)
def test_normalize(raw: str, expected: str) -> None:
    assert pathutil.normalize(raw) == expected


def test_dir_base() -> None:
    assert pathutil.dirname("/a") == "/" and pathutil.dirname("/a/b") == "/a"
    assert pathutil.basename("/a/b") == "b" and pathutil.basename("/") == "/"


def test_go_json_escapes_and_newline() -> None:
    assert gojson.encode({"a": "<&>\u2028"}) == b'{"a":"\\u003c\\u0026\\u003e\\u2028"}\n'
    assert gojson.marshal({"x": None, "y": [1]}) == b'{"x":null,"y":[1]}'
    assert gojson.go_string(b"a\xe2\x82b\xff") == "a\ufffd\ufffdb\ufffd"
    assert gojson.marshal(os.fsdecode(b"\xff")) == b'"\\ufffd"'  # Go escapes a bad byte
    assert gojson.marshal("\ufffd") == '"\ufffd"'.encode()  # and writes a real U+FFFD raw


def test_rfc3339nano() -> None:
    ns = 1_700_000_000_120_000_000
    text = gojson.rfc3339nano(ns)
    assert ".12" in text and ".120" not in text
    assert "." not in gojson.rfc3339nano(1_700_000_000_000_000_000)
    off = time.localtime(1_700_000_000).tm_gmtoff
    assert text.endswith("Z") if off == 0 else text[-6] in "+-"


def test_parse_query_like_go() -> None:
    q = parse_query("path=/a+b%2Bc&x=1&x=2&bad=%zz&semi=1;2&=v&flag")
    assert q["path"] == ["/a b+c"] and q["x"] == ["1", "2"] and q["flag"] == [""]
    assert "bad" not in q and "semi" not in q
    assert q[""] == ["v"]  # Go keeps an empty key when the pair itself is not empty


def test_number_parsing_like_strconv() -> None:
    assert parse_int("+5") == 5 and parse_int("-5") == -5
    assert parse_int("1_000") is None and parse_int(" 1") is None and parse_int("") is None
    assert parse_int(str(1 << 63)) is None and parse_int(str(1 << 31), 32) is None
    assert parse_octal("755") == 0o755 and parse_octal("0755") == 0o755
    assert parse_octal("0o755") is None and parse_octal("8") is None


def test_json_body_decoding() -> None:
    f = {"mode": "uint32"}
    assert decode(b' {"MODE": 420} junk', "C", f) == {"mode": 420}
    assert decode(b"null", "C", f) == {"mode": 0}
    for bad in (b"", b"{", b'{"mode": 4.2e2}', b'{"mode": -1}', b'{"mode": "1"}', b"[]"):
        with pytest.raises(JSONBodyError):
            decode(bad, "C", f)


def test_go_file_modes() -> None:
    import stat

    assert go_file_mode(stat.S_IFDIR | 0o755) == 2147484141
    assert go_file_mode(stat.S_IFREG | stat.S_ISUID | 0o755) == (1 << 23) | 0o755
    assert go_file_mode(stat.S_IFLNK | 0o777) == (1 << 27) | 0o777
    assert go_syscall_mode((1 << 23) | (1 << 20) | 0o700) == stat.S_ISUID | stat.S_ISVTX | 0o700
    assert go_syscall_mode(0o4755) == 0o755


def test_accept_backoff_doubles_to_a_second_and_resets() -> None:
    from agfs_fuse.server.accept_backoff import AcceptBackoff

    slept: list[float] = []
    backoff = AcceptBackoff(sleep=slept.append)
    emfile = OSError(errno.EMFILE, "Too many open files")
    for _ in range(10):
        assert backoff.failed(emfile)
    assert slept == [0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.0, 1.0]
    assert not backoff.failed(OSError(errno.ECONNABORTED, "aborted"))
    backoff.succeeded()
    assert backoff.failed(emfile) and slept[-1] == 0.005
