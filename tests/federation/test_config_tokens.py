"""A backend's token written in a federation config file: sent as that backend's bearer
token only, never shown (``repr``, errors), refused in ``.mounts`` and ``-o``, and a
warning when other users can read the file that holds it. No server, no kernel."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from agfs_fuse.connect import ConnectError, request_headers
from agfs_fuse.federation_config import FederationError, load_config, parse_mount_line
from agfs_fuse.options import MountOptions, OptionError, parse_options

TOKEN = "in-file-t0ken"


def _config(path: Path, mode: int, backends: dict[str, object]) -> Path:
    path.write_text(yaml.safe_dump({"backends": backends}))
    path.chmod(mode)
    return path


def test_each_backend_sends_its_own_token(tmp_path: Path) -> None:
    shared_token = tmp_path / "shared.token"
    shared_token.write_text("from-file\n")
    shared_token.chmod(0o600)
    config = _config(
        tmp_path / "fed.yaml",
        0o600,
        {
            "/a": {"url": "http://a:1", "token": f" {TOKEN}\n"},
            "/b": {"url": "http://b:1"},
            "/c": {"url": "http://c:1", "token_file": str(shared_token)},
        },
    )
    federation = load_config(config, [f"token_file={shared_token}"])
    a, b, c = (request_headers(spec.options) for spec in federation.backends)
    assert a["Authorization"] == f"Bearer {TOKEN}"  # its own token beats the mount-wide file
    assert b["Authorization"] == c["Authorization"] == "Bearer from-file"
    assert federation.warnings == ()
    assert TOKEN not in repr(federation)


def test_a_config_file_holding_tokens_warns_when_others_can_read_it(tmp_path: Path) -> None:
    holding = _config(tmp_path / "t.yaml", 0o640, {"/a": {"url": "http://a:1", "token": TOKEN}})
    [warning] = load_config(holding, []).warnings
    assert warning == (
        f"config file {holding}, which holds tokens, can be read by other users (mode 0640);"
        " chmod 600 it"
    )
    plain = _config(tmp_path / "p.yaml", 0o644, {"/a": {"url": "http://a:1"}})
    assert load_config(plain, []).warnings == ()  # nothing secret in it


@pytest.mark.parametrize(
    ("token", "says"),
    [("", "non-empty string"), (7, "non-empty string"), (["x"], "non-empty string")],
)
def test_a_token_must_be_a_string(tmp_path: Path, token: object, says: str) -> None:
    config = _config(tmp_path / "fed.yaml", 0o600, {"/a": {"url": "http://a:1", "token": token}})
    with pytest.raises(FederationError, match=says):
        load_config(config, [])


def test_a_token_that_would_inject_headers_is_refused_without_showing_it(tmp_path: Path) -> None:
    bad = "abc\r\nX-Evil: 1"
    config = _config(tmp_path / "fed.yaml", 0o600, {"/a": {"url": "http://a:1", "token": bad}})
    [spec] = load_config(config, []).backends
    with pytest.raises(ConnectError, match="the token in the config file is not usable") as err:
        request_headers(spec.options)
    assert "abc" not in str(err.value)


def test_a_token_is_refused_in_mounts_lines_and_as_an_option() -> None:
    with pytest.raises(FederationError, match="token_file=PATH"):
        parse_mount_line(["/d", "http://d:1", f"token={TOKEN}"], MountOptions(), [])
    with pytest.raises(OptionError, match="unknown mount option 'token'"):
        parse_options([f"token={TOKEN}"])
