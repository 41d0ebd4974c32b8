"""A Hypothesis state machine of namespace operations: the mount against a local directory.

Each step applies one operation to a fresh directory in the mount (memfs, and localfs) and
to a local temporary directory (the reference: the kernel's own filesystem), and compares
the outcomes (the value returned, or the errno) and then the whole trees (type, content,
permission bits, symlink targets). When an example ends, the server's tree, read over plain
HTTP, must match the reference too (no hidden ``.agfs-fuse-replaced-*`` left behind).

Operations: create a file with content (``O_CREAT|O_TRUNC``, or ``O_EXCL``), overwrite or
append to an existing file (no ``O_CREAT``), read a file, ``mkdir``, ``rename`` (files, dirs
and links; over existing files, empty and non-empty dirs, links; into itself), ``unlink``,
``rmdir`` (empty, non-empty, not a dir, a link), ``symlink`` (to files, dirs, missing names)
and ``readlink``. Paths come from a small fixed set (``a``, ``a/x``, ``a/x/z``...) so that
operations collide often; a symlink named like a directory makes later paths go through it.

Deliberate exceptions (what agfs-fuse or AGFS do not offer; docs/SEMANTICS.md):

- no hard links (``link`` is ``EPERM`` on the mount), so ``link`` is not an operation here;
- no ``RENAME_EXCHANGE``, no ownership, no times: not operations or not compared here;
- symlink targets stay inside the test directory (relative names without ``..``), so the
  reference and the mount resolve them to the same entries;
- the permission bits of a symlink are not compared (always 0777 on Linux and on the mount).

Nothing else is excused: every errno and every tree must be the same as on the local disk.
Runs are deterministic (``derandomize``, no example database); Hypothesis prints the
shortest failing sequence of steps. ``AGFS_NS_EXAMPLES`` / ``AGFS_NS_STEPS`` change the size;
``AGFS_NS_RANDOM=1`` explores random sequences instead (for longer hunts, not for CI).
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    rule,
    run_state_machine_as_test,
)

from tests.mount.agfs_http import AgfsHttp
from tests.stress.conftest import Stack, plugin_dir

EXAMPLES = int(os.environ.get("AGFS_NS_EXAMPLES", "15"))
STEPS = int(os.environ.get("AGFS_NS_STEPS", "40"))

TOP = ["a", "b", "c"]
PATHS = TOP + [f"{t}/{n}" for t in TOP for n in ("x", "y")] + ["a/x/z", "b/y/z"]
KINDS = ["dir", "dir", "file", "file", "link", "none"]
LINK_TARGETS = ["a", "b", "x", "y", "missing", "a/x", "b/y"]
paths = st.sampled_from(PATHS)
contents = st.one_of(st.just(b""), st.binary(min_size=1, max_size=48), st.just(b"z" * 70_000))

Outcome = tuple[str, object]


def attempt(action) -> Outcome:
    """Run ``action``; ("ok", value) or ("err", errno name)."""
    try:
        return ("ok", action())
    except OSError as exc:
        return ("err", errno.errorcode.get(exc.errno, str(exc.errno)))


def snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under ``root`` (not following links): relpath -> what it is."""
    tree: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root)
            info = os.lstat(full)
            if stat.S_ISLNK(info.st_mode):
                tree[rel] = ("link", os.readlink(full))
            elif stat.S_ISDIR(info.st_mode):
                tree[rel] = ("dir", oct(stat.S_IMODE(info.st_mode)))
            else:
                data = Path(full).read_bytes()
                if info.st_size != len(data):
                    tree[rel] = ("file", "stat size", info.st_size, "read", len(data))
                else:
                    tree[rel] = ("file", oct(stat.S_IMODE(info.st_mode)), data)
    return tree


def server_snapshot(http: AgfsHttp, remote: str) -> dict[str, tuple]:
    """The same picture, read from the server over HTTP."""
    tree: dict[str, tuple] = {}
    pending = [""]
    while pending:
        rel_dir = pending.pop()
        for info in http.list(f"{remote}/{rel_dir}" if rel_dir else remote):
            rel = f"{rel_dir}/{info['name']}" if rel_dir else info["name"]
            full = f"{remote}/{rel}"
            kind = (info.get("meta") or {}).get("Type")
            if kind == "symlink":
                tree[rel] = ("link", http.readlink(full))
            elif info["isDir"]:
                tree[rel] = ("dir", oct(info["mode"] & 0o7777))
                pending.append(rel)
            else:
                tree[rel] = ("file", oct(info["mode"] & 0o7777), http.read(full))
    return tree


def describe_diff(ref: dict, got: dict) -> str:
    lines = []
    for key in sorted(set(ref) | set(got)):
        if ref.get(key) != got.get(key):
            lines.append(f"  {key}: reference {_short(ref.get(key))} mount {_short(got.get(key))}")
    return "\n".join(lines)


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) < 120 else text[:117] + "..."


def make_machine(stack: Stack, plugin: str, counters: dict[str, int], outcomes: dict[str, int]):
    class NamespaceMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.ref_root = Path(tempfile.mkdtemp(prefix="agfs-ns-ref-"))
            self.dir = plugin_dir(stack, plugin, "ns")
            self.mnt_root = self.dir.local
            counters["examples"] += 1

        # -- plumbing ----------------------------------------------------------------

        def both(self, name: str, func, *rels: str) -> None:
            """Apply ``func(*paths)`` on both sides; outcomes and trees must agree."""
            counters["steps"] += 1
            ref = attempt(lambda: func(*[str(self.ref_root / r) for r in rels]))
            got = attempt(lambda: func(*[str(self.mnt_root / r) for r in rels]))
            assert got == ref, f"{plugin}: {name}{rels}: reference {ref}, mount {got}"
            key = f"{name.split('[')[0]}:{ref[0] if ref[0] == 'ok' else ref[1]}"
            outcomes[key] = outcomes.get(key, 0) + 1
            self.compare_trees(f"after {name}{rels}")

        def compare_trees(self, when: str) -> None:
            ref = snapshot(self.ref_root)
            got = snapshot(self.mnt_root)
            assert got == ref, f"{plugin}: trees differ {when}:\n{describe_diff(ref, got)}"

        def teardown(self) -> None:
            try:
                ref = snapshot(self.ref_root)
                on_server = server_snapshot(stack.http, self.dir.remote)
                assert on_server == ref, (
                    f"{plugin}: the server's tree differs from the reference:\n"
                    f"{describe_diff(ref, on_server)}"
                )
            finally:
                shutil.rmtree(self.ref_root, ignore_errors=True)
                stack.http.delete(self.dir.remote, recursive=True)

        # -- rules -------------------------------------------------------------------

        @initialize(
            kinds=st.lists(st.sampled_from(KINDS), min_size=len(PATHS), max_size=len(PATHS))
        )
        def populate(self, kinds: list[str]) -> None:
            """Start from a random tree of dirs, files and links (parents before children),
            made through the mount."""
            for path, kind in zip(PATHS, kinds, strict=True):
                parent = os.path.dirname(path)
                if kind == "none" or (parent and not (self.ref_root / parent).is_dir()):
                    continue
                if kind == "dir":
                    self.both("mkdir", os.mkdir, path)
                elif kind == "link":
                    self.both("symlink[x]", lambda p: os.symlink("x", p), path)
                else:
                    data = path.encode() * (len(path) + 1)
                    self.both("create", lambda p, d=data: Path(p).write_bytes(d), path)

        @rule(path=paths, data=contents, excl=st.booleans())
        def create_file(self, path: str, data: bytes, excl: bool) -> None:
            flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | (os.O_EXCL if excl else 0)

            def create(p: str) -> int:
                fd = os.open(p, flags, 0o644)
                try:
                    return os.write(fd, data)
                finally:
                    os.close(fd)

            self.both("create" + ("_excl" if excl else ""), create, path)

        @rule(path=paths, data=contents, append=st.booleans())
        def write_existing(self, path: str, data: bytes, append: bool) -> None:
            flags = os.O_WRONLY | (os.O_APPEND if append else os.O_TRUNC)

            def write(p: str) -> int:
                fd = os.open(p, flags)
                try:
                    return os.write(fd, data)
                finally:
                    os.close(fd)

            self.both("append" if append else "overwrite", write, path)

        @rule(path=paths)
        def read_file(self, path: str) -> None:
            self.both("read", lambda p: Path(p).read_bytes(), path)

        @rule(path=paths)
        def mkdir(self, path: str) -> None:
            self.both("mkdir", os.mkdir, path)

        @rule(src=paths, dst=paths)
        def rename(self, src: str, dst: str) -> None:
            self.both("rename", os.rename, src, dst)

        def existing(self, index: int) -> str | None:
            """One of the entries that exist now (reference side), by index."""
            entries = sorted(snapshot(self.ref_root))
            return entries[index % len(entries)] if entries else None

        @rule(index=st.integers(0, 63), dst=paths)
        def rename_existing(self, index: int, dst: str) -> None:
            src = self.existing(index)
            if src is not None:
                self.both("rename", os.rename, src, dst)

        @rule(index=st.integers(0, 63), other=st.integers(0, 63))
        def rename_over_existing(self, index: int, other: int) -> None:
            src, dst = self.existing(index), self.existing(other)
            if src is not None and dst is not None:
                self.both("rename_over", os.rename, src, dst)

        @rule(index=st.integers(0, 63), as_dir=st.booleans())
        def remove_existing(self, index: int, as_dir: bool) -> None:
            path = self.existing(index)
            if path is not None:
                self.both("rmdir" if as_dir else "unlink", os.rmdir if as_dir else os.unlink, path)

        @rule(path=paths)
        def unlink(self, path: str) -> None:
            self.both("unlink", os.unlink, path)

        @rule(path=paths)
        def rmdir(self, path: str) -> None:
            self.both("rmdir", os.rmdir, path)

        @rule(link_to=st.sampled_from(LINK_TARGETS), path=paths)
        def symlink(self, link_to: str, path: str) -> None:
            self.both(f"symlink[{link_to}]", lambda p: os.symlink(link_to, p), path)

        @rule(path=paths)
        def readlink(self, path: str) -> None:
            self.both("readlink", os.readlink, path)

        @rule(path=paths)
        def listdir(self, path: str) -> None:
            self.both("listdir", lambda p: sorted(os.listdir(p)), path)

    return NamespaceMachine


@pytest.mark.timeout(150)
@pytest.mark.parametrize("plugin", ["memfs", "localfs"])
def test_namespace_model(stack: Stack, plugin: str) -> None:
    counters = {"examples": 0, "steps": 0}
    outcomes: dict[str, int] = {}
    started = time.monotonic()
    run_state_machine_as_test(
        make_machine(stack, plugin, counters, outcomes),
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=STEPS,
            derandomize=not os.environ.get("AGFS_NS_RANDOM"),
            database=None,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        ),
    )
    assert stack.open_handles() == []
    print(
        f"namespace model ({plugin}): {counters['examples']} examples, {counters['steps']} "
        f"steps compared in {time.monotonic() - started:.1f}s; outcomes "
        f"{dict(sorted(outcomes.items()))}"
    )


# Sequences found by longer random hunts (``AGFS_NS_RANDOM=1``), replayed on the same
# machine every run: the derandomized run above does not reliably reach them.
SEQUENCES = {
    "rename a directory holding a symlink": [
        ("mkdir", {"path": "c"}),
        ("symlink", {"link_to": "a", "path": "c/y"}),
        ("rename", {"src": "c", "dst": "b"}),
        ("readlink", {"path": "b/y"}),
    ],
    "rmdir of a directory holding only a symlink": [
        ("mkdir", {"path": "a"}),
        ("symlink", {"link_to": "x", "path": "a/x"}),
        ("rmdir", {"path": "a"}),
        ("readlink", {"path": "a/x"}),
    ],
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("plugin", ["memfs", "localfs"])
@pytest.mark.parametrize("case", sorted(SEQUENCES))
def test_namespace_sequences(stack: Stack, plugin: str, case: str) -> None:
    machine = make_machine(stack, plugin, {"examples": 0, "steps": 0}, {})()
    try:
        for rule_name, kwargs in SEQUENCES[case]:
            getattr(machine, rule_name)(**kwargs)
    finally:
        machine.teardown()
