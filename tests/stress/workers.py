"""Start and collect the worker processes of ``_workers.py`` from a test."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__).with_name("_workers.py")


@dataclass
class Worker:
    role: str
    name: str
    proc: subprocess.Popen[str]
    started: float = field(default_factory=time.monotonic)

    def result(self, timeout: float) -> dict[str, Any]:
        """Wait for the process; its JSON result, or an AssertionError with its stderr."""
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
            raise AssertionError(
                f"{self.name} did not finish within {timeout:.0f}s\nstderr:\n{err}"
            ) from None
        if self.proc.returncode != 0:
            raise AssertionError(f"{self.name} exited {self.proc.returncode}\nstderr:\n{err}")
        return json.loads(out.strip().splitlines()[-1])

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.communicate(timeout=10)


def spawn(role: str, name: str, args: dict[str, Any], scratch: Path) -> Worker:
    """Run ``_workers.py ROLE @args.json`` as a child process."""
    scratch.mkdir(parents=True, exist_ok=True)
    args_file = scratch / f"{name}.json"
    args_file.write_text(json.dumps(args))
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), role, f"@{args_file}"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return Worker(role, name, proc)


def collect(workers: list[Worker], timeout: float) -> dict[str, dict[str, Any]]:
    """Results of all ``workers`` by name; kills them all if one fails or hangs."""
    deadline = time.monotonic() + timeout
    results = {}
    try:
        for worker in workers:
            results[worker.name] = worker.result(max(1.0, deadline - time.monotonic()))
    finally:
        for worker in workers:
            worker.kill()
    return results
