"""Spool files: the local, on-disk copy of a file being written.

AGFS replaces whole files on ``PUT``, so the new content of an open file has to live
somewhere until it is uploaded. It lives on local disk (never in RAM: files may be far
larger than memory), one spool per remote file, with a JSON sidecar saying where it
belongs (remote path, server URL, what it was filled from). A spool whose upload failed
is kept with its sidecar, so nothing is lost across a crash; ``SpoolDir.leftovers`` lists
them for the next mount to report.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import stat
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

log = logging.getLogger(__name__)

SIDECAR_SUFFIX = ".json"
DEFAULT_MAX_KEPT = 1 << 30
"""Bytes of kept spools above which new writes get ENOSPC (``-o max_kept``)."""


@dataclass
class SpoolMeta:
    """What the sidecar records: enough to report or retry the upload after a crash."""

    remote_path: str
    server_url: str
    base_size: int | None
    base_mtime_ns: int | None
    created: float
    handle_id: int | None = None
    """A server handle open for this upload: closed by the next mount after a crash."""
    extents: list[tuple[int, int]] | None = None
    """For a sparse spool: the only byte ranges it holds (the rest is the server's)."""
    temporary: str | None = None
    """A hidden server file this upload is writing: removed by the next mount after a crash."""
    reason: str | None = None
    """Why the spool was kept instead of uploaded (None: the mount crashed or is using it)."""
    closed: bool = False
    """Its last handle was closed and the program told the write succeeded, the upload
    left to the background (``-o async_upload``): after a crash the next mount uploads it,
    when the server's file is still the one it was made from."""


class UnsafeSpoolDir(Exception):
    """The spool directory cannot be used, or not safely; the message is one line."""


def make_private_dir(path: Path) -> None:
    """Create ``path`` (mode 0700) if missing, then refuse it unless only we can change it.

    A sidecar names a server handle that the next mount closes, and spools hold file
    content: another local user who could plant or swap files here could make a root
    mount close handles that are not its own, or read what it writes. So, as ssh does
    with its key files: the directory must be ours, a real directory, and writable by
    no one else; each directory above it must belong to us or root, and be writable by
    others only with the sticky bit (like /tmp), so no one can swap it for their own.
    """
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        own = os.lstat(path)
    except OSError as exc:
        raise UnsafeSpoolDir(f"cannot use spool directory {path}: {exc.strerror}") from None
    me = os.geteuid()
    if not stat.S_ISDIR(own.st_mode):
        raise UnsafeSpoolDir(f"spool directory {path} is not a directory (or is a symlink)")
    if own.st_uid != me:
        raise UnsafeSpoolDir(
            f"spool directory {path} belongs to uid {own.st_uid}, not to you (uid {me}); "
            "remove it or choose another -o cache_dir="
        )
    if own.st_mode & 0o022:
        raise UnsafeSpoolDir(
            f"spool directory {path} is writable by other users (mode "
            f"{stat.S_IMODE(own.st_mode):04o}); run chmod 700 on it"
        )
    for parent in Path(os.path.realpath(path.parent), "x").parents:
        try:
            info = os.stat(parent)
        except OSError as exc:
            raise UnsafeSpoolDir(f"cannot check {parent}: {exc.strerror}") from None
        if info.st_uid not in (me, 0):
            raise UnsafeSpoolDir(
                f"{parent}, above spool directory {path}, belongs to uid {info.st_uid}, "
                f"not to you (uid {me}) or root; choose another -o cache_dir="
            )
        if info.st_mode & 0o002 and not info.st_mode & stat.S_ISVTX:
            raise UnsafeSpoolDir(
                f"{parent}, above spool directory {path}, is writable by every user "
                f"(mode {stat.S_IMODE(info.st_mode):04o}); choose another -o cache_dir="
            )


class SpoolDir:
    """A per-mount directory under the cache dir that holds spool files."""

    def __init__(self, root: Path) -> None:
        self.root = root
        make_private_dir(root)

    def new_spool(self, meta: SpoolMeta) -> Spool:
        name = uuid.uuid4().hex
        return Spool(self.root / name, meta)

    def kept(self, in_use: set[Path]) -> list[KeptSpool]:
        """Spools on disk that no open file or pending upload of this mount is using."""
        found = []
        for data in self._data_files(in_use):
            try:
                size = data.stat().st_size
            except FileNotFoundError:
                continue  # discarded meanwhile
            found.append(KeptSpool(data, _read_sidecar(data), size))
        return found

    def kept_bytes(self, in_use: set[Path]) -> int:
        """What ``kept`` adds up to, without reading a sidecar: cheap enough for every open."""
        total = 0
        for data in self._data_files(in_use):
            with contextlib.suppress(FileNotFoundError):
                total += data.stat().st_size
        return total

    def _data_files(self, in_use: set[Path]) -> list[Path]:
        return [
            data
            for data in sorted(self.root.iterdir())
            if data.suffix != SIDECAR_SUFFIX
            and not data.name.endswith(".tmp")
            and not data.is_dir()  # the rename journal (see ``rename_journal``)
            and data not in in_use
        ]

    def leftovers(self) -> Iterator[tuple[Path, SpoolMeta | None]]:
        """Spools left by an earlier run (failed uploads, a crash), with their sidecars."""
        for data in self._data_files(set()):
            yield data, _read_sidecar(data)


@dataclass
class KeptSpool:
    """A spool kept on disk after a failed upload or a crash, as ``agfs-fuse spools`` shows it."""

    path: Path
    meta: SpoolMeta | None
    size: int

    @property
    def id(self) -> str:
        return self.path.name

    def describe(self) -> dict[str, object]:
        meta = self.meta
        return {
            "id": self.id,
            "path": str(self.path),
            "remote_path": meta.remote_path if meta else None,
            "server_url": meta.server_url if meta else None,
            "size": self.size,
            "reason": (meta.reason if meta else None)
            or "the mount stopped before uploading it (crash or kill)",
            "partial": bool(meta and meta.extents is not None),
        }

    def discard(self) -> None:
        for p in (self.path, self.path.with_name(self.path.name + SIDECAR_SUFFIX)):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()


class Spool:
    """One spool file: positional reads/writes on a real file descriptor.

    Plain synchronous I/O on local disk: a FUSE write is at most 1 MiB and lands in the
    page cache, which is cheaper than a thread hop.
    """

    def __init__(self, data_path: Path, meta: SpoolMeta) -> None:
        self.data_path = data_path
        self.sidecar_path = data_path.with_name(data_path.name + SIDECAR_SUFFIX)
        self.meta = meta
        self._fd = os.open(data_path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        self.size = 0
        try:
            self._write_sidecar()
        except OSError:
            self.discard()  # a spool without its sidecar would be an orphan
            raise

    @classmethod
    def reopen(cls, data_path: Path, meta: SpoolMeta) -> Spool:
        """A kept spool taken up again (to re-upload it), content and sidecar untouched."""
        spool = cls.__new__(cls)
        spool.data_path = data_path
        spool.sidecar_path = data_path.with_name(data_path.name + SIDECAR_SUFFIX)
        spool.meta = meta
        spool._fd = os.open(data_path, os.O_RDWR)
        spool.size = os.fstat(spool._fd).st_size
        return spool

    def fileno(self) -> int:
        return self._fd

    def _write_sidecar(self) -> None:
        tmp = self.sidecar_path.with_name(self.sidecar_path.name + ".tmp")
        try:
            tmp.write_text(json.dumps(asdict(self.meta)))
            os.replace(tmp, self.sidecar_path)
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink()  # a full disk must not collect empty .tmp files
            raise

    def retarget(self, remote_path: str) -> None:
        """The remote file was renamed: the spool now belongs to ``remote_path``."""
        self.meta.remote_path = remote_path
        self._write_sidecar()

    def pread(self, offset: int, size: int) -> bytes:
        return os.pread(self._fd, size, offset)

    def pwrite(self, offset: int, data: bytes) -> int:
        written = os.pwrite(self._fd, data, offset)
        self.size = max(self.size, offset + written)
        return written

    def data_ranges(self) -> list[tuple[int, int]]:
        """The ranges that hold data, holes left out (``SEEK_DATA``/``SEEK_HOLE``).

        A sparse file (one byte written past 2 GiB) must not upload gigabytes of zeros
        through a handle. Where the local filesystem cannot tell, the whole spool.
        """
        ranges: list[tuple[int, int]] = []
        offset = 0
        try:
            while offset < self.size:
                try:
                    start = os.lseek(self._fd, offset, os.SEEK_DATA)
                except OSError as exc:
                    if exc.errno == errno.ENXIO:  # nothing but a hole up to the end
                        break
                    raise
                stop = min(os.lseek(self._fd, start, os.SEEK_HOLE), self.size)
                if start >= stop:
                    break
                ranges.append((start, stop))
                offset = stop
        except OSError:
            return [(0, self.size)] if self.size else []
        return ranges

    def truncate(self, size: int) -> None:
        os.ftruncate(self._fd, size)
        self.size = size

    def append(self, data: bytes) -> None:
        self.pwrite(self.size, data)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def discard(self) -> None:
        """Remove the spool and its sidecar (after a successful upload)."""
        self.close()
        for p in (self.data_path, self.sidecar_path):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()

    def record_handle(self, handle: int | None) -> None:
        self.meta.handle_id = handle
        self._record("handle")

    def record_partial(self) -> None:
        """This spool holds only changed ranges: after a crash it must not be taken for the
        whole file (``keep`` writes which ranges)."""
        self.meta.extents = []
        self._record("partial content")

    def record_closed(self, closed: bool = True) -> None:
        """The content is final and the program was told so (``closed``), or a program
        opened it to write again (not): see ``SpoolMeta.closed``."""
        if self.meta.closed != closed:
            self.meta.closed = closed
            self._record("closed content")

    def record_temporary(self, remote_path: str | None) -> None:
        self.meta.temporary = remote_path
        self._record("temporary upload")

    def _record(self, what: str) -> None:
        """Best effort: these notes only help a crash recovery, and a full cache disk must
        not stop an upload whose content is already safe in the spool."""
        try:
            self._write_sidecar()
        except OSError as exc:
            log.warning(
                "cannot note the %s of %s in %s: %s",
                what,
                self.meta.remote_path,
                self.sidecar_path,
                exc,
            )

    def keep(self, reason: str, extents: Iterable[tuple[int, int]] | None = None) -> Path:
        """Close but keep the spool on disk for recovery; returns its path.

        ``extents`` says which ranges a sparse spool holds, so the sidecar tells the truth.
        """
        self.meta.reason = reason
        if extents is not None:
            self.meta.extents = [(start, stop) for start, stop in extents]
        self._record("reason for keeping")
        self.close()
        return self.data_path


def _read_sidecar(data: Path) -> SpoolMeta | None:
    try:
        return SpoolMeta(**json.loads(data.with_name(data.name + SIDECAR_SUFFIX).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/agfs-fuse``, or ``/var/cache/agfs-fuse`` for root."""
    if os.geteuid() == 0 and "XDG_CACHE_HOME" not in os.environ:
        return Path("/var/cache/agfs-fuse")
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(base) / "agfs-fuse"


def spool_dir_path(cache_dir: Path, mountpoint: str) -> Path:
    """Where the spools of the mount on ``mountpoint`` live: keyed by the mountpoint alone,
    so a ``reload`` to another server (or a new URL for the same one) finds them, and so
    does ``agfs-fuse spools MOUNTPOINT``."""
    slug = uuid.uuid5(uuid.NAMESPACE_URL, os.path.realpath(mountpoint)).hex[:16]
    return cache_dir / "spool" / slug


def mount_spool_dir(cache_dir: Path, server_url: str, mountpoint: str) -> SpoolDir:
    """The spool directory for one mount, with what an older version kept under a
    directory keyed by URL and mountpoint moved into it (nothing kept is left behind).
    The old directory passes the same ownership checks first: its sidecars name server
    handles that this mount will close."""
    spool_dir = SpoolDir(spool_dir_path(cache_dir, mountpoint))
    old_key = f"{server_url} {os.path.realpath(mountpoint)}"
    old = cache_dir / "spool" / uuid.uuid5(uuid.NAMESPACE_URL, old_key).hex[:16]
    if old.is_dir() and old != spool_dir.root:
        make_private_dir(old)
        _move_entries(old, spool_dir.root)
        log.info("moved the spools kept under %s to %s", old, spool_dir.root)
    return spool_dir


def _move_entries(source: Path, destination: Path) -> None:
    """Move what ``source`` holds into ``destination``, entry by entry, then remove it. A
    directory both hold (the rename journal's ``renames/``) is merged the same way: a
    plain replace of a non-empty one fails (ENOTEMPTY). Names are random (uuid), so a file
    of the same name is the same file."""
    for entry in source.iterdir():
        target = destination / entry.name
        if entry.is_dir() and not entry.is_symlink() and target.is_dir():
            _move_entries(entry, target)
        else:
            os.replace(entry, target)
    with contextlib.suppress(OSError):
        source.rmdir()


def now() -> float:
    return time.time()
