"""How the mount connects: TLS verification, client certificates, tokens and headers.

Built once at mount time from the options, then used for every client the mount makes
(the first one and each ``/reload``), so a switched server gets the same credentials.
The token is read from a file or ``$AGFS_TOKEN``, never from the command line, so it
shows neither in ``ps`` nor in ``/proc/mounts``, and it is never logged.
"""

from __future__ import annotations

import logging
import os
import ssl
from collections.abc import Callable
from pathlib import Path

from .client import AgfsClient
from .local_config_files import (
    LocalFileError,
    read_small_file,
    readable_by_others_warning,
    require_regular_file,
)
from .options import MountOptions, check_header_value
from .stats import RequestStats

log = logging.getLogger(__name__)

TOKEN_ENV = "AGFS_TOKEN"


class ConnectError(Exception):
    """A TLS or credential setting that cannot be used; the message is one line."""


MAX_TOKEN_FILE = 64 * 1024
"""A token file is read whole; a bigger one is a mistake, not a token."""


def _require_regular_file(path: Path, what: str) -> None:
    try:
        require_regular_file(path, what)
    except LocalFileError as exc:
        raise ConnectError(str(exc)) from None


def _read(path: Path, what: str) -> str:
    try:
        data = read_small_file(path, MAX_TOKEN_FILE, what)
    except LocalFileError as exc:
        raise ConnectError(str(exc)) from None
    try:
        return data.decode().strip()
    except UnicodeDecodeError:
        raise ConnectError(f"{what} {path} is not UTF-8 text") from None


def _warn_if_readable_by_others(path: Path) -> None:
    """Like ssh with a private key, but only a warning: the token still works."""
    warning = readable_by_others_warning(path, f"token file {path}")
    if warning is not None:
        log.warning("%s", warning)


def _checked_token(token: str, source: str) -> str:
    """A token becomes an ``Authorization`` header: a newline in it would end that header
    and inject others, so it is refused like a bad ``-o header=``."""
    try:
        check_header_value(token)
    except ValueError as exc:
        raise ConnectError(f"the token in {source} is not usable: it {exc}") from None
    return token


def tls_context(options: MountOptions) -> ssl.SSLContext | bool:
    """The client's ``verify`` setting (either request path): a context, or False for
    ``-o insecure``."""
    if options.insecure:
        log.warning(
            "-o insecure: the server's TLS certificate is NOT verified; anyone on the path "
            "can read and change your files"
        )
        return False
    for path, option in (
        (options.cafile, "cafile"),
        (options.certfile, "certfile"),
        (options.keyfile, "keyfile"),
    ):
        if path is not None:
            _require_regular_file(path, f"-o {option} file")
    try:
        context = ssl.create_default_context(cafile=str(options.cafile) if options.cafile else None)
    except (OSError, ssl.SSLError) as exc:
        raise ConnectError(f"cannot use -o cafile={options.cafile}: {exc}") from None
    if options.certfile and options.keyfile:
        try:
            context.load_cert_chain(str(options.certfile), str(options.keyfile))
        except (OSError, ssl.SSLError) as exc:
            raise ConnectError(
                f"cannot use -o certfile={options.certfile},keyfile={options.keyfile}: {exc}"
            ) from None
    return context


def request_headers(options: MountOptions) -> dict[str, str]:
    headers = dict(options.header)
    token = None
    if options.token_file:
        token = _read(options.token_file, "token file")
        if not token:
            raise ConnectError(f"token file {options.token_file} is empty")
        _warn_if_readable_by_others(options.token_file)
        token = _checked_token(token, f"token file {options.token_file}")
    elif options.token:
        token = _checked_token(options.token, "the config file")
    elif os.environ.get(TOKEN_ENV):
        token = _checked_token(os.environ[TOKEN_ENV].strip(), f"${TOKEN_ENV}")
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers


def client_factory(options: MountOptions, stats: RequestStats) -> Callable[[str], AgfsClient]:
    """A function making clients for a URL with this mount's TLS, headers and deadline."""
    verify = tls_context(options)
    headers = request_headers(options)

    def make(url: str) -> AgfsClient:
        return AgfsClient(url, timeout=options.timeout, verify=verify, headers=headers, stats=stats)

    return make
