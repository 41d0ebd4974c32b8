"""After a crash: the spools whose ``close`` had already told the program "done".

With ``-o async_upload`` a program's ``close`` succeeds before the upload; a mount killed
then leaves the content in a spool whose sidecar says so (``SpoolMeta.closed``). The next
mount (async or not) uploads it before serving, when the server's file is still the one
the content was made from (same size and mtime, or still absent for a new file), as the
upload would have done; otherwise, or when the upload fails, it keeps the spool with the
reason, for ``agfs-fuse spools``: it never writes over a change made since by someone else.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import AgfsError
from .spool import Spool, SpoolMeta
from .uploads import kept_reason

if TYPE_CHECKING:
    from .filesystem import AgfsFilesystem

log = logging.getLogger(__name__)

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


def _keep(data: Path, meta: SpoolMeta, reason: str) -> None:
    log.error(
        "%s was closed before the earlier run stopped, but is not uploaded: %s; its "
        "content is kept in %s (see: agfs-fuse spools)",
        meta.remote_path,
        reason,
        data,
    )
    Spool.reopen(data, meta).keep(reason)
