"""TLS and auth: real kernel mounts through a TLS-terminating proxy on loopback.

The proxy (``tests/support/tls.py``) stands where nginx or caddy would: https with a
throwaway CA, optionally mutual TLS, a bearer token or a required header, forwarding to the
reference server over plain HTTP. What the mount wrote is checked on the server directly.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.access.helpers import sh
from tests.support.mount import mount_entry, wait_until
from tests.support.tls import make_certs

pytestmark = pytest.mark.timeout(60)

TOKEN = "tok-5ecret-Zq81-never-shown"
TLS_HINT = "(TLS verification failed: give the CA with -o cafile=PATH)"
TOKEN_HINT = "a token goes in -o token_file=PATH or $AGFS_TOKEN"


def token_file(directory: Path, token: str = TOKEN) -> Path:
    path = directory / "token"
    path.write_text(token + "\n")
    path.chmod(0o600)
    return path


def test_https_mount_with_cafile_writes_and_reads(
    make_proxy, make_mount, server, remote_dir, certs
):
    proxy = make_proxy()
    mount = make_mount(proxy.url, options=[f"cafile={certs.ca}"])
    assert mount_entry(mount.path)["source"] == proxy.url
    assert mount_entry(mount.path)["fstype"] == "fuse.agfs"
    local = mount.path / remote_dir.lstrip("/")

    upload = os.urandom(3 * 1024 * 1024 + 17)
    (local / "up.bin").write_bytes(upload)
    assert server.http.read(f"{remote_dir}/up.bin") == upload

    download = os.urandom(1024 * 1024 + 5)
    server.http.write(f"{remote_dir}/down.bin", download)
    assert (local / "down.bin").read_bytes() == download
    with open(local / "down.bin", "rb") as handle:  # a range from the middle
        handle.seek(700_000)
        assert handle.read(1000) == download[700_000:701_000]
    assert sorted(os.listdir(local)) == ["down.bin", "up.bin"]

    # it really went through the TLS proxy
    assert proxy.handshakes >= 1
    seen = proxy.seen()
    assert sum(r.body_size for r in seen if r.method == "PUT") >= len(upload)
    assert any(r.method == "GET" and r.status == 200 and "down.bin" in r.path for r in seen)


def test_https_without_the_ca_is_refused_with_a_hint(make_proxy, mount_fails, workdir):
    proxy = make_proxy()
    failure = mount_fails(proxy.url)
    assert failure.line.startswith(f"agfs-fuse: error: cannot reach AGFS server at {proxy.url}")
    assert "CERTIFICATE_VERIFY_FAILED" in failure.line
    assert failure.line.endswith(TLS_HINT)

    stranger = make_certs(workdir / "other-pki", name="some other CA")
    failure = mount_fails(proxy.url, options=[f"cafile={stranger.ca}"])
    assert failure.line.endswith(TLS_HINT)
    assert proxy.seen() == []  # no request ever passed the handshake


def test_unreadable_cafile_is_a_one_line_error(make_proxy, mount_fails, workdir):
    proxy = make_proxy()
    failure = mount_fails(proxy.url, options=[f"cafile={workdir / 'missing.pem'}"])
    assert "cafile" in failure.line and "missing.pem" in failure.line


def test_insecure_mounts_and_warns_loudly(make_proxy, make_mount, server, remote_dir):
    proxy = make_proxy()
    mount = make_mount(proxy.url, options=["insecure"])
    server.http.write(f"{remote_dir}/a.txt", b"over unverified TLS\n")
    assert (mount.path / remote_dir.lstrip("/") / "a.txt").read_bytes() == b"over unverified TLS\n"
    warnings = [line for line in mount.log().splitlines() if " WARNING " in line]
    assert any("-o insecure" in line and "NOT verified" in line for line in warnings), mount.log()


def test_mutual_tls_needs_the_client_certificate(
    make_proxy, make_mount, mount_fails, server, remote_dir, certs
):
    proxy = make_proxy(client_cert=True)
    failure = mount_fails(proxy.url, options=[f"cafile={certs.ca}"])
    assert failure.line.startswith(f"agfs-fuse: error: cannot reach AGFS server at {proxy.url}")
    assert proxy.handshake_errors, "the proxy never saw a client without a certificate"
    assert proxy.seen() == []

    half = [f"cafile={certs.ca}", f"certfile={certs.client_cert}"]
    failure = mount_fails(proxy.url, options=half)
    assert "certfile= and -o keyfile= go together" in failure.line

    mount = make_mount(
        proxy.url,
        options=[f"cafile={certs.ca},certfile={certs.client_cert},keyfile={certs.client_key}"],
    )
    local = mount.path / remote_dir.lstrip("/")
    (local / "m.txt").write_text("mutual\n")
    assert server.http.read(f"{remote_dir}/m.txt") == b"mutual\n"
    assert (local / "m.txt").read_text() == "mutual\n"


def test_token_from_token_file(make_proxy, make_mount, server, remote_dir, certs, workdir):
    proxy = make_proxy(token=TOKEN)
    options = [f"cafile={certs.ca}", f"token_file={token_file(workdir)}"]
    mount = make_mount(proxy.url, options=options)
    local = mount.path / remote_dir.lstrip("/")
    (local / "t.txt").write_text("with a token\n")
    assert server.http.read(f"{remote_dir}/t.txt") == b"with a token\n"
    seen = proxy.seen()
    assert seen and all(r.status != 401 for r in seen)
    assert proxy.header_values("Authorization") == [f"Bearer {TOKEN}"] * len(seen)


def test_token_from_environment(make_proxy, make_mount, server, remote_dir, certs):
    proxy = make_proxy(token=TOKEN)
    env = {**os.environ, "AGFS_TOKEN": TOKEN}
    mount = make_mount(proxy.url, options=[f"cafile={certs.ca}"], env=env)
    server.http.write(f"{remote_dir}/e.txt", b"env token\n")
    assert (mount.path / remote_dir.lstrip("/") / "e.txt").read_bytes() == b"env token\n"
    seen = proxy.seen()
    assert seen and proxy.header_values("Authorization") == [f"Bearer {TOKEN}"] * len(seen)


@pytest.mark.parametrize("how", ["missing", "wrong-file", "wrong-env"])
def test_missing_or_wrong_token_fails_at_mount_time(make_proxy, mount_fails, certs, workdir, how):
    proxy = make_proxy(token=TOKEN)
    wrong = "wrong-" + TOKEN[::-1]
    options = [f"cafile={certs.ca}"]
    env = {k: v for k, v in os.environ.items() if k != "AGFS_TOKEN"}
    if how == "wrong-file":
        options.append(f"token_file={token_file(workdir, wrong)}")
    elif how == "wrong-env":
        env["AGFS_TOKEN"] = wrong
    failure = mount_fails(proxy.url, options=options, env=env)
    assert "refused access" in failure.line
    assert failure.line.endswith(TOKEN_HINT)
    assert wrong not in failure.line and TOKEN not in failure.line
    statuses = {r.status for r in proxy.seen()}
    assert statuses == {401}
    expected = [] if how == "missing" else [f"Bearer {wrong}"]
    assert sorted(set(proxy.header_values("authorization"))) == expected


def test_empty_token_file_is_refused(make_proxy, mount_fails, certs, workdir):
    proxy = make_proxy(token=TOKEN)
    empty = workdir / "empty-token"
    empty.write_text("\n")
    failure = mount_fails(proxy.url, options=[f"cafile={certs.ca}", f"token_file={empty}"])
    assert "empty" in failure.line and str(empty) in failure.line


@pytest.mark.parametrize("source", ["token_file", "env"])
def test_token_is_never_shown(make_proxy, make_mount, server, remote_dir, certs, workdir, source):
    proxy = make_proxy(token=TOKEN)
    options = [f"cafile={certs.ca}"]
    env = None
    if source == "token_file":
        options.append(f"token_file={token_file(workdir)}")
    else:
        env = {**os.environ, "AGFS_TOKEN": TOKEN}
    mount = make_mount(proxy.url, options=options, extra_args=["--debug"], env=env)
    local = mount.path / remote_dir.lstrip("/")

    (local / "one.txt").write_text("1\n")
    (local / "one.txt").rename(local / "two.txt")
    assert (local / "two.txt").read_text() == "1\n"
    os.mkdir(local / "sub")
    assert sorted(os.listdir(local)) == ["sub", "two.txt"]
    (local / "two.txt").unlink()
    assert not (local / "missing").exists()
    stats = (mount.path / ".agfs-stats").read_text()
    assert server.http.names(remote_dir) == {"sub"}
    assert proxy.header_values("authorization")[-1] == f"Bearer {TOKEN}"

    with open("/proc/self/mounts") as mounts:
        assert TOKEN not in mounts.read()
    assert TOKEN not in mount_entry(mount.path)["options"]
    with open(f"/proc/{mount.proc.pid}/cmdline", "rb") as cmdline:
        assert TOKEN.encode() not in cmdline.read()
    ps = subprocess.run(["ps", "-ww", "-eo", "args"], capture_output=True, text=True, check=True)
    assert str(mount.path) in ps.stdout and TOKEN not in ps.stdout
    log = mount.log()
    assert " DEBUG agfs_fuse.client: " in log, "--debug logged no requests: a vacuous check"
    assert TOKEN not in log and "Bearer" not in log
    assert TOKEN not in mount.output()
    assert TOKEN not in stats


def test_extra_headers_reach_the_proxy(
    make_proxy, make_mount, mount_fails, server, remote_dir, certs
):
    proxy = make_proxy(require_header=("X-Proxy-Key", "abc"))
    failure = mount_fails(proxy.url, options=[f"cafile={certs.ca}"])
    assert "refused access" in failure.line

    proxy.clear()
    mount = make_mount(
        proxy.url, options=[f"cafile={certs.ca}", "header=X-Proxy-Key:abc,header=X-Trace:t 1"]
    )
    (mount.path / remote_dir.lstrip("/") / "h.txt").write_text("headers\n")
    assert server.http.read(f"{remote_dir}/h.txt") == b"headers\n"
    seen = proxy.seen()
    assert seen and not {r.status for r in seen} & {401, 403}
    assert proxy.header_values("X-Proxy-Key") == ["abc"] * len(seen)
    assert proxy.header_values("X-Trace") == ["t 1"] * len(seen)


def test_reload_keeps_tls_and_token(make_proxy, make_mount, server, remote_dir, certs, workdir):
    first = make_proxy(token=TOKEN)
    second = make_proxy(token=TOKEN)
    options = [f"cafile={certs.ca}", f"token_file={token_file(workdir)}"]
    mount = make_mount(first.url, options=options)
    local = mount.path / remote_dir.lstrip("/")
    handshakes = first.handshakes
    first.clear()

    sh(f"echo > {mount.path}/reload")  # reconnect: a fresh client, a fresh TLS connection
    assert first.handshakes > handshakes
    health = [r for r in first.seen() if r.path.endswith("/health")]
    assert health and health[0].status == 200
    assert health[0].headers.get("authorization") == f"Bearer {TOKEN}"
    (local / "after-reload.txt").write_text("still https\n")
    assert server.http.read(f"{remote_dir}/after-reload.txt") == b"still https\n"

    sh(f"echo {second.url} > {mount.path}/reload")  # switch: same CA, same token
    assert mount.stats()["url"] == second.url
    server.http.write(f"{remote_dir}/via-second.txt", b"second proxy\n")
    assert (local / "via-second.txt").read_bytes() == b"second proxy\n"
    seen = second.seen()
    assert any("via-second.txt" in r.path and r.method == "GET" for r in seen)
    assert second.header_values("authorization") == [f"Bearer {TOKEN}"] * len(seen)
    assert not {r.status for r in seen} & {401, 403}
    wait_until(mount.alive, timeout=2, message="the mount to stay alive")
