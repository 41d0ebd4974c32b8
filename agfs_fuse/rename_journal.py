"""Intent records of rename-overs, on local disk, so a crash in the middle is repaired.

Before a rename moves its target aside (see ``asides``), it writes down what it is about
to do: source, target and aside. If the mount dies before the rename is over (kill -9, or
the answer to ``/rename`` is lost), the next mount reads the record and finishes or undoes
the rename (``rename_recovery``). Without it the target would stay hidden under the aside's
name. Records live beside the spools, in a directory of the spool directory: the same key
(the mountpoint) finds them at the next mount.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

log = logging.getLogger(__name__)

RECORD_SUFFIX = ".json"


@dataclass(frozen=True)
class RenameIntent:
    """A rename of ``source`` over ``target``, whose old file goes to ``aside`` first."""

    source: str
    target: str
    aside: str
    server_url: str


class RenameJournal:
    """The directory of intent records; one file per rename in progress."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def record(self, intent: RenameIntent) -> Path | None:
        """Write ``intent`` durably (temporary file, fsync, rename, fsync of the
        directory) before the server is touched; returns the record to ``forget``.

        Best effort, like a spool's sidecar: a cache disk that is full or broken must not
        fail the rename (nor the upload moved into place by one, whose intact spool would
        then be thrown away). The rename goes on without a record (None): only a crash in
        its middle would then leave the target under its aside name, and that is logged.
        Blocking disk work: call it from a thread (``trio.to_thread.run_sync``)."""
        try:
            return self._write(intent)
        except OSError as exc:
            log.warning(
                "cannot record the rename of %s over %s in %s (%s); going on without a"
                " record: a crash now would leave the old %s at %s",
                intent.source,
                intent.target,
                self.directory,
                exc,
                intent.target,
                intent.aside,
            )
            return None

    def _write(self, intent: RenameIntent) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        record = self.directory / f"{uuid.uuid4().hex}{RECORD_SUFFIX}"
        temporary = record.with_name(record.name + ".tmp")
        try:
            with open(temporary, "w") as f:
                json.dump(asdict(intent), f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(temporary, record)
            _fsync_directory(self.directory)
        except OSError:
            # Nothing half-written stays: a torn record would fill the disk further, and
            # one the caller does not know of would never be forgotten.
            with contextlib.suppress(OSError):
                temporary.unlink(missing_ok=True)
            self.forget(record)
            raise
        return record

    def forget(self, record: Path) -> None:
        """The rename is over (done or undone): its record goes, and the directory with
        the last one (the spool directory holds only spools when no rename runs)."""
        with contextlib.suppress(FileNotFoundError):
            record.unlink()
        with contextlib.suppress(OSError):
            self.directory.rmdir()

    def pending(self) -> Iterator[tuple[Path, RenameIntent | None]]:
        """Records an earlier run left: renames it did not see to the end. None for a
        record that cannot be read (cut short by a crash before its rename)."""
        if not self.directory.is_dir():
            return
        for record in sorted(self.directory.iterdir()):
            if record.name.endswith(".tmp"):
                record.unlink(missing_ok=True)  # the crash came before the record was whole
                continue
            try:
                intent = RenameIntent(**json.loads(record.read_text()))
            except (OSError, ValueError, TypeError):
                intent = None
            yield record, intent


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
