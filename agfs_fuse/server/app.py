"""Assemble the server: mount the plugins, bind the socket, serve until told to stop."""

from __future__ import annotations

import logging
import socket
import threading
from http.server import ThreadingHTTPServer
from typing import Any

from agfs_fuse.server.accept_backoff import AcceptBackoff
from agfs_fuse.server.config import MountSpec, Settings
from agfs_fuse.server.httpio import RequestHandler
from agfs_fuse.server.mountable import Mount, MountableFS
from agfs_fuse.server.plugins.base import FileSystem
from agfs_fuse.server.plugins.devfs import DevFS
from agfs_fuse.server.plugins.localfs import LocalFS, check_local_dir
from agfs_fuse.server.plugins.memfs import MemFS
from agfs_fuse.server.plugins.proxyfs import ProxyFS
from agfs_fuse.server.plugins.queuefs import QueueFS, check_queue_config
from agfs_fuse.server.plugins.streamfs import StreamFS
from agfs_fuse.server.plugins.streamfs_config import check_stream_config
from agfs_fuse.server.routes.dispatch import Api
from agfs_fuse.server.status import MountStatusTracker

log = logging.getLogger("agfs_fuse.server")

#: Config keys each plugin accepts (``mount_path`` is injected by the server itself).
ALLOWED_KEYS = {
    "memfs": ["init_dirs", "mount_path"],
    "localfs": ["local_dir", "mount_path"],
    "queuefs": [
        "backend",
        "mount_path",
        "db_path",
        "dsn",
        "user",
        "password",
        "host",
        "port",
        "database",
        "enable_tls",
        "tls_server_name",
        "tls_skip_verify",
    ],
    "streamfs": ["channel_buffer_size", "ring_buffer_size", "mount_path"],
    "devfs": ["mount_path"],
}


def _validate_keys(plugin: str, config: dict[str, Any]) -> None:
    allowed = ALLOWED_KEYS[plugin]
    unknown = [k for k in config if k not in allowed]
    if unknown:
        raise ValueError(
            "unknown configuration parameter(s) '{}' - allowed parameters are: '{}'".format(
                "', '".join(unknown), "', '".join(allowed)
            )
        )


def create_fs(plugin: str, config: dict[str, Any]) -> FileSystem:
    """Validate ``config`` like the Go plugin and build its filesystem (``ValueError``)."""
    if plugin == "proxyfs":  # its own key check and texts; reaches the remote first
        return ProxyFS.initialize(config)
    _validate_keys(plugin, config)
    if plugin == "memfs":
        dirs = config.get("init_dirs")
        if dirs is not None and not isinstance(dirs, list):
            raise ValueError("init_dirs must be an array")
        # The real server never applies init_dirs from YAML (its type assertion to
        # []string fails on []interface{}), so neither does this one.
        return MemFS()
    if plugin == "localfs":
        return LocalFS(check_local_dir(config.get("local_dir")))
    if plugin == "queuefs":
        check_queue_config(config)
        return QueueFS()
    if plugin == "streamfs":
        return StreamFS(*check_stream_config(config))
    if plugin == "devfs":
        return DevFS()
    raise ValueError(f"unknown plugin: {plugin}")


def mount_all(mfs: MountableFS, tracker: MountStatusTracker, specs: list[MountSpec]) -> None:
    """devfs at /dev, then every configured instance; failures leave the server degraded."""
    for spec in [MountSpec("devfs", "devfs", "/dev", {"mount_path": "/dev"}), *specs]:
        tracker.track(spec.plugin, spec.instance, spec.path, spec.config)
        config = dict(spec.config or {})
        config["mount_path"] = spec.path
        try:
            fs = create_fs(spec.plugin, config)
        except ValueError as exc:
            tracker.set_failed(spec.path, str(exc))
            log.error("Failed to validate %s instance '%s': %s", spec.plugin, spec.instance, exc)
            continue
        try:
            mfs.mount(Mount(spec.path, spec.plugin, spec.instance, fs, spec.config))
        except Exception as exc:  # noqa: BLE001 - any mount failure is reported, not fatal
            msg = getattr(exc, "message", str(exc))
            tracker.set_failed(spec.path, msg)
            log.error(
                "Failed to mount %s instance '%s' at %s: %s",
                spec.plugin,
                spec.instance,
                spec.path,
                msg,
            )
            continue
        tracker.set_mounted(spec.path)
        log.info("%s instance '%s' mounted at %s", spec.plugin, spec.instance, spec.path)


class AgfsHTTPServer(ThreadingHTTPServer):
    """A threading server with a deep backlog and no reverse DNS lookup at bind time."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, addr: tuple[str, int], api: Api) -> None:
        self.app = api
        self.accept_backoff = AcceptBackoff()
        if ":" in addr[0]:
            self.address_family = socket.AF_INET6
        super().__init__(addr, RequestHandler)

    def get_request(self) -> tuple[socket.socket, Any]:
        """``accept``, backing off like Go while descriptors are exhausted."""
        try:
            conn = self.socket.accept()
        except OSError as exc:
            if self.accept_backoff.failed(exc):
                log.error(
                    "http: Accept error: %s; retried after %s s", exc, self.accept_backoff.delay
                )
            raise
        self.accept_backoff.succeeded()
        return conn

    def server_bind(self) -> None:
        """Bind without ``HTTPServer``'s ``getfqdn`` (which can stall on DNS)."""
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind(self.server_address)
        self.server_address = self.socket.getsockname()
        self.server_name = str(self.server_address[0])
        self.server_port = int(self.server_address[1])


class AgfsServer:
    """Mounts plus a bound listener; ``serve_in_thread`` and ``shutdown`` drive it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.mfs = MountableFS()
        self.tracker = MountStatusTracker()
        self.api = Api(self.mfs, self.tracker, settings.max_body, settings.test_hooks)
        self.httpd = AgfsHTTPServer((settings.host, settings.port), self.api)
        mount_all(self.mfs, self.tracker, settings.mounts)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """``http://HOST:PORT/api/v1`` with the port actually bound."""
        host, port = self.httpd.server_name, self.httpd.server_port
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{port}/api/v1"

    def serve_in_thread(self) -> None:
        """Start accepting connections on a background thread."""
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.2}, name="agfs-accept"
        )
        self._thread.daemon = True
        self._thread.start()

    def shutdown(self) -> None:
        """Stop accepting, wake blocked stream readers (their connections are dropped, as
        when the Go process dies) and close the listener; the rest dies with the process."""
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread.join()
        for mount in self.mfs.mounts():
            mount.fs.shutdown()
        self.httpd.server_close()
