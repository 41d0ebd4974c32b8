"""The ``/reload`` control file at the mount root, modelled on ProxyFS's own
(docs/PROTOCOL.md, Proxy/reload).

Mode 0200, size 0. Writing empty/whitespace reloads the same URL; an http(s) URL switches
servers; a server that is down gives EIO and the old server stays; anything else is EINVAL.
Each test gets its own servers and mount, since a switch changes the whole mount.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat

import pytest

from tests.mount.conftest import run
from tests.support.mount import wait_until


@pytest.fixture
def two_servers(make_server, make_mount):
    """(mount of server A, server A, server B); A has /memfs/on-a, B has /memfs/on-b."""
    a = make_server(localfs=False)
    b = make_server(localfs=False)
    a.http.write("/memfs/on-a", b"from A")
    b.http.write("/memfs/on-b", b"from B")
    mount = make_mount(a.url)
    return mount, a, b


def _write_reload(path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def test_reload_file_attributes_and_help(two_servers) -> None:
    mount, _, _ = two_servers
    st = os.stat(mount.path / "reload")
    assert stat.S_ISREG(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o200
    assert st.st_size == 0
    text = run(["cat", str(mount.path / "reload")]).stdout.decode()
    assert text.strip(), "reading /reload gave nothing"
    assert len(text.strip().splitlines()) == 1, text


def test_reload_same_url(two_servers) -> None:
    mount, a, _ = two_servers
    run(f"echo > '{mount.path / 'reload'}'")
    _write_reload(mount.path / "reload", b"   \n")
    assert (mount.path / "memfs" / "on-a").read_bytes() == b"from A"
    (mount.path / "memfs" / "after-reload").write_bytes(b"still A")
    assert a.http.read("/memfs/after-reload") == b"still A"
    assert mount.alive()


def test_reload_switches_server(two_servers) -> None:
    mount, a, b = two_servers
    assert (mount.path / "memfs" / "on-a").read_bytes() == b"from A"
    run(f"echo '{b.url}' > '{mount.path / 'reload'}'")
    wait_until(lambda: (mount.path / "memfs" / "on-b").exists(), 5, message="B's file visible")
    assert (mount.path / "memfs" / "on-b").read_bytes() == b"from B"
    wait_until(
        lambda: not (mount.path / "memfs" / "on-a").exists(),
        5,
        message="A's file gone from the mount",
    )
    (mount.path / "memfs" / "written").write_bytes(b"goes to B")
    assert b.http.read("/memfs/written") == b"goes to B"
    assert not a.http.exists("/memfs/written")
    # /proc/mounts cannot change its source, but the mount keeps working
    assert mount.alive()


def test_switch_uploads_pending_writes_to_old_server(two_servers) -> None:
    mount, a, b = two_servers
    f = open(mount.path / "memfs" / "pending", "wb")  # noqa: SIM115
    try:
        f.write(b"written before the switch")
        f.flush()
        _write_reload(mount.path / "reload", b.url.encode() + b"\n")
        assert a.http.read("/memfs/pending") == b"written before the switch"
    finally:
        with contextlib.suppress(OSError):
            f.close()
    assert a.http.read("/memfs/pending") == b"written before the switch"


def test_reload_to_down_server_is_eio_and_old_server_stays(two_servers, make_server) -> None:
    mount, a, _ = two_servers
    dead = make_server(localfs=False)
    dead_url = dead.url
    dead.stop()
    with pytest.raises(OSError) as info:
        _write_reload(mount.path / "reload", dead_url.encode() + b"\n")
    assert info.value.errno == errno.EIO
    proc = run(["bash", "-c", f"echo '{dead_url}' > '{mount.path / 'reload'}'"], check=False)
    assert proc.returncode != 0 and b"Input/output error" in proc.stderr, proc.stderr
    assert (mount.path / "memfs" / "on-a").read_bytes() == b"from A"
    (mount.path / "memfs" / "after-failure").write_bytes(b"A still")
    assert a.http.read("/memfs/after-failure") == b"A still"


def test_reload_same_url_when_server_down_is_eio(make_server, make_mount) -> None:
    server = make_server(localfs=False)
    mount = make_mount(server.url, options=["timeout=3"])
    server.stop()
    with pytest.raises(OSError) as info:
        _write_reload(mount.path / "reload", b"\n")
    assert info.value.errno == errno.EIO


def test_reload_garbage_is_einval(two_servers) -> None:
    mount, a, _ = two_servers
    for garbage in (b"foo\n", b"ftp://example.com/\n", b"not a url at all"):
        with pytest.raises(OSError) as info:
            _write_reload(mount.path / "reload", garbage)
        assert info.value.errno == errno.EINVAL, garbage
    proc = run(["bash", "-c", f"echo foo > '{mount.path / 'reload'}'"], check=False)
    assert proc.returncode != 0 and b"Invalid argument" in proc.stderr, proc.stderr
    assert (mount.path / "memfs" / "on-a").read_bytes() == b"from A"


def test_remote_reload_entry_is_hidden(make_server, make_mount) -> None:
    server = make_server(localfs=False)
    server.http.write("/memfs/reload", b"remote file called reload")
    server.http.write("/memfs/other", b"visible")
    mount = make_mount(server.url, options=["root=/memfs"])
    assert (mount.path / "other").read_bytes() == b"visible"
    st = os.stat(mount.path / "reload")
    assert stat.S_IMODE(st.st_mode) == 0o200 and st.st_size == 0
    assert b"remote file called reload" not in run(["cat", str(mount.path / "reload")]).stdout
    assert os.listdir(mount.path).count("reload") <= 1
    # writing reloads, it does not overwrite the remote file
    run(f"echo > '{mount.path / 'reload'}'")
    assert server.http.read("/memfs/reload") == b"remote file called reload"


def test_switch_drops_caches(make_server, make_mount) -> None:
    """After a switch the very next read shows the new server's file, not cached bytes or a
    cached size from the old one."""
    a = make_server(localfs=False)
    b = make_server(localfs=False)
    a.http.write("/memfs/common", b"AAAA")
    b.http.write("/memfs/common", b"BBBBBBBBBBBB")
    mount = make_mount(a.url)
    path = mount.path / "memfs" / "common"
    assert path.read_bytes() == b"AAAA"
    assert os.stat(path).st_size == 4
    _write_reload(mount.path / "reload", b.url.encode())
    content = path.read_bytes()
    size = os.stat(path).st_size
    assert (content, size) == (b"BBBBBBBBBBBB", 12)


def test_sighup_reloads(make_server, make_mount) -> None:
    import signal

    server = make_server(localfs=False, counted=True)
    mount = make_mount(server.url)
    before = server.request_counts().get("GET /health", 0)
    mount.signal(signal.SIGHUP)
    wait_until(
        lambda: server.request_counts().get("GET /health", 0) > before,
        5,
        message="a /health check after SIGHUP",
    )
    assert mount.alive()
    (mount.path / "memfs" / "after-hup").write_bytes(b"ok")
    assert server.http.read("/memfs/after-hup") == b"ok"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", ["credentials", "space", "backslash", "too-long"])
def test_reload_refuses_hostile_urls_with_einval_and_short_log_lines(two_servers, kind) -> None:
    """Credentials, spaces, backslashes and a URL longer than httpx takes: EINVAL, the old
    server stays, the password is nowhere, and no log line quotes the whole URL."""
    mount, _, b = two_servers
    host = b.url.removeprefix("http://")
    url = {
        "credentials": f"http://alice:pw-in-url@{host}",
        "space": f"http://{host}/a b",
        "backslash": f"http://{host}\\x",
        "too-long": f"http://{host}/" + "a" * 70_000,
    }[kind]
    with pytest.raises(OSError) as info:
        _write_reload(mount.path / "reload", url.encode() + b"\n")
    assert info.value.errno == errno.EINVAL
    assert (mount.path / "memfs" / "on-a").read_bytes() == b"from A"
    log = mount.log()
    assert "pw-in-url" not in log + (mount.path / ".agfs-stats").read_text()
    assert max(len(line) for line in log.splitlines()) < 1000, "a log line quotes the URL"
    assert mount.alive()


@pytest.mark.timeout(60)
def test_control_files_refuse_chmod_chown_and_touch(two_servers) -> None:
    mount, _, _ = two_servers
    for name in ("reload", ".agfs-stats"):
        path = mount.path / name
        before = os.stat(path)
        for change in (lambda p: os.chmod(p, 0o777), lambda p: os.chown(p, 1, 1)):
            with pytest.raises(PermissionError):
                change(path)
        with pytest.raises(PermissionError):
            os.utime(path, (1, 1))
        after = os.stat(path)
        assert (after.st_mode, after.st_uid, after.st_mtime) == (
            before.st_mode,
            before.st_uid,
            before.st_mtime,
        )
    run(f"echo > '{mount.path / 'reload'}'")  # O_TRUNC's truncate still works
