"""The real server's ``config.yaml``, and this server's settings derived from it.

Shape (``agfs-server/pkg/config``)::

    server: {address, log_level, max_request_body_bytes}
    plugins:
      memfs:   {enabled, path, config}          # one instance
      localfs: [{name, enabled, path, config}]  # or a list of instances
      streamfs: {enabled, path, config: {ring_buffer_size, channel_buffer_size}}
      proxyfs: [{name, enabled, path, config: {base_url}}]  # another AGFS server

A plugin entry whose ``enabled`` is missing is disabled, as in Go. An ``instances:`` key
inside an entry is ignored, as in Go (its YAML tag is ``-``); only a top-level list gives
several instances. Unknown plugin names are rejected up front here (the real server marks
them failed and runs degraded) because this server implements only a few plugins.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

DEFAULT_MAX_BODY = 64 * 1024 * 1024
DEFAULT_ADDR = "127.0.0.1:8080"
KNOWN_PLUGINS = ("memfs", "localfs", "queuefs", "streamfs", "proxyfs", "devfs")


class ConfigError(Exception):
    """Bad configuration or command line: reported on one line, exit status 2."""


@dataclass
class MountSpec:
    """One plugin instance to mount."""

    plugin: str
    instance: str
    path: str
    config: dict[str, Any] | None


@dataclass
class Settings:
    """Everything the server needs to start."""

    host: str = "127.0.0.1"
    port: int = 8080
    max_body: int = DEFAULT_MAX_BODY
    log_level: str = "info"
    mounts: list[MountSpec] = field(default_factory=list)
    test_hooks: bool = False


def default_mounts() -> list[MountSpec]:
    """Without ``-c``: memfs at /memfs and queuefs at /queuefs."""
    return [
        MountSpec("memfs", "memfs", "/memfs", None),
        MountSpec("queuefs", "queuefs", "/queuefs", None),
    ]


def parse_addr(addr: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT``, ``:PORT`` = every interface) to (host, port)."""
    host, sep, port_s = addr.rpartition(":")
    if not sep or not port_s.isdigit() or int(port_s) > 65535:
        raise ConfigError(f"invalid address {addr!r}: expected HOST:PORT (port 0-65535)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ConfigError(f"invalid address {addr!r}: put an IPv6 host in brackets")
    return host or "0.0.0.0", int(port_s)


def load_config(path: str) -> dict[str, Any]:
    """Read and parse the YAML file; ``ConfigError`` with a one-line reason otherwise."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        reason = " ".join(str(exc).split())
        raise ConfigError(f"cannot parse config file {path}: {reason}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"cannot parse config file {path}: the top level must be a mapping")
    return data


def _instance(plugin: str, raw: Any, default_name: str, where: str) -> MountSpec | None:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping with enabled/path/config")
    enabled = raw.get("enabled", False)
    if not isinstance(enabled, bool):
        raise ConfigError(f"{where}.enabled: expected true or false, got {enabled!r}")
    if not enabled:
        return None
    path = raw.get("path", "")
    if path is None:
        path = ""
    if not isinstance(path, str | int | float):
        raise ConfigError(f"{where}.path: expected a string")
    config = raw.get("config")
    if config is not None and not isinstance(config, dict):
        raise ConfigError(f"{where}.config: expected a mapping")
    name = raw.get("name", default_name)
    return MountSpec(plugin, "" if name is None else str(name), str(path), config or None)


def settings_from_config(
    data: dict[str, Any], where: str
) -> tuple[dict[str, Any], list[MountSpec]]:
    """Split a parsed config into its ``server`` section and the mounts it asks for."""
    server = data.get("server") or {}
    if not isinstance(server, dict):
        raise ConfigError(f"{where}: 'server' must be a mapping")
    plugins = data.get("plugins") or {}
    if not isinstance(plugins, dict):
        raise ConfigError(f"{where}: 'plugins' must be a mapping of plugin name to settings")
    mounts: list[MountSpec] = []
    for name, entry in plugins.items():
        name = str(name)
        if name not in KNOWN_PLUGINS or name == "devfs":
            known = ", ".join(p for p in KNOWN_PLUGINS if p != "devfs")
            raise ConfigError(
                f"{where}: unknown plugin {name!r} (this server provides {known}; "
                "devfs is always mounted at /dev)"
            )
        if isinstance(entry, list) and entry:
            for i, raw in enumerate(entry):
                spec = _instance(name, raw, "", f"{where}: plugins.{name}[{i}]")
                if spec:
                    mounts.append(spec)
        else:
            spec = _instance(name, entry or {}, name, f"{where}: plugins.{name}")
            if spec:
                mounts.append(spec)
    return server, mounts


def build_settings(
    config_path: str | None,
    addr: str | None,
    max_body: int | None,
    log_level: str | None,
    test_hooks: bool,
) -> Settings:
    """Merge the config file and the command line (flags win) into ``Settings``."""
    settings = Settings(test_hooks=test_hooks)
    server: dict[str, Any] = {}
    if config_path is not None:
        server, settings.mounts = settings_from_config(load_config(config_path), config_path)
    else:
        settings.mounts = default_mounts()
    address = addr if addr is not None else server.get("address") or DEFAULT_ADDR
    if not isinstance(address, str):
        raise ConfigError(f"server.address: expected a string, got {address!r}")
    settings.host, settings.port = parse_addr(address)
    body = max_body if max_body is not None else server.get("max_request_body_bytes")
    if body is not None and (not isinstance(body, int) or isinstance(body, bool)):
        raise ConfigError(f"max_request_body_bytes: expected an integer, got {body!r}")
    settings.max_body = body if body and body > 0 else DEFAULT_MAX_BODY
    level = log_level if log_level is not None else server.get("log_level")
    settings.log_level = str(level).lower() if level else "info"
    return settings
