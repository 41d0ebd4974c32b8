"""Finishing or undoing a rename-over that did not run to its end.

A rename-over on memfs is three requests: target to aside, source to target, delete the
aside. When one fails, or its answer is lost (the server may have carried it out), or the
mount dies in the middle, what to do next is decided from what the server has now, never
from what the mount believes it sent. The same decision serves the running mount (right
after the failure) and the next mount (from the intent records of ``rename_journal``).
"""

from __future__ import annotations

import enum
import logging

from .client import AgfsClient
from .errors import AgfsError, NotFound
from .models import FileInfo
from .rename_journal import RenameIntent, RenameJournal

log = logging.getLogger("agfs_fuse.filesystem")


class Outcome(enum.Enum):
    """What was done about an unfinished rename; the value is the sentence for the log."""

    NOTHING = "the old file is not set aside (any more): nothing to do"
    FINISH = "the source is in place: the rename is finished, the old file is deleted"
    RESTORE = "the target is missing: the old file is put back"
    KEEP = "source and target both exist: the old file is kept aside"


def decide(*, source: bool, target: bool, aside: bool) -> Outcome:
    """The step that completes a rename, from which of its three names exist now."""
    if not aside:
        return Outcome.NOTHING  # never set aside, or already deleted or put back
    if not target:
        return Outcome.RESTORE  # set aside, but nothing took its place
    if not source:
        return Outcome.FINISH  # the source took its place
    # Someone made a new target, or a link was made in place but its source not yet
    # deleted: which, the server cannot tell. Delete nothing.
    return Outcome.KEEP


async def settle(client: AgfsClient, intent: RenameIntent) -> Outcome:
    """Look at the server and take the step ``decide`` says; raises ``AgfsError`` when
    the server cannot be asked or refuses (the intent then stays to be settled later)."""
    aside = await _stat_or_none(client, intent.aside)
    if aside is None:
        return Outcome.NOTHING
    outcome = decide(
        source=await _stat_or_none(client, intent.source) is not None,
        target=await _stat_or_none(client, intent.target) is not None,
        aside=True,
    )
    if outcome is Outcome.FINISH:
        await client.delete(intent.aside, recursive=aside.is_dir)
    elif outcome is Outcome.RESTORE:
        await client.rename(intent.aside, intent.target)
    return outcome


async def recover(journal: RenameJournal, client: AgfsClient) -> None:
    """At mount time: settle every rename an earlier run left unfinished, and say so."""
    for record, intent in journal.pending():
        if intent is None:
            log.warning("unreadable rename record %s left by an earlier run: kept", record)
            continue
        what = f"a rename of {intent.source} over {intent.target} did not finish"
        if intent.server_url != client.base_url:
            log.warning(
                "%s on %s, not this server: record %s kept", what, intent.server_url, record
            )
            continue
        try:
            outcome = await settle(client, intent)
        except AgfsError as exc:
            log.error("%s; it cannot be settled now (%s), record %s kept", what, exc, record)
            continue
        log.warning("%s: %s (%s)", what, outcome.value, intent.aside)
        journal.forget(record)


async def _stat_or_none(client: AgfsClient, path: str) -> FileInfo | None:
    try:
        return await client.stat(path)
    except NotFound:
        return None
