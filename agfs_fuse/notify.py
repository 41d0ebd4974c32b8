"""systemd's notify protocol (sd_notify) without a dependency: one datagram per message.

Under ``Type=notify`` systemd passes ``$NOTIFY_SOCKET``; we send ``READY=1`` only once
the mount answers, ``STATUS=...`` lines saying what we are doing, and ``STOPPING=1`` on
shutdown. Outside systemd every call is a no-op.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)


def _address(raw: str) -> str | bytes:
    # A leading '@' names a socket in Linux's abstract namespace.
    return b"\0" + raw[1:].encode() if raw.startswith("@") else raw


def notify(*fields: str) -> bool:
    """Send ``fields`` (e.g. ``"READY=1"``, ``"STATUS=mounted"``); True when delivered."""
    target = os.environ.get("NOTIFY_SOCKET")
    if not target:
        return False
    message = "\n".join(fields).encode()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(message, _address(target))
    except OSError as exc:
        log.warning("cannot notify systemd at %s: %s", target, exc)
        return False
    return True


def status(text: str) -> None:
    notify(f"STATUS={text}")
