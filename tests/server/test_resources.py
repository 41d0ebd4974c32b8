"""The server under resource exhaustion: out of file descriptors, it must not spin."""

from __future__ import annotations

import os
import resource
import socket
import time
from pathlib import Path

import httpx
import pytest

from tests.support.mount import wait_until
from tests.support.server import start_server


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@pytest.mark.timeout(60)
def test_accept_backs_off_when_descriptors_run_out(tmp_path: Path) -> None:
    """With its descriptors exhausted the server sleeps between accepts (Go: 5 ms to 1 s)
    instead of spinning a core, and serves again once descriptors are free."""
    srv = start_server(tmp_path)
    clients: list[socket.socket] = []
    try:
        assert srv.proc is not None
        pid = srv.proc.pid
        limit = _open_fds(pid) + 8
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (limit, limit))
        for _ in range(40):  # more than it can accept: the backlog keeps the rest
            clients.append(socket.create_connection(("127.0.0.1", srv.port), timeout=5))
        wait_until(lambda: _open_fds(pid) >= limit, timeout=10)
        before_cpu, before_wall = _cpu_seconds(pid), time.monotonic()
        # Seven failed accepts in a row take 5+10+...+320 ms = 0.6 s of back-off.
        wait_until(lambda: srv.stderr().count("Accept error") >= 7, timeout=10)
        used, wall = _cpu_seconds(pid) - before_cpu, time.monotonic() - before_wall
        assert used < 0.5 * wall + 0.2, f"{used:.2f} s of CPU in {wall:.2f} s while out of fds"
        for c in clients:
            c.close()
        clients.clear()

        def healthy() -> bool:
            with httpx.Client(base_url=srv.url, timeout=2) as c:
                return c.get("/health").status_code == 200

        wait_until(healthy, timeout=15, ignore=(httpx.HTTPError,))
    finally:
        for c in clients:
            c.close()
        srv.stop()
