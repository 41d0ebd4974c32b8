"""The upload retry policy, on trio's mock clock: which failures are retried, how often,
and that a disk full on the server is reported as ENOSPC and kept, not retried forever."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest
import trio
import trio.testing

from agfs_fuse.capabilities import Capabilities
from agfs_fuse.errors import AgfsError, ServerUnreachable, error_from_answer
from agfs_fuse.spool import SIDECAR_SUFFIX, SpoolDir
from agfs_fuse.uploads import RETRY_TRIES, RETRY_WINDOW, ParkedUploads
from agfs_fuse.writes import SpoolWriter

PATH = "/local/f"


class FailingClient:
    """Answers every upload with the error ``make_error()`` builds, counting the tries."""

    def __init__(self, make_error) -> None:
        self.make_error = make_error
        self.uploads = 0

    async def write_from(self, path: str, source, size: int) -> None:
        self.uploads += 1
        raise self.make_error()


async def _no_file(path: str):
    return None


def _writer(client: FailingClient, spool_dir: SpoolDir) -> SpoolWriter:
    return SpoolWriter(lambda: client, spool_dir, PATH, None, "http://x/api/v1", Capabilities())


def _run_parked(client: FailingClient, spool_dir: SpoolDir, run_for: float) -> tuple[int, float]:
    """Fail a close(), park it, run the retries for ``run_for`` mock seconds; returns the
    errno close() saw and the mock time when the last try happened."""
    seen: dict[str, float] = {}

    async def main() -> int:
        parked = ParkedUploads(_no_file)
        writer = _writer(client, spool_dir)
        await writer.write(0, b"content")
        try:
            await writer.flush()
        except AgfsError as exc:
            code = exc.errno
            parked.park(writer, exc)
        else:
            raise AssertionError("the upload did not fail")
        original = client.write_from

        async def timed(*args):
            seen["last"] = trio.current_time()
            await original(*args)

        client.write_from = timed
        with trio.move_on_after(run_for):
            await parked.run()
        assert len(parked) == 0, "still parked"
        return code

    code = trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    return code, seen.get("last", 0.0)


def _kept(spool_dir: SpoolDir) -> list[dict]:
    return [
        json.loads(p.read_text())
        for p in spool_dir.root.iterdir()
        if p.name.endswith(SIDECAR_SUFFIX)
    ]


@pytest.mark.timeout(10)
def test_server_enospc_is_enospc_kept_at_once_and_never_retried(tmp_path: Path) -> None:
    client = FailingClient(
        lambda: error_from_answer(500, "write /data/f: no space left on device", PATH)
    )
    spool_dir = SpoolDir(tmp_path / "spools")
    code, _ = _run_parked(client, spool_dir, run_for=3600)
    assert code == errno.ENOSPC
    assert client.uploads == 1  # the close() itself, nothing behind the user's back
    [meta] = _kept(spool_dir)
    assert "no space left on device" in meta["reason"]


@pytest.mark.timeout(10)
def test_an_unreachable_server_is_tried_at_most_5_times_in_10_minutes(tmp_path: Path) -> None:
    client = FailingClient(lambda: ServerUnreachable("connection refused"))
    spool_dir = SpoolDir(tmp_path / "spools")
    code, last_try = _run_parked(client, spool_dir, run_for=24 * 3600)
    assert code == errno.EIO
    assert client.uploads == RETRY_TRIES == 5
    assert last_try <= RETRY_WINDOW
    [meta] = _kept(spool_dir)
    assert "after 5 tries" in meta["reason"]


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    ("status", "message", "expected"),
    [
        (403, "permission denied: /f", errno.EACCES),
        (500, "open /data/f: read-only file system", errno.EROFS),
        (413, "request body exceeds maximum size of 10 bytes", errno.EFBIG),
        (400, "invalid path", errno.EINVAL),
    ],
)
def test_refusals_a_retry_cannot_change_are_kept_at_once_with_their_errno(
    tmp_path: Path, status: int, message: str, expected: int
) -> None:
    client = FailingClient(lambda: error_from_answer(status, message, PATH))
    spool_dir = SpoolDir(tmp_path / "spools")
    code, _ = _run_parked(client, spool_dir, run_for=3600)
    assert code == expected
    assert client.uploads == 1  # the close() itself, nothing behind the user's back
    [meta] = _kept(spool_dir)
    assert message in meta["reason"]


class RecoveringClient(FailingClient):
    """Fails every upload while ``failing``, then takes them (recording what it got)."""

    def __init__(self) -> None:
        super().__init__(lambda: ServerUnreachable("connection refused"))
        self.failing = True
        self.received: list[tuple[str, bytes]] = []

    async def write_from(self, path: str, source, size: int) -> None:
        if self.failing:
            await super().write_from(path, source, size)
        self.uploads += 1
        self.received.append((path, source.pread(0, size)))


async def _parked_writer(client: FailingClient, spool_dir: SpoolDir, parked: ParkedUploads):
    writer = _writer(client, spool_dir)
    await writer.write(0, b"content")
    with pytest.raises(AgfsError) as failed:
        await writer.flush()
    parked.park(writer, failed.value)
    assert len(parked) == 1
    return writer


def test_an_unlinked_parked_upload_is_dropped_at_once_and_never_sent(tmp_path: Path) -> None:
    client = RecoveringClient()
    spool_dir = SpoolDir(tmp_path)

    async def main() -> tuple[int, bool, bool]:
        parked = ParkedUploads(_no_file)
        writer = await _parked_writer(client, spool_dir, parked)
        parked.unlinked(PATH)
        left = len(parked)
        client.failing = False
        await parked.retry_all()
        return left, writer.spool_path().exists(), await parked.retry_all()

    assert trio.run(main) == (0, False, True)
    assert client.received == []
    assert list(spool_dir.root.iterdir()) == []


def test_a_parked_upload_taken_back_is_no_longer_retried(tmp_path: Path) -> None:
    """An open for writing takes a parked spool back: the retries leave it alone (its
    next close uploads it), and a try in flight is never taken."""
    client = RecoveringClient()

    async def main() -> tuple[bool, int, bool]:
        parked = ParkedUploads(_no_file)
        writer = await _parked_writer(client, SpoolDir(tmp_path), parked)
        taken = parked.take_back(writer)
        client.failing = False
        await parked.retry_all()
        return taken, len(parked), writer.spool_path().exists()

    assert trio.run(main) == (True, 0, True)
    assert client.received == []
