"""The one error boundary around every FUSE handler.

pyfuse3 only understands ``FUSEError``: any other exception escaping a handler kills the
session and leaves a dead mount. So every handler is wrapped: typed errors become their
errno (quietly for the everyday ones), local I/O errors of the spool keep theirs, and
anything unexpected is logged once with its traceback and answered with EIO. Under
``--debug`` each call is logged with its arguments and duration.
"""

from __future__ import annotations

import errno
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pyfuse3

from .errors import AgfsError

log = logging.getLogger("agfs_fuse.operations")  # the lines are about FUSE operations

_QUIET_ERRNOS = frozenset(
    {errno.ENOENT, errno.EEXIST, errno.ENOTEMPTY, errno.EISDIR, errno.ENOTDIR, errno.EXDEV}
)

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


def error_boundary(handler: F) -> F:
    """Every exception leaves a handler as ``FUSEError``; unexpected ones are logged."""

    @functools.wraps(handler)
    async def wrapper(*args: Any) -> Any:
        debug = log.isEnabledFor(logging.DEBUG)
        started = time.monotonic() if debug else 0.0
        try:
            result = await handler(*args)
            if debug:
                log.debug("%s%s ok (%.1f ms)", handler.__name__, _brief(args[1:]), _ms(started))
            return result
        except pyfuse3.FUSEError as exc:
            if debug:
                log.debug("%s%s errno %s", handler.__name__, _brief(args[1:]), exc.errno)
            raise
        except AgfsError as exc:
            level = logging.DEBUG if exc.quiet or exc.errno in _QUIET_ERRNOS else logging.WARNING
            log.log(level, "%s: %s", handler.__name__, exc)
            raise pyfuse3.FUSEError(exc.errno) from None
        except OSError as exc:  # the local spool: ENOSPC, EIO of the cache disk
            log.error("%s: local I/O error: %s", handler.__name__, exc)
            raise pyfuse3.FUSEError(exc.errno or errno.EIO) from None
        except Exception:
            log.exception("unexpected error in %s; answering EIO", handler.__name__)
            raise pyfuse3.FUSEError(errno.EIO) from None

    return wrapper  # type: ignore[return-value]


def _ms(started: float) -> float:
    return (time.monotonic() - started) * 1000


def _brief(args: tuple[Any, ...]) -> str:
    """Handler arguments for the debug log: names shown, data and contexts summarised."""
    shown = []
    for arg in args:
        if isinstance(arg, bytes | memoryview):
            shown.append(repr(bytes(arg)) if len(arg) <= 64 else f"<{len(arg)} bytes>")
        elif isinstance(arg, int | str | float):
            shown.append(repr(arg))
    return "(" + ", ".join(shown) + ")"
