"""How AgfsClient turns error answers and transport failures into typed errors."""

from __future__ import annotations

import errno
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
import trio

from agfs_fuse import errors
from agfs_fuse.client import AgfsClient

BASE = "http://agfs.test:8080/api/v1"


def run(
    handler: Callable[[httpx.Request], httpx.Response],
    call: Callable[[AgfsClient], Awaitable[Any]],
    **kwargs: Any,
) -> Any:
    async def main() -> Any:
        client = AgfsClient(BASE, transport=httpx.MockTransport(handler), **kwargs)
        try:
            return await call(client)
        finally:
            await client.aclose()

    return trio.run(main)


def failing(
    status: int,
    body: Any = None,
    *,
    text: str | None = None,
    content_type: str | None = None,
    headers: dict[str, str] | None = None,
) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        extra = dict(headers or {})
        if text is not None:
            extra.setdefault("Content-Type", content_type or "text/plain; charset=utf-8")
            return httpx.Response(status, text=text, headers=extra)
        return httpx.Response(status, json=body, headers=extra)

    return handler


def error_of(
    handler: Callable[[httpx.Request], httpx.Response],
    call: Callable[[AgfsClient], Awaitable[Any]] | None = None,
) -> errors.AgfsError:
    with pytest.raises(errors.AgfsError) as info:
        run(handler, call or (lambda c: c.stat("/memfs/a.txt")))
    return info.value


# -- the error message table of docs/PROTOCOL.md ("Errors") -------------------------------


MESSAGE_TABLE = [
    ("no such file or directory: /a.txt", errors.NotFound, errno.ENOENT),
    ("no such file: /a.txt", errors.NotFound, errno.ENOENT),
    ("no such directory: /d", errors.NotFound, errno.ENOENT),
    ("/a.txt not found", errors.NotFound, errno.ENOENT),
    ("file not found: /a.txt", errors.NotFound, errno.ENOENT),
    ("parent directory does not exist: /x/a.txt", errors.NotFound, errno.ENOENT),
    ("parent directory not found: /x/a.txt", errors.NotFound, errno.ENOENT),
    ("file already exists: /a.txt", errors.AlreadyExists, errno.EEXIST),
    ("directory already exists: /d", errors.AlreadyExists, errno.EEXIST),
    ("not a directory: /a.txt", errors.NotADirectory, errno.ENOTDIR),
    ("is a directory: /d", errors.IsADirectory, errno.EISDIR),
    ("directory not empty: /d", errors.DirectoryNotEmpty, errno.ENOTEMPTY),
    ("cannot rename across different mounts", errors.CrossDevice, errno.EXDEV),
    ("open /srv/x: permission denied", errors.PermissionDenied, errno.EACCES),
    ("/queuefs/q/enqueue is write-only", errors.PermissionDenied, errno.EACCES),
    ("operation not supported", errors.NotSupported, errno.EOPNOTSUPP),
    ("truncate not implemented", errors.NotSupported, errno.EOPNOTSUPP),
    ("request body exceeds maximum size of 67108864 bytes", errors.FileTooLarge, errno.EFBIG),
    ("file too large", errors.FileTooLarge, errno.EFBIG),
    ("invalid offset: -3", errors.InvalidArgument, errno.EINVAL),
    ("Invalid Path", errors.InvalidArgument, errno.EINVAL),
    ("EOF", errors.ServerError, errno.EIO),
    ("something broke", errors.ServerError, errno.EIO),
    ("", errors.ServerError, errno.EIO),
    ("use stream mode to read this file", errors.ServerError, errno.EIO),
    ("NO SUCH FILE OR DIRECTORY: /A", errors.NotFound, errno.ENOENT),
]


@pytest.mark.parametrize(("message", "cls", "code"), MESSAGE_TABLE)
def test_500_messages_map_to_errno(message: str, cls: type, code: int) -> None:
    err = error_of(failing(500, {"error": message}))
    assert type(err) is cls
    assert err.errno == code
    assert err.status == 500
    assert err.message == message
    assert err.path == "/memfs/a.txt"


@pytest.mark.parametrize(("message", "cls", "code"), MESSAGE_TABLE)
def test_message_beats_a_misleading_status(message: str, cls: type, code: int) -> None:
    # a message we recognise wins over the status code; an unknown one falls back to it
    err = error_of(failing(400, {"error": message}))
    expected = errors.InvalidArgument if cls is errors.ServerError else cls
    assert type(err) is expected


@pytest.mark.parametrize(
    ("status", "cls", "code"),
    [
        (404, errors.NotFound, errno.ENOENT),
        (403, errors.PermissionDenied, errno.EACCES),
        (409, errors.AlreadyExists, errno.EEXIST),
        (400, errors.InvalidArgument, errno.EINVAL),
        (501, errors.NotSupported, errno.EOPNOTSUPP),
        (413, errors.FileTooLarge, errno.EFBIG),
        (500, errors.ServerError, errno.EIO),
        (502, errors.ServerError, errno.EIO),
        (503, errors.ServerError, errno.EIO),
        (405, errors.ServerError, errno.EIO),
        (418, errors.ServerError, errno.EIO),
    ],
)
def test_typed_statuses_with_neutral_messages(status: int, cls: type, code: int) -> None:
    err = error_of(failing(status, {"error": "stat: /a.txt: failed"}))
    assert type(err) is cls
    assert err.errno == code
    assert err.status == status


@pytest.mark.parametrize(
    ("status", "message", "cls"),
    [
        (
            403,
            "create: /x: permission denied (not allowed to create file in rootfs, use mount "
            "instead)",
            errors.PermissionDenied,
        ),
        (
            403,
            "mkdir: /x: permission denied (not allowed to create directory in rootfs, use "
            "mount instead)",
            errors.PermissionDenied,
        ),
        (404, "write: /x: not found", errors.NotFound),
        (501, "openhandle: /local/a.txt: operation not supported", errors.NotSupported),
        (413, "request body exceeds maximum size of 67108864 bytes", errors.FileTooLarge),
        (409, "symlink already exists: /l", errors.AlreadyExists),
        (405, "method not allowed", errors.ServerError),
        (400, "size is required", errors.InvalidArgument),
        (404, "handle 42 not found", errors.NotFound),
    ],
)
def test_real_server_answers(status: int, message: str, cls: type) -> None:
    assert type(error_of(failing(status, {"error": message}))) is cls


@pytest.mark.parametrize(
    ("message", "cls"),
    [
        ("HTTP 404: remote said so", errors.NotFound),
        ("HTTP 403: forbidden", errors.PermissionDenied),
        ("HTTP 409: conflict", errors.AlreadyExists),
        ("HTTP 400: bad request", errors.InvalidArgument),
        ("HTTP 501: nope", errors.NotSupported),
        ("HTTP 413: body", errors.FileTooLarge),
        ("HTTP 502: bad gateway", errors.ServerError),
        ('proxy: HTTP 404: {"error":"x"}', errors.NotFound),
        ("HTTP 500: no such file or directory: /a", errors.NotFound),
        ("HTTP 404: is a directory: /d", errors.IsADirectory),
    ],
)
def test_proxyfs_inner_status(message: str, cls: type) -> None:
    err = error_of(failing(500, {"error": message}))
    assert type(err) is cls
    assert err.status == 500


# -- answers that are not AGFS -----------------------------------------------------------


def test_go_plain_text_404_is_protocol_error_not_enoent() -> None:
    err = error_of(failing(404, text="404 page not found"))
    assert type(err) is errors.ProtocolError
    assert err.errno == errno.EIO
    assert err.errno != errno.ENOENT
    assert err.status == 404
    assert "/api/v1" in err.message


def test_wrong_url_404_hint_names_the_route() -> None:
    err = error_of(failing(404, text="404 page not found"), lambda c: c.list("/memfs"))
    assert "/directories" in err.message
    assert "404 page not found" in err.message


@pytest.mark.parametrize("status", [404, 500, 502, 503, 403])
def test_html_error_page(status: int) -> None:
    html = f"<html><head><title>{status}</title></head><body><h1>nginx</h1></body></html>"
    err = error_of(failing(status, text=html, content_type="text/html"))
    assert err.errno in (errno.EIO, errno.EACCES)
    assert err.errno != errno.ENOENT
    assert err.status == status
    if status == 404:
        assert type(err) is errors.ProtocolError
    elif status == 403:
        assert type(err) is errors.PermissionDenied
    else:
        assert type(err) is errors.ServerError
        assert "nginx" in err.message


@pytest.mark.parametrize(
    "body",
    [{"message": "x"}, {"error": None}, {"error": 5}, {"error": {"code": 1}}, ["error"], "error"],
)
def test_json_without_error_string_on_404_is_protocol_error(body: Any) -> None:
    err = error_of(failing(404, body))
    assert type(err) is errors.ProtocolError
    assert err.errno == errno.EIO


def test_json_without_error_string_on_500_is_eio() -> None:
    err = error_of(failing(500, {"detail": "x"}))
    assert type(err) is errors.ServerError
    assert err.errno == errno.EIO


def test_truncated_json_error_body() -> None:
    err = error_of(failing(500, text='{"error":"no such fi', content_type="application/json"))
    assert err.errno == errno.EIO
    assert type(err) is errors.ServerError


def test_empty_error_body_on_404_is_protocol_error() -> None:
    err = error_of(lambda r: httpx.Response(404))
    assert type(err) is errors.ProtocolError


def test_non_utf8_error_body_is_not_a_crash() -> None:
    err = error_of(lambda r: httpx.Response(500, content=b"\xff\xfe\x00garbage"))
    assert type(err) is errors.ServerError


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_redirect_is_protocol_error(status: int) -> None:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(status, headers={"Location": "/api/v1/handles/"})

    err = error_of(handler)
    assert type(err) is errors.ProtocolError
    assert err.errno == errno.EIO
    assert err.status == status
    assert "/api/v1/handles/" in err.message
    assert len(calls) == 1


def test_redirect_on_streamed_read_is_protocol_error() -> None:
    err = error_of(
        lambda r: httpx.Response(301, headers={"Location": "/x"}),
        lambda c: c.read_into("/memfs/a", lambda b: None),
    )
    assert type(err) is errors.ProtocolError


def test_truncated_json_on_success_route_is_protocol_error() -> None:
    err = error_of(failing(200, text='{"name":"a.txt","size":', content_type="application/json"))
    assert type(err) is errors.ProtocolError
    assert err.errno == errno.EIO


def test_html_on_success_route_is_protocol_error() -> None:
    err = error_of(failing(200, text="<html>captive portal</html>", content_type="text/html"))
    assert type(err) is errors.ProtocolError


def test_errors_carry_the_path_in_str() -> None:
    err = error_of(failing(500, {"error": "no such file or directory: /a.txt"}))
    assert str(err) == "no such file or directory: /a.txt (/memfs/a.txt)"


@pytest.mark.parametrize(
    ("call", "path"),
    [
        (lambda c: c.read("/memfs/r"), "/memfs/r"),
        (lambda c: c.write("/memfs/w", b"x"), "/memfs/w"),
        (lambda c: c.create("/memfs/c"), "/memfs/c"),
        (lambda c: c.mkdir("/memfs/m"), "/memfs/m"),
        (lambda c: c.delete("/memfs/d"), "/memfs/d"),
        (lambda c: c.rmdir("/memfs/rd"), "/memfs/rd"),
        (lambda c: c.rename("/memfs/old", "/memfs/new"), "/memfs/old"),
        (lambda c: c.chmod("/memfs/ch", 0o600), "/memfs/ch"),
        (lambda c: c.truncate("/memfs/t", 0), "/memfs/t"),
        (lambda c: c.touch("/memfs/to"), "/memfs/to"),
        (lambda c: c.symlink("t", "/memfs/l"), "/memfs/l"),
        (lambda c: c.readlink("/memfs/rl"), "/memfs/rl"),
        (lambda c: c.open_handle("/memfs/h", 0), "/memfs/h"),
        (lambda c: c.list("/memfs/ls"), "/memfs/ls"),
    ],
)
def test_every_method_raises_typed_errors(call: Any, path: str) -> None:
    err = error_of(failing(500, {"error": "no such file or directory: x"}), call)
    assert type(err) is errors.NotFound
    assert err.path == path


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.handle_read(3, 0, 10),
        lambda c: c.handle_write(3, 0, b"x"),
        lambda c: c.close_handle(3),
    ],
)
def test_stale_handle_is_enoent(call: Any) -> None:
    err = error_of(failing(404, {"error": "handle 3 not found"}), call)
    assert err.errno == errno.ENOENT


def test_rename_onto_existing_memfs_target_is_eexist() -> None:
    err = error_of(
        failing(500, {"error": "file already exists: /b"}), lambda c: c.rename("/memfs/a", "/b")
    )
    assert err.errno == errno.EEXIST


def test_cross_mount_rename_is_exdev() -> None:
    err = error_of(
        failing(500, {"error": "cannot rename across different mounts"}),
        lambda c: c.rename("/memfs/a", "/local/a"),
    )
    assert err.errno == errno.EXDEV


def test_non_streaming_plugin_stream_read_404_json_is_enoent() -> None:
    err = error_of(
        failing(404, {"error": "stream not supported: /a"}),
        lambda c: c.read_into("/memfs/a", lambda b: None),
    )
    # "not supported" is in the text: the message wins over the misleading 404
    assert err.errno == errno.EOPNOTSUPP


# -- a file name that looks like an error phrase -------------------------------------------


@pytest.mark.parametrize(
    ("status", "path", "message", "cls"),
    [
        (
            500,
            "/memfs/docs/What is a directory.md",
            "no such file or directory: /docs/What is a directory.md",
            errors.NotFound,
        ),
        (
            500,
            "/memfs/already exists.txt",
            "no such file or directory: /already exists.txt",
            errors.NotFound,
        ),
        (
            500,
            "/memfs/Backups not empty",
            "file already exists: /Backups not empty",
            errors.AlreadyExists,
        ),
        (
            403,
            "/404 not found.html",
            "create: /404 not found.html: permission denied (not allowed to create file in "
            "rootfs, use mount instead)",
            errors.PermissionDenied,
        ),
        (500, "/memfs/not a directory", "is a directory: /not a directory", errors.IsADirectory),
    ],
)
def test_file_name_inside_the_message_does_not_change_the_errno(
    status: int, path: str, message: str, cls: type
) -> None:
    # The server quotes the (user-chosen) path, relative to its mount, inside its message.
    # The condition is the server's phrase, not whatever words the file name contains.
    err = error_of(failing(status, {"error": message}), lambda c: c.stat(path))
    assert type(err) is cls, f"{message!r} -> {type(err).__name__}"


# -- transport failures ------------------------------------------------------------------


def raising(exc: Exception) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    return handler


@pytest.mark.parametrize(
    ("exc", "cls", "code"),
    [
        (httpx.ConnectError("[Errno 111] Connection refused"), errors.ServerUnreachable, errno.EIO),
        (httpx.ConnectError("Name or service not known"), errors.ServerUnreachable, errno.EIO),
        (httpx.ConnectTimeout("timed out"), errors.ServerUnreachable, errno.EIO),
        (httpx.ReadTimeout("timed out"), errors.RequestTimeout, errno.ETIMEDOUT),
        (httpx.WriteTimeout("timed out"), errors.RequestTimeout, errno.ETIMEDOUT),
        (httpx.PoolTimeout("timed out"), errors.RequestTimeout, errno.ETIMEDOUT),
        (httpx.ReadError("reset by peer"), errors.ConnectionLost, errno.EIO),
        (httpx.WriteError("broken pipe"), errors.ConnectionLost, errno.EIO),
        (httpx.RemoteProtocolError("Server disconnected"), errors.ConnectionLost, errno.EIO),
        (httpx.LocalProtocolError("bad header"), errors.ConnectionLost, errno.EIO),
        (httpx.ProxyError("proxy said no"), errors.ConnectionLost, errno.EIO),
    ],
)
def test_transport_failures(exc: Exception, cls: type, code: int) -> None:
    err = error_of(raising(exc))
    assert type(err) is cls
    assert err.errno == code
    assert err.errno != errno.ENOENT
    assert err.__cause__ is exc
    assert err.path == "/memfs/a.txt"


def test_connect_error_names_the_server() -> None:
    err = error_of(raising(httpx.ConnectError("[Errno 111] Connection refused")))
    assert "agfs.test:8080" in err.message
    assert "Connection refused" in err.message


def test_read_timeout_message_names_route_and_deadline() -> None:
    with pytest.raises(errors.RequestTimeout) as info:
        run(
            raising(httpx.ReadTimeout("timed out")),
            lambda c: c.list("/memfs"),
            timeout=2.5,
        )
    assert "/directories" in info.value.message
    assert "2.5 s" in info.value.message


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.health(),
        lambda c: c.mounts(),
        lambda c: c.read("/a"),
        lambda c: c.read_into("/a", lambda b: None),
        lambda c: c.write("/a", b"x"),
        lambda c: c.handle_read(1, 0, 1),
        lambda c: c.close_handle(1),
    ],
)
def test_connection_refused_on_every_kind_of_call(call: Any) -> None:
    with pytest.raises(errors.ServerUnreachable) as info:
        run(raising(httpx.ConnectError("refused")), call)
    assert info.value.errno == errno.EIO
