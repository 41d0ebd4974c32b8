"""Run ``agfs-fuse mount`` as a subprocess for the kernel mount tests, and always clean up.

A :class:`Mount` starts ``python -m agfs_fuse mount URL MOUNTPOINT -f --log-file LOG -o ...``
and polls (with a deadline, no fixed sleeps) until the mountpoint is a mount point. When the
process exits early or the deadline passes, it fails with the process's output and log, and
leaves nothing mounted. :meth:`Mount.unmount` unmounts with ``fusermount3 -u``, waits for the
process, and falls back to a lazy ``fusermount3 -uz`` and SIGKILL, so a test that fails (or a
mount that hangs) never leaves a mount behind.

The helpers here know nothing about pytest; fixtures in ``tests/mount/conftest.py`` use them.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

FUSERMOUNT = shutil.which("fusermount3") or "fusermount3"

#: How long a mount may take to become usable before :meth:`Mount.start` gives up.
STARTUP_TIMEOUT = 20.0
#: How long :meth:`Mount.unmount` waits for the process after ``fusermount3 -u``.
EXIT_TIMEOUT = 15.0


class MountError(AssertionError):
    """The mount did not come up (or did not go away); the message carries its output."""


def wait_until(
    predicate: Callable[[], T],
    timeout: float = 5.0,
    *,
    interval: float = 0.02,
    message: str | None = None,
    ignore: tuple[type[BaseException], ...] = (),
) -> T:
    """Call ``predicate`` until it returns something truthy, and return that value.

    Polls every ``interval`` seconds; raises ``AssertionError`` naming ``message`` (or the
    predicate) when ``timeout`` seconds pass first. Exceptions of the types in ``ignore`` count
    as "not yet"; the last one is chained to the timeout error.
    """
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        try:
            result = predicate()
        except ignore as exc:
            last_exc = exc
        else:
            if result:
                return result
        if time.monotonic() >= deadline:
            what = message or getattr(predicate, "__name__", repr(predicate))
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}") from last_exc
        time.sleep(interval)


def _unescape_mount_field(field: str) -> str:
    r"""Undo the octal escapes of /proc/mounts (``\040`` for a space, ``\134``...)."""
    out = []
    i = 0
    while i < len(field):
        if field[i] == "\\" and i + 3 < len(field) and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mount_entry(mountpoint: str | os.PathLike[str]) -> dict[str, str] | None:
    """The last /proc/mounts entry for ``mountpoint`` as ``{source, target, fstype, options}``.

    Works for stale mounts too (where ``os.path.ismount`` says False because stat fails with
    ENOTCONN). Returns None when nothing is mounted there.
    """
    target = os.path.realpath(os.fspath(mountpoint))
    found = None
    with open("/proc/self/mounts", encoding="utf-8", errors="surrogateescape") as mounts:
        for line in mounts:
            fields = line.split()
            if len(fields) < 4:
                continue
            if _unescape_mount_field(fields[1]) == target:
                found = {
                    "source": _unescape_mount_field(fields[0]),
                    "target": target,
                    "fstype": fields[2],
                    "options": fields[3],
                }
    return found


def mounts_under(directory: str | os.PathLike[str]) -> list[str]:
    """Mountpoints (live or stale) inside ``directory``, deepest first."""
    prefix = os.path.realpath(os.fspath(directory)).rstrip("/") + "/"
    found = []
    with open("/proc/self/mounts", encoding="utf-8", errors="surrogateescape") as mounts:
        for line in mounts:
            fields = line.split()
            if len(fields) >= 2:
                target = _unescape_mount_field(fields[1])
                if target.startswith(prefix):
                    found.append(target)
    return sorted(set(found), key=len, reverse=True)


def is_mounted(mountpoint: str | os.PathLike[str]) -> bool:
    """True when /proc/mounts lists something at ``mountpoint`` (live or stale)."""
    return mount_entry(mountpoint) is not None


def is_stale(mountpoint: str | os.PathLike[str]) -> bool:
    """True when ``mountpoint`` is a dead FUSE mount ("Transport endpoint is not connected").

    Lists the directory rather than only stat-ing it: the kernel may answer ``stat`` from
    its attribute cache for a while after the FUSE process died, but opening the directory
    always needs the (dead) process.
    """
    try:
        os.stat(mountpoint)
        os.listdir(mountpoint)
    except OSError as exc:
        return exc.errno == errno.ENOTCONN
    return False


def fuse_connections(fstype: str = "fuse.agfs") -> list[tuple[str, str]]:
    """(FUSE connection id, mountpoint) of every mount of ``fstype``, live or stale."""
    found = []
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            if fields[sep + 1] == fstype:
                found.append((fields[2].split(":")[1], _unescape_mount_field(fields[4])))
    return found


def abort_fuse_connection(connection: str) -> None:
    """Abort a FUSE connection (``/sys/fs/fuse/connections/N/abort``): every request
    waiting on it fails with ENOTCONN, even when its daemon will never answer, which
    ``fusermount3 -u`` cannot end. Mounts fusectl first where the machine did not (Debian
    does not). Raises OSError when it cannot."""
    connections = Path("/sys/fs/fuse/connections")
    if connections.is_dir() and not any(connections.iterdir()):
        subprocess.run(
            ["mount", "-t", "fusectl", "fusectl", str(connections)],
            capture_output=True,
            timeout=10,
        )
    (connections / connection / "abort").write_text("1")


def force_unmount(mountpoint: str | os.PathLike[str], timeout: float = 10.0) -> None:
    """Unmount whatever is at ``mountpoint``: ``fusermount3 -u``, then lazy ``-uz``, then
    ``umount -l``. Never raises; does nothing when nothing is mounted."""
    mp = os.fspath(mountpoint)
    for cmd in ([FUSERMOUNT, "-u", mp], [FUSERMOUNT, "-uz", mp], ["umount", "-l", mp]):
        if not is_mounted(mp):
            return
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            subprocess.run(cmd, capture_output=True, timeout=timeout, check=False)


@contextlib.contextmanager
def scratch_dir(
    prefix: str, *, mode: int | None = None, parent: str | None = None
) -> Iterator[Path]:
    """A short temporary directory for mountpoints, logs and server data; whatever is
    still mounted below it is unmounted (lazily if need be) before it is removed."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    if mode is not None:
        path.chmod(mode)
    try:
        yield path
    finally:
        for mountpoint in mounts_under(path):
            force_unmount(mountpoint)
        shutil.rmtree(path, ignore_errors=True)


def mount_command(
    url: str,
    mountpoint: str | os.PathLike[str],
    *,
    options: Sequence[str] = (),
    foreground: bool = True,
    log_file: str | os.PathLike[str] | None = None,
    extra_args: Sequence[str] = (),
) -> list[str]:
    """The argv of ``python -m agfs_fuse mount URL MOUNTPOINT [-f] [--log-file F] [-o OPT]...``."""
    cmd = [sys.executable, "-m", "agfs_fuse", "mount", url, os.fspath(mountpoint)]
    if foreground:
        cmd.append("-f")
    if log_file is not None:
        cmd += ["--log-file", os.fspath(log_file)]
    for opt in options:
        cmd += ["-o", opt]
    cmd += list(extra_args)
    return cmd


def _read(path: Path | None, limit: int = 20_000) -> str:
    """The tail of a text file, or a note that it is missing."""
    if path is None:
        return ""
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"
    return text if len(text) <= limit else "...\n" + text[-limit:]


class Mount:
    """One ``agfs-fuse mount -f`` process and its mountpoint.

    Use as a context manager, or call :meth:`start` and (always, e.g. in a fixture's
    ``finally``) :meth:`unmount`::

        with Mount(url, tmp_path / "mnt", workdir=tmp_path) as m:
            (m.path / "memfs" / "a.txt").write_text("hi")

    ``workdir`` receives the log file (``--log-file``) and the process's stdout/stderr.
    """

    def __init__(
        self,
        url: str,
        mountpoint: str | os.PathLike[str],
        *,
        workdir: str | os.PathLike[str],
        options: Sequence[str] = (),
        extra_args: Sequence[str] = (),
        env: dict[str, str] | None = None,
        name: str = "mount",
    ) -> None:
        self.url = url
        self.path = Path(mountpoint)
        self.workdir = Path(workdir)
        self.options = list(options)
        self.extra_args = list(extra_args)
        self.env = env
        self.log_file = self.workdir / f"{name}.log"
        self.output_file = self.workdir / f"{name}.out"
        self.proc: subprocess.Popen[bytes] | None = None
        self.returncode: int | None = None

    # -- lifecycle -----------------------------------------------------------------------

    @property
    def command(self) -> list[str]:
        """The argv used to start the mount."""
        return mount_command(
            self.url,
            self.path,
            options=self.options,
            log_file=self.log_file,
            extra_args=self.extra_args,
        )

    def start(self, timeout: float = STARTUP_TIMEOUT) -> Mount:
        """Start the process and return once the mountpoint is mounted and answers ``stat``.

        Raises :class:`MountError` (with the output and log) when the process exits first or
        the deadline passes; in that case nothing is left mounted or running.
        """
        self.workdir.mkdir(parents=True, exist_ok=True)
        # a stale mount there makes even mkdir(exist_ok=True) fail with ENOTCONN
        with contextlib.suppress(OSError):
            self.path.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ if self.env is None else self.env)
        env.setdefault("PYTHONUNBUFFERED", "1")
        with open(self.output_file, "wb") as out:
            self.proc = subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        self.returncode = None
        deadline = time.monotonic() + timeout
        while True:
            # usable = a mount whose root can be listed (a stale mount left there before
            # does not count: the kernel may answer stat for it from its attribute cache,
            # but listing it fails with ENOTCONN)
            if self._usable():
                return self
            code = self.proc.poll()
            if code is not None:
                self.returncode = code
                force_unmount(self.path)
                raise MountError(
                    f"mount process exited with status {code} before {self.path} was mounted\n"
                    + self.describe()
                )
            if time.monotonic() >= deadline:
                self.unmount()
                raise MountError(
                    f"{self.path} not mounted after {timeout:g}s (process still running)\n"
                    + self.describe()
                )
            time.sleep(0.02)

    def _usable(self) -> bool:
        if not os.path.ismount(self.path):
            return False
        try:
            os.listdir(self.path)
        except OSError:
            return False
        return True

    def alive(self) -> bool:
        """True when the process runs and the mountpoint is a live mount."""
        return self.proc is not None and self.proc.poll() is None and os.path.ismount(self.path)

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the mount process (e.g. SIGTERM, SIGINT, SIGKILL)."""
        assert self.proc is not None, "mount not started"
        self.proc.send_signal(sig)

    def wait(self, timeout: float = EXIT_TIMEOUT) -> int:
        """Wait for the process to exit; return its status (raises TimeoutExpired)."""
        assert self.proc is not None, "mount not started"
        self.returncode = self.proc.wait(timeout=timeout)
        return self.returncode

    def kill(self) -> None:
        """SIGKILL the process and reap it, leaving the mount stale (as after a crash)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.returncode = self.proc.wait(timeout=EXIT_TIMEOUT)

    def unmount(self, timeout: float = EXIT_TIMEOUT) -> int | None:
        """Unmount and stop the process, whatever state they are in. Never raises.

        ``fusermount3 -u`` and wait up to ``timeout`` for the process to exit. When the mount
        is busy (a file still open) or stale, ``fusermount3 -uz`` (lazy) instead, and a short
        wait. A process still running after that gets SIGKILL. Returns the process's exit
        status (None if it was never started).
        """
        wait = timeout
        if is_mounted(self.path):
            clean = False
            if not is_stale(self.path):
                with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                    done = subprocess.run(
                        [FUSERMOUNT, "-u", os.fspath(self.path)],
                        capture_output=True,
                        timeout=timeout,
                        check=False,
                    )
                    clean = done.returncode == 0
            if not clean:
                force_unmount(self.path)
                wait = min(timeout, 3.0)
        if self.proc is not None:
            try:
                self.returncode = self.proc.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                force_unmount(self.path)
                self.proc.kill()
                self.returncode = self.proc.wait()
        force_unmount(self.path)
        return self.returncode

    def stats(self) -> dict[str, Any]:
        """The mount's counters: its ``/.agfs-stats`` file, parsed (read through the mount,
        as a user would; raises OSError when the mount is dead)."""
        return json.loads((self.path / ".agfs-stats").read_bytes())

    # -- diagnostics ---------------------------------------------------------------------

    def output(self) -> str:
        """What the process wrote to stdout/stderr."""
        return _read(self.output_file)

    def log(self) -> str:
        """The contents of ``--log-file``."""
        return _read(self.log_file)

    def describe(self) -> str:
        """Command, output and log, for assertion messages."""
        return (
            f"command: {' '.join(self.command)}\n"
            f"--- stdout/stderr ---\n{self.output()}\n"
            f"--- log file {self.log_file} ---\n{self.log()}"
        )

    def __enter__(self) -> Mount:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.unmount()


def run_mount_cli(
    args: Sequence[str], *, timeout: float = 60.0, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m agfs_fuse ARGS...`` to completion (for the background mode and for
    mount-time errors) and return its exit status and text output."""
    run_env = dict(os.environ if env is None else env)
    return subprocess.run(
        [sys.executable, "-m", "agfs_fuse", *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=run_env,
        check=False,
    )


def pids_with_arg(arg: str) -> list[int]:
    """PIDs of processes whose argv contains ``arg`` exactly (e.g. a unique mountpoint path).

    Used to find the background process a daemonising ``agfs-fuse mount`` left behind, which
    the test started and must see exit (or end by its pid).
    """
    want = os.fsencode(arg)
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                argv = fh.read().split(b"\0")
        except OSError:
            continue
        if want in argv:
            pids.append(int(entry))
    return pids
