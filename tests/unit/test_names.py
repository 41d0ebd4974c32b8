"""Names the kernel cannot take (escaped, mapped back) and listings that cannot be trusted
as listed (sorted out): the pure parts, no kernel, no server."""

from __future__ import annotations

import pytest

from agfs_fuse import names
from agfs_fuse.models import FileInfo

pytestmark = pytest.mark.timeout(10)

GO_SYMLINK_PERM = 0o777

ORDINARY = [
    "with space",
    "plus+sign",
    "100%",
    "hash#tag",
    "what?",
    "ünïcødé-日本語-😀",
    "new\nline",
    "tilde~",
    "backup~deadbeef",  # shaped like an escaped name, but a real one: shown as it is
    "x" * 255,
    "é" * 127,  # 254 bytes
]


def entry(name: str, **kw: object) -> FileInfo:
    fields: dict[str, object] = dict(
        name=name, size=1, perm=0o644, is_dir=False, is_symlink=False, mtime_ns=1
    )
    fields.update(kw)
    return FileInfo(**fields)  # type: ignore[arg-type]


def disk_link(name: str) -> FileInfo:
    """How Go's localfs lists an on-disk link: symlink bit, its own size, type ``local``."""
    return entry(name, size=10, perm=GO_SYMLINK_PERM, is_symlink=True, meta_type="local")


@pytest.mark.parametrize("name", ORDINARY)
def test_ordinary_names_are_shown_exactly(name: str) -> None:
    assert names.representable(name)
    assert names.shown_name(name) == name


@pytest.mark.parametrize(
    "name",
    ["a\0b", "\0", "L" * 256, "é" * 128, "x\ud800y"],
    ids=["nul", "only-nul", "256", "multibyte-256", "surrogate"],
)
def test_names_the_kernel_cannot_take_are_escaped(name: str) -> None:
    assert not names.representable(name)
    shown = names.shown_name(name)
    raw = shown.encode("utf-8")
    assert len(raw) <= 255 and b"\0" not in raw and "/" not in shown
    assert names.representable(shown)
    assert names.looks_escaped(shown)
    assert shown == names.escape(name)  # the same name always escapes the same way


def test_escape_keeps_a_readable_prefix_and_never_cuts_a_character() -> None:
    assert names.escape("a\0b").startswith("a\ufffdb~")
    long = "é" * 150  # 300 bytes: the first 200 are exactly 100 characters
    shown = names.escape(long)
    assert shown.startswith("é" * 100 + "~")
    odd = "a" + "é" * 150  # byte 200 falls inside a character: that character goes
    assert names.escape(odd).startswith("a" + "é" * 99 + "~")
    assert len(shown.split("~")[-1]) == names.HASH_DIGITS


def test_long_names_sharing_a_prefix_escape_differently() -> None:
    first, second = "L" * 300, "L" * 299 + "M"
    assert names.escape(first) != names.escape(second)
    assert names.escape(first)[:201] == names.escape(second)[:201]


def test_looks_escaped_only_for_the_exact_shape() -> None:
    assert names.looks_escaped("x~0123abcd")
    assert not names.looks_escaped("~0123abcd")  # nothing before the mark
    assert not names.looks_escaped("x~0123abcg")
    assert not names.looks_escaped("x~0123ABCD")
    assert not names.looks_escaped("x-0123abcd")
    assert not names.looks_escaped("short")


def test_sort_out_keeps_the_first_of_a_repeated_name_and_doubts_it() -> None:
    listing = [entry("caf\ufffd.txt", size=55), entry("caf\ufffd.txt", size=6), entry("b")]
    kept, doubtful, repeated = names.sort_out(listing)
    assert [(i.name, i.size) for i in kept] == [("caf\ufffd.txt", 55), ("b", 1)]
    assert repeated == {"caf\ufffd.txt"}
    assert doubtful == {"caf\ufffd.txt"}


def test_sort_out_doubts_disk_links_and_replacement_characters_only() -> None:
    agfs_link = entry("agfs-link", perm=0o777, is_symlink=True, meta_type="symlink")
    listing = [disk_link("disk-link"), agfs_link, entry("n\ufffd"), entry("plain")]
    kept, doubtful, repeated = names.sort_out(listing)
    assert [i.name for i in kept] == ["disk-link", "agfs-link", "n\ufffd", "plain"]
    assert doubtful == {"disk-link", "n\ufffd"}
    assert repeated == set()
    assert disk_link("x").is_disk_link and not agfs_link.is_disk_link


def test_escaped_names_map_back_per_directory() -> None:
    table = names.EscapedNames()
    listing = [entry("a\0b"), entry("L" * 300), entry("plain")]
    shown = table.record("/memfs/d", listing)
    assert [name for name, _ in shown] == [names.escape("a\0b"), names.escape("L" * 300), "plain"]
    assert [info.name for _, info in shown] == ["a\0b", "L" * 300, "plain"]
    assert table.real_name("/memfs/d", names.escape("a\0b")) == "a\0b"
    assert table.real_name("/memfs/d", names.escape("L" * 300)) == "L" * 300
    assert table.real_name("/memfs/d", "plain") is None
    assert table.real_name("/memfs/other", names.escape("a\0b")) is None
    table.record("/memfs/d", [entry("plain")])  # listed again without them: map dropped
    assert table.real_name("/memfs/d", names.escape("a\0b")) is None


def test_an_escaped_name_never_takes_a_real_name() -> None:
    table = names.EscapedNames()
    taken = names.escape("a\0b")
    shown = table.record("/d", [entry("a\0b"), entry(taken, size=7)])
    assert shown == [(taken, entry(taken, size=7))]
    assert table.real_name("/d", taken) is None


def test_shown_repeats_what_record_showed_without_recording_again(caplog) -> None:
    table = names.EscapedNames()
    taken = names.escape("a\0b")
    listing = [entry("a\0b"), entry(taken, size=7), entry("L" * 300), entry("plain")]
    recorded = table.record("/d", listing)
    assert len([r for r in caplog.records if "is taken" in r.message]) == 1
    assert table.shown("/d", listing) == recorded
    assert len([r for r in caplog.records if "is taken" in r.message]) == 1
    unrecorded = table.shown("/other", listing)  # no map there: escaped names unknown
    assert unrecorded == [(taken, entry(taken, size=7)), ("plain", entry("plain"))]
