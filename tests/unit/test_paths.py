"""Remote path arithmetic and kernel name decoding."""

from __future__ import annotations

import errno

import pytest

from agfs_fuse import paths
from agfs_fuse.errors import AgfsError, InvalidArgument, NameTooLong

# -- decode_name -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "name"),
    [
        (b"a.txt", "a.txt"),
        (b"with space", "with space"),
        (b"a+b", "a+b"),
        (b"100%", "100%"),
        (b"#?&=", "#?&="),
        ("caf\u00e9".encode(), "caf\u00e9"),
        ("\u65e5\u672c\u8a9e".encode(), "\u65e5\u672c\u8a9e"),
        ("\U0001f600".encode(), "\U0001f600"),
        (b".hidden", ".hidden"),
        (b"\\back", "\\back"),
        (b"\x7f\x01ctl", "\x7f\x01ctl"),
    ],
)
def test_decode_valid_names(raw: bytes, name: str) -> None:
    assert paths.decode_name(raw) == name


@pytest.mark.parametrize(
    "raw",
    [
        b"\xff",
        b"caf\xe9",  # Latin-1 e-acute
        b"\xc3",  # truncated two-byte sequence
        b"\xe6\x97",  # truncated three-byte sequence
        b"\xc0\xaf",  # overlong '/'
        b"\xed\xa0\x80",  # UTF-16 surrogate
        b"ok\x80ok",
        b"\xf8\x88\x80\x80\x80",  # five-byte form
    ],
)
def test_invalid_utf8_is_einval(raw: bytes) -> None:
    with pytest.raises(InvalidArgument) as info:
        paths.decode_name(raw)
    assert info.value.errno == errno.EINVAL
    assert "UTF-8" in info.value.message
    assert isinstance(info.value.path, str)


@pytest.mark.parametrize("raw", [b"a/b", b"/", b"a\x00b", b"\x00"])
def test_slash_and_nul_are_einval(raw: bytes) -> None:
    with pytest.raises(InvalidArgument) as info:
        paths.decode_name(raw)
    assert info.value.errno == errno.EINVAL


def test_name_max_is_255_bytes() -> None:
    assert paths.NAME_MAX == 255
    assert paths.decode_name(b"a" * 255) == "a" * 255


def test_name_of_256_bytes_is_too_long() -> None:
    with pytest.raises(NameTooLong) as info:
        paths.decode_name(b"a" * 256)
    assert info.value.errno == errno.ENAMETOOLONG


def test_length_is_counted_in_bytes_not_characters() -> None:
    ok = "\u00e9" * 127 + "a"  # 255 bytes, 128 characters
    assert len(ok.encode()) == 255
    assert paths.decode_name(ok.encode()) == ok
    too_long = "\u00e9" * 128  # 256 bytes, 128 characters
    with pytest.raises(NameTooLong):
        paths.decode_name(too_long.encode())
    emoji = "\U0001f600" * 64  # 256 bytes, 64 characters
    with pytest.raises(NameTooLong):
        paths.decode_name(emoji.encode())


def test_too_long_and_invalid_is_still_an_agfs_error() -> None:
    with pytest.raises(AgfsError) as info:
        paths.decode_name(b"\xff" * 300)
    assert info.value.errno in (errno.ENAMETOOLONG, errno.EINVAL)


# -- join / split ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("parent", "name", "path"),
    [
        ("/", "a", "/a"),
        ("/a", "b", "/a/b"),
        ("/a/b", "c d", "/a/b/c d"),
        ("/memfs", "\u00e9", "/memfs/\u00e9"),
        ("/", ".hidden", "/.hidden"),
    ],
)
def test_join(parent: str, name: str, path: str) -> None:
    assert paths.join(parent, name) == path


@pytest.mark.parametrize(
    ("path", "parent", "name"),
    [
        ("/a", "/", "a"),
        ("/a/b", "/a", "b"),
        ("/a/b/c d", "/a/b", "c d"),
        ("/memfs/x.tar.gz", "/memfs", "x.tar.gz"),
    ],
)
def test_split(path: str, parent: str, name: str) -> None:
    assert paths.split(path) == (parent, name)


@pytest.mark.parametrize("path", ["/a", "/a/b", "/x/y/z", "/\u00e9/\u65e5"])
def test_split_inverts_join(path: str) -> None:
    assert paths.join(*paths.split(path)) == path


def test_split_root() -> None:
    assert paths.split("/") == ("/", "")


# -- normalize ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("/", "/"),
        ("", "/"),
        (".", "/"),
        ("..", "/"),
        ("a", "/a"),
        ("a/b", "/a/b"),
        ("/a/", "/a"),
        ("/a//b///", "/a/b"),
        ("//a", "/a"),
        ("/a/./b/.", "/a/b"),
        ("/a/b/..", "/a"),
        ("/a/b/../../c", "/c"),
        ("/../a", "/a"),
        ("/../../..", "/"),
        ("/a/../../b", "/b"),
        ("/a/.../b", "/a/.../b"),
        ("/a/..b/c", "/a/..b/c"),
        ("/a b/+c", "/a b/+c"),
    ],
)
def test_normalize(given: str, expected: str) -> None:
    assert paths.normalize(given) == expected


@pytest.mark.parametrize("path", ["/", "/a", "/a/b", "a/../b/", "/x/./y//"])
def test_normalize_is_idempotent(path: str) -> None:
    once = paths.normalize(path)
    assert paths.normalize(once) == once


# -- is_within ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "ancestor", "expected"),
    [
        ("/a", "/a", True),
        ("/a/b", "/a", True),
        ("/a/b/c", "/a", True),
        ("/a/b/c", "/a/b", True),
        ("/ab", "/a", False),
        ("/a.txt", "/a", False),
        ("/a", "/a/b", False),
        ("/b", "/a", False),
        ("/", "/", True),
        ("/anything/deep", "/", True),
        ("/", "/a", False),
        ("/memfs2/x", "/memfs", False),
    ],
)
def test_is_within(path: str, ancestor: str, expected: bool) -> None:
    assert paths.is_within(path, ancestor) is expected


# -- rebase ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "old", "new", "expected"),
    [
        ("/a", "/a", "/b", "/b"),
        ("/a/x", "/a", "/b", "/b/x"),
        ("/a/x/y", "/a", "/b/c", "/b/c/x/y"),
        ("/a/x", "/a", "/", "/x"),
        ("/a", "/a", "/", "/"),
        ("/x", "/", "/b", "/b/x"),
        ("/x/y", "/", "/b", "/b/x/y"),
        ("/", "/", "/b", "/b"),
        ("/d/a/b", "/d/a", "/d/a2", "/d/a2/b"),
        ("/d/a/b", "/d", "/e", "/e/a/b"),
        ("/m/old name/f", "/m/old name", "/m/new+name", "/m/new+name/f"),
    ],
)
def test_rebase(path: str, old: str, new: str, expected: str) -> None:
    assert paths.rebase(path, old, new) == expected


def test_rebase_agrees_with_is_within() -> None:
    old, new = "/memfs/dir", "/memfs/moved"
    for path in ("/memfs/dir", "/memfs/dir/a", "/memfs/dir/a/b"):
        assert paths.is_within(path, old)
        rebased = paths.rebase(path, old, new)
        assert paths.is_within(rebased, new)
        assert paths.rebase(rebased, new, old) == path
