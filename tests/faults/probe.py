"""A tiny program the fault tests run against the mount: one file operation, timed.

Run as ``python probe.py OP ARGS...``; it prints one JSON line per result::

    {"op": "stat", "ok": false, "errno": "EIO", "step": "stat", "elapsed": 2.03}

so a test sees exactly the errno a program gets, which step failed (``open``, ``write``,
``close``...), and how long the call blocked. The test bounds the whole process with a
timeout: a probe that does not exit is a hang.

``write-many SPEC_JSON`` writes several files one after the other (``[[path, size, seed],
...]``), printing ``{"event": "closing", ...}`` just before each close() so a test can kill
the server while uploads are in flight, then one result line per file.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import random
import sys
import time
from collections.abc import Callable
from typing import Any

BLOCK = 1 << 20


def pattern(seed: int, size: int) -> bytes:
    """Deterministic pseudo-random content: what a writer writes and the test expects."""
    return random.Random(seed).randbytes(size)


def _emit(**fields: Any) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def _timed(op: str, steps: list[tuple[str, Callable[[], Any]]], **extra: Any) -> Any:
    """Run ``steps`` in order; report the first failure (or success) with timings."""
    started = time.monotonic()
    result = None
    for step, call in steps:
        step_started = time.monotonic()
        try:
            result = call()
        except OSError as exc:
            now = time.monotonic()
            _emit(
                op=op,
                ok=False,
                errno=errno.errorcode.get(exc.errno or 0, str(exc.errno)),
                message=exc.strerror,
                step=step,
                elapsed=now - started,
                step_elapsed=now - step_started,
                **extra,
            )
            return None
    _emit(op=op, ok=True, errno=None, step=None, elapsed=time.monotonic() - started, **extra)
    return result


def _read_all(path: str) -> dict[str, Any]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb", buffering=0) as fh:
        while True:
            block = fh.read(BLOCK)
            if not block:
                break
            digest.update(block)
            size += len(block)
    return {"sha256": digest.hexdigest(), "size": size}


def _write_file(path: str, data: bytes, *, fsync: bool, announce: bool) -> dict[str, Any]:
    """open/write/(fsync)/close, reporting the failing step and how long each took."""
    started = time.monotonic()
    fd = -1
    step = "open"
    close_started = None
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        step = "write"
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view[:BLOCK]) :]
        if fsync:
            step = "fsync"
            os.fsync(fd)
        step = "close"
        if announce:
            _emit(event="closing", path=path)
        close_started = time.monotonic()
        closing, fd = fd, -1
        os.close(closing)
    except OSError as exc:
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)
        now = time.monotonic()
        return {
            "ok": False,
            "errno": errno.errorcode.get(exc.errno or 0, str(exc.errno)),
            "message": exc.strerror,
            "step": step,
            "elapsed": now - started,
            "close_elapsed": now - close_started if close_started is not None else None,
        }
    now = time.monotonic()
    return {
        "ok": True,
        "errno": None,
        "step": None,
        "elapsed": now - started,
        "close_elapsed": now - (close_started or now),
    }


def main(argv: list[str]) -> int:
    op, args = argv[0], argv[1:]
    if op == "stat":
        _timed(op, [("stat", lambda: os.stat(args[0]))])
    elif op == "listdir":
        names: list[str] = []
        _timed(op, [("listdir", lambda: names.extend(os.listdir(args[0])))])
    elif op == "read":
        info: dict[str, Any] = {}
        _timed(op, [("read", lambda: info.update(_read_all(args[0])))])
        if info:
            _emit(op="read-result", **info)
    elif op == "write":
        path, size, seed = args[0], int(args[1]), int(args[2])
        result = _write_file(path, pattern(seed, size), fsync="--fsync" in args, announce=False)
        _emit(op=op, path=path, **result)
    elif op == "write-many":
        for path, size, seed in json.loads(args[0]):
            result = _write_file(path, pattern(seed, size), fsync=False, announce=True)
            _emit(event="done", op="write", path=path, size=size, seed=seed, **result)
    elif op == "append":
        path, text = args[0], args[1].encode()

        def append() -> None:
            with open(path, "ab", buffering=0) as fh:
                fh.write(text)

        _timed(op, [("append", append)])
    elif op == "rename":
        _timed(op, [("rename", lambda: os.rename(args[0], args[1]))])
    elif op == "unlink":
        _timed(op, [("unlink", lambda: os.unlink(args[0]))])
    elif op == "mkdir":
        _timed(op, [("mkdir", lambda: os.mkdir(args[0]))])
    elif op == "create-excl":
        _timed(
            op,
            [
                (
                    "create",
                    lambda: os.close(os.open(args[0], os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)),
                )
            ],
        )
    else:
        print(f"unknown op {op!r}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
