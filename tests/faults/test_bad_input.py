"""Bad input never breaks the mount: garbage from the server, odd names, mount-time errors.

- garbage answers (an HTML 500 page, truncated JSON with 200, JSON with wrong types, a
  plain-text ``404 page not found``, a 301) to stat, listing, read and upload: the program
  gets EIO, the mount logs one line per failed request (no traceback), stays alive and
  serves normally afterwards; an upload that got garbage is uploaded once the server is
  sane again;
- names that ``tests/mount/test_namespace.py`` does not cover: a newline, a tab, 255-byte
  names (ASCII and multi-byte UTF-8), round-tripping through the mount and the proxy and
  matching the server's listing; 256 bytes -> ENAMETOOLONG; non-UTF-8 -> EINVAL for mkdir
  and rename too;
- mount-time errors that ``tests/mount/test_lifecycle.py`` does not cover: a malformed URL,
  ``ftp://``, a URL whose path cannot be an AGFS API, an unresolvable host, a mountpoint
  that is a file, a server that never answers, a server that answers garbage: one line on
  stderr, a non-zero exit, nothing mounted, in bounded time.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import signal
import time
from pathlib import Path

import pytest

from tests.faults.conftest import (
    DEADLINE,
    RETRY_BUDGET,
    SLACK,
    Metrics,
    Rig,
    full_log,
    new_dir,
    probe,
    wait_until,
)
from tests.faults.probe import pattern
from tests.support.faultproxy import GARBAGE
from tests.support.mount import force_unmount, is_mounted, pids_with_arg, run_mount_cli

ALL_GARBAGE = sorted(GARBAGE)
#: Garbage that is not a valid answer to a read (a 200 with any body is file content).
ERROR_GARBAGE = ["html500", "plain404", "redirect301"]
FAST = RETRY_BUDGET + SLACK


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _new_lines(rig: Rig, offset: int) -> list[str]:
    """Warning and error lines the mount logged after ``offset``."""
    text = full_log(rig.mount)[offset:]
    assert "Traceback" not in text, text
    return [line for line in text.splitlines() if " WARNING " in line or " ERROR " in line]


def _garbage_case(srig: Rig, kind: str, route: str, op: str, target: Path, remote: str):
    rule = srig.proxy.garbage(kind, "GET", route, path=remote)
    offset = len(full_log(srig.mount))
    result = probe(op, str(target), timeout=60)
    assert not result["ok"], f"{op} accepted {kind}: {result}"
    assert result["errno"] == "EIO", result
    assert result["elapsed"] <= FAST, result
    lines = _new_lines(srig, offset)
    assert rule.hits >= 1
    assert len(lines) == rule.hits, (
        f"expected one log line per garbage answer ({rule.hits}), got:\n" + "\n".join(lines)
    )
    srig.proxy.remove(rule)
    return result, lines


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", ALL_GARBAGE)
def test_garbage_answer_to_stat_and_listing_is_eio(srig: Rig, kind: str) -> None:
    remote, local = new_dir(srig)
    srig.http.write(f"{remote}/f", b"fine")
    srig.http.mkdir(f"{remote}/d")
    _, lines = _garbage_case(srig, kind, "/stat", "stat", local / "f", f"{remote}/f")
    assert f"{remote}/f" in lines[0], lines
    _garbage_case(srig, kind, "/directories", "listdir", local / "d", f"{remote}/d")
    # the mount is alive and serves the same names normally
    assert probe("stat", str(local / "f"))["ok"]
    assert probe("listdir", str(local / "d"))["ok"]
    assert (local / "f").read_bytes() == b"fine"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", ERROR_GARBAGE)
def test_garbage_answer_to_read_is_eio(srig: Rig, kind: str) -> None:
    remote, local = new_dir(srig)
    data = pattern(91, 100_000)
    srig.http.write(f"{remote}/f", data)
    _garbage_case(srig, kind, "/files", "read", local / "f", f"{remote}/f")
    read = probe("read", str(local / "f"))
    assert read["ok"] and read["extra"][0]["sha256"] == _sha(data), read


@pytest.mark.timeout(90)
@pytest.mark.parametrize("kind", ERROR_GARBAGE)
def test_garbage_answer_to_upload_fails_close_then_uploads(
    srig: Rig, kind: str, metrics: Metrics
) -> None:
    remote, local = new_dir(srig)
    data = pattern(92, 150_000)
    rule = srig.proxy.garbage(kind, "PUT", "/files", path=f"{remote}/f")
    offset = len(full_log(srig.mount))
    result = probe("write", str(local / "f"), str(len(data)), "92", timeout=60)
    assert not result["ok"], result
    assert (result["step"], result["errno"]) == ("close", "EIO"), result
    assert result["close_elapsed"] <= FAST, result
    lines = _new_lines(srig, offset)
    assert any(f"{remote}/f" in line for line in lines), lines
    srig.proxy.remove(rule)
    wait_until(
        lambda: srig.http.exists(f"{remote}/f") and srig.http.sha256(f"{remote}/f") == _sha(data),
        timeout=60,
        message="the upload to be retried once the answers are sane",
    )
    metrics.verified(len(data))


# -- names ---------------------------------------------------------------------------------

LONG_NAMES = [
    "n" * 255,
    "é" * 127 + "x",  # 255 bytes of UTF-8
    "日本" * 42 + "abc",  # 252 + 3 bytes
]
ODD_NAMES = [
    "new\nline",
    "tab\there",
    "\nleading newline",
    " leading and trailing space ",
    "all of +%#?&=' \"-ü together",
    "...",
    "back\\slash",
    "%2F not a slash",
    *LONG_NAMES,
]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("plugin", ["memfs", "local"])
def test_odd_and_long_names_round_trip(srig: Rig, plugin: str) -> None:
    remote, local = new_dir(srig, plugin)
    for name in ODD_NAMES:
        assert len(name.encode()) <= 255
    for i, name in enumerate(ODD_NAMES):
        (local / name).write_bytes(f"content {i}".encode())
    (local / "sub").mkdir()
    (local / "sub" / LONG_NAMES[1]).mkdir()
    assert set(os.listdir(local)) == set(ODD_NAMES) | {"sub"}
    assert srig.http.names(remote) == set(ODD_NAMES) | {"sub"}
    assert srig.http.names(f"{remote}/sub") == {LONG_NAMES[1]}
    for i, name in enumerate(ODD_NAMES):
        assert srig.http.read(f"{remote}/{name}") == f"content {i}".encode(), repr(name)
        assert (local / name).read_bytes() == f"content {i}".encode(), repr(name)
    # renames between odd names, and names made on the server, seen through the mount
    os.rename(local / LONG_NAMES[0], local / ("m" * 255))
    assert srig.http.read(f"{remote}/{'m' * 255}") == b"content 8"
    srig.http.write(f"{remote}/server\nside", b"s")
    assert (local / "server\nside").read_bytes() == b"s"


@pytest.mark.timeout(60)
def test_too_long_and_non_utf8_names(srig: Rig) -> None:
    remote, local = new_dir(srig)
    (local / "f").write_bytes(b"x")
    too_long = "n" * 256
    calls = {
        "create": lambda p: os.close(os.open(p, os.O_WRONLY | os.O_CREAT, 0o644)),
        "mkdir": os.mkdir,
        "stat": os.stat,
        "rename to": lambda p: os.rename(local / "f", p),
    }
    for what, call in calls.items():
        with pytest.raises(OSError) as info:
            call(local / too_long)
        assert info.value.errno == errno.ENAMETOOLONG, (what, info.value)
        with pytest.raises(OSError) as info:
            call(os.fsencode(local) + "é".encode() * 128)  # 256 bytes
        assert info.value.errno == errno.ENAMETOOLONG, (what, info.value)
    bad = os.fsencode(local) + b"/bad-\xff\xfe"
    for what, call in {"mkdir": os.mkdir, "rename to": calls["rename to"]}.items():
        with pytest.raises(OSError) as info:
            call(bad)
        assert info.value.errno == errno.EINVAL, (what, info.value)
    assert srig.http.names(remote) == {"f"}


# -- mount-time errors ---------------------------------------------------------------------


def _mount_fails(url: str, mountpoint: Path, *options: str, bound: float = 30.0) -> str:
    """Run ``agfs-fuse mount``; it must fail with one line, non-zero, nothing mounted, in
    ``bound`` seconds. Returns the line."""
    args = ["mount", url, str(mountpoint)]
    for opt in options:
        args += ["-o", opt]
    started = time.monotonic()
    try:
        proc = run_mount_cli(args, timeout=bound + 30)
    finally:
        force_unmount(mountpoint)
        for pid in pids_with_arg(str(mountpoint)):  # a background mount that stayed
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    elapsed = time.monotonic() - started
    err = proc.stderr.strip()
    assert proc.returncode != 0, f"{url}: exit 0\n{proc.stdout}\n{proc.stderr}"
    assert err, f"{url}: no message"
    assert "Traceback" not in err, err
    assert len(err.splitlines()) == 1, f"{url}: not one line:\n{err}"
    assert not is_mounted(mountpoint)
    assert elapsed <= bound, f"{url}: took {elapsed:.1f}s"
    return err


@pytest.fixture
def mountpoint(tmp_path: Path) -> Path:
    mp = tmp_path / "mp"
    mp.mkdir()
    return mp


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "url",
    ["not-a-url", "http://", "http:///api/v1", "ftp://127.0.0.1/api/v1", "http://h:99999999/"],
)
def test_malformed_or_wrong_scheme_url(url: str, mountpoint: Path) -> None:
    _mount_fails(url, mountpoint, bound=15)


@pytest.mark.timeout(60)
def test_url_path_that_cannot_be_an_agfs_api(srig: Rig, mountpoint: Path) -> None:
    base = srig.server_url.removesuffix("/api/v1")
    for url in (f"{base}/some/where", f"{base}/api/v2", f"{base}/api/v1/files"):
        _mount_fails(url, mountpoint, bound=15)


@pytest.mark.timeout(60)
def test_unresolvable_host(mountpoint: Path) -> None:
    _mount_fails("http://no-such-host.invalid:8080/api/v1", mountpoint, bound=20)


@pytest.mark.timeout(60)
def test_mountpoint_is_a_file(srig: Rig, tmp_path: Path) -> None:
    target = tmp_path / "a-file"
    target.write_text("not a directory")
    _mount_fails(srig.server_url, target, bound=15)
    assert target.read_text() == "not a directory"


@pytest.mark.timeout(60)
def test_server_that_never_answers_at_mount_time(srig: Rig, mountpoint: Path) -> None:
    srig.proxy.stall()
    err = _mount_fails(srig.proxy.url, mountpoint, "timeout=2", bound=2 + RETRY_BUDGET + SLACK)
    assert "answer" in err or "time" in err, err


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", ALL_GARBAGE)
def test_server_that_answers_garbage_at_mount_time(srig: Rig, mountpoint: Path, kind: str) -> None:
    srig.proxy.garbage(kind)
    _mount_fails(srig.proxy.url, mountpoint, f"timeout={DEADLINE:g}", bound=FAST)
