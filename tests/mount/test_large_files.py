"""Files past 2 GiB on memfs, through the mount: a sparse one goes up in a few requests.

Over the server's body limit a file goes through a handle; only the spool's data ranges
are sent (its holes are zeros the plugin fills in), so a one-byte write past 2 GiB costs a
refused PUT and a couple of pwrites, not 2 GiB of zeros.
"""

from __future__ import annotations

import os
import time

import pytest

BEYOND_2_GIB = 2**31 + 1
#: Sending the 2 GiB of holes as zeros takes minutes; the few requests for one byte take
#: well under a second even on a loaded machine. The request count below is the precise
#: check; this bound only catches a close that does far too much.
CLOSE_BOUND = 30.0


@pytest.mark.timeout(90)
def test_a_sparse_write_past_2_gib_is_uploaded_at_close(make_server, make_mount) -> None:
    # a server of its own: the 2 GiB file lives in memfs memory until the server stops
    server = make_server(localfs=False)
    server.http.mkdir("/memfs/big")
    mount = make_mount(server.url)
    local = mount.path / "memfs" / "big" / "sparse"
    remote = "/memfs/big/sparse"
    before = mount.stats()["requests"].get("PUT /handles/{id}/write", 0)
    fd = os.open(local, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.pwrite(fd, b"x", BEYOND_2_GIB)
        started = time.monotonic()
    finally:
        os.close(fd)  # raises when the upload failed
    closing = time.monotonic() - started
    try:
        info = server.http.stat(remote)
        assert info is not None and info["size"] == BEYOND_2_GIB + 1
        assert server.http.read(remote, offset=BEYOND_2_GIB - 1, size=8) == b"\0x"
        with open(local, "rb") as f:
            f.seek(BEYOND_2_GIB - 3)
            assert f.read() == b"\0\0\0x"
        stats = mount.stats()
        pwrites = stats["requests"].get("PUT /handles/{id}/write", 0) - before
        assert pwrites <= 4, f"{pwrites} pwrites: the holes were uploaded"
        assert (stats["open_spools"], stats["parked_uploads"], stats["kept_spools"]) == (0, 0, [])
        assert closing < CLOSE_BOUND, f"close() took {closing:.1f} s"
    finally:
        server.http.delete(remote)  # 2 GiB of server memory, until the server stops
