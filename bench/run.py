"""`make bench`: agfs-fuse against curl, sshfs and rclone mount, measured in one run.

Not a test: nothing here asserts a time. It builds its own fixtures in a temporary
directory, starts the reference server (localfs over that directory, plus memfs) with
``--test-hooks`` and a large ``--max-body``, mounts it with agfs-fuse, serves the very same
directory over a throwaway loopback sshd (sshfs) and ``rclone serve webdav`` (rclone mount),
and runs every workload against every system it applies to, round-robin, ``--reps`` times.
It prints medians, speed ratios against the baselines and the HTTP requests the server
counted, and writes JSON plus a PNG chart to ``bench/results/``.

    .venv/bin/python -m bench            # or: make bench
    .venv/bin/python -m bench --reps 5 --only cold_read,ls_cold --profile

Run as root for cold runs (``echo 3 > /proc/sys/vm/drop_caches``) and for installing
sshfs, openssh-server and rclone with apt-get when they are missing. Everything it starts
(mounts, sshd, rclone, the server) is stopped on exit, failure or Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import getpass
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
MiB = 1024 * 1024

# -- small helpers ----------------------------------------------------------------------


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def is_mounted(path: Path) -> bool:
    target = str(path)
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        for line in f:
            fields = line.split()
            if len(fields) > 4 and fields[4].replace("\\040", " ") == target:
                return True
    return False


_drop_warned = False


def drop_caches() -> bool:
    """Write back dirty pages and drop the page, dentry and inode caches (root only)."""
    global _drop_warned
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError as exc:
        if not _drop_warned:
            log(f"cannot drop the page cache ({exc}); 'cold' runs are only cold-mounted")
            _drop_warned = True
        return False


def rss_tree_kib(pid: int) -> int:
    """Resident set of ``pid`` and its descendants (sshfs runs ssh as a child), in KiB."""
    total = 0
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                        break
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except (OSError, ValueError):
            continue
    return total


class RssSampler:
    """Samples a process tree's RSS every few milliseconds in a thread; keeps the peak."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        self.pid, self.interval = pid, interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_tree_kib(self.pid))
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self.peak = rss_tree_kib(self.pid)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_tree_kib(self.pid))


def have_deb(pkg: str) -> bool:
    r = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", pkg], capture_output=True, text=True, check=False
    )
    return "ok installed" in r.stdout


_apt_updated = False


def apt_install(pkgs: list[str]) -> str | None:
    """Install Debian packages; ``None`` on success, else why not."""
    global _apt_updated
    if os.geteuid() != 0:
        return f"not root, cannot apt-get install {' '.join(pkgs)}"
    if not shutil.which("apt-get"):
        return "no apt-get on this machine"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    log(f"installing {' '.join(pkgs)} with apt-get")
    if not _apt_updated:
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, check=False)
        _apt_updated = True
    r = subprocess.run(
        ["apt-get", "install", "-y", "-qq", *pkgs], env=env, capture_output=True, text=True,
        check=False,
    )
    if r.returncode != 0:
        return f"apt-get install {' '.join(pkgs)} failed: {r.stderr.strip()[-300:]}"
    return None


def ensure_tool(binary: str, pkgs: list[str]) -> str | None:
    """``None`` when ``binary`` is (now) available, else the reason it is not."""
    if shutil.which(binary) or os.path.exists(binary):
        return None
    why = apt_install(pkgs)
    if why:
        return why
    if shutil.which(binary) or os.path.exists(binary):
        return None
    return f"{binary} still missing after installing {' '.join(pkgs)}"


# -- process and mount management -------------------------------------------------------


class Cleanup:
    """Everything started, undone in reverse order on exit (also on Ctrl-C or failure)."""

    def __init__(self) -> None:
        self._stack: list[tuple[str, Callable[[], None]]] = []

    def push(self, what: str, fn: Callable[[], None]) -> None:
        self._stack.append((what, fn))

    def remove(self, fn: Callable[[], None]) -> None:
        self._stack = [(w, f) for w, f in self._stack if f is not fn]

    def run(self) -> None:
        while self._stack:
            what, fn = self._stack.pop()
            try:
                fn()
            except Exception as exc:  # keep cleaning up the rest
                log(f"cleanup of {what} failed: {exc}")


def stop_process(proc: subprocess.Popen, timeout: float = 10) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def unmount(mp: Path) -> None:
    if not is_mounted(mp):
        return
    for cmd in (["fusermount3", "-u"], ["fusermount", "-u"], ["umount"]):
        if shutil.which(cmd[0]):
            subprocess.run([*cmd, str(mp)], capture_output=True, check=False)
            if not is_mounted(mp):
                return
    time.sleep(0.5)
    for cmd in (["fusermount3", "-uz"], ["umount", "-l"]):
        if shutil.which(cmd[0]) and is_mounted(mp):
            subprocess.run([*cmd, str(mp)], capture_output=True, check=False)


class Mount:
    """A FUSE mount run in the foreground as our child, so we know its pid."""

    name = "mount"

    def __init__(self, mp: Path, logdir: Path, cleanup: Cleanup) -> None:
        self.mp, self.logdir, self.cleanup = mp, logdir, cleanup
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def command(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str] | None:
        return None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        self.mp.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        logf = open(self.logdir / f"{self.name}.{self.starts}.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            self.command(), stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
            start_new_session=True, env=self.env(),
        )
        logf.close()
        self.cleanup.push(f"{self.name} mount", self.stop)
        deadline = time.monotonic() + 30
        while not is_mounted(self.mp):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = (self.logdir / f"{self.name}.{self.starts}.log").read_text(errors="replace")
                raise RuntimeError(f"{self.name} did not mount: {tail.strip()[-500:]}")
            time.sleep(0.02)
        # The first request through a fresh mount may still race with its setup.
        deadline = time.monotonic() + 10
        while True:
            try:
                os.listdir(self.mp)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        self.cleanup.remove(self.stop)
        unmount(self.mp)
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None

    def remount(self) -> None:
        self.stop()
        self.start()


class AgfsMount(Mount):
    name = "agfs-fuse"

    def __init__(self, url: str, cache_dir: Path, *a: Any, options: str = "") -> None:
        super().__init__(*a)
        self.url, self.cache_dir, self.options = url, cache_dir, options
        if options:
            self.name = f"agfs-fuse-{options.replace('=', '-')}"  # its own log files

    def command(self) -> list[str]:
        log_file = self.logdir / f"{self.name}.{self.starts}.mount.log"
        extra = f",{self.options}" if self.options else ""
        return [
            str(VENV_BIN / "agfs-fuse"), "mount", self.url, str(self.mp), "-f",
            "--log-file", str(log_file), "-o", f"cache_dir={self.cache_dir}{extra}",
        ]


class SshfsMount(Mount):
    name = "sshfs"

    def __init__(self, user: str, port: int, key: Path, remote_dir: Path, *a: Any) -> None:
        super().__init__(*a)
        self.user, self.port, self.key, self.remote_dir = user, port, key, remote_dir

    def command(self) -> list[str]:
        opts = (
            f"IdentityFile={self.key},StrictHostKeyChecking=no,UserKnownHostsFile=/dev/null,"
            f"BatchMode=yes,port={self.port}"
        )
        return ["sshfs", "-f", f"{self.user}@127.0.0.1:{self.remote_dir}", str(self.mp), "-o", opts]


class RcloneMount(Mount):
    name = "rclone"

    def __init__(self, webdav_url: str, conf: Path, *a: Any) -> None:
        super().__init__(*a)
        self.webdav_url, self.conf = webdav_url, conf

    def env(self) -> dict[str, str]:
        return dict(os.environ, RCLONE_CONFIG=str(self.conf))

    def command(self) -> list[str]:
        return [
            "rclone", "mount", ":webdav:", str(self.mp), "--webdav-url", self.webdav_url,
            "--log-level", "NOTICE",
        ]


def start_daemon(
    cmd: list[str], logpath: Path, cleanup: Cleanup, what: str, env: dict | None = None
) -> subprocess.Popen:
    logf = open(logpath, "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        cmd, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf, start_new_session=True, env=env
    )
    logf.close()
    cleanup.push(what, lambda: stop_process(proc))
    return proc


def wait_port(port: int, proc: subprocess.Popen, logpath: Path, what: str) -> None:
    deadline = time.monotonic() + 20
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        if proc.poll() is not None or time.monotonic() > deadline:
            tail = logpath.read_text(errors="replace")[-500:]
            raise RuntimeError(f"{what} did not start: {tail}")
        time.sleep(0.05)


# -- the reference server -----------------------------------------------------------------


class Server:
    def __init__(self, work: Path, data: Path, max_body: int, cleanup: Cleanup) -> None:
        cfg = work / "server.yaml"
        cfg.write_text(
            "plugins:\n"
            "  localfs:\n"
            "    enabled: true\n"
            "    path: /local\n"
            f"    config: {{local_dir: {json.dumps(str(data))}}}\n"
            "  memfs:\n"
            "    enabled: true\n"
            "    path: /memfs\n"
        )
        self.max_body = max_body
        out = work / "logs" / "server.out"
        self.proc = start_daemon(
            [
                str(VENV_BIN / "agfs-fuse"), "serve", "-c", str(cfg), "--addr", "127.0.0.1:0",
                "--max-body", str(max_body), "--log-level", "warn", "--test-hooks",
            ],
            out, cleanup, "reference server",
        )
        deadline = time.monotonic() + 20
        self.url = ""
        while not self.url:
            text = out.read_text(errors="replace")
            for line in text.splitlines():
                if line.startswith("listening on "):
                    self.url = line.split(" ", 2)[2].strip()
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the reference server did not start: {text[-500:]}")
            time.sleep(0.05)
        if not self.url.rstrip("/").endswith("/api/v1"):
            self.url = self.url.rstrip("/") + "/api/v1"

    def file_url(self, path: str) -> str:
        return f"{self.url}/files?path={urllib.parse.quote(path)}"

    def dir_url(self, path: str) -> str:
        return f"{self.url}/directories?path={urllib.parse.quote(path)}"

    def call(self, method: str, url: str, data: bytes | None = None) -> bytes:
        req = urllib.request.Request(url, data=data, method=method)
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.read()

    def reset(self) -> None:
        self.call("POST", f"{self.url}/_test/reset", b"")

    def stats(self) -> dict[str, int]:
        return json.loads(self.call("GET", f"{self.url}/_test/stats"))["requests"]

    def mkdir(self, path: str) -> None:
        with contextlib.suppress(urllib.error.HTTPError):
            self.call("POST", self.dir_url(path), b"")

    def rm_rf(self, path: str) -> None:
        with contextlib.suppress(urllib.error.HTTPError):
            self.call("DELETE", self.file_url(path) + "&recursive=true")


# -- systems ------------------------------------------------------------------------------


@dataclass
class System:
    """One way to reach the fixtures: a directory (local, a mount) or HTTP with curl."""

    name: str
    kind: str  # "fs" or "http"
    root: Path | None = None  # fs: the directory holding the fixtures
    prefix: str = ""  # http: the server path holding the fixtures
    mount: Mount | None = None
    counted: bool = False  # the reference server sees its requests
    backing: Path | None = None  # where its writes land on local disk (cleanup), if anywhere
    note: str = ""


# -- fixtures -----------------------------------------------------------------------------


@dataclass
class Fixtures:
    size: int
    rss_size: int
    block: bytes
    src: Path  # the 256 MiB file on local disk (curl PUT source)
    big_src: Path  # the 1 GiB file for the RSS workload
    small_payload: bytes
    small_src: Path
    ls_names: list[str]
    tree_files: int
    tree_dirs: int
    tarball: Path
    tar_files: int
    tar_bytes: int


def build_fixtures(args: argparse.Namespace, data: Path, local: Path) -> Fixtures:
    t0 = time.monotonic()
    size = args.size_mib * MiB
    rss_size = args.rss_mib * MiB
    log(
        f"fixtures: {args.size_mib} MiB and {args.rss_mib} MiB files, {args.ls_entries}-entry "
        f"directory, {args.find_files}-file tree, tarball"
    )
    block = os.urandom(size)
    (data / "big.bin").write_bytes(block)
    src = local / "src.bin"
    src.write_bytes(block)
    big_src = local / "big1g.bin"
    with open(big_src, "wb") as f:
        left = rss_size
        while left > 0:
            n = min(left, len(block))
            f.write(block[:n])
            left -= n
    small_payload = os.urandom(args.small_size)
    small_src = local / "small.bin"
    small_src.write_bytes(small_payload)
    (data / "scratch").mkdir()
    d10k = data / "dir10k"
    d10k.mkdir()
    names = [f"file-{i:05d}.txt" for i in range(args.ls_entries)]
    for n in names:
        (d10k / n).write_bytes(n.encode() * 4)
    tree = data / "tree"
    tree_dirs = tree_files = 0
    for a in range(20):
        for b in range(args.find_dirs // 20):
            d = tree / f"a{a:02d}" / f"b{b:02d}"
            d.mkdir(parents=True)
            tree_dirs += 1
            for c in range(args.find_files // args.find_dirs):
                (d / f"f{c:02d}.c").write_bytes(b"int x;\n")
                tree_files += 1
    tarball, tar_files, tar_bytes = make_tarball(local / "src.tar", args.tar_files)
    log(
        f"fixtures ready in {time.monotonic() - t0:.1f}s: tarball of {tar_files} files, "
        f"{tar_bytes / MiB:.1f} MiB"
    )
    return Fixtures(
        size, rss_size, block, src, big_src, small_payload, small_src, names, tree_files,
        tree_dirs, tarball, tar_files, tar_bytes,
    )


def make_tarball(out: Path, max_files: int) -> tuple[Path, int, int]:
    """A source tree from this venv's site-packages (a few thousand real files)."""
    import sysconfig

    site = Path(sysconfig.get_paths()["purelib"])
    files: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(site):
        dirnames.sort()
        if "__pycache__" in dirpath:
            continue
        for fn in sorted(filenames):
            p = Path(dirpath) / fn
            if p.is_file() and not p.is_symlink() and p.stat().st_size < MiB:
                files.append(p)
        if len(files) >= max_files:
            break
    files = files[:max_files]
    total = 0
    with tarfile.open(out, "w") as tar:
        for p in files:
            tar.add(p, arcname=str(p.relative_to(site.parent)), recursive=False)
            total += p.stat().st_size
    return out, len(files), total


# -- workloads ----------------------------------------------------------------------------


@dataclass
class Ctx:
    fx: Fixtures
    server: Server
    work: Path
    local: Path
    small_count: int = 1000


@dataclass
class Workload:
    name: str
    title: str
    systems: tuple[str, ...]  # which systems it runs against
    prepare: Callable[[System, Ctx, str], Any]
    run: Callable[[System, Ctx, str, Any], dict]  # returns {"seconds": ..., extra...}
    finish: Callable[[System, Ctx, str, Any], None] | None = None
    unit: str = "s"  # how to show a speed: "MB/s", "files/s", or just seconds
    amount: Callable[[Ctx], float] | None = None  # bytes or files per run, for the speed
    reps: str = "reps"  # or "rss_reps"


def sh(cmd: list[str], **kw: Any) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, check=False, **kw)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def read_all(path: Path) -> int:
    buf = bytearray(MiB)
    n = 0
    fd = os.open(path, os.O_RDONLY)
    try:
        while True:
            k = os.readv(fd, [buf])
            if not k:
                return n
            n += k
    finally:
        os.close(fd)


def curl(args: list[str]) -> subprocess.CompletedProcess:
    r = sh(["curl", "-sS", "--fail", *args])
    if r.returncode != 0:
        raise RuntimeError(f"curl {' '.join(args)[:200]}: {r.stderr.decode(errors='replace')}")
    return r


def curl_get_bytes(url: str) -> int:
    r = curl(["-o", "/dev/null", "-w", "%{size_download}", url])
    return int(float(r.stdout.decode()))


def cold(system: System, ctx: Ctx) -> None:
    if system.mount is not None:
        system.mount.stop()
    drop_caches()
    if system.mount is not None:
        system.mount.start()


# cold / warm sequential read


def prep_cold_read(s: System, ctx: Ctx, tag: str) -> None:
    cold(s, ctx)


def run_read(s: System, ctx: Ctx, tag: str, _: Any) -> dict:
    if s.kind == "http":
        secs, n = timed(lambda: curl_get_bytes(ctx.server.file_url(f"{s.prefix}/big.bin")))
    else:
        secs, n = timed(lambda: read_all(s.root / "big.bin"))
    if n != ctx.fx.size:
        raise RuntimeError(f"read {n} bytes, expected {ctx.fx.size}")
    return {"seconds": secs}


def prep_warm_read(s: System, ctx: Ctx, tag: str) -> None:
    run_read(s, ctx, tag, None)  # untimed: brings it into whatever caches there are


# sequential write incl. close


def prep_write(s: System, ctx: Ctx, tag: str) -> str:
    return f"scratch/seq-{tag}.bin"


def timed_write(path: Path, data: memoryview, piece: int) -> float:
    """Seconds to write ``data`` to a new ``path`` in ``piece``-byte writes, close included."""

    def write() -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            for off in range(0, len(data), piece):
                os.write(fd, data[off : off + piece])
        finally:
            os.close(fd)

    secs, _ = timed(write)
    return secs


def run_write(s: System, ctx: Ctx, tag: str, rel: str) -> dict:
    if s.kind == "http":
        secs, _ = timed(
            lambda: curl(["-o", "/dev/null", "-T", str(ctx.fx.src), ctx.server.file_url(
                f"{s.prefix}/{rel}")])
        )
        return {"seconds": secs}
    return {"seconds": timed_write(s.root / rel, memoryview(ctx.fx.block), MiB)}


SMALL_WRITE = 4096
SMALL_WRITES_BYTES = 16 * MiB


def run_write_4k(s: System, ctx: Ctx, tag: str, rel: str) -> dict:
    """What programs writing in small pieces do (``-o writeback_cache`` gathers them)."""
    view = memoryview(ctx.fx.block)[:SMALL_WRITES_BYTES]
    return {"seconds": timed_write(s.root / rel, view, SMALL_WRITE)}


def finish_remove(s: System, ctx: Ctx, tag: str, rel: str) -> None:
    if s.backing is not None:
        p = s.backing / rel
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                p.unlink()
    elif s.kind == "http" or s.counted:
        ctx.server.rm_rf(f"{s.prefix}/{rel}")
    elif s.root is not None:
        shutil.rmtree(s.root / rel, ignore_errors=True)


# small files


def prep_small(s: System, ctx: Ctx, tag: str) -> str:
    rel = f"scratch/small-{tag}"
    if s.kind == "http":
        ctx.server.mkdir(f"{s.prefix}/{rel}")
        cfg = ctx.work / "curl-small.cfg"
        with open(cfg, "w") as f:
            for i in range(ctx_small_count(ctx)):
                url = ctx.server.file_url(f"{s.prefix}/{rel}/f{i:04d}")
                f.write(f'upload-file = "{ctx.fx.small_src}"\nurl = "{url}"\n')
                f.write('output = "/dev/null"\n')
    else:
        os.mkdir(s.root / rel)
    return rel


def ctx_small_count(ctx: Ctx) -> int:
    return ctx.small_count


def run_small(s: System, ctx: Ctx, tag: str, rel: str) -> dict:
    n = ctx_small_count(ctx)
    if s.kind == "http":
        secs, _ = timed(lambda: curl(["-K", str(ctx.work / "curl-small.cfg")]))
        return {"seconds": secs}
    payload = ctx.fx.small_payload
    d = s.root / rel

    def go() -> None:
        for i in range(n):
            fd = os.open(d / f"f{i:04d}", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                os.write(fd, payload)
            finally:
                os.close(fd)

    secs, _ = timed(go)
    return {"seconds": secs}


# ls -l and stat of the 10k-entry directory


def run_ls(s: System, ctx: Ctx, tag: str, _: Any) -> dict:
    if s.kind == "http":
        secs, r = timed(lambda: curl([ctx.server.dir_url(f"{s.prefix}/dir10k")]))
        n = len(json.loads(r.stdout)["files"] or [])
    else:
        env = dict(os.environ, LC_ALL="C")
        secs, r = timed(lambda: sh(["ls", "-l", str(s.root / "dir10k")], env=env))
        if r.returncode != 0:
            raise RuntimeError(f"ls -l: {r.stderr.decode(errors='replace')[:300]}")
        n = r.stdout.count(b"\n") - 1  # the "total" line
    if n != len(ctx.fx.ls_names):
        raise RuntimeError(f"ls -l listed {n} entries, expected {len(ctx.fx.ls_names)}")
    return {"seconds": secs}


def prep_ls_cold(s: System, ctx: Ctx, tag: str) -> None:
    cold(s, ctx)


def prep_ls_warm(s: System, ctx: Ctx, tag: str) -> None:
    run_ls(s, ctx, tag, None)


def run_stat(s: System, ctx: Ctx, tag: str, _: Any) -> dict:
    d = s.root / "dir10k"
    names = ctx.fx.ls_names

    def go() -> int:
        total = 0
        for n in names:
            total += os.lstat(d / n).st_size
        return total

    secs, total = timed(go)
    return {"seconds": secs}


def prep_stat_warm(s: System, ctx: Ctx, tag: str) -> None:
    run_stat(s, ctx, tag, None)


# find over the tree


def run_find(s: System, ctx: Ctx, tag: str, _: Any) -> dict:
    secs, r = timed(lambda: sh(["find", str(s.root / "tree"), "-type", "f"]))
    n = r.stdout.count(b"\n")
    if r.returncode != 0 or n != ctx.fx.tree_files:
        raise RuntimeError(f"find found {n} files (rc {r.returncode}): {r.stderr[:300]!r}")
    return {"seconds": secs}


# untar


def prep_untar(s: System, ctx: Ctx, tag: str) -> str:
    rel = f"scratch/untar-{tag}"
    os.mkdir(s.root / rel)
    return rel


def run_untar(s: System, ctx: Ctx, tag: str, rel: str) -> dict:
    # -m: no mtimes, --no-same-owner: no chown; what a non-root user's tar does.
    cmd = ["tar", "-x", "-m", "--no-same-owner", "-f", str(ctx.fx.tarball), "-C", str(s.root / rel)]
    secs, r = timed(lambda: sh(cmd))
    out: dict[str, Any] = {"seconds": secs}
    if r.returncode != 0:
        err = r.stderr.decode(errors="replace").strip().splitlines()
        out["error"] = f"tar exit {r.returncode}: {len(err)} messages, first: {err[:1]}"
    return out


# peak RSS while copying 1 GiB in and out


def prep_rss(s: System, ctx: Ctx, tag: str) -> str:
    if s.mount is not None:
        s.mount.remount()  # a fresh process, so its peak belongs to this workload
    with contextlib.suppress(OSError):
        (ctx.local / "rss-out.bin").unlink()
    return f"scratch/rss-{tag}.bin"


def run_rss(s: System, ctx: Ctx, tag: str, rel: str) -> dict:
    out = ctx.local / "rss-out.bin"
    if s.kind == "http":
        url = ctx.server.file_url(f"{s.prefix}/{rel}")
        t_in, _ = timed(lambda: curl(["-o", "/dev/null", "-T", str(ctx.fx.big_src), url]))
        drop_caches()
        t_out, _ = timed(lambda: curl(["-o", str(out), url]))
        return {"seconds": t_in + t_out, "in_s": t_in, "out_s": t_out}
    assert s.mount is not None
    start_kib = rss_tree_kib(s.mount.pid)
    with RssSampler(s.mount.pid) as sampler:
        t_in, r1 = timed(lambda: sh(["cp", str(ctx.fx.big_src), str(s.root / rel)]))
        drop_caches()  # the copy out must come through the mount, not the page cache
        t_out, r2 = timed(lambda: sh(["cp", str(s.root / rel), str(out)]))
    for r in (r1, r2):
        if r.returncode != 0:
            raise RuntimeError(f"cp: {r.stderr.decode(errors='replace')[:300]}")
    if out.stat().st_size != ctx.fx.rss_size:
        raise RuntimeError(f"copied out {out.stat().st_size} bytes, expected {ctx.fx.rss_size}")
    return {
        "seconds": t_in + t_out, "in_s": t_in, "out_s": t_out,
        "rss_peak_mib": sampler.peak / 1024, "rss_start_mib": start_kib / 1024,
    }


def finish_rss(s: System, ctx: Ctx, tag: str, rel: str) -> None:
    finish_remove(s, ctx, tag, rel)
    with contextlib.suppress(OSError):
        (ctx.local / "rss-out.bin").unlink()


FS_ALL = ("local", "agfs-fuse", "sshfs", "rclone")
BYTES = lambda ctx: ctx.fx.size  # noqa: E731

WORKLOADS = [
    Workload(
        "cold_read", "cold sequential read", (*FS_ALL, "agfs-fuse/memfs", "curl", "curl/memfs"),
        prep_cold_read, run_read, unit="MB/s", amount=BYTES,
    ),
    Workload(
        "warm_read", "warm re-read", (*FS_ALL, "agfs-fuse/memfs", "curl", "curl/memfs"),
        prep_warm_read, run_read, unit="MB/s", amount=BYTES,
    ),
    Workload(
        "seq_write", "sequential write incl. close",
        (*FS_ALL, "agfs-fuse/writeback", "agfs-fuse/memfs", "curl", "curl/memfs"),
        prep_write, run_write, finish_remove, unit="MB/s", amount=BYTES,
    ),
    Workload(
        "write_4k", "write 16 MiB in 4 KiB pieces incl. close",
        (*FS_ALL, "agfs-fuse/writeback"),
        prep_write, run_write_4k, finish_remove, unit="MB/s",
        amount=lambda ctx: min(ctx.fx.size, SMALL_WRITES_BYTES),
    ),
    Workload(
        "small_files", "small files create+write+close",
        (*FS_ALL, "agfs-fuse/memfs", "curl", "curl/memfs"),
        prep_small, run_small, finish_remove, unit="files/s",
        amount=lambda ctx: ctx.small_count,
    ),
    Workload("ls_cold", "ls -l 10k entries, cold", (*FS_ALL, "curl"), prep_ls_cold, run_ls),
    Workload("ls_warm", "ls -l 10k entries, warm", (*FS_ALL, "curl"), prep_ls_warm, run_ls),
    Workload("stat_cold", "stat 10k entries, cold", FS_ALL, prep_ls_cold, run_stat),
    Workload("stat_warm", "stat 10k entries, warm", FS_ALL, prep_stat_warm, run_stat),
    Workload("find_cold", "find over 5k files / 500 dirs, cold", FS_ALL, prep_ls_cold, run_find),
    Workload(
        "untar", "untar source tree", (*FS_ALL, "agfs-fuse/memfs"), prep_untar, run_untar,
        finish_remove, unit="files/s",
        amount=lambda ctx: ctx.fx.tar_files,
    ),
    Workload(
        "rss_copy", "copy 1 GiB in and out (peak RSS)", ("agfs-fuse", "sshfs", "rclone", "curl"),
        prep_rss, run_rss, finish_rss, unit="MB/s",
        amount=lambda ctx: 2 * ctx.fx.rss_size, reps="rss_reps",
    ),
]

DATA_ROUTES = ("GET /files", "PUT /files", "POST /files", "/handles/")


def data_requests(counts: dict[str, int]) -> int:
    return sum(v for k, v in counts.items() if any(r in k for r in DATA_ROUTES))


# -- py-spy profiles ------------------------------------------------------------------------


def ensure_pyspy() -> str | None:
    exe = VENV_BIN / "py-spy"
    if exe.exists():
        return str(exe)
    r = sh([sys.executable, "-m", "pip", "install", "-q", "py-spy"])
    return str(exe) if r.returncode == 0 and exe.exists() else None


def summarize_collapsed(path: Path, top: int = 12) -> dict:
    """Self time per frame and inclusive time per top-level layer from py-spy raw output."""
    self_t: dict[str, int] = {}
    incl: dict[str, int] = {}
    total = 0
    if not path.exists():
        return {"samples": 0}
    for line in path.read_text(errors="replace").splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        k = int(n)
        total += k
        frames = stack.split(";")
        leaf = frames[-1]
        self_t[leaf] = self_t.get(leaf, 0) + k
        seen = set()
        for f in frames:
            mod = layer_of(f)
            if mod not in seen:
                seen.add(mod)
                incl[mod] = incl.get(mod, 0) + k
    def pct(d: dict[str, int]) -> list[tuple[str, float]]:
        return [(f, round(100 * v / total, 1)) for f, v in sorted(d.items(), key=lambda x: -x[1])]
    return {"samples": total, "self": pct(self_t)[:top], "layers": pct(incl)[:top]}


def layer_of(frame: str) -> str:
    """``func (path/file.py:12)`` -> a coarse layer name."""
    for key in (
        "agfs_fuse/server", "agfs_fuse", "pyfuse3", "httpx", "httpcore", "h11", "trio",
        "anyio", "ssl", "socket", "selectors", "threading", "http/server", "socketserver",
    ):
        if key in frame:
            return key
    return "other"


def profile_workloads(
    names: list[str], systems: dict[str, System], ctx: Ctx, results_dir: Path, stamp: str,
) -> dict:
    exe = ensure_pyspy()
    if exe is None:
        log("py-spy could not be installed; no profiles")
        return {}
    out: dict[str, Any] = {}
    s = systems["agfs-fuse"]
    for w in WORKLOADS:
        if w.name not in names or "agfs-fuse" not in w.systems:
            continue
        tag = f"prof-{w.name}"
        state = w.prepare(s, ctx, tag)
        assert s.mount is not None
        spies = {}
        for who, pid in (("mount", s.mount.pid), ("server", ctx.server.proc.pid)):
            f = results_dir / f"profile-{stamp}-{w.name}-{who}.txt"
            spies[who] = (f, subprocess.Popen(
                [exe, "record", "-p", str(pid), "-r", "250", "-f", "raw", "-o", str(f),
                 "--nonblocking"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
            ))
        time.sleep(1.5)  # let py-spy attach
        try:
            res = w.run(s, ctx, tag, state)
        finally:
            for _, p in spies.values():
                p.send_signal(signal.SIGINT)
            for _, p in spies.values():
                try:
                    p.wait(20)
                except subprocess.TimeoutExpired:
                    p.kill()
        if w.finish:
            w.finish(s, ctx, tag, state)
        out[w.name] = {
            "seconds": res["seconds"],
            **{who: summarize_collapsed(f) | {"file": str(f)} for who, (f, _) in spies.items()},
        }
        log(f"profiled {w.name} ({res['seconds']:.2f}s)")
    return out


# -- reporting ----------------------------------------------------------------------------


def fmt_secs(x: float) -> str:
    return f"{x * 1000:.0f}ms" if x < 1 else f"{x:.2f}s"


def speed_str(w: Workload, ctx: Ctx, secs: float) -> str:
    if w.amount is None or secs <= 0:
        return ""
    v = w.amount(ctx) / secs
    return f"{v / 1e6:.0f} MB/s" if w.unit == "MB/s" else f"{v:.0f} {w.unit}"


def build_report(results: dict, ctx: Ctx, systems: dict[str, System]) -> tuple[str, list[dict]]:
    order = [n for n in ("local", "agfs-fuse", "agfs-fuse/writeback", "agfs-fuse/memfs", "curl",
                         "curl/memfs", "sshfs", "rclone") if n in systems]
    lines = []
    lines.append("Medians (time; speed where it applies):")
    head = ["workload"] + order
    rows = []
    for w in WORKLOADS:
        r = results.get(w.name)
        if not r:
            continue
        row = [w.title]
        for n in order:
            m = r["systems"].get(n)
            if not m or m.get("median") is None:
                row.append("-" if not m or not m.get("errors") else "error")
                continue
            cell = fmt_secs(m["median"])
            sp = speed_str(w, ctx, m["median"])
            if sp:
                cell += f" ({sp})"
            if m.get("rss_peak_mib") is not None:
                cell += f" rss {m['rss_peak_mib']:.0f}MiB"
            if m.get("errors"):
                cell += " !"
            row.append(cell)
        rows.append(row)
    lines += table(head, rows)

    lines.append("")
    lines.append("agfs-fuse speed relative to each baseline (baseline time / agfs-fuse time; "
                 ">1 = agfs-fuse faster), and HTTP requests the server counted per run:")
    head2 = ["workload", "vs local", "vs curl", "vs sshfs", "vs rclone", "memfs vs curl/memfs",
             "writeback_cache vs default", "requests agfs-fuse (data)", "requests curl"]
    rows2 = []
    for w in WORKLOADS:
        r = results.get(w.name)
        if not r:
            continue
        ms = {n: (r["systems"].get(n) or {}).get("median") for n in order}
        a = ms.get("agfs-fuse")

        def ratio(b: float | None, a: float | None = a) -> str:
            return f"{b / a:.2f}x" if a and b else "-"

        req = r["systems"].get("agfs-fuse", {}).get("requests_median")
        dreq = r["systems"].get("agfs-fuse", {}).get("data_requests_median")
        creq = r["systems"].get("curl", {}).get("requests_median")
        rows2.append([
            w.title, ratio(ms.get("local")), ratio(ms.get("curl")), ratio(ms.get("sshfs")),
            ratio(ms.get("rclone")), ratio(ms.get("curl/memfs"), ms.get("agfs-fuse/memfs")),
            ratio(a, ms.get("agfs-fuse/writeback")),
            "-" if req is None else f"{req:g} ({dreq:g})",
            "-" if creq is None else f"{creq:g}",
        ])
    lines += table(head2, rows2)
    targets = check_targets(results, ctx)
    lines.append("")
    lines.append("Speed and resource targets (informational, nothing fails on them):")
    lines += table(["target", "measured", "status"],
                   [[t["target"], t["measured"], t["status"]] for t in targets])
    return "\n".join(lines), targets


def table(head: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows, strict=False)]
    out = [" | ".join(str(h).ljust(w) for h, w in zip(head, widths, strict=False))]
    out.append("-+-".join("-" * w for w in widths))
    for r in rows:
        out.append(" | ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=False)))
    return out


def check_targets(results: dict, ctx: Ctx) -> list[dict]:
    def med(w: str, s: str, key: str = "median") -> float | None:
        return ((results.get(w) or {}).get("systems", {}).get(s) or {}).get(key)

    out = []

    def speed_target(label: str, w: str, base: str, want: float) -> None:
        a, b = med(w, "agfs-fuse"), med(w, base)
        if a is None or b is None:
            out.append({"target": label, "measured": "not measured", "status": "n/a"})
            return
        r = b / a
        out.append({"target": label, "measured": f"{r:.2f}x", "value": r,
                    "status": "met" if r >= want else "MISSED"})

    speed_target("cold read >= 1.0x rclone", "cold_read", "rclone", 1.0)
    speed_target("cold read >= 2x sshfs", "cold_read", "sshfs", 2.0)
    speed_target("cold read >= 0.8x curl", "cold_read", "curl", 0.8)
    d = med("warm_read", "agfs-fuse", "data_requests_median")
    a, loc = med("warm_read", "agfs-fuse"), med("warm_read", "local")
    out.append({
        "target": "warm re-read: 0 data requests, >= 0.5x local page-cache read",
        "measured": "not measured" if d is None else
        f"{d:g} data requests, {a and loc and loc / a:.2f}x local page cache",
        "status": "n/a" if d is None else ("met" if d == 0 and loc / a >= 0.5 else "MISSED"),
    })
    speed_target("write incl. close >= 2x sshfs", "seq_write", "sshfs", 2.0)
    speed_target("write incl. close >= 0.8x curl PUT", "seq_write", "curl", 0.8)
    speed_target("small files >= sshfs files/s", "small_files", "sshfs", 1.0)
    rq = med("small_files", "agfs-fuse", "requests_median")
    n = ctx.small_count
    out.append({
        "target": "small files <= 2 HTTP requests per file",
        "measured": "not measured" if rq is None else f"{rq / n:.2f} per file",
        "status": "n/a" if rq is None else ("met" if rq / n <= 2 else "MISSED"),
    })
    a, c = med("ls_cold", "agfs-fuse"), med("ls_cold", "curl")
    out.append({
        "target": "ls -l 10k cold <= 1.5x one curl of the listing",
        "measured": "not measured" if not (a and c) else f"{a / c:.2f}x curl time",
        "status": "n/a" if not (a and c) else ("met" if a / c <= 1.5 else "MISSED"),
    })
    a = med("ls_warm", "agfs-fuse")
    out.append({
        "target": "ls -l 10k warm <= 0.3 s",
        "measured": "not measured" if a is None else fmt_secs(a),
        "status": "n/a" if a is None else ("met" if a <= 0.3 else "MISSED"),
    })
    rss = med("rss_copy", "agfs-fuse", "rss_peak_mib")
    out.append({
        "target": "mount RSS <= 100 MiB copying 1 GiB in and out",
        "measured": "not measured" if rss is None else f"{rss:.0f} MiB peak",
        "status": "n/a" if rss is None else ("met" if rss <= 100 else "MISSED"),
    })
    return out


def load_matplotlib() -> Any:
    """matplotlib comes with the ``bench`` extra (``make bench`` installs it)."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


COLORS = {
    "local": "#999999", "agfs-fuse": "#d62728", "agfs-fuse/writeback": "#ff7f0e",
    "agfs-fuse/memfs": "#ff9896", "curl": "#1f77b4",
    "curl/memfs": "#aec7e8", "sshfs": "#2ca02c", "rclone": "#9467bd",
}


def chart(results: dict, path: Path, title: str) -> str | None:
    plt = load_matplotlib()
    if plt is None:
        return "matplotlib is not installed (pip install -e '.[bench]'); no chart"
    ws = [w for w in WORKLOADS if results.get(w.name)]
    cols = 3
    rows = (len(ws) + 1 + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 2.6 * rows))
    axes = list(axes.flat)
    for ax, w in zip(axes, ws, strict=False):
        sysres = results[w.name]["systems"]
        names = [n for n in COLORS if sysres.get(n, {}).get("median") is not None]
        vals = [sysres[n]["median"] for n in names]
        ax.barh(names, vals, color=[COLORS[n] for n in names])
        ax.invert_yaxis()
        ax.set_title(f"{w.title} (s, lower is better)", fontsize=9)
        ax.tick_params(labelsize=8)
        if vals and max(vals) / max(min(vals), 1e-9) > 50:
            ax.set_xscale("log")
        for y, v in enumerate(vals):
            ax.text(v, y, f" {fmt_secs(v)}", va="center", fontsize=7)
    rss = results.get("rss_copy", {}).get("systems", {})
    ax = axes[len(ws)] if len(ws) < len(axes) else None
    if ax is not None and rss:
        names = [n for n in COLORS if rss.get(n, {}).get("rss_peak_mib") is not None]
        vals = [rss[n]["rss_peak_mib"] for n in names]
        ax.barh(names, vals, color=[COLORS[n] for n in names])
        ax.invert_yaxis()
        ax.set_title("mount process peak RSS, 1 GiB in+out (MiB)", fontsize=9)
        ax.tick_params(labelsize=8)
        for y, v in enumerate(vals):
            ax.text(v, y, f" {v:.0f}", va="center", fontsize=7)
        used = len(ws) + 1
    else:
        used = len(ws)
    for ax in axes[used:]:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


# -- main -----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--reps", type=int, default=3, help="repetitions per workload (default 3)")
    p.add_argument("--rss-reps", type=int, default=1, help="repetitions of the 1 GiB copy")
    p.add_argument("--only", help="comma-separated workloads to run (default all)")
    p.add_argument("--skip", default="", help="comma-separated workloads to leave out")
    p.add_argument("--no-sshfs", action="store_true", help="leave out the sshfs baseline")
    p.add_argument("--no-rclone", action="store_true", help="leave out the rclone baseline")
    p.add_argument("--no-memfs", action="store_true", help="leave out the memfs variants")
    p.add_argument("--size-mib", type=int, default=256, help="sequential file size (256)")
    p.add_argument("--rss-mib", type=int, default=1024, help="file copied for peak RSS (1024)")
    p.add_argument("--small-files", type=int, default=1000)
    p.add_argument("--small-size", type=int, default=4096, help="bytes per small file (4096)")
    p.add_argument("--ls-entries", type=int, default=10000)
    p.add_argument("--find-files", type=int, default=5000)
    p.add_argument("--find-dirs", type=int, default=500)
    p.add_argument("--tar-files", type=int, default=2000)
    p.add_argument("--profile", nargs="?", const="cold_read,seq_write,small_files,ls_cold",
                   help="after measuring, profile the agfs-fuse mount and the server with "
                   "py-spy during one extra run of these workloads")
    p.add_argument("--workdir", help="parent of the temporary directory (default $TMPDIR)")
    p.add_argument("--results", default=str(REPO / "bench" / "results"))
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    p.add_argument("--wan", action="store_true",
                   help="run the WAN bench instead: agfs-fuse, sshfs and rclone through a "
                   "delay relay at several RTTs (its own flags: python -m bench --wan --help)")
    a = p.parse_args(argv)
    if a.find_dirs % 20 or a.find_files % a.find_dirs:
        p.error("--find-dirs must be a multiple of 20 and divide --find-files")
    return a


def setup_sshfs(work: Path, data: Path, cleanup: Cleanup, logs: Path) -> SshfsMount | str:
    for binary, pkgs in (("sshfs", ["sshfs"]), ("/usr/sbin/sshd", ["openssh-server"]),
                         ("ssh-keygen", ["openssh-client"])):
        why = ensure_tool(binary, pkgs)
        if why:
            return why
    d = work / "ssh"
    d.mkdir()
    for key in ("host", "user"):
        r = sh(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / key)])
        if r.returncode != 0:
            return f"ssh-keygen failed: {r.stderr.decode(errors='replace')}"
    (d / "authorized_keys").write_text((d / "user.pub").read_text())
    os.chmod(d / "authorized_keys", 0o600)
    port = free_port()
    sftp = "/usr/lib/openssh/sftp-server"
    (d / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {d / 'host'}\nPidFile {d / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {d / 'authorized_keys'}\nStrictModes no\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nUsePAM no\nPermitRootLogin prohibit-password\n"
        f"Subsystem sftp {sftp if os.path.exists(sftp) else 'internal-sftp'}\n"
    )
    if os.geteuid() == 0:
        os.makedirs("/run/sshd", exist_ok=True)  # sshd's privilege separation directory
    proc = start_daemon(
        ["/usr/sbin/sshd", "-D", "-e", "-f", str(d / "sshd_config")], logs / "sshd.log", cleanup,
        "sshd",
    )
    try:
        wait_port(port, proc, logs / "sshd.log", "sshd")
    except RuntimeError as exc:
        return str(exc)
    mp = work / "mnt-sshfs"
    return SshfsMount(getpass.getuser(), port, d / "user", data, mp, logs, cleanup)


def setup_rclone(work: Path, data: Path, cleanup: Cleanup, logs: Path) -> RcloneMount | str:
    why = ensure_tool("rclone", ["rclone"])
    if why:
        return why
    conf = work / "rclone.conf"
    conf.write_text("")
    port = free_port()
    env = dict(os.environ, RCLONE_CONFIG=str(conf))
    proc = start_daemon(
        ["rclone", "serve", "webdav", str(data), "--addr", f"127.0.0.1:{port}", "--log-level",
         "NOTICE"], logs / "rclone-serve.log", cleanup, "rclone serve webdav", env,
    )
    try:
        wait_port(port, proc, logs / "rclone-serve.log", "rclone serve webdav")
    except RuntimeError as exc:
        return str(exc)
    ver = sh(["rclone", "version"]).stdout.decode().splitlines()[:1]
    log(f"rclone serve webdav on 127.0.0.1:{port} ({ver[0] if ver else '?'})")
    return RcloneMount(f"http://127.0.0.1:{port}", conf, work / "mnt-rclone", logs, cleanup)


def tool_versions() -> dict[str, str]:
    out = {}
    for name, cmd in (
        ("kernel", ["uname", "-r"]), ("curl", ["curl", "--version"]),
        ("sshfs", ["sshfs", "--version"]), ("rclone", ["rclone", "version"]),
        ("ssh", ["ssh", "-V"]),
    ):
        if shutil.which(cmd[0]):
            r = sh(cmd)
            text = (r.stdout or r.stderr).decode(errors="replace").strip().splitlines()
            out[name] = text[0] if text else ""
    out["python"] = platform.python_version()
    try:
        from importlib.metadata import version

        for pkg in ("agfs-fuse", "pyfuse3", "trio", "httpx"):
            out[pkg] = version(pkg)
    except Exception:  # noqa: BLE001
        pass
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    names = [w.name for w in WORKLOADS]
    wanted = args.only.split(",") if args.only else names
    skip = set(filter(None, args.skip.split(",")))
    bad = [n for n in [*wanted, *skip] if n not in names]
    if bad:
        print(f"unknown workload(s) {bad}; known: {', '.join(names)}", file=sys.stderr)
        return 2
    workloads = [w for w in WORKLOADS if w.name in wanted and w.name not in skip]
    if not shutil.which("curl"):
        why = ensure_tool("curl", ["curl"])
        if why:
            print(f"curl is needed: {why}", file=sys.stderr)
            return 1

    # SIGTERM and SIGHUP clean up like Ctrl-C does.
    def on_signal(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with it ignored

    results_dir = Path(args.results)
    results_dir.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    started = time.monotonic()
    cleanup = Cleanup()
    work = Path(tempfile.mkdtemp(prefix="agfs-bench-", dir=args.workdir))
    if not args.keep:
        cleanup.push("temporary directory", lambda: shutil.rmtree(work, ignore_errors=True))
    notes: list[str] = []
    try:
        return run(args, workloads, work, cleanup, results_dir, stamp, started, notes)
    except KeyboardInterrupt:
        log("interrupted; cleaning up")
        return 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not stop cleanup
        cleanup.run()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        if args.keep:
            log(f"kept {work}")


def run(
    args: argparse.Namespace, workloads: list[Workload], work: Path, cleanup: Cleanup,
    results_dir: Path, stamp: str, started: float, notes: list[str],
) -> int:
    data, local, logs = work / "data", work / "local", work / "logs"
    for d in (data, local, logs):
        d.mkdir()
    log(f"working in {work}")
    fx = build_fixtures(args, data, local)
    max_body = max(2 * args.rss_mib * MiB, 4 * args.size_mib * MiB)
    server = Server(work, data, max_body, cleanup)
    log(f"reference server at {server.url} (localfs /local -> {data}, memfs /memfs)")
    ctx = Ctx(fx, server, work, local, args.small_files)
    notes.append(
        f"Reference server: agfs-fuse serve, localfs at /local over the fixture directory, memfs "
        f"at /memfs, --max-body {max_body} ({max_body // MiB} MiB; the default 64 MiB would refuse "
        "the whole-file PUTs, as max_request_body_bytes would on the real server), --test-hooks "
        "for request counts."
    )
    agfs = AgfsMount(server.url, work / "cache", work / "mnt-agfs", logs, cleanup)
    agfs.start()
    systems: dict[str, System] = {
        "local": System("local", "fs", root=data, backing=data,
                        note="the fixture directory itself (page cache / local disk)"),
        "agfs-fuse": System("agfs-fuse", "fs", root=agfs.mp / "local", mount=agfs, counted=True,
                            backing=data, prefix="/local"),
        "curl": System("curl", "http", prefix="/local", counted=True, backing=data),
    }
    wb = AgfsMount(server.url, work / "cache-wb", work / "mnt-agfs-wb", logs, cleanup,
                   options="writeback_cache")
    wb.start()
    systems["agfs-fuse/writeback"] = System(
        "agfs-fuse/writeback", "fs", root=wb.mp / "local", mount=wb, counted=True, backing=data,
        prefix="/local", note="a second mount, with -o writeback_cache",
    )
    if not args.no_memfs:
        # The memfs copy of the big file, and a scratch directory.
        server.mkdir("/memfs/scratch")
        server.call("PUT", server.file_url("/memfs/big.bin"), fx.block)
        systems["agfs-fuse/memfs"] = System(
            "agfs-fuse/memfs", "fs", root=agfs.mp / "memfs", mount=agfs, counted=True,
            prefix="/memfs",
        )
        systems["curl/memfs"] = System("curl/memfs", "http", prefix="/memfs", counted=True)
    baselines = (
        ("sshfs", args.no_sshfs, setup_sshfs,
         "sshfs defaults over a throwaway sshd on 127.0.0.1 (ed25519 key), same directory."),
        ("rclone", args.no_rclone, setup_rclone,
         "rclone mount (defaults, --vfs-cache-mode off) over rclone serve webdav of the same "
         "directory."),
    )
    for name, left_out, setup, how in baselines:
        if left_out:
            notes.append(f"{name}: left out (--no-{name}).")
            continue
        m = setup(work, data, cleanup, logs)
        if isinstance(m, str):
            notes.append(f"{name}: SKIPPED, {m}")
            log(f"{name} skipped: {m}")
            continue
        m.start()
        systems[name] = System(name, "fs", root=m.mp, mount=m, backing=data)
        notes.append(f"{name}: {how}")
    can_drop = drop_caches()
    notes.append(
        "Cold runs: " + ("page cache dropped (echo 3 > /proc/sys/vm/drop_caches) and the mount "
                         "restarted before each run." if can_drop else
                         "mount restarted before each run; page cache NOT dropped (not root).")
    )
    notes.append(
        "curl: the same bytes straight from the reference server (GET, PUT -T from a local file; "
        f"small files: one curl process, one connection, {args.small_files} PUTs; ls: one GET of "
        "the listing)."
    )
    notes.append("Ratios: baseline time / agfs-fuse time, medians of the same run; >1 means "
                 "agfs-fuse is faster.")

    results: dict[str, Any] = {}
    for w in workloads:
        reps = args.rss_reps if w.reps == "rss_reps" else args.reps
        present = [n for n in w.systems if n in systems]
        res: dict[str, Any] = {"title": w.title, "systems": {n: {"runs": []} for n in present}}
        results[w.name] = res
        t0 = time.monotonic()
        for rep in range(reps):
            for n in present:  # round-robin, so drift hits every system alike
                s = systems[n]
                tag = f"{n.replace('/', '-')}-{rep}"
                run_rec: dict[str, Any] = {}
                try:
                    state = w.prepare(s, ctx, tag)
                    if s.counted:
                        server.reset()
                    run_rec = w.run(s, ctx, tag, state)
                    if s.counted:
                        counts = server.stats()
                        run_rec["requests"] = sum(counts.values())
                        run_rec["data_requests"] = data_requests(counts)
                        run_rec["request_breakdown"] = counts
                    if w.finish:
                        w.finish(s, ctx, tag, state)
                except KeyboardInterrupt:
                    raise
                except Exception as exc:  # one broken system must not end the whole run
                    run_rec = {"error": f"{type(exc).__name__}: {exc}"[:500]}
                    log(f"{w.name} on {n}: {run_rec['error']}")
                    if s.mount is not None and not is_mounted(s.mount.mp):
                        with contextlib.suppress(Exception):
                            s.mount.start()
                res["systems"][n]["runs"].append(run_rec)
        for m in res["systems"].values():
            ok = [r for r in m["runs"] if "seconds" in r and "error" not in r]
            m["errors"] = [r["error"] for r in m["runs"] if "error" in r]
            m["median"] = statistics.median(r["seconds"] for r in ok) if ok else None
            for key in ("requests", "data_requests", "rss_peak_mib", "in_s", "out_s"):
                vals = [r[key] for r in ok if key in r]
                if vals:
                    m[f"{key}_median" if "requests" in key else key] = statistics.median(vals)
        summary = ", ".join(
            f"{n} {fmt_secs(m['median'])}" if m["median"] is not None else f"{n} error"
            for n, m in res["systems"].items()
        )
        log(f"{w.name} ({reps}x, {time.monotonic() - t0:.0f}s): {summary}")

    profiles = {}
    if args.profile:
        profiles = profile_workloads(args.profile.split(","), systems, ctx, results_dir, stamp)

    elapsed = time.monotonic() - started
    report, targets = build_report(results, ctx, systems)
    header = (
        f"agfs-fuse bench {stamp}: {os.cpu_count()} CPUs, reps={args.reps} "
        f"(rss_reps={args.rss_reps}), {args.size_mib} MiB file, {args.small_files} small files "
        f"of {args.small_size} B, {args.ls_entries}-entry dir, {fx.tree_files} files in "
        f"{fx.tree_dirs} dirs, tarball of {fx.tar_files} files ({fx.tar_bytes / MiB:.0f} MiB)"
    )
    text = "\n".join([header, "", report, "", "Notes:", *[f"- {n}" for n in notes],
                      f"- Total run time {elapsed:.0f}s."])
    for w, r in results.items():
        for n, m in r["systems"].items():
            if m["errors"]:
                text += f"\n- {w} on {n}: {len(m['errors'])} failed run(s): {m['errors'][0]}"
    if profiles:
        text += "\n\nProfiles (py-spy, one extra agfs-fuse run, % of non-idle samples):"
        for w, p in profiles.items():
            for who in ("mount", "server"):
                q = p.get(who, {})
                if not q.get("samples"):
                    continue
                layers = ", ".join(f"{k} {v}%" for k, v in q["layers"][:7])
                top = "; ".join(f"{k} {v}%" for k, v in q["self"][:6])
                text += f"\n- {w} [{who}, {q['samples']} samples] layers: {layers}\n    self: {top}"
    print(text)

    out = {
        "stamp": stamp, "elapsed_s": elapsed, "args": vars(args), "versions": tool_versions(),
        "fixtures": {"size": fx.size, "rss_size": fx.rss_size, "small_files": args.small_files,
                     "small_size": args.small_size, "ls_entries": len(fx.ls_names),
                     "tree_files": fx.tree_files, "tree_dirs": fx.tree_dirs,
                     "tar_files": fx.tar_files, "tar_bytes": fx.tar_bytes},
        "max_body": server.max_body, "notes": notes, "results": results, "targets": targets,
        "profiles": profiles, "table": text,
    }
    jpath = results_dir / f"bench-{stamp}.json"
    jpath.write_text(json.dumps(out, indent=1, default=str))
    shutil.copyfile(jpath, results_dir / "latest.json")
    (results_dir / "latest.txt").write_text(text + "\n")
    ppath = results_dir / f"bench-{stamp}.png"
    why = chart(results, ppath, header[:160])
    if why:
        log(why)
    else:
        shutil.copyfile(ppath, results_dir / "latest.png")
    log(f"wrote {jpath}" + ("" if why else f" and {ppath}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
