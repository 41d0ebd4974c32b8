"""Files past 2 GiB on memfs, through the mount: a sparse one goes up in a few requests.

Over the server's body limit a file goes through a handle; only the spool's data ranges
are sent (its holes are zeros the plugin fills in), so a one-byte write past 2 GiB costs a
refused PUT and a couple of pwrites, not 2 GiB of zeros.
"""

from __future__ import annotations

import json
import os
import time

import pytest

from tests.mount.conftest import Server, _workspace
from tests.support.mount import Mount

BEYOND_2_GIB = 2**31 + 1


def _stats(mount: Mount) -> dict:
    return json.loads((mount.path / ".agfs-stats").read_text())


@pytest.mark.timeout(60)
def test_a_sparse_write_past_2_gib_is_uploaded_at_close(
    mounted: Mount, agfs_server: Server, request: pytest.FixtureRequest
) -> None:
    ws = _workspace("memfs", mounted, agfs_server.http, request)
    before = _stats(mounted)["requests"].get("PUT /handles/{id}/write", 0)
    fd = os.open(ws.p("sparse"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.pwrite(fd, b"x", BEYOND_2_GIB)
        started = time.monotonic()
    finally:
        os.close(fd)  # raises when the upload failed
    closing = time.monotonic() - started
    try:
        info = ws.http.stat(ws.r("sparse"))
        assert info is not None and info["size"] == BEYOND_2_GIB + 1
        assert ws.http.read(ws.r("sparse"), offset=BEYOND_2_GIB - 1, size=8) == b"\0x"
        with open(ws.p("sparse"), "rb") as f:
            f.seek(BEYOND_2_GIB - 3)
            assert f.read() == b"\0\0\0x"
        stats = _stats(mounted)
        pwrites = stats["requests"].get("PUT /handles/{id}/write", 0) - before
        assert pwrites <= 4, f"{pwrites} pwrites: the holes were uploaded"
        assert (stats["open_spools"], stats["parked_uploads"], stats["kept_spools"]) == (0, 0, [])
        assert closing < 20, f"close() took {closing:.1f} s"
    finally:
        ws.http.delete(ws.r("sparse"))  # 2 GiB of server memory
