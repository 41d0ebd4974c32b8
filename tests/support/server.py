"""Run the reference AGFS server (``python -m agfs_fuse.server``) as a real subprocess.

Every test suite that needs a server goes through here:

    with run_server() as srv:                 # memfs + queuefs, a free loopback port
        httpx.get(srv.url + "/health")

    srv = start_server(tmp_path, config={...}, max_body=1024)   # config written as YAML
    try: ...
    finally: srv.stop()

The server prints exactly one ``listening on http://HOST:PORT/api/v1`` line on stdout when
it is ready to accept connections; the helper waits for that line (with a timeout) and
fails with the server's stderr if it never comes. Its stderr goes to a log file so a
chatty server can never block on a full pipe.

Conformance runs (``make conformance``, ``pytest --agfs-server-bin=BIN``) switch every
:func:`start_server` to the real Go server instead (:func:`use_real_server`): it gets the same
config file, a free port picked here (it cannot bind port 0 and print it), the body limit in
the config (it has no flag for it), and it is waited for by polling ``/health``, since it
announces nothing on stdout. This module is the one place that knows which server runs.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml

#: How long to wait for the ``listening on`` line (the real server: for ``/health``).
START_TIMEOUT = 15.0
_PREFIX = "listening on "
#: The default mounts of the reference server, written out for the real one (which has none).
DEFAULT_CONFIG: dict[str, Any] = {
    "plugins": {
        "memfs": {"enabled": True, "path": "/memfs"},
        "queuefs": {"enabled": True, "path": "/queuefs", "config": {}},
    }
}
#: Where the kit that builds the real server explains itself (relative to the repository).
REAL_SERVER_README = "../shared/realagfs/README.md"

_real_server_bin: str | None = None


class ServerStartError(RuntimeError):
    """The server exited or stayed silent instead of announcing its address."""


def use_real_server(binary: str | os.PathLike[str] | None) -> None:
    """From now on :func:`start_server` starts ``binary`` (the real AGFS server), or the
    reference server again with ``None``. Fails with one line when it is not executable."""
    global _real_server_bin
    if binary is None:
        _real_server_bin = None
        return
    path = Path(binary).expanduser()
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise FileNotFoundError(
            f"no AGFS server binary at {path}: build it as {REAL_SERVER_README} says, "
            "or point AGFS_SERVER_BIN at one"
        )
    _real_server_bin = str(path.resolve())


def real_server_bin() -> str | None:
    """The real server binary conformance runs use, or ``None`` under the reference."""
    return _real_server_bin


def free_port() -> int:
    """A loopback port nobody listens on right now (for a server that cannot bind port 0)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """A reference server subprocess.

    ``args`` are extra command-line arguments (``-c config.yaml``, ``--max-body N``,
    ``--test-hooks``...); ``--addr 127.0.0.1:0`` is added unless ``args`` has ``--addr``.
    ``cwd`` is the server's working directory (relative ``local_dir`` values resolve
    there); its stderr is written to ``log_path`` (a temporary file by default).
    """

    #: The exit status after :meth:`stop`'s SIGTERM: the reference exits cleanly.
    TERMINATED_STATUS = 0

    def __init__(
        self,
        *args: str,
        cwd: str | os.PathLike[str] | None = None,
        log_path: str | os.PathLike[str] | None = None,
    ) -> None:
        self.args: list[str] = list(args)
        self.cwd = cwd
        self.log_path = Path(log_path) if log_path else None
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.port = 0
        self.host = ""

    @property
    def command(self) -> list[str]:
        """The full command line used to start the server."""
        cmd = [sys.executable, "-m", "agfs_fuse.server"]
        if "--addr" not in self.args:
            cmd += ["--addr", "127.0.0.1:0"]
        return cmd + self.args

    def start(self, timeout: float = START_TIMEOUT) -> ServerProcess:
        """Start the process and wait for its ``listening on`` line; returns ``self``."""
        self._spawn(stdout=subprocess.PIPE)
        try:
            line = self._read_line(timeout)
        except BaseException:
            self.kill()
            raise
        self.url = line[len(_PREFIX) :].strip()
        hostport = self.url.split("//", 1)[1].split("/", 1)[0]
        host, _, port = hostport.rpartition(":")
        self.host, self.port = host.strip("[]"), int(port)
        return self

    def _spawn(self, *, stdout: int) -> None:
        """Start :attr:`command` with stderr (and ``stdout`` when not a pipe) to the log."""
        if self.log_path is None:
            fd, name = tempfile.mkstemp(prefix="agfs-server-", suffix=".log")
            os.close(fd)
            self.log_path = Path(name)
        env = dict(os.environ)
        env.setdefault("PYTHONUNBUFFERED", "1")
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                self.command,
                cwd=self.cwd,
                stdout=log if stdout == subprocess.STDOUT else stdout,
                stderr=log,
                stdin=subprocess.DEVNULL,
                env=env,
            )

    def _read_line(self, timeout: float) -> str:
        assert self.proc is not None and self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        buf = b""
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            while b"\n" not in buf:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ServerStartError(
                        f"server did not announce its address within {timeout}s; "
                        f"stderr:\n{self.stderr()}"
                    )
                if not sel.select(left):
                    continue
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                if not chunk:
                    self.proc.wait(timeout=5)
                    raise ServerStartError(
                        f"server exited with status {self.proc.returncode} before "
                        f"listening; stderr:\n{self.stderr()}"
                    )
                buf += chunk
        line = buf.split(b"\n", 1)[0].decode()
        if not line.startswith(_PREFIX):
            raise ServerStartError(f"unexpected first line {line!r}; stderr:\n{self.stderr()}")
        return line

    def stderr(self) -> str:
        """Everything the server logged so far."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")

    @property
    def returncode(self) -> int | None:
        """The exit status, or ``None`` while running."""
        return None if self.proc is None else self.proc.poll()

    def get_json(self, route: str, timeout: float = 5.0) -> tuple[int, Any]:
        """GET ``url + route`` with urllib; returns (status, parsed JSON body)."""
        try:
            with urllib.request.urlopen(self.url + route, timeout=timeout) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def wait_ready(self, timeout: float = 10.0) -> dict[str, Any]:
        """Poll ``/ready`` until it answers 200; returns its body. Fails with the log."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while True:
            try:
                status, last = self.get_json("/ready")
                if status == 200:
                    return last
            except OSError as exc:
                last = exc
            if time.monotonic() > deadline:
                raise TimeoutError(f"server not ready: {last!r}; stderr:\n{self.stderr()}")
            if self.returncode is not None:
                raise ServerStartError(f"server exited; stderr:\n{self.stderr()}")
            time.sleep(0.02)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, wait (SIGKILL after ``timeout``); returns the exit status. Idempotent."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._close_pipes()
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL at once (a crash, as the client sees it). Idempotent."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._close_pipes()

    def _close_pipes(self) -> None:
        if self.proc is not None and self.proc.stdout is not None:
            with contextlib.suppress(OSError):
                self.proc.stdout.close()

    def __enter__(self) -> ServerProcess:
        if self.proc is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class RealServerProcess(ServerProcess):
    """The real Go AGFS server: ``BIN -c CONFIG -addr 127.0.0.1:PORT``.

    It cannot listen on port 0 and say which port it got, so a free port is picked here
    (and another one when a different process took it first); it prints nothing on stdout,
    so it counts as started once ``/health`` answers. Its mounts come up after that, in
    the background: :meth:`wait_ready` polls ``/ready`` as for the reference server.
    """

    #: How many free ports to try when the one picked is taken before the server binds it.
    PORT_ATTEMPTS = 5
    #: Go installs no signal handler: SIGTERM ends the process by the signal itself.
    TERMINATED_STATUS = -signal.SIGTERM

    def __init__(
        self,
        binary: str,
        config_path: str | os.PathLike[str],
        *,
        port: int | None = None,
        cwd: str | os.PathLike[str] | None = None,
        log_path: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__(cwd=cwd, log_path=log_path)
        self.binary = binary
        self.config_path = str(config_path)
        self.fixed_port = port

    @property
    def command(self) -> list[str]:
        return [self.binary, "-c", self.config_path, "-addr", f"{self.host}:{self.port}"]

    def start(self, timeout: float = START_TIMEOUT) -> ServerProcess:
        """Start on a free (or the given) port and wait until ``/health`` answers."""
        attempts = 1 if self.fixed_port else self.PORT_ATTEMPTS
        for attempt in range(attempts):
            self.host = "127.0.0.1"
            self.port = self.fixed_port or free_port()
            self.url = f"http://{self.host}:{self.port}/api/v1"
            self._spawn(stdout=subprocess.STDOUT)
            try:
                self._await_health(timeout)
                return self
            except ServerStartError:
                self.kill()
                if "address already in use" not in self.stderr() or attempt == attempts - 1:
                    raise
            except BaseException:
                self.kill()
                raise
        raise AssertionError("unreachable")

    def _await_health(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.returncode is not None:
                raise ServerStartError(
                    f"server exited with status {self.returncode} before listening; "
                    f"log:\n{self.stderr()}"
                )
            try:
                status, _ = self.get_json("/health", timeout=1.0)
                if status == 200:
                    return
            except (OSError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise ServerStartError(
                    f"server did not answer /health within {timeout}s; log:\n{self.stderr()}"
                )
            time.sleep(0.02)


@contextlib.contextmanager
def run_server(
    *args: str,
    cwd: str | os.PathLike[str] | None = None,
    log_path: str | os.PathLike[str] | None = None,
) -> Iterator[ServerProcess]:
    """Context manager: a started server with ``args``, always stopped afterwards."""
    server = ServerProcess(*args, cwd=cwd, log_path=log_path)
    try:
        server.start()
        yield server
    finally:
        server.stop()


def plugins_config(local_dir: str | os.PathLike[str], *, queuefs: bool = True) -> dict[str, Any]:
    """memfs at /memfs, localfs at /local over ``local_dir`` and (unless told not to)
    queuefs at /queuefs, in the real server's config shape."""
    plugins: dict[str, Any] = {
        "memfs": {"enabled": True, "path": "/memfs"},
        "localfs": {"enabled": True, "path": "/local", "config": {"local_dir": str(local_dir)}},
    }
    if queuefs:
        plugins["queuefs"] = {"enabled": True, "path": "/queuefs", "config": {}}
    return {"plugins": plugins}


def write_config(path: str | os.PathLike[str], config: dict[str, Any]) -> Path:
    """Write ``config`` (the real server's ``config.yaml`` shape) as YAML; returns the path."""
    path = Path(path)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def start_server(
    workdir: str | os.PathLike[str],
    *,
    config: dict[str, Any] | None = None,
    max_body: int | None = None,
    test_hooks: bool = False,
    port: int | None = None,
    extra_args: Sequence[str] = (),
    ready: bool = True,
) -> ServerProcess:
    """Start a server working in ``workdir`` and return it (the caller must ``stop`` it).

    ``config`` is written to ``workdir/config.yaml`` and passed with ``-c`` (``None`` =
    default mounts: memfs at /memfs, queuefs at /queuefs). ``port`` = a fixed loopback port
    (default: a free one). The log is ``workdir/server.log``. With ``ready`` the call also
    waits for ``/ready`` = 200.

    Under conformance runs this is the real server (:func:`use_real_server`): ``max_body``
    goes into the config, ``test_hooks`` is ignored (the real server has no ``/_test``
    routes: tests that need them are marked ``reference_only``), and ``extra_args``, the
    reference server's own flags, are refused.
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    server: ServerProcess
    if _real_server_bin is not None:
        if extra_args:
            raise ValueError(
                f"reference server flags {list(extra_args)} given to the real server: "
                "mark the test reference_only"
            )
        config = copy.deepcopy(DEFAULT_CONFIG if config is None else config)
        if max_body is not None:
            config.setdefault("server", {})["max_request_body_bytes"] = max_body
        server = RealServerProcess(
            _real_server_bin,
            write_config(workdir / "config.yaml", config),
            port=port,
            cwd=workdir,
            log_path=workdir / "server.log",
        )
    else:
        args: list[str] = []
        if config is not None:
            args += ["-c", str(write_config(workdir / "config.yaml", config))]
        if max_body is not None:
            args += ["--max-body", str(max_body)]
        if test_hooks:
            args.append("--test-hooks")
        if port is not None:
            args += ["--addr", f"127.0.0.1:{port}"]
        args += list(extra_args)
        server = ServerProcess(*args, cwd=workdir, log_path=workdir / "server.log")
    server.start()
    if ready:
        try:
            server.wait_ready()
        except BaseException:
            server.stop()
            raise
    return server
