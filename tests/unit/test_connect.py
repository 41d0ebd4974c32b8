"""Credentials and TLS settings: where tokens come from and how bad files are reported."""

import os
import ssl

import pytest

from agfs_fuse.connect import ConnectError, request_headers, tls_context
from agfs_fuse.options import parse_options


def test_token_file_wins_over_the_environment(tmp_path, monkeypatch):
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    monkeypatch.setenv("AGFS_TOKEN", "from-env")
    headers = request_headers(parse_options([f"token_file={token},header=X-A:1"]))
    assert headers == {"X-A": "1", "Authorization": "Bearer s3cret"}


def test_token_from_the_environment(monkeypatch):
    monkeypatch.setenv("AGFS_TOKEN", " env-token ")
    assert request_headers(parse_options([]))["Authorization"] == "Bearer env-token"


def test_no_token_no_authorization_header(monkeypatch):
    monkeypatch.delenv("AGFS_TOKEN", raising=False)
    assert request_headers(parse_options([])) == {}


@pytest.mark.parametrize("content", [None, "  \n"])
def test_missing_or_empty_token_file_is_a_clear_error(tmp_path, content):
    token = tmp_path / "token"
    if content is not None:
        token.write_text(content)
    with pytest.raises(ConnectError) as caught:
        request_headers(parse_options([f"token_file={token}"]))
    assert str(token) in str(caught.value)


def test_default_tls_verifies_and_insecure_warns(caplog):
    context = tls_context(parse_options([]))
    assert isinstance(context, ssl.SSLContext) and context.verify_mode == ssl.CERT_REQUIRED
    assert tls_context(parse_options(["insecure"])) is False
    assert "NOT verified" in caplog.text


def test_unreadable_cafile_and_bad_client_cert_are_clear_errors(tmp_path):
    with pytest.raises(ConnectError, match="cafile"):
        tls_context(parse_options([f"cafile={tmp_path / 'missing.pem'}"]))
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate")
    with pytest.raises(ConnectError, match="certfile"):
        tls_context(parse_options([f"certfile={bad},keyfile={bad}"]))


@pytest.mark.parametrize("token", ["abc\nX-Injected: 1", "abc\rdef", "abc\x00def"])
def test_a_token_that_would_inject_headers_is_refused(tmp_path, monkeypatch, token):
    monkeypatch.delenv("AGFS_TOKEN", raising=False)
    path = tmp_path / "token"
    path.write_text(token + "\n")
    path.chmod(0o600)
    with pytest.raises(ConnectError) as caught:
        request_headers(parse_options([f"token_file={path}"]))
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


def test_a_token_in_the_environment_that_would_inject_headers_is_refused(monkeypatch):
    monkeypatch.setenv("AGFS_TOKEN", "abc\nX-Injected: 1")
    with pytest.raises(ConnectError, match="AGFS_TOKEN"):
        request_headers(parse_options([]))


def test_a_token_file_others_can_read_gives_a_warning(tmp_path, caplog):
    path = tmp_path / "token"
    path.write_text("s3cret\n")
    path.chmod(0o600)
    request_headers(parse_options([f"token_file={path}"]))
    assert "chmod 600" not in caplog.text
    path.chmod(0o644)
    assert request_headers(parse_options([f"token_file={path}"]))["Authorization"] == (
        "Bearer s3cret"
    )
    assert "can be read by other users (mode 0644); chmod 600" in caplog.text


def test_a_fifo_or_huge_credentials_file_is_refused_without_hanging(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(ConnectError, match="not a regular file"):
        request_headers(parse_options([f"token_file={fifo}"]))
    for option in (f"cafile={fifo}", f"certfile={fifo},keyfile={fifo}"):
        with pytest.raises(ConnectError, match="not a regular file"):
            tls_context(parse_options([option]))
    huge = tmp_path / "huge"
    huge.write_bytes(b"x" * (1 << 20))
    with pytest.raises(ConnectError, match="larger than"):
        request_headers(parse_options([f"token_file={huge}"]))
