"""Load through one real mount: many writer, reader and lister processes at once.

``test_writers_and_readers``: 8 writer processes x 200 files (sizes 0..8 MiB, mostly small,
about 300 MiB in all) and 4 reader processes on the same mount; writers 0-3 write on memfs,
4-7 on localfs, two writers per directory. Each file is written to ``NAME.tmp`` and renamed
to ``NAME`` when closed; readers read published files in full meanwhile and list the
directories. At the end every byte is checked on the server over plain HTTP (sha256) and
again through the mount (by 4 verifier processes), and the server's listings must hold
exactly the published names.

``test_ls_during_renames``: ``ls -l`` loops in 3 processes while 3 renamer processes move
their files between two directories and over each other; ``ls`` may only complain about
entries renamed away between readdir and lstat (ENOENT), every listing must be well-formed,
and the final state must match the renamers' model on the server and through the mount.

The seed is printed; ``AGFS_LOAD_SEED=N`` repeats a run.
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import pytest

from tests.stress._workers import file_names, read_manifest, small_content
from tests.stress.conftest import Stack, plugin_dir
from tests.stress.workers import collect, spawn

WRITERS = 8
FILES_PER_WRITER = 200
READERS = 4
MAX_SIZE = 8 << 20


def _seed() -> int:
    seed = int(os.environ.get("AGFS_LOAD_SEED") or random.randrange(1 << 32))
    print(f"load seed: {seed} (repeat with AGFS_LOAD_SEED={seed})")
    return seed


def file_sizes(rng: random.Random, count: int, first: bool) -> list[int]:
    """Mostly small files, some medium, 4 large ones; writer 0 also writes 0 and 8 MiB."""
    sizes = []
    for _ in range(count - 4):
        roll = rng.random()
        if roll < 0.05:
            sizes.append(0)
        elif roll < 0.85:
            sizes.append(rng.randint(1, 64 << 10))
        else:
            sizes.append(rng.randint(64 << 10, 1 << 20))
    sizes += [rng.randint(1 << 20, MAX_SIZE) for _ in range(4)]
    if first:
        sizes[:2] = [0, MAX_SIZE]
    rng.shuffle(sizes)
    return sizes


@pytest.mark.timeout(240)
def test_writers_and_readers(stack: Stack) -> None:
    seed = _seed()
    rng = random.Random(seed)
    scratch = stack.base / f"load-{seed}"
    started = time.monotonic()
    dirs = [
        plugin_dir(stack, plugin, f"load{n}") for plugin in ("memfs", "localfs") for n in (0, 1)
    ]
    stop = scratch / "stop"
    plans = []
    for w in range(WRITERS):
        directory = dirs[w // 2]
        plans.append(
            {
                "id": w,
                "dir": str(directory.local),
                "remote": directory.remote,
                "manifest": str(scratch / f"manifest{w}"),
                "seed": f"{seed}:{w}",
                "sizes": file_sizes(rng, FILES_PER_WRITER, first=w in (0, WRITERS // 2)),
            }
        )
    total_planned = sum(sum(p["sizes"]) for p in plans)
    writers = [spawn("writer", f"writer{p['id']}", p, scratch) for p in plans]
    readers = [
        spawn(
            "reader",
            f"reader{r}",
            {"seed": f"{seed}:r{r}", "stop": str(stop), "writers": plans},
            scratch,
        )
        for r in range(READERS)
    ]
    try:
        written = collect(writers, timeout=150)
        stop.write_text("")
        read = collect(readers, timeout=60)
    finally:
        stop.write_text("")
        for worker in writers + readers:
            worker.kill()
    write_seconds = time.monotonic() - started

    # the writers wrote what was planned
    assert sum(r["bytes"] for r in written.values()) == total_planned
    reader_errors = [e for r in read.values() for e in r["errors"]]
    assert not reader_errors, "\n".join(reader_errors)
    read_files = sum(r["files"] for r in read.values())
    read_bytes = sum(r["bytes"] for r in read.values())
    assert read_files > 0

    # every file, on the server over HTTP: exactly the published names, every byte right
    expected: list[tuple[str, int, str]] = []  # (mount path, size, sha256)
    http_bytes = 0
    for plan in plans:
        manifest = read_manifest(plan["manifest"])
        assert [name for name, _, _ in manifest] == file_names(plan["id"], plan["sizes"])
        for name, size, digest in manifest:
            assert stack.http.sha256(f"{plan['remote']}/{name}") == digest, (
                f"{plan['remote']}/{name} differs on the server (size {size})"
            )
            http_bytes += size
            expected.append((f"{plan['dir']}/{name}", size, digest))
    for directory in dirs:
        names = stack.http.names(directory.remote)
        want = {
            name
            for plan in plans
            if plan["remote"] == directory.remote
            for name in file_names(plan["id"], plan["sizes"])
        }
        assert names == want, (
            f"{directory.remote}: extra {sorted(names - want)[:5]}, "
            f"missing {sorted(want - names)[:5]}"
        )
        assert set(os.listdir(directory.local)) == want
    assert stack.open_handles() == []

    # and every byte again through the mount, by 4 processes
    shares = [expected[i::READERS] for i in range(READERS)]
    verifiers = [
        spawn("verify", f"verify{i}", {"files": share}, scratch) for i, share in enumerate(shares)
    ]
    verified = collect(verifiers, timeout=120)
    verify_errors = [e for r in verified.values() for e in r["errors"]]
    assert not verify_errors, "\n".join(verify_errors)
    mount_bytes = sum(r["bytes"] for r in verified.values())
    assert mount_bytes == total_planned
    print(
        f"load: {len(expected)} files, {total_planned / 2**20:.1f} MiB written by {WRITERS} "
        f"processes in {write_seconds:.1f}s; concurrent readers verified {read_files} files "
        f"({read_bytes / 2**20:.1f} MiB); verified after: {http_bytes / 2**20:.1f} MiB over "
        f"HTTP, {mount_bytes / 2**20:.1f} MiB through the mount; total "
        f"{time.monotonic() - started:.1f}s; write styles "
        f"{[r['styles'] for r in written.values()]}"
    )


RENAMERS = 3
LISTERS = 3
FILES_PER_RENAMER = 40
RENAME_SECONDS = 6.0


@pytest.mark.timeout(120)
@pytest.mark.parametrize("plugin", ["memfs", "localfs"])
def test_ls_during_renames(stack: Stack, plugin: str) -> None:
    seed = _seed()
    scratch = stack.base / f"renames-{plugin}-{seed}"
    a = plugin_dir(stack, plugin, "ren-a")
    b = plugin_dir(stack, plugin, "ren-b")
    ids = list(range(RENAMERS * FILES_PER_RENAMER))
    for ident in ids:
        stack.http.write(f"{a.remote}/n{ident:05d}-g0", small_content(ident))
    sizes = sorted({len(small_content(i)) for i in ids})
    stop = scratch / "stop"
    listers = [
        spawn(
            "lister",
            f"lister{n}",
            {"dirs": [str(a.local), str(b.local)], "stop": str(stop), "sizes": sizes},
            scratch,
        )
        for n in range(LISTERS)
    ]
    renamers = [
        spawn(
            "renamer",
            f"renamer{n}",
            {
                "seed": f"{seed}:{n}",
                "ids": ids[n::RENAMERS],
                "dirs": [str(a.local), str(b.local)],
                "seconds": RENAME_SECONDS,
            },
            scratch,
        )
        for n in range(RENAMERS)
    ]
    try:
        renamed = collect(renamers, timeout=60)
        stop.write_text("")
        listed = collect(listers, timeout=60)
    finally:
        stop.write_text("")
        for worker in renamers + listers:
            worker.kill()
    errors = [e for r in listed.values() for e in r["errors"]]
    assert not errors, "\n".join(errors)
    runs = sum(r["runs"] for r in listed.values())
    assert runs >= 10

    final: dict[str, int] = {}
    for result in renamed.values():
        final.update(result["final"])
    local_to_remote = {str(a.local): a.remote, str(b.local): b.remote}
    want_remote = {}
    for path, ident in final.items():
        directory, name = os.path.split(path)
        want_remote[f"{local_to_remote[directory]}/{name}"] = ident
    for directory in (a, b):
        on_server = {f"{directory.remote}/{n}" for n in stack.http.names(directory.remote)}
        want = {p for p in want_remote if p.startswith(directory.remote + "/")}
        assert on_server == want, (
            f"{directory.remote}: extra {sorted(on_server - want)[:5]}, "
            f"missing {sorted(want - on_server)[:5]}"
        )
        through_mount = {str(directory.local / n) for n in os.listdir(directory.local)}
        assert through_mount == {p for p in final if p.startswith(str(directory.local) + "/")}
    for remote, ident in want_remote.items():
        assert stack.http.read(remote) == small_content(ident), remote
    for path, ident in final.items():
        assert Path(path).read_bytes() == small_content(ident), path
    print(
        f"ls during renames ({plugin}): "
        f"{sum(r['renames'] for r in renamed.values())} renames, "
        f"{sum(r['replaces'] for r in renamed.values())} renames over a file, "
        f"{runs} ls -l runs ({sum(r['lines'] for r in listed.values())} lines, "
        f"{sum(r['enoent_races'] for r in listed.values())} ENOENT races), "
        f"{len(final)} files checked"
    )
