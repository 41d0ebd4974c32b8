"""Go's back-off when ``accept`` fails for lack of resources (``EMFILE`` and kin).

With file descriptors exhausted the listening socket stays readable while every
``accept`` fails, so a plain accept loop spins a core and starves the handlers that
would free descriptors. Go's ``http.Server.Serve`` sleeps after such an error, from
5 ms doubling up to 1 s, and resets after a successful accept; so does this.
"""

from __future__ import annotations

import errno
import time
from collections.abc import Callable

#: Errors after which the listener is fine but the process lacks resources.
RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
FIRST_DELAY = 0.005
MAX_DELAY = 1.0


class AcceptBackoff:
    """The delay before the next ``accept`` after a resource error."""

    def __init__(self, sleep: Callable[[float], None] = time.sleep) -> None:
        self._sleep = sleep
        self.delay = 0.0

    def failed(self, exc: OSError) -> bool:
        """Sleep if ``exc`` is a resource error; returns whether it was one."""
        if exc.errno not in RESOURCE_ERRNOS:
            return False
        self.delay = min(self.delay * 2, MAX_DELAY) if self.delay else FIRST_DELAY
        self._sleep(self.delay)
        return True

    def succeeded(self) -> None:
        """An ``accept`` worked: the next error starts from the first delay again."""
        self.delay = 0.0
