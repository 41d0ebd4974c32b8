"""Typed errors that carry an errno, and the one table that maps AGFS answers to them.

AGFS status codes are unreliable: memfs and localfs return untyped errors, which all
arrive as HTTP 500 with a message. The meaning is in the text, so the errno comes from
the message first and the status code second (docs/PROTOCOL.md, Errors). Every layer above the
client deals only in these classes; the FUSE layer turns ``errno`` into ``FUSEError``.
"""

from __future__ import annotations

import errno as E
import re


class AgfsError(Exception):
    """Base of every error the client raises; ``errno`` is what the kernel will see."""

    errno: int = E.EIO
    quiet: bool = False
    """An everyday refusal of the mount itself (not the server's): logged at debug only."""

    def __init__(self, message: str, *, path: str | None = None, status: int | None = None):
        super().__init__(message)
        self.message = message
        self.path = path
        self.status = status

    def __str__(self) -> str:
        where = f" ({self.path})" if self.path else ""
        return f"{self.message}{where}"


class NotFound(AgfsError):
    errno = E.ENOENT


class AlreadyExists(AgfsError):
    errno = E.EEXIST


class NotADirectory(AgfsError):
    errno = E.ENOTDIR


class IsADirectory(AgfsError):
    errno = E.EISDIR


class DirectoryNotEmpty(AgfsError):
    errno = E.ENOTEMPTY


class PermissionDenied(AgfsError):
    errno = E.EACCES


class NotSupported(AgfsError):
    errno = E.EOPNOTSUPP


class CrossDevice(AgfsError):
    errno = E.EXDEV


class FileTooLarge(AgfsError):
    errno = E.EFBIG


class NoSpace(AgfsError):
    """The server's disk is full: Go's "no space left on device" (localfs) arrives as a 500."""

    errno = E.ENOSPC


class InvalidArgument(AgfsError):
    errno = E.EINVAL


class NameTooLong(AgfsError):
    errno = E.ENAMETOOLONG


class ReadOnly(AgfsError):
    errno = E.EROFS


class ServerError(AgfsError):
    """The server answered with an error we cannot classify: EIO."""


class ProtocolError(AgfsError):
    """The answer is not AGFS: HTML, a redirect, truncated JSON, an unknown route."""


class ServerUnreachable(AgfsError):
    """Connection refused, DNS failure, TLS failure: never ENOENT, always EIO."""


class TlsFailure(ServerUnreachable):
    """The TLS handshake failed (untrusted certificate, refused client certificate):
    retrying cannot help."""


class ConnectionLost(ServerUnreachable):
    """The connection broke after the request was sent: it may have been carried out."""


class RequestTimeout(AgfsError):
    """The server accepted the request but stopped answering within the deadline."""

    errno = E.ETIMEDOUT


class NotOpenForWriting(AgfsError):
    """A write through a handle that cannot take one (opened read-only, or a read-only
    control file)."""

    errno = E.EBADF
    quiet = True


class StaleFile(AgfsError):
    """The file an inode stood for was replaced by a rename: the kernel looks the name up
    again and opens what is there now."""

    errno = E.ESTALE
    quiet = True


class NotPermitted(AgfsError):
    """An operation the mount never allows on that kind of file (a control file's mode,
    a hard link)."""

    errno = E.EPERM
    quiet = True


class UploadsFailed(AgfsError):
    """``/.agfs-sync``: some pending uploads did not reach the server (EIO); which ones,
    and why, are in ``.agfs-stats``."""


class AccessRefused(PermissionDenied):
    """The mount itself refuses this access (a read-only control file opened for
    writing); unlike the server's PermissionDenied, an everyday answer."""

    quiet = True


# Message fragments in the order they are tried: more specific phrases first, because
# "no such file or directory" also contains "directory" and "is a directory" contains "a dir".
_MESSAGE_TABLE: tuple[tuple[str, type[AgfsError]], ...] = (
    ("across different mounts", CrossDevice),
    ("not empty", DirectoryNotEmpty),
    ("not a directory", NotADirectory),
    ("is a directory", IsADirectory),
    ("already exists", AlreadyExists),
    ("file exists", AlreadyExists),  # Go's EEXIST, e.g. localfs renaming over a directory
    ("no such", NotFound),
    ("not found", NotFound),
    ("does not exist", NotFound),
    ("permission denied", PermissionDenied),
    ("is write-only", PermissionDenied),
    ("is read-only", PermissionDenied),
    ("read-only file system", ReadOnly),
    ("not supported", NotSupported),
    ("not implemented", NotSupported),
    ("name too long", NameTooLong),
    ("no space left", NoSpace),
    ("exceeds maximum size", FileTooLarge),
    ("too large", FileTooLarge),
    ("invalid", InvalidArgument),
)

_STATUS_TABLE: dict[int, type[AgfsError]] = {
    400: InvalidArgument,
    401: PermissionDenied,
    403: PermissionDenied,
    404: NotFound,
    409: AlreadyExists,
    413: FileTooLarge,
    501: NotSupported,
}

# proxyfs wraps the remote status into its 500 text: "HTTP 404: ...".
_INNER_STATUS = re.compile(r"\bHTTP (\d{3})\b")


def _without_path(message: str, path: str | None) -> str:
    """The message minus the path it quotes, so a file named "not empty" decides nothing.

    The server quotes the path relative to the plugin's mount point, so every tail of the
    path that starts at a '/' is removed, longest first.
    """
    if not path:
        return message
    for index, char in enumerate(path):
        if char == "/" and path[index:] != "/":
            tail = path[index:]
            if tail in message:
                return message.replace(tail, "")
    return message


def error_class_for(status: int, message: str, path: str | None = None) -> type[AgfsError]:
    """Pick the error class for an AGFS error answer: message first, then status."""
    message = _without_path(message, path)
    lowered = message.lower()
    for fragment, cls in _MESSAGE_TABLE:
        if fragment in lowered:
            return cls
    inner = _INNER_STATUS.search(message)
    if inner and int(inner.group(1)) in _STATUS_TABLE:
        return _STATUS_TABLE[int(inner.group(1))]
    return _STATUS_TABLE.get(status, ServerError)


def error_from_answer(status: int, message: str, path: str | None = None) -> AgfsError:
    """Build the typed error for an AGFS error answer."""
    cls = error_class_for(status, message, path)
    return cls(message, path=path, status=status)
