"""After a crash: the spools whose ``close`` had already told the program "done".

With ``-o async_upload`` a program's ``close`` succeeds before the upload; a mount killed
then leaves the content in a spool whose sidecar says so (``SpoolMeta.closed``). The next
mount (async or not) uploads it before serving, when the server's file is still the one
the content was made from (same size and mtime, or still absent for a new file), as the
upload would have done. When the server's file already is that content (the upload landed
and only the spool's removal was cut short), the spool goes. Otherwise, or when the upload
fails, it keeps the spool with the reason, for ``agfs-fuse spools``: it never writes over
a change made since by someone else.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import AgfsError
from .models import FileInfo
from .spool import Spool, SpoolMeta
from .uploads import kept_reason

if TYPE_CHECKING:
    from .filesystem import AgfsFilesystem

log = logging.getLogger(__name__)

COMPARE_LIMIT = 8 << 20
"""Bytes up to which a spool is compared with the server's file after a crash."""
CHANGED_SINCE = "the server's file changed after it was closed here; not uploaded over it"


async def recover_closed_spool(fs: AgfsFilesystem, data: Path, meta: SpoolMeta) -> None:
    """Upload or keep (with a reason) the closed spool at ``data``; never raises."""
    if meta.extents is not None:
        _keep(data, meta, "only the changed ranges of the file were spooled; not uploaded")
        return
    try:
        current = await fs.server_info(meta.remote_path)
    except AgfsError as exc:
        _keep(data, meta, f"could not check the server's file: {kept_reason(exc)}")
        return
    expected = None if meta.base_size is None else (meta.base_size, meta.base_mtime_ns)
    found = None if current is None else (current.size, current.mtime_ns)
    if found != expected or (current is not None and current.is_dir):
        if current is not None and await _landed_already(fs, data, meta.remote_path, current):
            Spool.reopen(data, meta).discard()
            log.info("%s was uploaded before the earlier run stopped", meta.remote_path)
            return
        _keep(data, meta, CHANGED_SINCE)
        return
    writer = fs.pending.new_spool(meta.remote_path, current, Spool.reopen(data, meta))
    try:
        await writer.close()
    except AgfsError as exc:
        writer.keep(kept_reason(exc))
        log.error(
            "could not upload %s, closed before a crash: %s; its content is kept in %s "
            "(see: agfs-fuse spools)",
            meta.remote_path,
            exc,
            data,
        )
        return
    log.warning("uploaded %s, closed before the earlier run stopped", meta.remote_path)


async def _landed_already(fs: AgfsFilesystem, data: Path, path: str, current: FileInfo) -> bool:
    """Whether the server's file is this very content: its upload landed, and only the
    removal of the spool was cut short (a kill with uploads in flight). Compared byte for
    byte, for files up to ``COMPARE_LIMIT``; larger ones are kept and reported."""
    if current.is_dir or current.size > COMPARE_LIMIT:
        return False
    try:
        if data.stat().st_size != current.size:
            return False
        server = await fs.client.read(path)
    except (AgfsError, OSError):
        return False
    return server == data.read_bytes()


def _keep(data: Path, meta: SpoolMeta, reason: str) -> None:
    log.error(
        "%s was closed before the earlier run stopped, but is not uploaded: %s; its "
        "content is kept in %s (see: agfs-fuse spools)",
        meta.remote_path,
        reason,
        data,
    )
    Spool.reopen(data, meta).keep(reason)
