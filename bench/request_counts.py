"""Requests by kind that tools cost in a mount: ``tar xf``, ``git status``, small files.

Issue 15's round-trip targets are counted in requests, not seconds, so this runs the real
tools in a real mount of one server (the reference server, or the real one with
``--server-bin``; optionally behind a delay relay) and prints, per workload, the requests
the mount's ``/.agfs-stats`` counted, by kind and per unit (entry, file, directory). With
``--trace`` the mount runs with ``--debug`` and the requests of each workload are printed
with their paths, to see which ones remain and why.

    .venv/bin/python -m bench.request_counts                 # reference server, loopback
    .venv/bin/python -m bench.request_counts --rtt 10 --trace tar
    .venv/bin/python -m bench.request_counts --server-bin /root/.cache/agfs-real/agfs-server
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.relay import DelayRelay
from bench.wan_workloads import GIT_ENV, write_source_tree
from tests.support.mount import Mount
from tests.support.server import plugins_config, start_server, use_real_server

REQUEST_LINE = re.compile(r"DEBUG \S+: ((?:GET|PUT|POST|DELETE|HEAD) \S+) (\S*) -> (\S+)")


@dataclass
class Tree:
    tarball: Path
    repo: Path
    files: int
    dirs: int


def make_tree(local: Path, files: int) -> Tree:
    """A source tree of real files (about ten per directory) as a tarball and a git repo."""
    tree = local / "tree"
    tarball = local / "src.tar"
    n_files, n_dirs = write_source_tree(tree, tarball, files)
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-q", "-m", "t"]):
        subprocess.run(cmd, cwd=tree, env=GIT_ENV, check=True, capture_output=True)
    return Tree(tarball, tree, n_files, n_dirs)


def requests(mount: Mount) -> Counter[str]:
    return Counter(mount.stats()["requests"])


def sh(cmd: list[str], **kw: object) -> None:
    subprocess.run(cmd, check=True, capture_output=True, env=GIT_ENV, **kw)  # type: ignore[call-overload]


Workload = Callable[[Path, Tree], Iterator[None]]
"""Prepares in ``dest``, yields, then does what is counted."""


def tar(extra: list[str]) -> Workload:
    def run(dest: Path, tree: Tree) -> Iterator[None]:
        dest.mkdir()
        yield
        sh(["tar", "xf", str(tree.tarball), *extra, "-C", str(dest)])

    return run


def small(dest: Path, tree: Tree) -> Iterator[None]:
    dest.mkdir()
    yield
    for i in range(200):
        fd = os.open(dest / f"f{i:04d}", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, b"x" * 4096)
        finally:
            os.close(fd)


def git_status(pause: float) -> Workload:
    """Clone and a first status (not counted), then ``pause`` seconds later the second
    status, counted: right after the first, the kernel's caches answer most of it; over
    a second later (``attr_timeout``) it is what every later status in a tree costs."""

    def run(dest: Path, tree: Tree) -> Iterator[None]:
        sh(["git", "clone", "-q", f"file://{tree.repo}", str(dest)])
        # git re-reads files whose mtime is not older than its index ("racily clean"); on
        # a fast machine clone and status share one second: wait it out, as a user would.
        time.sleep(1.1)
        sh(["git", "status", "--porcelain"], cwd=dest)
        time.sleep(pause)
        yield
        sh(["git", "status", "--porcelain"], cwd=dest)

    return run


WORKLOADS: dict[str, tuple[Workload, str]] = {
    "tar": (tar([]), "entry"),
    "tar_nso": (tar(["--no-same-owner"]), "entry"),
    "git_status": (git_status(0), "dir"),
    "git_status_later": (git_status(1.5), "dir"),
    "small": (small, "file"),
}


def units(per: str, tree: Tree) -> int:
    return {"entry": tree.files + tree.dirs, "file": 200, "dir": tree.dirs + 1}[per]


def log_lines(mount: Mount) -> int:
    return len(mount.log_file.read_text(errors="replace").splitlines())


def trace_since(mount: Mount, line: int) -> list[str]:
    lines = mount.log_file.read_text(errors="replace").splitlines()[line:]
    return [" ".join(m.groups()) for text in lines if (m := REQUEST_LINE.search(text))]


def measure(mount: Mount, root: Path, tree: Tree, names: list[str], trace: set[str]) -> dict:
    results: dict[str, dict] = {}
    for name in names:
        work, per = WORKLOADS[name]
        steps = work(root / name, tree)
        next(steps)
        before, line = requests(mount), log_lines(mount)
        next(steps, None)
        delta = requests(mount) - before
        total = sum(delta.values())
        results[name] = {
            "requests": total,
            "per_" + per: round(total / units(per, tree), 3),
            "by_kind": dict(sorted(delta.items())),
        }
        if name in trace:
            results[name]["trace"] = trace_since(mount, line)
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--server-bin", help="the real AGFS server binary (default: reference)")
    p.add_argument("--rtt", type=float, default=0.0, help="round trip to add, in ms")
    p.add_argument("--files", type=int, default=150, help="files in the source tree (150)")
    p.add_argument("--only", default=",".join(WORKLOADS))
    p.add_argument("--trace", default="", help="workloads whose requests to print")
    p.add_argument("--plugin", default="/local", help="where in the server to work (/local)")
    p.add_argument("-o", dest="options", action="append", default=[], help="mount option")
    args = p.parse_args(argv)
    if args.server_bin:
        use_real_server(args.server_bin)
    names = args.only.split(",")
    trace = set(filter(None, args.trace.split(",")))
    with tempfile.TemporaryDirectory(prefix="agfs-counts-") as tmp:
        work = Path(tmp)
        (work / "local").mkdir()
        tree = make_tree(work / "src", args.files)
        server = start_server(work / "server", config=plugins_config(work / "local"))
        relay = None
        try:
            url = server.url
            if args.rtt:
                relay = DelayRelay(("127.0.0.1", server.port), args.rtt / 1000).start()
                url = f"http://127.0.0.1:{relay.port}/api/v1"
            options = [f"cache_dir={work / 'cache'}", *args.options]
            extra = ["--debug"] if trace else []
            with Mount(url, work / "mnt", workdir=work, options=options, extra_args=extra) as m:
                root = m.path / args.plugin.strip("/")
                out = measure(m, root, tree, names, trace)
        finally:
            if relay is not None:
                relay.close()
            server.stop()
    server_name = "real" if args.server_bin else "reference"
    summary = {"server": server_name, "rtt_ms": args.rtt, "files": tree.files, "dirs": tree.dirs}
    json.dump({**summary, "workloads": out}, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
