"""The error classes and the message-first table that maps AGFS answers to them."""

from __future__ import annotations

import errno

import pytest

from agfs_fuse import errors
from agfs_fuse.errors import error_class_for, error_from_answer

EXPECTED_ERRNO = {
    errors.AgfsError: errno.EIO,
    errors.NotFound: errno.ENOENT,
    errors.AlreadyExists: errno.EEXIST,
    errors.NotADirectory: errno.ENOTDIR,
    errors.IsADirectory: errno.EISDIR,
    errors.DirectoryNotEmpty: errno.ENOTEMPTY,
    errors.PermissionDenied: errno.EACCES,
    errors.NotSupported: errno.EOPNOTSUPP,
    errors.CrossDevice: errno.EXDEV,
    errors.FileTooLarge: errno.EFBIG,
    errors.InvalidArgument: errno.EINVAL,
    errors.NameTooLong: errno.ENAMETOOLONG,
    errors.ReadOnly: errno.EROFS,
    errors.NoSpace: errno.ENOSPC,
    errors.ServerError: errno.EIO,
    errors.ProtocolError: errno.EIO,
    errors.ServerUnreachable: errno.EIO,
    errors.ConnectionLost: errno.EIO,
    errors.TlsFailure: errno.EIO,
    errors.RequestTimeout: errno.ETIMEDOUT,
    errors.NotOpenForWriting: errno.EBADF,
    errors.StaleFile: errno.ESTALE,
    errors.NotPermitted: errno.EPERM,
    errors.AccessRefused: errno.EACCES,
    errors.UploadsFailed: errno.EIO,
}


@pytest.mark.parametrize(("cls", "code"), EXPECTED_ERRNO.items())
def test_class_errno(cls: type[errors.AgfsError], code: int) -> None:
    err = cls("boom")
    assert err.errno == code
    assert isinstance(err, errors.AgfsError)
    assert isinstance(err, Exception)


def test_every_error_class_is_covered() -> None:
    defined = {
        obj
        for obj in vars(errors).values()
        if isinstance(obj, type) and issubclass(obj, errors.AgfsError)
    }
    assert defined == set(EXPECTED_ERRNO)


def test_only_the_mounts_own_refusals_are_quiet() -> None:
    quiet = {cls for cls in EXPECTED_ERRNO if cls.quiet}
    assert quiet == {
        errors.NotOpenForWriting,
        errors.StaleFile,
        errors.NotPermitted,
        errors.AccessRefused,
    }
    assert not errors.PermissionDenied.quiet  # the server's refusal is worth a warning


def test_connection_problems_are_never_enoent() -> None:
    for cls in (
        errors.ServerUnreachable,
        errors.ConnectionLost,
        errors.RequestTimeout,
        errors.ProtocolError,
    ):
        assert cls("x").errno != errno.ENOENT


def test_attributes_and_str() -> None:
    err = errors.NotFound("no such file: /a", path="/memfs/a", status=500)
    assert err.message == "no such file: /a"
    assert err.path == "/memfs/a"
    assert err.status == 500
    assert str(err) == "no such file: /a (/memfs/a)"
    assert err.args == ("no such file: /a",)


def test_str_without_path() -> None:
    err = errors.ServerError("boom")
    assert str(err) == "boom"
    assert err.path is None
    assert err.status is None


def test_empty_path_is_not_shown() -> None:
    assert str(errors.ServerError("boom", path="")) == "boom"


def test_errno_is_per_instance_readable_but_class_defined() -> None:
    assert errors.NotFound.errno == errno.ENOENT
    assert errors.NotFound("x").errno == errors.NotFound.errno


MESSAGES = [
    # docs/PROTOCOL.md, Errors: memfs and localfs wording
    ("no such file or directory: /a.txt", errors.NotFound),
    ("no such file: /a.txt", errors.NotFound),
    ("no such directory: /d", errors.NotFound),
    ("/a.txt not found", errors.NotFound),
    ("parent directory does not exist: /x/y", errors.NotFound),
    ("parent directory not found: /x/y", errors.NotFound),
    ("file already exists: /a", errors.AlreadyExists),
    ("directory already exists: /d", errors.AlreadyExists),
    ("not a directory: /a/b", errors.NotADirectory),
    ("is a directory: /d", errors.IsADirectory),
    ("directory not empty: /d", errors.DirectoryNotEmpty),
    ("cannot rename across different mounts", errors.CrossDevice),
    (
        "create: /x: permission denied (not allowed to create file in rootfs, use mount instead)",
        errors.PermissionDenied,
    ),
    ("write: /x: not found", errors.NotFound),
    ("read /queuefs/q/enqueue: file is write-only", errors.PermissionDenied),
    ("file is read-only", errors.PermissionDenied),
    ("read-only file system", errors.ReadOnly),
    ("openhandle: /a: operation not supported", errors.NotSupported),
    ("not implemented", errors.NotSupported),
    ("file name too long", errors.NameTooLong),
    ("request body exceeds maximum size of 67108864 bytes", errors.FileTooLarge),
    ("payload too large", errors.FileTooLarge),
    ("invalid size parameter", errors.InvalidArgument),
    # case does not matter
    ("No Such File Or Directory", errors.NotFound),
    ("Directory Not Empty", errors.DirectoryNotEmpty),
    ("PERMISSION DENIED", errors.PermissionDenied),
]


@pytest.mark.parametrize(("message", "cls"), MESSAGES)
def test_message_decides_whatever_the_status(message: str, cls: type) -> None:
    for status in (500, 400, 403, 404, 409, 501, 502):
        assert error_class_for(status, message) is cls, status


def test_no_such_file_or_directory_is_not_a_directory_error() -> None:
    # "directory" appears in the text, but the condition is "missing"
    assert error_class_for(500, "no such file or directory: /d") is errors.NotFound
    assert error_class_for(500, "no such directory: /d") is errors.NotFound


def test_not_a_directory_beats_not_found_words() -> None:
    assert error_class_for(500, "not a directory: /a") is errors.NotADirectory


def test_read_only_file_system_is_erofs_not_eacces() -> None:
    assert error_class_for(500, "write /x: read-only file system").errno == errno.EROFS


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, errors.InvalidArgument),
        (403, errors.PermissionDenied),
        (404, errors.NotFound),
        (409, errors.AlreadyExists),
        (413, errors.FileTooLarge),
        (501, errors.NotSupported),
        (500, errors.ServerError),
        (502, errors.ServerError),
        (503, errors.ServerError),
        (504, errors.ServerError),
        (401, errors.PermissionDenied),  # a proxy asking for a token
        (405, errors.ServerError),
        (429, errors.ServerError),
    ],
)
def test_status_is_the_fallback(status: int, cls: type) -> None:
    assert error_class_for(status, "") is cls
    assert error_class_for(status, "EOF") is cls
    assert error_class_for(status, "method not allowed") is cls


@pytest.mark.parametrize(
    ("message", "cls"),
    [
        ("HTTP 404: gone", errors.NotFound),
        ("HTTP 403: forbidden", errors.PermissionDenied),
        ("HTTP 409: conflict", errors.AlreadyExists),
        ("HTTP 400: bad", errors.InvalidArgument),
        ("HTTP 413: big", errors.FileTooLarge),
        ("HTTP 501: nope", errors.NotSupported),
        ("failed: HTTP 404: x", errors.NotFound),
        ("HTTP 500: boom", errors.ServerError),
        ("HTTP 503: busy", errors.ServerError),
        ("HTTP 4040: x", errors.ServerError),  # not a three-digit status
        ("XHTTP 404: x", errors.ServerError),  # not at a word boundary
    ],
)
def test_proxyfs_inner_status(message: str, cls: type) -> None:
    assert error_class_for(500, message) is cls


def test_message_phrase_beats_inner_status() -> None:
    assert error_class_for(500, "HTTP 404: directory not empty: /d") is errors.DirectoryNotEmpty


def test_inner_unknown_status_falls_back_to_outer() -> None:
    assert error_class_for(403, "HTTP 418: teapot") is errors.PermissionDenied


def test_error_from_answer_builds_the_instance() -> None:
    err = error_from_answer(500, "directory not empty: /d", "/memfs/d")
    assert type(err) is errors.DirectoryNotEmpty
    assert err.errno == errno.ENOTEMPTY
    assert err.message == "directory not empty: /d"
    assert err.path == "/memfs/d"
    assert err.status == 500
    assert str(err) == "directory not empty: /d (/memfs/d)"


def test_error_from_answer_without_path() -> None:
    err = error_from_answer(501, "operation not supported")
    assert type(err) is errors.NotSupported
    assert err.path is None
    assert err.status == 501


@pytest.mark.parametrize(
    ("message", "path", "cls"),
    [
        (
            "no such file or directory: /What is a directory.md",
            "/memfs/What is a directory.md",
            errors.NotFound,
        ),
        ("no such file or directory: /invalid.txt", "/memfs/invalid.txt", errors.NotFound),
        (
            "file already exists: /Backups not empty",
            "/memfs/Backups not empty",
            errors.AlreadyExists,
        ),
        ("is a directory: /not a directory", "/local/not a directory", errors.IsADirectory),
        ("no such file or directory: /already exists", "/memfs/already exists", errors.NotFound),
    ],
)
def test_phrase_in_the_quoted_path_does_not_win(message: str, path: str, cls: type) -> None:
    # The server puts the user's path (relative to its mount) into its message; the
    # words of a file name must not decide the errno. error_from_answer knows the path.
    err = error_from_answer(500, message, path)
    assert type(err) is cls
    assert err.path == path


def test_server_disk_full_is_enospc_not_eio() -> None:
    """localfs passes Go's os error through as a 500: "no space left on device"."""
    exc = error_from_answer(500, "write /data/f: no space left on device", "/local/f")
    assert isinstance(exc, errors.NoSpace)
    assert exc.errno == errno.ENOSPC
