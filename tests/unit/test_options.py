"""Parsing of -o option lists: ours, the kernel's, fstab-only, and clear errors."""

import re
from pathlib import Path

import pytest

from agfs_fuse.options import FLAGS, KERNEL_FLAGS, VALUED, OptionError, parse_options


def test_defaults_are_short_ttls_and_a_30s_deadline():
    options = parse_options([])
    assert (options.attr_timeout, options.entry_timeout, options.negative_timeout) == (1, 1, 1)
    assert options.timeout == 30
    assert options.root == "/"
    assert options.kernel == []


def test_repeated_groups_mix_ours_kernel_and_fstab_options():
    options = parse_options(
        ["allow_other,attr_timeout=2.5", "root=/memfs/,uid=1000,umask=022", "_netdev,ro,noauto"]
    )
    assert options.kernel == ["allow_other", "ro", "default_permissions"]
    assert options.attr_timeout == 2.5
    assert options.root == "/memfs"
    assert options.uid == 1000
    assert options.umask == 0o22
    assert options.read_only


def test_cache_dir_and_flags():
    options = parse_options(["cache_dir=/tmp/c,nonempty,debug"])
    assert options.cache_dir == Path("/tmp/c")
    assert options.nonempty and options.debug


@pytest.mark.parametrize(
    ("group", "fragment"),
    [
        ("bogus", "unknown mount option 'bogus'; valid options: attr_timeout="),
        ("timeout=0", "bad value for -o timeout"),
        ("attr_timeout=abc", "bad value for -o attr_timeout"),
        ("umask=999", "bad value for -o umask"),
        ("root=memfs", "absolute remote path"),
        ("uid", "-o uid needs a value"),
        ("ro=1", "-o ro takes no value"),
        ("ro,rw", "contradict"),
        ("max_kept=lots", "bad value for -o max_kept"),
        ("max_kept=1X", "bad value for -o max_kept"),
    ],
)
def test_bad_options_give_one_line_errors(group, fragment):
    with pytest.raises(OptionError) as caught:
        parse_options([group])
    assert fragment in str(caught.value)
    assert "\n" not in str(caught.value)


def test_allow_other_brings_default_permissions_so_other_users_meet_the_mode_bits():
    assert parse_options(["allow_other"]).kernel == ["allow_other", "default_permissions"]
    assert parse_options(["default_permissions,allow_other"]).kernel == [
        "default_permissions",
        "allow_other",
    ]


def test_tls_and_auth_options():
    options = parse_options(
        ["cafile=/ca.pem,certfile=/c.pem,keyfile=/k.pem,token_file=/t", "header=X-A: 1,header=B:2"]
    )
    assert str(options.cafile) == "/ca.pem" and str(options.token_file) == "/t"
    assert options.header == [("X-A", "1"), ("B", "2")]
    assert not options.insecure and parse_options(["insecure"]).insecure


def test_writeback_cache_is_off_unless_asked_for():
    assert not parse_options([]).writeback_cache
    assert parse_options(["writeback_cache,attr_timeout=2"]).writeback_cache
    with pytest.raises(OptionError, match="takes no value"):
        parse_options(["writeback_cache=1"])


@pytest.mark.parametrize(
    ("group", "fragment"),
    [
        ("certfile=/c.pem", "go together"),
        ("header=novalue", "Name:Value"),
        ("header=:x", "Name:Value"),
    ],
)
def test_bad_tls_options(group, fragment):
    with pytest.raises(OptionError) as caught:
        parse_options([group])
    assert fragment in str(caught.value)


def test_sloppy_drops_unknown_options():
    assert parse_options(["bogus,ro"], sloppy=True).kernel == ["ro"]


def test_relative_paths_become_absolute_against_the_callers_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    options = parse_options(["cache_dir=spools,token_file=~/t"])
    assert options.cache_dir == tmp_path / "spools"
    assert options.token_file is not None and options.token_file.is_absolute()
    assert "~" not in str(options.token_file)


def test_the_readme_documents_every_mount_option():
    """The README's option table and ``--help`` come from different places; keep them one."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    start = readme.index("### Mount options")
    table = readme[start : readme.index("\n### ", start + 1)]
    documented = set(re.findall(r"`([a-z_]+)(?:=[^`]*)?`", table))
    options = set(VALUED) | set(FLAGS) | set(KERNEL_FLAGS) - {"rw"}
    missing = sorted(options - documented)
    assert not missing, f"README's mount options table lacks {missing}"


HOSTILE_VALUES = [
    ("uid=4294967296", "from 0 to 4294967294"),
    ("uid=4294967295", "from 0 to 4294967294"),
    ("gid=-1", "from 0 to 4294967294"),
    ("gid=1e3", "bad value for -o gid"),
    ("attr_timeout=inf", "seconds from 0 to"),
    ("entry_timeout=1e300", "seconds from 0 to"),
    ("negative_timeout=-inf", "seconds from 0 to"),
    ("dir_cache_timeout=nan", "seconds from 0 to"),
    ("timeout=inf", "seconds from 0 to"),
    ("cache_dir=/dev/null", "is not a directory"),
    ("cache_dir=", "must be a path"),
    ("header=Content-Length:5", "cannot be fixed"),
    ("header=transfer-encoding:chunked", "cannot be fixed"),
    ("header=Connection:close", "cannot be fixed"),
    ("header=Host:evil", "cannot be fixed"),
    ("header=Upgrade:h2c", "cannot be fixed"),
    ("header=Authorization:Bearer x", "token_file"),
    ("header=X(y):1", "Name:Value"),
    ("header=X-A:a\x01b", "control characters"),
    ("header=X-A:a\rb", "one line"),
    ("header=X-A:\u20ac", "Latin-1"),
    ("umask=8", "bad value for -o umask"),
    ("header=X-A:" + "v\x00" * 100_000, "control characters"),
]


@pytest.mark.parametrize(("group", "fragment"), HOSTILE_VALUES, ids=lambda v: str(v)[:30])
def test_values_that_would_break_the_mount_or_the_wire_are_refused(group, fragment):
    with pytest.raises(OptionError) as caught:
        parse_options([group])
    message = str(caught.value)
    assert fragment in message
    assert "\n" not in message and len(message) < 600


def test_the_largest_uid_and_a_year_of_caching_are_accepted():
    options = parse_options([f"uid={2**32 - 2},gid=0,attr_timeout=31536000,timeout=0.5"])
    assert (options.uid, options.gid, options.attr_timeout) == (2**32 - 2, 0, 31536000)


@pytest.mark.parametrize(
    ("text", "size"),
    [("1048576", 1 << 20), ("512M", 512 << 20), ("1G", 1 << 30), ("2GiB", 2 << 30), ("3k", 3072)],
)
def test_max_kept_takes_sizes(text, size):
    assert parse_options([f"max_kept={text}"]).max_kept == size
    assert parse_options([]).max_kept == 1 << 30
