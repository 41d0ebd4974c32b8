"""Small helpers shared by the access tests."""

from __future__ import annotations

import os
import subprocess

import pytest


def sh(command: str, *, timeout: float = 30, check: bool = True) -> subprocess.CompletedProcess:
    """``sh -c COMMAND`` with text output; with ``check`` fail the test on a non-zero exit."""
    done = subprocess.run(
        ["sh", "-c", command],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "LC_ALL": "C.UTF-8"},
        check=False,
    )
    if check and done.returncode != 0:
        pytest.fail(
            f"{command!r} exited {done.returncode}\nstdout: {done.stdout}\nstderr: {done.stderr}",
            pytrace=False,
        )
    return done
