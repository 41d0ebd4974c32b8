"""What a federated mount serves: its backends, from ``--map`` arguments or a YAML file.

A federated mount shows several AGFS servers side by side, each as one top-level
directory (its *prefix*, ``/dc1``). Everything that can be wrong with that list is found
here, before anything is mounted, and said in one line: a prefix that is not one plain
name, one given twice, one that a control file of the mount would hide, a URL that is no
http(s) URL, a key nobody reads (a typo would otherwise be silently ignored), a file
that cannot be read. The connection settings (TLS, token, headers, timeout, ``root``),
the cache timeouts (``attr_timeout``, ``entry_timeout``, ``negative_timeout``,
``dir_cache_timeout``) and ``async_upload`` are per backend; mount-wide ``-o`` options
are the defaults each backend starts from. Kernel-level options (allow_other, ro,
uid/gid/umask, writeback_cache) stay mount-wide: the kernel knows one mount, not its
backends.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .errors import InvalidArgument
from .local_config_files import LocalFileError, read_small_file, readable_by_others_warning
from .options import VALUED, MountOptions, OptionError, parse_options
from .path_settings import CacheTimeouts
from .wire import normalize_base_url, shown_url

RESERVED_NAMES = frozenset({"reload", ".agfs-stats", ".agfs-spools", ".agfs-sync", ".mounts"})
"""Names at the mount root that are the mount's own control files, never a backend."""

CACHE_TIMEOUT_KEYS = ("attr_timeout", "entry_timeout", "negative_timeout", "dir_cache_timeout")
BACKEND_KEYS = (
    "url",
    "root",
    "cafile",
    "certfile",
    "keyfile",
    "token_file",
    "timeout",
    *CACHE_TIMEOUT_KEYS,
)
"""Per-backend settings with a value (``headers`` and the flags are handled apart)."""
BACKEND_FLAGS = ("insecure", "async_upload")
"""Per-backend on/off settings (``name: true`` in a file, a bare ``name`` or
``name=false`` in ``.mounts``); the core reads ``async_upload`` through
``path_settings.PathSettings``."""
ALL_BACKEND_KEYS = frozenset({*BACKEND_KEYS, "headers", "header", "token", *BACKEND_FLAGS})
TOP_LEVEL_KEYS = frozenset({"backends", "options"})
MAX_CONFIG_BYTES = 1 << 20

FEDERATION_SOURCE = "agfs-federation"
"""The mount's source in /proc/mounts when its backends came from ``--map``."""


class FederationError(ValueError):
    """A federation that cannot be served; the message is the one line the user sees."""


@dataclass(frozen=True)
class BackendSpec:
    """One backend: where it shows (``prefix``), which server, and how to connect to it
    (``options``: the mount-wide options with this backend's settings applied)."""

    prefix: str
    url: str
    options: MountOptions

    @property
    def root(self) -> str:
        """The server directory shown as the backend's directory."""
        return self.options.root

    @property
    def name(self) -> str:
        return self.prefix[1:]

    @functools.cached_property
    def timeouts(self) -> CacheTimeouts:
        """How long what the mount learnt under this backend may be served unasked (made
        once: the caches ask for it on every entry they store)."""
        return CacheTimeouts.of(self.options)


@dataclass(frozen=True)
class Federation:
    """The backends of a federated mount and what ``/proc/mounts`` shows as its source."""

    backends: tuple[BackendSpec, ...]
    source: str
    options: MountOptions
    warnings: tuple[str, ...] = ()
    """Lines the mount logs once it runs (in its log or journal, not the caller's
    terminal twice): a config file holding tokens that other users can read."""


def check_prefix(prefix: str, taken: Iterable[str] = ()) -> str:
    """``prefix`` as a backend's directory (``/name``, no trailing slash), or a
    ``FederationError`` saying what is wrong with it."""
    text = prefix.strip()
    if not text.startswith("/"):
        raise FederationError(f"backend prefix {text!r} must start with / (like /dc1)")
    name = text.strip("/")
    if not name:
        raise FederationError("backend prefix / is the mount root itself; use /name")
    if "/" in name:
        raise FederationError(
            f"backend prefix {text!r} is nested; each backend is one top-level directory"
        )
    if name in (".", "..") or "\0" in name:
        raise FederationError(f"backend prefix {text!r} is not a directory name")
    if name in RESERVED_NAMES:
        raise FederationError(f"backend prefix {text!r} is the name of a control file")
    normalized = "/" + name
    if normalized in taken:
        raise FederationError(f"backend prefix {normalized} is given twice")
    return normalized


def check_url(url: object, prefix: str) -> str:
    if not isinstance(url, str) or not url.strip():
        raise FederationError(f"backend {prefix} needs a url (http(s)://host:port/api/v1)")
    try:
        return normalize_base_url(url.strip())
    except InvalidArgument as exc:
        raise FederationError(f"backend {prefix}: {exc.message}") from None


def backend_spec(
    prefix: str, settings: Mapping[str, Any], defaults: MountOptions, taken: Iterable[str] = ()
) -> BackendSpec:
    """One backend from its settings (a config file's mapping, or ``.mounts``'s
    ``key=value`` words); ``defaults`` are the mount-wide options."""
    prefix = check_prefix(prefix, taken)
    unknown = sorted(set(settings) - ALL_BACKEND_KEYS)
    if unknown:
        raise FederationError(
            f"backend {prefix}: unknown setting {unknown[0]!r}; valid: "
            + ", ".join(sorted(ALL_BACKEND_KEYS - {"header"}))
        )
    url = check_url(settings.get("url"), prefix)
    changes: dict[str, Any] = {}
    for key in BACKEND_KEYS[1:]:
        if key in settings:
            changes[key] = _converted(prefix, key, settings[key])
    headers = list(defaults.header)
    for key in ("headers", "header"):
        headers += [
            _converted(prefix, "header", h) for h in _header_items(prefix, settings.get(key))
        ]
    changes["header"] = headers
    if "token" in settings:
        changes["token"] = _token(prefix, settings["token"])
        changes["token_file"] = None
    elif "token_file" in settings:
        changes["token"] = None
    for flag in BACKEND_FLAGS:
        if flag in settings:
            changes[flag] = _flag(prefix, flag, settings[flag])
    options = dataclasses.replace(defaults, **changes)
    if (options.certfile is None) != (options.keyfile is None):
        raise FederationError(f"backend {prefix}: certfile and keyfile go together")
    return BackendSpec(prefix, url, options)


def _converted(prefix: str, key: str, value: object) -> Any:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise FederationError(f"backend {prefix}: {key} must be a single value")
    convert, _ = VALUED[key]
    try:
        return convert(str(value))
    except ValueError as exc:
        raise FederationError(
            f"backend {prefix}: bad {key} {shown_url(str(value))} ({exc})"
        ) from None


def _token(prefix: str, value: object) -> str:
    """A token written in the config file; only its shape is checked here (the request
    headers check what may travel)."""
    if not isinstance(value, str) or not value.strip():
        raise FederationError(f"backend {prefix}: token must be a non-empty string")
    return value.strip()


def _header_items(prefix: str, value: object) -> list[str]:
    """Headers as ``{Name: Value}``, a list of ``"Name:Value"``, or one such string."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, Mapping):
        return [f"{name}:{text}" for name, text in value.items()]
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return list(value)
    raise FederationError(f"backend {prefix}: headers must be a mapping of Name: Value")


def _flag(prefix: str, key: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "yes", "1", "false", "no", "0"):
        return value.lower() in ("true", "yes", "1")
    raise FederationError(f"backend {prefix}: {key} must be true or false")


def _mount_wide(options: MountOptions) -> MountOptions:
    if options.root != "/":
        raise FederationError(
            "-o root= is per backend in a federated mount (root: in the config file)"
        )
    return options


def from_maps(maps: Iterable[str], options: MountOptions) -> Federation:
    """``--map /dc1=URL`` arguments; every backend takes the mount-wide ``-o`` options."""
    defaults = _mount_wide(options)
    specs: list[BackendSpec] = []
    for item in maps:
        prefix, sep, url = item.partition("=")
        if not sep:
            raise FederationError(f"--map {item!r}: expected PREFIX=URL, like /dc1=http://h:8080")
        specs.append(backend_spec(prefix, {"url": url}, defaults, [s.prefix for s in specs]))
    if not specs:
        raise FederationError("a federated mount needs at least one --map PREFIX=URL")
    return Federation(tuple(specs), FEDERATION_SOURCE, defaults)


def load_config(path: Path, cli_options: Iterable[str]) -> Federation:
    """A federation file: ``backends: {/dc1: {url:, root:, cafile:, token_file:, headers:,
    timeout:, insecure:, token:, attr_timeout:, entry_timeout:, negative_timeout:,
    dir_cache_timeout:, async_upload:}}`` and ``options: {...}`` (mount-wide, as ``-o``; the command
    line's ``-o`` comes after, so it wins)."""
    document = _read_yaml(path)
    unknown = sorted(set(document) - TOP_LEVEL_KEYS)
    if unknown:
        raise FederationError(f"{path}: unknown key {unknown[0]!r}; valid: backends, options")
    raw_options = document.get("options") or {}
    if not isinstance(raw_options, Mapping):
        raise FederationError(f"{path}: options must be a mapping of option: value")
    try:
        options = parse_options([*_as_option_words(raw_options), *cli_options])
    except OptionError as exc:
        raise FederationError(f"{path}: {exc}") from None
    defaults = _mount_wide(options)
    backends = document.get("backends")
    if not isinstance(backends, Mapping) or not backends:
        raise FederationError(f"{path}: backends must map each /prefix to its url and settings")
    specs: list[BackendSpec] = []
    for prefix, settings in backends.items():
        if isinstance(settings, str):
            settings = {"url": settings}
        if not isinstance(prefix, str) or not isinstance(settings, Mapping):
            raise FederationError(f"{path}: backend {prefix!r} must map to its settings")
        try:
            specs.append(backend_spec(prefix, settings, defaults, [s.prefix for s in specs]))
        except FederationError as exc:
            raise FederationError(f"{path}: {exc}") from None
    warnings: list[str] = []
    if any(spec.options.token for spec in specs):
        warning = readable_by_others_warning(path, f"config file {path}, which holds tokens,")
        if warning is not None:
            warnings.append(warning)
    return Federation(tuple(specs), str(path), defaults, tuple(warnings))


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = read_small_file(path, MAX_CONFIG_BYTES, "config file")
    except LocalFileError as exc:
        raise FederationError(str(exc)) from None
    try:
        document = yaml.safe_load(data)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" (line {where.line + 1})" if where is not None else ""
        raise FederationError(f"config file {path} is not valid YAML{line}") from None
    if not isinstance(document, dict):
        raise FederationError(f"config file {path} must be a mapping with backends:")
    return document


def _as_option_words(options: Mapping[str, Any]) -> list[str]:
    """A config file's ``options:`` mapping as ``-o`` words (a flag is ``name: true``)."""
    words = []
    for name, value in options.items():
        if value is True:
            words.append(str(name))
        elif value is False or value is None:
            continue
        elif isinstance(value, list):
            words += [f"{name}={item}" for item in value]
        else:
            words.append(f"{name}={value}")
    return words


def parse_mount_line(words: list[str], defaults: MountOptions, taken: Iterable[str]) -> BackendSpec:
    """``.mounts``'s ``mount /dc3 URL [key=value ...]`` (the words after ``mount``)."""
    if len(words) < 2:
        raise FederationError("expected 'mount /PREFIX URL [key=value ...]'")
    prefix, url, *rest = words
    settings: dict[str, Any] = {"url": url}
    headers = []
    for word in rest:
        key, sep, value = word.partition("=")
        if not sep and key in BACKEND_FLAGS:
            settings[key] = True
        elif not sep:
            raise FederationError(f"expected key=value, got {word[:60]!r}")
        elif key in ("header", "headers"):
            headers.append(value)
        elif key == "token":
            raise FederationError(
                "a token written to .mounts stays in shell history; use token_file=PATH"
            )
        else:
            settings[key] = value
    if headers:
        settings["headers"] = headers
    return backend_spec(prefix, settings, defaults, taken)
