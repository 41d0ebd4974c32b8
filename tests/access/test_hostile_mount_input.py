"""Hostile input to the mount command is refused: credentials in the URL, an unsafe
``cache_dir``, a header-injecting token file, option values that break the mount or the
wire. Each is refused by ``agfs-fuse mount`` (background mode, as a user runs it) with one
``agfs-fuse: error:`` line, no traceback, nothing mounted and no process left."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.support.mount import MountError

SECRET = "pw-in-url"


@pytest.mark.timeout(60)
def test_a_password_in_the_url_is_refused_and_never_shown(server, mount_fails) -> None:
    url = server.url.replace("http://", f"http://alice:{SECRET}@")
    failure = mount_fails(url)
    assert "token_file" in failure.line and "AGFS_TOKEN" in failure.line
    assert SECRET not in failure.line + failure.stdout


@pytest.mark.timeout(60)
def test_a_cache_dir_of_another_user_is_refused(server, mount_fails, workdir: Path) -> None:
    cache = workdir / "foreign-cache"
    (cache / "spool").mkdir(parents=True)
    os.chown(cache / "spool", 65534, 65534)  # tests run as root in the VM
    failure = mount_fails(server.url, options=[f"cache_dir={cache}"])
    assert "belongs to uid 65534" in failure.line


@pytest.mark.timeout(60)
def test_a_world_writable_cache_dir_is_refused(server, mount_fails, workdir: Path) -> None:
    cache = workdir / "shared-cache"
    cache.mkdir()
    cache.chmod(0o777)
    failure = mount_fails(server.url, options=[f"cache_dir={cache}"])
    assert "writable by every user" in failure.line


@pytest.mark.timeout(60)
def test_a_token_file_with_a_second_line_is_refused(server, mount_fails, workdir: Path) -> None:
    token = workdir / "two-line-token"
    token.write_text("t0ken\nX-Injected: yes\n")
    token.chmod(0o600)
    failure = mount_fails(server.url, options=[f"token_file={token}"])
    assert "must be one line" in failure.line


@pytest.mark.timeout(90)
@pytest.mark.parametrize(
    ("option", "fragment"),
    [
        ("uid=4294967296", "-o uid"),
        ("gid=4294967296", "-o gid"),
        ("attr_timeout=inf", "-o attr_timeout"),
        ("timeout=inf", "-o timeout"),
        ("cache_dir=/dev/null", "not a directory"),
        ("cache_dir=/proc", "cannot use spool directory /proc/spool"),
        ("header=Content-Length:5", "cannot be fixed"),
        ("header=Transfer-Encoding:chunked", "cannot be fixed"),
        ("header=Authorization:Bearer x", "token_file"),
    ],
)
def test_option_values_that_break_the_mount_or_the_wire_are_one_line_errors(
    server, mount_fails, option: str, fragment: str
) -> None:
    failure = mount_fails(server.url, options=[option])
    assert fragment in failure.line
    assert "Traceback" not in failure.stdout


@pytest.mark.timeout(90)
def test_a_planted_spool_directory_cannot_make_the_mount_close_a_foreign_handle(
    server, make_mount, remote_dir: str
) -> None:
    """A planted spool directory: another user replaces the mount's (predictable)
    spool directory with a 0777 one of theirs, holding a sidecar that names a server handle
    someone else has open. The next mount must refuse the directory, not close the handle."""
    server.http.write(f"{remote_dir}/victim", b"open elsewhere")
    opened = server.http.request("POST", "/handles/open", f"{remote_dir}/victim", flags=0)
    handle = opened.json()["handle_id"]
    mount = make_mount(server.url)
    cache = Path(next(o for o in mount.options if o.startswith("cache_dir=")).split("=", 1)[1])
    mount.unmount()
    (spool,) = (cache / "spool").iterdir()  # the mount's own directory, found by looking
    shutil.rmtree(spool)
    spool.mkdir()
    (spool / "planted").write_bytes(b"")
    sidecar = {
        "remote_path": f"{remote_dir}/victim",
        "server_url": server.url,
        "base_size": 0,
        "base_mtime_ns": 0,
        "created": 0.0,
        "handle_id": handle,
    }
    (spool / "planted.json").write_text(json.dumps(sidecar))
    os.chown(spool, 65534, 65534)
    spool.chmod(0o777)
    with pytest.raises(MountError) as refused:
        mount.start()
    assert "belongs to uid 65534" in str(refused.value)
    assert server.http.request("GET", f"/handles/{handle}").status_code == 200
    server.http.request("DELETE", f"/handles/{handle}")
