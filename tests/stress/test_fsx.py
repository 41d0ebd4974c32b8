"""An fsx-style randomized data test: random I/O on files in the mount against a model.

A few files are changed with random ``pread``, ``pwrite`` (also past the end, leaving holes),
``ftruncate`` (grow and shrink), appends through an ``O_APPEND`` descriptor, ``fsync``, extra
descriptors opened and closed, and close-and-reopen, each compared at once with an in-memory
model (a ``bytearray`` per file): every read against the model, the size (``fstat`` and
``stat``) after every operation, the written range read back, the whole file now and then,
and the server's copy over HTTP after every ``fsync`` and every close of the last descriptor.
At the end each file is compared on the server and through a fresh open.

On memfs one file starts at 2 MiB on the server, so reopening it for writing takes the sparse
path (only written ranges kept and sent as pwrites through a handle, shrinks with /truncate,
reads merging server bytes and local ranges); localfs has no handle API and always fills the
spool. Runs are bounded by an op count and a time budget per plugin.

Reproduce: the seed is printed; ``AGFS_FSX_SEED=N`` repeats a run (the op sequence depends
only on the seed), ``AGFS_FSX_OPS`` and ``AGFS_FSX_SECONDS`` change its length. On a mismatch
the failure shows the last operations and the path of the full op log.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.mount.agfs_http import AgfsHttp
from tests.stress.conftest import Dir, Stack, plugin_dir

MAX_OPS = int(os.environ.get("AGFS_FSX_OPS", "5000"))
SECONDS = float(os.environ.get("AGFS_FSX_SECONDS", "11"))
SMALL_MAX = 512 << 10
BIG_MAX = 3 << 20
BIG_START = 2 << 20
FULL_CHECK_EVERY = 40


class Mismatch(AssertionError):
    pass


@dataclass
class Handle:
    fd: int
    readable: bool
    writable: bool
    appending: bool
    label: str


@dataclass
class FileState:
    name: str
    path: Path
    remote: str
    limit: int
    model: bytearray
    handles: list[Handle] = field(default_factory=list)


class Fsx:
    def __init__(self, directory: Dir, http: AgfsHttp, seed: int, log_path: Path) -> None:
        self.rng = random.Random(seed)
        self.http = http
        self.seed = seed
        self.log: list[str] = []
        self.log_path = log_path
        self.counts: dict[str, int] = {}
        self.bytes_checked = 0
        self.server_checks = 0
        self._labels = 0
        self.files = []
        specs = [("a", SMALL_MAX, 0), ("b", SMALL_MAX, 0)]
        specs.append(
            ("big", BIG_MAX, BIG_START) if directory.plugin == "memfs" else ("c", 1 << 20, 0)
        )
        for name, limit, start in specs:
            initial = bytearray(self.rng.randbytes(start))
            http.write(directory.r(name), bytes(initial))
            self.files.append(FileState(name, directory.p(name), directory.r(name), limit, initial))
        for f in self.files:
            self._open(f, os.O_RDWR)

    # -- bookkeeping ---------------------------------------------------------------------

    def note(self, text: str) -> None:
        self.log.append(f"{len(self.log):5d} {text}")

    def fail(self, what: str) -> None:
        self.log_path.write_text("\n".join(self.log) + "\n")
        tail = "\n".join(self.log[-40:])
        raise Mismatch(
            f"fsx seed {self.seed}: {what}\nafter {len(self.log)} ops; full log in "
            f"{self.log_path}; repeat with AGFS_FSX_SEED={self.seed}\nlast ops:\n{tail}"
        )

    def _open(self, f: FileState, flags: int) -> Handle:
        fd = os.open(f.path, flags)
        self._labels += 1
        mode = {os.O_RDWR: "rw", os.O_RDONLY: "r", os.O_WRONLY | os.O_APPEND: "wa"}.get(
            flags, "rwa"
        )
        handle = Handle(
            fd,
            readable=flags & os.O_ACCMODE != os.O_WRONLY,
            writable=flags & os.O_ACCMODE != os.O_RDONLY,
            appending=bool(flags & os.O_APPEND),
            label=f"fd{self._labels}({mode})",
        )
        f.handles.append(handle)
        return handle

    def _close(self, f: FileState, handle: Handle) -> None:
        f.handles.remove(handle)
        os.close(handle.fd)

    def readable(self, f: FileState) -> Handle:
        choices = [h for h in f.handles if h.readable]
        return self.rng.choice(choices) if choices else self._open(f, os.O_RDONLY)

    def writable(self, f: FileState) -> Handle:
        choices = [h for h in f.handles if h.writable and not h.appending]
        return self.rng.choice(choices) if choices else self._open(f, os.O_RDWR)

    def compare(self, f: FileState, handle: Handle, offset: int, size: int, why: str) -> None:
        got = os.pread(handle.fd, size, offset)
        want = bytes(f.model[offset : offset + size])
        self.bytes_checked += len(got)
        if got != want:
            first = next(
                (i for i in range(min(len(got), len(want))) if got[i] != want[i]),
                min(len(got), len(want)),
            )
            self.fail(
                f"{why}: {f.name} pread({handle.label}, off={offset}, len={size}) returned "
                f"{len(got)} bytes, model has {len(want)}; first difference at file offset "
                f"{offset + first}: got {got[first : first + 16].hex()} "
                f"want {want[first : first + 16].hex()} (file size in model {len(f.model)})"
            )

    def check_size(self, f: FileState) -> None:
        for handle in f.handles:
            size = os.fstat(handle.fd).st_size
            if size != len(f.model):
                self.fail(f"{f.name}: fstat({handle.label}) size {size}, model {len(f.model)}")
        size = os.stat(f.path).st_size
        if size != len(f.model):
            self.fail(f"{f.name}: stat size {size}, model {len(f.model)}")

    def check_server(self, f: FileState, why: str) -> None:
        got = self.http.read(f.remote)
        self.server_checks += 1
        self.bytes_checked += len(got)
        if got != bytes(f.model):
            first = next(
                (i for i in range(min(len(got), len(f.model))) if got[i] != f.model[i]),
                min(len(got), len(f.model)),
            )
            self.fail(
                f"{why}: server copy of {f.name} has {len(got)} bytes, model {len(f.model)}; "
                f"first difference at {first}: server {got[first : first + 16].hex()} "
                f"model {bytes(f.model[first : first + 16]).hex()}"
            )

    def check_whole(self, f: FileState, why: str) -> None:
        self.compare(f, self.readable(f), 0, len(f.model) + 1, why)

    # -- operations ------------------------------------------------------------------------

    def _length(self) -> int:
        roll = self.rng.random()
        if roll < 0.6:
            return self.rng.randint(1, 4096)
        if roll < 0.95:
            return self.rng.randint(4096, 128 << 10)
        return self.rng.randint(128 << 10, 1 << 20)

    def op_read(self, f: FileState) -> None:
        handle = self.readable(f)
        offset = self.rng.randint(0, len(f.model) + 4096)
        size = self._length()
        self.note(f"pread {f.name} {handle.label} off={offset} len={size}")
        self.compare(f, handle, offset, size, "read")

    def op_write(self, f: FileState) -> None:
        handle = self.writable(f)
        size = min(self._length(), f.limit // 4)
        offset = self.rng.randint(0, max(0, min(len(f.model) + (64 << 10), f.limit - size)))
        data = self.rng.randbytes(size)
        self.note(f"pwrite {f.name} {handle.label} off={offset} len={size} (size {len(f.model)})")
        written = os.pwrite(handle.fd, data, offset)
        if written != size:
            self.fail(f"pwrite wrote {written} of {size} bytes")
        if offset > len(f.model):
            f.model.extend(bytes(offset - len(f.model)))
        f.model[offset : offset + size] = data
        self.compare(f, self.readable(f), max(0, offset - 100), size + 200, "read back write")

    def op_append(self, f: FileState) -> None:
        if len(f.model) >= f.limit:
            self.op_truncate(f)
            return
        handles = [h for h in f.handles if h.appending]
        handle = handles[0] if handles else self._open(f, os.O_WRONLY | os.O_APPEND)
        size = min(self._length(), 64 << 10)
        data = self.rng.randbytes(size)
        self.note(f"append {f.name} {handle.label} len={size} (size {len(f.model)})")
        written = os.write(handle.fd, data)
        if written != size:
            self.fail(f"append wrote {written} of {size} bytes")
        f.model.extend(data)
        self.compare(
            f, self.readable(f), max(0, len(f.model) - size - 50), size + 100, "read back append"
        )

    def op_truncate(self, f: FileState) -> None:
        handle = self.writable(f)
        roll = self.rng.random()
        if roll < 0.03:
            size = 0
        elif roll < 0.5:  # shrink, mostly by a little (the big file stays big)
            size = self.rng.randint(max(0, len(f.model) - f.limit // 4), len(f.model))
        else:  # grow (or shrink when already at the limit)
            size = self.rng.randint(len(f.model), f.limit) if len(f.model) < f.limit else 0
        self.note(f"ftruncate {f.name} {handle.label} {len(f.model)} -> {size}")
        os.ftruncate(handle.fd, size)
        if size < len(f.model):
            del f.model[size:]
        else:
            f.model.extend(bytes(size - len(f.model)))
        self.compare(f, self.readable(f), max(0, size - 4096), 8192, "read around truncate")

    def op_fsync(self, f: FileState) -> None:
        writers = [h for h in f.handles if h.writable] or f.handles
        handle = self.rng.choice(writers)
        self.note(f"fsync {f.name} {handle.label}")
        os.fsync(handle.fd)
        self.check_server(f, "after fsync")

    def op_reopen(self, f: FileState) -> None:
        self.note(f"close all of {f.name} ({', '.join(h.label for h in f.handles)}) and reopen")
        for handle in list(f.handles):
            self._close(f, handle)
        self.check_server(f, "after the last close")
        self.check_size(f)
        handle = self._open(f, os.O_RDWR)
        self.note(f"  reopened as {handle.label}")
        self.check_whole(f, "after reopen")

    def op_open_extra(self, f: FileState) -> None:
        if len(f.handles) >= 3:
            handle = self.rng.choice(f.handles[1:])
            self.note(f"close {f.name} {handle.label}")
            self._close(f, handle)
            return
        flags = self.rng.choice([os.O_RDONLY, os.O_RDWR, os.O_WRONLY | os.O_APPEND])
        handle = self._open(f, flags)
        self.note(f"open {f.name} as {handle.label}")

    OPS = (
        ("read", 30),
        ("write", 30),
        ("append", 8),
        ("truncate", 10),
        ("fsync", 4),
        ("reopen", 4),
        ("open_extra", 6),
    )

    def run(self, max_ops: int, seconds: float) -> int:
        names = [name for name, _ in self.OPS]
        weights = [weight for _, weight in self.OPS]
        deadline = time.monotonic() + seconds
        done = 0
        while done < max_ops and time.monotonic() < deadline:
            f = self.rng.choice(self.files)
            op = self.rng.choices(names, weights)[0]
            try:
                getattr(self, f"op_{op}")(f)
                self.check_size(f)
            except OSError as exc:
                self.fail(f"{op} on {f.name} failed: {exc!r}")
            self.counts[op] = self.counts.get(op, 0) + 1
            done += 1
            if done % FULL_CHECK_EVERY == 0:
                for g in self.files:
                    self.check_whole(g, "periodic full compare")
        return done

    def finish(self) -> None:
        try:
            self._finish()
        except OSError as exc:
            self.fail(f"closing at the end failed: {exc!r}")

    def _finish(self) -> None:
        for f in self.files:
            self.note(f"close all of {f.name}")
            for handle in list(f.handles):
                self._close(f, handle)
        for f in self.files:
            self.check_server(f, "at the end")
            handle = self._open(f, os.O_RDONLY)
            self.check_whole(f, "at the end, fresh open")
            self._close(f, handle)

    def close_all(self) -> None:
        for f in self.files:
            for handle in list(f.handles):
                with contextlib.suppress(OSError):
                    self._close(f, handle)


@pytest.mark.timeout(90)
@pytest.mark.parametrize("plugin", ["memfs", "localfs"])
def test_fsx(stack: Stack, plugin: str, tmp_path: Path) -> None:
    seed = int(os.environ.get("AGFS_FSX_SEED") or random.randrange(1 << 32))
    print(f"fsx seed ({plugin}): {seed} (repeat with AGFS_FSX_SEED={seed})")
    directory = plugin_dir(stack, plugin, "fsx")
    fsx = Fsx(directory, stack.http, seed, tmp_path / f"fsx-{plugin}-{seed}.log")
    started = time.monotonic()
    before = stack.request_counts()
    try:
        ops = fsx.run(MAX_OPS, SECONDS)
        fsx.finish()
    finally:
        fsx.close_all()
        if os.environ.get("AGFS_STRESS_DEBUG"):
            shutil.copy(stack.mount.log_file, tmp_path / "mount.log")
    assert ops >= min(MAX_OPS, 1000), f"only {ops} ops ran in {SECONDS}s"
    assert stack.open_handles() == []
    after = stack.request_counts()
    requests = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
    sparse = {k: v for k, v in requests.items() if "handles" in k or "truncate" in k}
    if plugin == "memfs":  # the sparse in-place path was taken
        assert requests.get("POST /handles/open", 0) > 0, requests
    print(
        f"fsx ({plugin}, seed {seed}): {ops} ops in {time.monotonic() - started:.1f}s "
        f"{dict(sorted(fsx.counts.items()))}; {fsx.bytes_checked / 2**20:.1f} MiB compared, "
        f"{fsx.server_checks} server copies checked; final sizes "
        f"{[len(f.model) for f in fsx.files]}; handle/truncate requests {sparse}"
    )
