"""A federation from a YAML file: per-backend connection settings, and one-line errors.

One backend sits behind a TLS proxy that wants its own CA, a token and a header; the
other is plain HTTP. Each must get exactly its own settings.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from tests.federation.conftest import run
from tests.support.mount import is_mounted, mount_entry
from tests.support.tls import TlsProxy, make_certs

pytestmark = pytest.mark.timeout(60)

TOKEN = "fed-t0ken-never-shown"


def _write_config(path: Path, document: object) -> Path:
    path.write_text(yaml.safe_dump(document))
    return path


def test_each_backend_connects_with_its_own_tls_token_and_headers(
    make_server, make_federation, fed_tmp
) -> None:
    secure_server, plain_server = make_server(), make_server()
    certs = make_certs(fed_tmp / "pki")
    token = fed_tmp / "token"
    token.write_text(TOKEN + "\n")
    token.chmod(0o600)
    proxy = TlsProxy(
        secure_server.url, certs, token=TOKEN, require_header=("X-Team", "blue")
    ).start()
    try:
        config = _write_config(
            fed_tmp / "fed.yaml",
            {
                "backends": {
                    "/secure": {
                        "url": proxy.url,
                        "root": "/memfs",
                        "cafile": str(certs.ca),
                        "token_file": str(token),
                        "headers": {"X-Team": "blue"},
                        "timeout": 5,
                    },
                    "/plain": {"url": plain_server.url},
                },
                "options": {"attr_timeout": 1},
            },
        )
        mount = make_federation(["-c", str(config)])
        assert mount_entry(mount.path)["source"] == str(config)
        (mount.path / "secure" / "via-tls").write_bytes(b"over https")
        (mount.path / "plain" / "memfs" / "via-http").write_bytes(b"over http")
        assert secure_server.http.read("/memfs/via-tls") == b"over https"
        assert plain_server.http.read("/memfs/via-http") == b"over http"
        assert proxy.handshakes >= 1
        assert set(proxy.header_values("Authorization")) == {f"Bearer {TOKEN}"}
        assert TOKEN not in mount.log_file.read_text()
    finally:
        proxy.stop()


@pytest.mark.parametrize(
    ("backends", "says"),
    [
        ({"/a/b": {"url": "http://127.0.0.1:1"}}, "nested"),
        ({"/": {"url": "http://127.0.0.1:1"}}, "mount root"),
        ({"/reload": {"url": "http://127.0.0.1:1"}}, "control file"),
        ({"/a": {"url": "ftp://host"}}, "/a"),
        ({"/a": {"url": "http://127.0.0.1:1", "colour": "blue"}}, "unknown setting 'colour'"),
        ({"/a": {"url": "http://127.0.0.1:1", "cafile": "/nonexistent/ca.pem"}}, "cafile"),
    ],
)
def test_a_bad_config_file_is_one_clear_line_and_nothing_is_mounted(
    fed_tmp, backends, says
) -> None:
    config = _write_config(fed_tmp / "bad.yaml", {"backends": backends})
    mountpoint = fed_tmp / "mnt"
    mountpoint.mkdir(exist_ok=True)
    result = run([sys.executable, "-m", "agfs_fuse", "mount", "-c", str(config), str(mountpoint)])
    lines = result.stderr.decode().strip().splitlines()
    assert result.returncode != 0 and len(lines) == 1, result.stderr
    assert lines[0].startswith("agfs-fuse: error: ") and says in lines[0], lines
    assert not is_mounted(mountpoint)


def test_an_unreadable_config_file_and_mixed_forms_are_refused(fed_tmp) -> None:
    mountpoint = fed_tmp / "mnt"
    mountpoint.mkdir()
    agfs = [sys.executable, "-m", "agfs_fuse", "mount"]
    missing = run([*agfs, "-c", str(fed_tmp / "missing.yaml"), str(mountpoint)])
    assert b"cannot read config file" in missing.stderr
    both = run([*agfs, "--map", "/a=http://h:1", "-c", "x.yaml", str(mountpoint)])
    assert b"not both" in both.stderr
    twice = run([*agfs, "--map", "/a=http://h:1", "--map", "/a/=http://h:2", str(mountpoint)])
    assert b"given twice" in twice.stderr
    assert not is_mounted(mountpoint)


def test_a_backend_root_that_is_not_on_its_server_is_a_mount_error(make_server, fed_tmp) -> None:
    server = make_server()
    mountpoint = fed_tmp / "mnt"
    mountpoint.mkdir()
    result = run(
        [
            sys.executable,
            "-m",
            "agfs_fuse",
            "mount",
            "-c",
            str(
                _write_config(
                    fed_tmp / "fed.yaml",
                    {
                        "backends": {
                            "/ok": {"url": server.url},
                            "/typo": {"url": server.url, "root": "/memfz"},
                        }
                    },
                )
            ),
            str(mountpoint),
        ]
    )
    assert result.returncode != 0
    assert b"backend /typo: root /memfz" in result.stderr, result.stderr
    assert not is_mounted(mountpoint)
