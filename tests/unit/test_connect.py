"""Credentials and TLS settings: where tokens come from and how bad files are reported."""

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
