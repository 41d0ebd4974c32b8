"""Filesystem errors as the real server's handlers see them.

The Go server maps a few *typed* errors to status codes (not found 404, permission 403,
already exists 409, not supported 501; invalid argument 400 too, but no plugin here
raises it) and everything else to 500 with the error text. Plugins raise these; the
route layer only reads ``status`` and ``message``. Message texts follow the Go source
exactly, because clients parse them.
"""

from __future__ import annotations


class FsError(Exception):
    """An untyped Go error: 500 with its text."""

    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(FsError):
    """``filesystem.ErrNotFound`` / ``os.ErrNotExist``: 404."""

    status = 404


class PermissionDenied(FsError):
    """``filesystem.ErrPermissionDenied``: 403."""

    status = 403


class AlreadyExists(FsError):
    """``filesystem.ErrAlreadyExists``: 409."""

    status = 409


class NotSupported(FsError):
    """``filesystem.ErrNotSupported``: 501."""

    status = 501


class GoEOF(FsError):
    """Go's ``io.EOF`` escaping to a handler (the touch and digest bugs): 500 ``EOF``."""

    def __init__(self) -> None:
        super().__init__("EOF")


class AbortConnection(Exception):  # noqa: N818 - it is a control signal, not an error
    """The Go handler would panic: net/http then drops the connection with no response."""


def not_found(op: str, path: str) -> NotFound:
    """``filesystem.NewNotFoundError``: ``"<op>: <path>: not found"``."""
    return NotFound(f"{op}: {path}: not found" if op else f"{path}: not found")


def bare_not_found() -> NotFound:
    """The sentinel ``filesystem.ErrNotFound`` itself: ``"not found"``."""
    return NotFound("not found")


def permission_denied(op: str, path: str, reason: str = "") -> PermissionDenied:
    """``filesystem.NewPermissionDeniedError``."""
    if reason:
        return PermissionDenied(f"{op}: {path}: permission denied ({reason})")
    if op:
        return PermissionDenied(f"{op}: {path}: permission denied")
    return PermissionDenied(f"{path}: permission denied")


def already_exists(resource: str, path: str) -> AlreadyExists:
    """``filesystem.NewAlreadyExistsError``: ``"<resource> already exists: <path>"``."""
    if resource:
        return AlreadyExists(f"{resource} already exists: {path}")
    return AlreadyExists(f"already exists: {path}")


def not_supported(op: str, path: str) -> NotSupported:
    """``filesystem.NewNotSupportedError``: ``"<op>: <path>: operation not supported"``."""
    if op:
        return NotSupported(f"{op}: {path}: operation not supported")
    return NotSupported(f"{path}: operation not supported")
