"""A mount whose environment names an HTTP proxy sends every request through it, and its
files still read and write byte for byte."""

from __future__ import annotations

import os

from tests.mount.conftest import run, seen
from tests.support.forward_proxy import ForwardProxy

PROXY_VARIABLES = {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}


def test_a_mount_behind_an_http_proxy_reads_and_writes_through_it(
    make_server, make_mount, tmp_path
) -> None:
    server = make_server(localfs=False)
    data = os.urandom(3 << 20)
    source = tmp_path / "source"
    source.write_bytes(data)
    with ForwardProxy() as proxy:
        env = {k: v for k, v in os.environ.items() if k.lower() not in PROXY_VARIABLES}
        env["HTTP_PROXY"] = proxy.url
        mount = make_mount(server.url, env=env)
        try:
            target = mount.path / "memfs" / "through-proxy"
            run(["cp", str(source), str(target)])
            assert server.http.read("/memfs/through-proxy") == data
            assert run(["cat", str(target)]).stdout == data
            server.http.write("/memfs/from-server", data[::-1])  # never in the page cache
            assert seen(mount.path / "memfs" / "from-server").read_bytes() == data[::-1]
            assert "through-proxy" in run(["ls", str(mount.path / "memfs")]).stdout.decode()
        finally:
            mount.unmount()
    assert proxy.refused == []
    assert proxy.relayed("PUT", "/api/v1/files") == 1
    assert proxy.relayed("GET", "/api/v1/files") >= 1
    assert proxy.relayed("GET", "/api/v1/directories") >= 1
    assert len(proxy.requests) >= 3
