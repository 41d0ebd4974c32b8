"""The ``serve`` command line: startup, shutdown, config handling and its errors."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.support.server import ServerProcess, run_server, start_server, write_config


def _run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agfs_fuse.server", *args],
        capture_output=True,
        text=True,
        timeout=20,
        cwd=cwd,
    )


def _one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""
    return lines[0]


def test_listening_line_and_clean_sigterm() -> None:
    srv = ServerProcess("--log-level", "debug")
    srv.start()
    assert srv.url == f"http://127.0.0.1:{srv.port}/api/v1"
    assert srv.wait_ready()["ready"] is True
    assert srv.stop() == 0
    assert "mounted at /memfs" in srv.stderr()


def test_sigint_exits_zero() -> None:
    with run_server() as srv:
        assert srv.proc is not None
        srv.proc.send_signal(signal.SIGINT)
        assert srv.proc.wait(timeout=10) == 0


def test_busy_port() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        line = _one_error_line(_run("--addr", f"127.0.0.1:{port}"))
    assert "cannot listen on 127.0.0.1:" in line and "in use" in line


@pytest.mark.parametrize("addr", ["nonsense", "127.0.0.1:99999", "::1:80"])
def test_bad_addr(addr: str) -> None:
    proc = _run("--addr", addr)
    assert proc.returncode == 2
    assert "invalid address" in _one_error_line(proc)


def test_missing_config(tmp_path: Path) -> None:
    proc = _run("-c", str(tmp_path / "nope.yaml"))
    assert proc.returncode == 2
    assert "cannot read config file" in _one_error_line(proc)


def test_malformed_yaml(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("plugins: [unclosed\n  memfs: {")
    proc = _run("-c", str(cfg))
    assert proc.returncode == 2
    assert "cannot parse config file" in _one_error_line(proc)


def test_unknown_plugin(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "c.yaml", {"plugins": {"kvfs": {"enabled": True, "path": "/kv"}}})
    proc = _run("-c", str(cfg))
    assert proc.returncode == 2
    assert "unknown plugin 'kvfs'" in _one_error_line(proc)


def test_missing_local_dir_runs_degraded(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    config = {
        "plugins": {
            "memfs": {"enabled": True, "path": "/memfs"},
            "localfs": {"enabled": True, "path": "/local", "config": {"local_dir": str(missing)}},
        }
    }
    srv = start_server(tmp_path, config=config, ready=False)
    try:
        status, body = srv.get_json("/ready")
        assert status == 503
        assert body["status"] == "degraded" and body["ready"] is False and body["degraded"]
        assert body["mounts"] == {"total": 3, "pending": 0, "mounted": 2, "failed": 1}
        status, health = srv.get_json("/health")
        assert status == 200 and health["status"] == "degraded"
        mounts = {m["path"]: m for m in srv.get_json("/mounts")[1]["mounts"]}
        assert mounts["/local"]["status"] == "failed"
        assert mounts["/local"]["error"] == f"base path does not exist: {missing}"
        assert mounts["/local"]["config"] == {"local_dir": str(missing)}
        assert f"base path does not exist: {missing}" in srv.stderr()
        assert httpx.get(srv.url + "/stat", params={"path": "/memfs"}).status_code == 200
    finally:
        assert srv.stop() == srv.TERMINATED_STATUS


def test_config_server_section_and_flag_override(tmp_path: Path) -> None:
    config = {
        "server": {"address": "127.0.0.1:1", "max_request_body_bytes": 100, "log_level": "warn"},
        "plugins": {"memfs": {"enabled": True, "path": "/m"}, "queuefs": {"path": "/q"}},
    }
    srv = start_server(tmp_path, config=config)  # its address flag overrides the config's
    try:
        mounts = [m["path"] for m in srv.get_json("/mounts")[1]["mounts"]]
        assert mounts == ["/dev", "/m"]  # queuefs has no 'enabled: true'
        r = httpx.put(srv.url + "/files", params={"path": "/m/f"}, content=b"x" * 101)
        assert r.status_code == 413
        assert r.json()["error"] == "request body exceeds maximum size of 100 bytes"
    finally:
        srv.stop()


def test_list_of_instances(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    config = {
        "plugins": {
            "memfs": [
                {"name": "one", "enabled": True, "path": "/m1"},
                {"name": "two", "enabled": True, "path": "/deep/m2"},
                {"name": "off", "enabled": False, "path": "/m3"},
                {"name": "inner", "enabled": True, "path": "/m1/inner"},
            ],
            "localfs": [
                {"name": "rel", "enabled": True, "path": "/l", "config": {"local_dir": "a"}}
            ],
        }
    }
    srv = start_server(tmp_path, config=config)
    try:
        mounts = srv.get_json("/mounts")[1]["mounts"]
        assert [(m["path"], m.get("instance")) for m in mounts] == [
            ("/deep/m2", "two"),
            ("/dev", "devfs"),
            ("/l", "rel"),
            ("/m1", "one"),
            ("/m1/inner", "inner"),
        ]
        # a mount inside a mount shows up in its parent's listing
        inner = [
            f for f in srv.get_json("/directories?path=/m1")[1]["files"] if f["name"] == "inner"
        ]
        assert inner[0]["meta"] == {"Name": "", "Type": "mount-point", "Content": None}
        status, listing = srv.get_json("/directories?path=/")
        assert [f["name"] for f in listing["files"]] == ["deep", "dev", "l", "m1"]
        status, deep = srv.get_json("/stat?path=/deep")
        assert deep["isDir"] and deep["meta"]["Type"] == "mount-point"
        httpx.put(srv.url + "/files", params={"path": "/l/f"}, content=b"rel")
        assert (tmp_path / "a" / "f").read_bytes() == b"rel"
    finally:
        srv.stop()


def test_unknown_plugin_config_key_fails_the_mount(tmp_path: Path) -> None:
    config = {"plugins": {"memfs": {"enabled": True, "path": "/m", "config": {"bogus": 1}}}}
    srv = start_server(tmp_path, config=config, ready=False)
    try:
        mounts = {m["path"]: m for m in srv.get_json("/mounts")[1]["mounts"]}
        assert mounts["/m"]["error"] == (
            "unknown configuration parameter(s) 'bogus' - allowed parameters are: "
            "'init_dirs', 'mount_path'"
        )
        assert srv.get_json("/ready")[0] == 503
    finally:
        srv.stop()


@pytest.mark.reference_only("tests --test-hooks itself, a reference server feature")
def test_test_hooks_count_requests(server: ServerProcess) -> None:
    with httpx.Client(base_url=server.url) as c:
        assert c.post("/_test/reset").status_code == 200
        c.put("/files", params={"path": "/memfs/hooked"}, content=b"x")
        c.get("/files", params={"path": "/memfs/hooked"})
        c.get("/files", params={"path": "/memfs/hooked"})
        hid = c.post("/handles/open", params={"path": "/memfs/hooked", "flags": "0"}).json()[
            "handle_id"
        ]
        c.get(f"/handles/{hid}/read")
        stats = c.get("/_test/stats").json()
        assert stats["requests"] == {
            "GET /files": 2,
            "PUT /files": 1,
            "POST /handles/open": 1,
            "GET /handles/{id}/read": 1,
        }
        assert hid in stats["open_handles"]
        c.delete(f"/handles/{hid}")
        assert hid not in c.get("/_test/stats").json()["open_handles"]


def test_test_hooks_off_by_default(local_server: ServerProcess) -> None:
    for method, route in [("GET", "/_test/stats"), ("POST", "/_test/reset")]:
        r = httpx.request(method, local_server.url + route)
        assert r.status_code == 404 and r.text == "404 page not found\n"


def test_help_mentions_test_only() -> None:
    proc = _run("--help")
    assert proc.returncode == 0
    assert "TEST ONLY" in proc.stdout and "--max-body" in proc.stdout
