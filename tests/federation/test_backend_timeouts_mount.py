"""Per-backend cache timeouts through the kernel: two servers in one mount, one with every
cache timeout 0 and one with long ones (as long as the mount-wide ones), each changed by
another client (plain HTTP to the server) behind the mount's back. Real ``stat`` calls on
the mounted paths; the long timeouts are far longer than the test, so nothing depends on
how fast it runs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.timeout(90)

LONG = 600  # seconds: longer than any run of this test


def _mount(make_server, make_federation, fed_tmp: Path, **extra: object):
    fresh, cached = make_server(), make_server()
    config = fed_tmp / "fed.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "options": {"attr_timeout": LONG, "entry_timeout": LONG, "negative_timeout": LONG},
                "backends": {
                    "/fresh": {
                        "url": fresh.url,
                        "root": "/memfs",
                        "attr_timeout": 0,
                        "entry_timeout": 0,
                        "negative_timeout": 0,
                    },
                    "/cached": {
                        "url": cached.url,
                        "root": "/memfs",
                        "attr_timeout": LONG,
                        "entry_timeout": LONG,
                        "negative_timeout": LONG,
                    },
                },
            }
        )
    )
    config.chmod(0o600)
    return make_federation(["-c", str(config)]), fresh, cached


def test_a_zero_timeout_backend_shows_another_clients_change_at_once_a_long_one_its_cache(
    make_server, make_federation, fed_tmp
) -> None:
    mount, fresh, cached = _mount(make_server, make_federation, fed_tmp)
    for server in (fresh, cached):
        server.http.write("/memfs/f", b"1")
    assert os.stat(mount.path / "fresh" / "f").st_size == 1
    assert os.stat(mount.path / "cached" / "f").st_size == 1
    assert not (mount.path / "fresh" / "later").exists()
    assert not (mount.path / "cached" / "later").exists()

    for server in (fresh, cached):  # another client changes both servers
        server.http.write("/memfs/f", b"12345")
        server.http.write("/memfs/later", b"new")

    assert os.stat(mount.path / "fresh" / "f").st_size == 5
    assert (mount.path / "fresh" / "later").read_bytes() == b"new"
    assert os.stat(mount.path / "cached" / "f").st_size == 1  # cached for LONG seconds
    assert not (mount.path / "cached" / "later").exists()  # so is its absence

    stats = json.loads((mount.path / ".agfs-stats").read_bytes())["backends"]
    assert stats["/fresh"]["cache_timeouts"]["attr"] == 0
    assert stats["/cached"]["cache_timeouts"]["attr"] == LONG


def test_a_backend_mounted_at_run_time_takes_its_timeouts_from_its_mounts_line(
    make_server, make_federation, fed_tmp
) -> None:
    mount, _, cached = _mount(make_server, make_federation, fed_tmp)
    late = make_server()
    late.http.write("/memfs/f", b"1")
    mount.control(".mounts", f"mount /late {late.url} root=/memfs attr_timeout=0\n")
    assert os.stat(mount.path / "late" / "f").st_size == 1
    late.http.write("/memfs/f", b"123")
    assert os.stat(mount.path / "late" / "f").st_size == 3
    stats = json.loads((mount.path / ".agfs-stats").read_bytes())["backends"]
    assert stats["/late"]["cache_timeouts"]["attr"] == 0
    assert stats["/late"]["cache_timeouts"]["entry"] == LONG  # the mount-wide default
