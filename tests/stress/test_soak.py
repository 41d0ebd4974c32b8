"""Soak: a loop of mixed operations on one mount, watching it for leaks.

The loop (seeded, one process) creates, writes, reads back, appends to, edits in place
(a memfs file over 1 MiB: the sparse path through server handles), renames (also over
existing files), deletes and lists files in a directory on memfs and one on localfs, from a
bounded set of names, checking every read and listing against a model. Every half second,
between operations (no file of ours open), it samples:

- the mount process's open file descriptors (``/proc/PID/fd``) and RSS (``VmRSS``);
- the server's open handles (``--test-hooks``), which must be none;
- the mount's own counters (``/.agfs-stats``): no open files or spools, nothing pending;
- the files in the mount's spool directory, which must be none.

After a warm-up (the first quarter of the run), the late samples (last quarter) are
compared with the early ones (second quarter): no descriptor growth (a couple for pooled
connections), and RSS growth within a generous bound. At the end every file is compared on
the server over HTTP.

``test_soak_short`` runs in ``make test`` (about 10 s); ``test_soak_long`` is marked
``soak`` (``make soak``) and runs ``AGFS_SOAK_SECONDS`` (default 600). ``AGFS_SOAK_SEED``
repeats a run's operation sequence.
"""

from __future__ import annotations

import hashlib
import os
import random
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from tests.stress.conftest import Dir, Stack, plugin_dir

SHORT_SECONDS = 10.0
LONG_SECONDS = float(os.environ.get("AGFS_SOAK_SECONDS", "600"))
SAMPLE_EVERY = 0.5
NAMES = 40  # files per directory are drawn from f00..f39
BIG = 3 << 19  # 1.5 MiB: over the sparse threshold
FD_SLACK = 2  # pooled HTTP connections may come and go
RSS_SLACK_KIB = 48 * 1024


@dataclass
class Sample:
    at: float
    fds: int
    rss_kib: int
    ops: int


@dataclass
class Soak:
    stack: Stack
    dirs: list[Dir]
    rng: random.Random
    model: dict[tuple[int, str], bytes] = field(default_factory=dict)  # (dir, name) -> data
    counts: dict[str, int] = field(default_factory=dict)
    bytes_written: int = 0
    bytes_read: int = 0

    @property
    def pid(self) -> int:
        assert self.stack.mount.proc is not None
        return self.stack.mount.proc.pid

    # -- sampling ------------------------------------------------------------------------

    def sample(self, ops: int) -> Sample:
        fds = len(os.listdir(f"/proc/{self.pid}/fd"))
        rss = 0
        with open(f"/proc/{self.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
        handles = self.stack.open_handles()
        assert handles == [], f"server handles left open between operations: {handles}"
        stats = self.stack.mount.stats()
        idle = {k: stats.get(k) for k in ("open_files", "open_spools", "pending_uploads")}
        assert idle == {"open_files": 0, "open_spools": 0, "pending_uploads": 0}, idle
        spools = [p for p in (self.stack.base / "cache").rglob("*") if p.is_file()]
        assert spools == [], f"spool files left between operations: {spools[:5]}"
        return Sample(time.monotonic(), fds, rss, ops)

    # -- operations ----------------------------------------------------------------------

    def _pick(self, d: int) -> str | None:
        names = sorted(name for dd, name in self.model if dd == d)
        return self.rng.choice(names) if names else None

    def _data(self, d: int) -> bytes:
        roll = self.rng.random()
        if roll < 0.1:
            size = 0
        elif roll < 0.9:
            size = self.rng.randint(1, 64 << 10)
        elif roll < 0.97 or self.dirs[d].plugin != "memfs":
            size = self.rng.randint(64 << 10, 1 << 20)
        else:
            size = BIG
        return self.rng.randbytes(size)

    def op_create(self, d: int) -> None:
        name = f"f{self.rng.randrange(NAMES):02d}"
        data = self._data(d)
        self.dirs[d].p(name).write_bytes(data)
        self.model[(d, name)] = data
        self.bytes_written += len(data)

    def op_read(self, d: int) -> None:
        name = self._pick(d)
        if name is None:
            return
        got = self.dirs[d].p(name).read_bytes()
        self.bytes_read += len(got)
        assert got == self.model[(d, name)], f"{self.dirs[d].p(name)}: content differs"

    def op_append(self, d: int) -> None:
        name = self._pick(d)
        if name is None:
            return
        extra = self.rng.randbytes(self.rng.randint(1, 4096))
        with open(self.dirs[d].p(name), "ab") as fh:
            fh.write(extra)
        self.model[(d, name)] += extra
        self.bytes_written += len(extra)

    def op_edit(self, d: int) -> None:
        """In place (``r+``): on a file over 1 MiB on memfs this is the sparse handle path."""
        big = [n for dd, n in self.model if dd == d and len(self.model[(dd, n)]) >= 1 << 20]
        name = self.rng.choice(sorted(big)) if big else self._pick(d)
        if name is None:
            return
        data = bytearray(self.model[(d, name)])
        offset = self.rng.randint(0, len(data))
        patch = self.rng.randbytes(self.rng.randint(1, 8192))
        with open(self.dirs[d].p(name), "r+b") as fh:
            fh.seek(offset)
            fh.write(patch)
        data[offset : offset + len(patch)] = patch
        self.model[(d, name)] = bytes(data)
        self.bytes_written += len(patch)

    def op_rename(self, d: int) -> None:
        name = self._pick(d)
        if name is None:
            return
        new = f"f{self.rng.randrange(NAMES):02d}"
        os.rename(self.dirs[d].p(name), self.dirs[d].p(new))
        self.model[(d, new)] = self.model.pop((d, name))

    def op_delete(self, d: int) -> None:
        name = self._pick(d)
        if name is None:
            return
        os.unlink(self.dirs[d].p(name))
        del self.model[(d, name)]

    def op_list(self, d: int) -> None:
        want = {name: len(data) for (dd, name), data in self.model.items() if dd == d}
        if self.rng.random() < 0.2:
            out = subprocess.run(
                ["ls", "-l", str(self.dirs[d].local)],
                capture_output=True,
                text=True,
                check=True,
                env=dict(os.environ, LC_ALL="C"),
                timeout=60,
            ).stdout
            got = {line.split()[-1]: int(line.split()[4]) for line in out.splitlines()[1:]}
        else:
            got = {e.name: e.stat().st_size for e in os.scandir(self.dirs[d].local)}
        assert got == want, f"listing of {self.dirs[d].local} differs: {got} != {want}"

    OPS: tuple[tuple[str, int], ...] = (
        ("create", 25),
        ("read", 25),
        ("append", 10),
        ("edit", 8),
        ("rename", 10),
        ("delete", 8),
        ("list", 14),
    )

    def run(self, seconds: float) -> list[Sample]:
        ops: list[Callable[[int], None]] = [getattr(self, f"op_{n}") for n, _ in self.OPS]
        weights = [w for _, w in self.OPS]
        samples = [self.sample(0)]
        started = time.monotonic()
        done = 0
        while time.monotonic() - started < seconds:
            op = self.rng.choices(ops, weights)[0]
            op(self.rng.randrange(len(self.dirs)))
            name = op.__name__[3:]
            self.counts[name] = self.counts.get(name, 0) + 1
            done += 1
            if time.monotonic() - samples[-1].at >= SAMPLE_EVERY:
                samples.append(self.sample(done))
        samples.append(self.sample(done))
        return samples

    def check_server(self) -> int:
        checked = 0
        for d, directory in enumerate(self.dirs):
            want = {name for dd, name in self.model if dd == d}
            assert self.stack.http.names(directory.remote) == want, directory.remote
        for (d, name), data in self.model.items():
            digest = self.stack.http.sha256(self.dirs[d].r(name))
            assert digest == hashlib.sha256(data).hexdigest(), self.dirs[d].r(name)
            checked += len(data)
        return checked


def soak(stack: Stack, seconds: float) -> None:
    seed = int(os.environ.get("AGFS_SOAK_SEED") or random.randrange(1 << 32))
    print(f"soak seed: {seed} (repeat with AGFS_SOAK_SEED={seed})")
    dirs = [plugin_dir(stack, "memfs", "soak"), plugin_dir(stack, "localfs", "soak")]
    run = Soak(stack, dirs, random.Random(seed))
    before = stack.request_counts()
    try:
        samples = run.run(seconds)
    except Exception:
        print(stack.mount.log()[-6000:])  # what the mount said about the failed step
        raise
    requests = sum(stack.request_counts().values()) - sum(before.values())
    handles = stack.request_counts().get("POST /handles/open", 0) - before.get(
        "POST /handles/open", 0
    )
    verified = run.check_server()
    assert run.sample(0) and stack.mount.alive()

    n = len(samples)
    assert n >= 8, f"only {n} samples"
    early = samples[n // 4 : n // 2]
    late = samples[3 * n // 4 :]
    early_fds, late_fds = max(s.fds for s in early), max(s.fds for s in late)
    early_rss = statistics.median(s.rss_kib for s in early)
    late_rss = statistics.median(s.rss_kib for s in late)
    ops = samples[-1].ops
    summary = (
        f"soak {seconds:.0f}s (seed {seed}): {ops} ops {dict(sorted(run.counts.items()))}, "
        f"{run.bytes_written / 2**20:.1f} MiB written, {run.bytes_read / 2**20:.1f} MiB read "
        f"back, {verified / 2**20:.1f} MiB verified on the server at the end; {requests} "
        f"HTTP requests, {handles} server handles opened (sparse edits); {n} samples: "
        f"fds first/early max/late max/last {samples[0].fds}/{early_fds}/{late_fds}/"
        f"{samples[-1].fds}, RSS MiB first/early median/late median/max "
        f"{samples[0].rss_kib / 1024:.1f}/{early_rss / 1024:.1f}/{late_rss / 1024:.1f}/"
        f"{max(s.rss_kib for s in samples) / 1024:.1f}; server handles open at every sample: 0"
    )
    print(summary)
    assert late_fds <= early_fds + FD_SLACK, f"descriptor growth: {summary}"
    assert late_rss <= early_rss + RSS_SLACK_KIB, f"memory growth: {summary}"


@pytest.mark.timeout(120)
def test_soak_short(make_stack: Callable[..., Stack]) -> None:
    soak(make_stack(), SHORT_SECONDS)


@pytest.mark.soak
@pytest.mark.timeout(int(LONG_SECONDS) + 300)
def test_soak_long(make_stack: Callable[..., Stack]) -> None:
    soak(make_stack(), LONG_SECONDS)
