"""An ``ls`` right after ``close()`` of a new file, with its first upload landing while the
listing is in flight, through the kernel: the proxy orders the requests so that the
server answers the listing before the upload and the mount gets that answer after it.

The kernel sends ``release`` (which uploads an empty new file) after ``close()`` has
returned, so this order happens by chance under load (the soak test once saw an empty
file missing from the mount's own listing); here it happens every time.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.faults.conftest import Rig, new_dir
from tests.support.mount import wait_until

pytestmark = pytest.mark.timeout(60)

CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL


def _listed_while_landing(rig: Rig, remote: str, local: str, name: str, make) -> list[str]:
    """What ``ls`` of ``local`` shows when the server answers it while the upload of
    ``name`` (started by ``make()``, which returns once ``close()`` did) is held, and the
    mount gets that answer only once the upload's answer has reached it."""
    upload = rig.proxy.pause("PUT", "/files", path=f"{remote}/{name}", count=1)
    make()
    assert wait_until(lambda: upload.hits == 1), "the upload never reached the proxy"
    listing = rig.proxy.hold_answer("GET", "/directories", path=remote, count=1)
    uploads_done = rig.proxy.forwarded["PUT /files"]
    with ThreadPoolExecutor(1) as pool:
        names = pool.submit(os.listdir, local)
        assert wait_until(listing.answered.is_set), "the listing never reached the server"
        upload.release()
        assert wait_until(lambda: rig.proxy.forwarded["PUT /files"] > uploads_done)
        listing.release()
        return sorted(names.result(timeout=30))


def test_ls_right_after_close_of_an_empty_new_file_shows_it(rig: Rig) -> None:
    remote, local = new_dir(rig)
    rig.http.write(f"{remote}/old", b"o")

    def touch() -> None:
        os.close(os.open(local / "empty", CREATE, 0o644))

    assert _listed_while_landing(rig, remote, str(local), "empty", touch) == ["empty", "old"]
    assert rig.http.read(f"{remote}/empty") == b""


def test_ls_right_after_close_of_a_new_file_renamed_before_its_upload(rig: Rig) -> None:
    remote, local = new_dir(rig)

    def make_and_rename() -> None:
        fd = os.open(local / "draft", CREATE, 0o644)
        os.rename(local / "draft", local / "final")
        os.close(fd)

    assert _listed_while_landing(rig, remote, str(local), "final", make_and_rename) == ["final"]
    assert rig.http.names(remote) == {"final"}
