"""A file over the server's body limit: through handles where the plugin has them, else
EFBIG at close with no byte lost.

The server runs with a small ``--max-body``; the whole-file PUT of a bigger file gets 413.
On localfs (no handle API) the mount must report "File too large" from ``close()`` and keep
the spool (under ``cache_dir``) with the full content; on memfs it uploads through a handle
in chunks below the limit.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from tests.mount.conftest import run
from tests.support.mount import wait_until

LIMIT = 1 << 20  # 1 MiB


def _files_with_content(root: Path, data: bytes) -> list[Path]:
    """Every regular file under ``root`` whose content is exactly ``data``."""
    found = []
    for path in root.rglob("*"):
        if path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data:
            found.append(path)
    return found


@pytest.fixture
def limited(make_server, make_mount, tmp_path: Path):
    """(server, mount, cache_dir) with a 1 MiB body limit; workdir /memfs/lim."""
    server = make_server(localfs=True, max_body=LIMIT)
    cache_dir = tmp_path / "spool-cache"
    mount = make_mount(server.url, options=[f"cache_dir={cache_dir}"])
    server.http.mkdir("/memfs/lim")
    server.http.mkdir("/local/lim")
    return server, mount, cache_dir


@pytest.mark.timeout(60)
def test_cp_over_body_limit_goes_through_handles_on_memfs(limited, tmp_path: Path) -> None:
    server, mount, cache_dir = limited
    data = os.urandom(3 * LIMIT + 123)
    src = tmp_path / "big"
    src.write_bytes(data)
    run(["cp", str(src), str(mount.path / "memfs" / "lim" / "big")])
    assert server.http.read("/memfs/lim/big") == data
    assert not _files_with_content(cache_dir, data)  # uploaded: no spool left


@pytest.mark.timeout(60)
@pytest.mark.parametrize("root", ["/local"])
def test_cp_over_body_limit_fails_and_keeps_spool(limited, tmp_path: Path, root: str) -> None:
    server, mount, cache_dir = limited
    data = os.urandom(3 * LIMIT)
    src = tmp_path / "big"
    src.write_bytes(data)
    target = mount.path / root.lstrip("/") / "lim" / "big"
    proc = run(["cp", str(src), str(target)], check=False)
    assert proc.returncode != 0, "cp of a file over the body limit succeeded"
    assert b"File too large" in proc.stderr, proc.stderr
    # the server does not have a partial file
    info = server.http.stat(f"{root}/lim/big")
    assert info is None or info["size"] != len(data) or server.http.read(f"{root}/lim/big") != data
    # nothing lost: the full content is on local disk under the cache dir
    kept = _files_with_content(cache_dir, data)
    assert kept, f"no spool with the file's content under {cache_dir}\n" + mount.describe()
    assert mount.alive()


@pytest.mark.timeout(60)
def test_python_close_raises_efbig_and_old_content_stays(limited) -> None:
    server, mount, cache_dir = limited
    server.http.write("/local/lim/existing", b"old content")
    path = mount.path / "local" / "lim" / "existing"
    assert path.read_bytes() == b"old content"
    data = os.urandom(2 * LIMIT)
    f = open(path, "wb")  # noqa: SIM115
    f.write(data)
    with pytest.raises(OSError) as info:
        f.close()
    assert info.value.errno == errno.EFBIG
    assert server.http.read("/local/lim/existing") == b"old content"
    assert _files_with_content(cache_dir, data), mount.describe()


@pytest.mark.timeout(60)
def test_spool_path_is_logged(limited, tmp_path: Path) -> None:
    server, mount, cache_dir = limited
    data = os.urandom(LIMIT + 1)
    src = tmp_path / "big"
    src.write_bytes(data)
    run(["cp", str(src), str(mount.path / "local" / "lim" / "logged")], check=False)
    kept = _files_with_content(cache_dir, data)
    assert kept, mount.describe()

    def logged() -> bool:
        log = mount.log() + mount.output()
        return any(str(path) in log for path in kept)

    # the kernel sends release (where the spool may be reported) after close() returned
    wait_until(logged, 5, message=f"spool path {kept} in the mount's log\n{mount.describe()}")


def test_under_limit_still_works(limited) -> None:
    server, mount, _ = limited
    data = os.urandom(LIMIT // 2)
    (mount.path / "memfs" / "lim" / "small").write_bytes(data)
    assert server.http.read("/memfs/lim/small") == data
