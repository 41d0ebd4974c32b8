"""`make bench BENCH_ARGS=--wan`: agfs-fuse, sshfs and rclone over an imitated WAN link.

One directory is served three ways (the reference server's localfs for agfs-fuse, a
loopback sshd for sshfs, ``rclone serve webdav`` for ``rclone mount --vfs-cache-mode
writes``), and each client reaches its server through its own :mod:`bench.relay` process
that adds the round trip asked for. Over a real link the number of sequential round trips
decides the speed, and loopback hides it; this bench shows it, per RTT, with the requests
agfs-fuse sent (the reference server's ``--test-hooks`` counter) and the speed ratios
against the baselines from the same run.

    .venv/bin/python -m bench --wan                        # RTT 0, 2 and 10 ms, everything
    .venv/bin/python -m bench --wan --rtt 10 --only tar,small --reps 1
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import http.client
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.relay import EchoServer, echo_rtts
from bench.run import (
    REPO,
    VENV_BIN,
    AgfsMount,
    Cleanup,
    Mount,
    RcloneMount,
    Server,
    SshfsMount,
    ensure_tool,
    log,
    setup_rclone,
    setup_sshfs,
    stop_process,
    tool_versions,
)
from bench.wan_report import ASYNC, COUNTED, chart, link_table, rtt_table
from bench.wan_workloads import WAN_WORKLOADS, RunContext, WanFixtures, build_fixtures

MiB = 1024 * 1024


class RcloneWritesMount(RcloneMount):
    """rclone mount with ``--vfs-cache-mode writes``: what users pick for write speed."""

    name = "rclone-writes"

    def __init__(self, base: RcloneMount, cache_dir: Path) -> None:
        super().__init__(base.webdav_url, base.conf, base.mp, base.logdir, base.cleanup)
        self.cache_dir = cache_dir

    def command(self) -> list[str]:
        return [*super().command(), "--vfs-cache-mode", "writes", "--cache-dir",
                str(self.cache_dir)]


class RelayProcess:
    """A :mod:`bench.relay` in its own process, so the bench's own Python never delays it."""

    def __init__(self, target_port: int, rtt_ms: float, cleanup: Cleanup) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.relay", str(target_port), "--rtt-ms", str(rtt_ms)],
            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, cwd=REPO, start_new_session=True,
        )
        self.cleanup = cleanup
        cleanup.push("relay", self.stop)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode()
        if not line.startswith("listening on "):
            self.stop()
            raise RuntimeError(f"relay did not start: {line!r}")
        self.port = int(line.split()[2])

    def stop(self) -> None:
        self.cleanup.remove(self.stop)
        stop_process(self.proc)


# -- the link, measured ---------------------------------------------------------------------


def http_round_trip(port: int, path: str, count: int = 15) -> float:
    """Median seconds of one small GET on a kept-alive connection (the first one excluded)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    times = []
    try:
        for _ in range(count + 1):
            t0 = time.perf_counter()
            conn.request("GET", path)
            conn.getresponse().read()
            times.append(time.perf_counter() - t0)
    finally:
        conn.close()
    return statistics.median(times[1:])


def curl_mbps(url: str) -> float:
    r = subprocess.run(
        ["curl", "-sS", "--fail", "-o", "/dev/null", "-w", "%{speed_download}", url],
        capture_output=True, check=True,
    )
    return float(r.stdout.decode()) / 1e6


def measure_link(rtt_ms: float, server: Server, server_port: int, relay_port: int,
                 cleanup: Cleanup) -> dict[str, Any]:
    """The RTT really added (a 1-byte echo behind a relay of the same kind; an HTTP round
    trip to the reference server with and without the relay) and curl's GET throughput
    through the relay, so a slow relay would show up instead of passing as a slow client."""
    echo = EchoServer()
    try:
        relay = RelayProcess(echo.port, rtt_ms, cleanup)
        try:
            echo_s = statistics.median(echo_rtts(relay.port, count=15))
        finally:
            relay.stop()
    finally:
        echo.close()
    stat = "/api/v1/stat?path=/local"
    added = http_round_trip(relay_port, stat) - http_round_trip(server_port, stat)
    big = "/api/v1/files?path=/local/big.bin"
    return {
        "echo_rtt_s": echo_s, "http_added_s": added,
        "curl_direct_mbps": curl_mbps(f"http://127.0.0.1:{server_port}{big}"),
        "curl_relay_mbps": curl_mbps(f"http://127.0.0.1:{relay_port}{big}"),
    }


# -- systems ----------------------------------------------------------------------------------


class WanSystem:
    """One client and its server port; ``connect`` mounts it through a relay."""

    def __init__(self, name: str, mount: Mount, server_port: int, root_in_mount: str) -> None:
        self.name, self.mount, self.server_port = name, mount, server_port
        self.root = mount.mp / root_in_mount if root_in_mount else mount.mp

    def point_at(self, port: int) -> None:
        m = self.mount
        if isinstance(m, AgfsMount):
            m.url = f"http://127.0.0.1:{port}/api/v1"
        elif isinstance(m, SshfsMount):
            m.port = port
        elif isinstance(m, RcloneMount):
            m.webdav_url = f"http://127.0.0.1:{port}"


def tree_sizes(top: Path) -> set[tuple[str, int]]:
    out = set()
    for dirpath, _, filenames in os.walk(top):
        for fn in filenames:
            p = Path(dirpath) / fn
            with contextlib.suppress(OSError):
                out.add((str(p.relative_to(top)), p.stat().st_size))
    return out


def settle(system: WanSystem, data: Path, scratch: str, timeout: float = 120) -> None:
    """Wait until background uploads have landed (untimed), so one workload's uploads do
    not slow the next one and agfs-fuse's request count includes them; sshfs and agfs-fuse
    in its default mode are done when ``close`` returns. agfs-fuse's async mode is waited
    for with ``agfs-fuse sync``; rclone's uploads have landed when every file the mount
    shows in the scratch directory is on the server's disk at its size."""
    if system.name == ASYNC:
        done = subprocess.run([str(VENV_BIN / "agfs-fuse"), "sync", str(system.mount.mp)],
                              capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"agfs-fuse sync failed: {done.stderr.strip()[:300]}")
        return
    if system.name != "rclone":
        return
    want = tree_sizes(system.root / scratch)
    deadline = time.monotonic() + timeout
    while not want <= tree_sizes(data / scratch):
        if time.monotonic() > deadline:
            log("rclone still uploading after the wait; going on")
            return
        time.sleep(0.2)


# -- the run ----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    names = ",".join(w.name for w in WAN_WORKLOADS)
    p = argparse.ArgumentParser(prog="python -m bench --wan", description=__doc__.split("\n\n")[0])
    p.add_argument("--wan", action="store_true", help="this bench (the default one without it)")
    p.add_argument("--rtt", default="0,2,10", help="round trips to add, in ms (default 0,2,10)")
    p.add_argument("--only", help=f"comma-separated workloads (default all: {names})")
    p.add_argument("--skip", default="", help="comma-separated workloads to leave out")
    p.add_argument("--reps", type=int, default=3, help="runs per workload and system; median")
    p.add_argument("--no-sshfs", action="store_true", help="leave out the sshfs baseline")
    p.add_argument("--no-rclone", action="store_true", help="leave out the rclone baseline")
    p.add_argument("--async-upload", action="store_true",
                   help="also run agfs-fuse with -o async_upload (close returns before the "
                        "upload), the mode to hold against rclone's writes mode")
    p.add_argument("--tar-files", type=int, default=150, help="files in the source tree (150)")
    p.add_argument("--big-mib", type=int, default=64, help="sequential read/write size (64)")
    p.add_argument("--small-files", type=int, default=200, help="small files created (200)")
    p.add_argument("--small-size", type=int, default=4096, help="bytes per small file (4096)")
    p.add_argument("--ls-small", type=int, default=1000, help="entries of the small ls (1000)")
    p.add_argument("--ls-big", type=int, default=10000, help="entries of the big ls (10000)")
    p.add_argument("--workdir", help="parent of the temporary directory (default $TMPDIR)")
    p.add_argument("--results", default=str(REPO / "bench" / "results"))
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    a = p.parse_args(argv)
    known = {w.name for w in WAN_WORKLOADS}
    a.rtts = [float(x) for x in a.rtt.split(",") if x.strip()]
    only, skip = (a.only or "").split(","), a.skip.split(",")
    a.workloads = [w for w in WAN_WORKLOADS
                   if (not a.only or w.name in only) and w.name not in skip]
    bad = [n for n in [*(a.only or "").split(","), *a.skip.split(",")] if n and n not in known]
    if bad:
        p.error(f"unknown workload(s) {bad}; known: {names}")
    return a


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if ensure_tool("curl", ["curl"]) or ensure_tool("git", ["git"]):
        print("curl and git are needed", file=sys.stderr)
        return 1

    def on_signal(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    cleanup = Cleanup()
    work = Path(tempfile.mkdtemp(prefix="agfs-wan-", dir=args.workdir))
    if not args.keep:
        cleanup.push("temporary directory", lambda: shutil.rmtree(work, ignore_errors=True))
    try:
        return run(args, work, cleanup)
    except KeyboardInterrupt:
        log("interrupted; cleaning up")
        return 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not stop cleanup
        cleanup.run()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        if args.keep:
            log(f"kept {work}")


def scratch_dir(rtt: float) -> str:
    return f"scratch-{rtt:g}ms"


def port_of(url: str) -> int:
    return int(url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])


def setup_systems(args: argparse.Namespace, work: Path, data: Path, server: Server,
                  cleanup: Cleanup, notes: list[str]) -> list[WanSystem]:
    logs = work / "logs"
    agfs = AgfsMount(server.url, work / "cache-agfs", work / "mnt-agfs", logs, cleanup)
    systems = [WanSystem("agfs-fuse", agfs, port_of(server.url), "local")]
    if args.async_upload:
        background = AgfsMount(server.url, work / "cache-agfs-async", work / "mnt-agfs-async",
                               logs, cleanup, options="async_upload")
        systems.append(WanSystem(ASYNC, background, port_of(server.url), "local"))
    if not args.no_sshfs:
        ssh = setup_sshfs(work, data, cleanup, logs)
        if isinstance(ssh, str):
            notes.append(f"sshfs: SKIPPED, {ssh}")
        else:
            systems.append(WanSystem("sshfs", ssh, ssh.port, ""))
    if not args.no_rclone:
        rc = setup_rclone(work, data, cleanup, logs)
        if isinstance(rc, str):
            notes.append(f"rclone: SKIPPED, {rc}")
        else:
            wmount = RcloneWritesMount(rc, work / "rclone-cache")
            systems.append(WanSystem("rclone", wmount, port_of(rc.webdav_url), ""))
    return systems


def run_workload_once(w: Any, s: WanSystem, ctx: RunContext, server: Server, tag: str,
                      data: Path) -> dict[str, Any]:
    counted = s.name in COUNTED
    if w.cold:
        s.mount.remount()
    rec: dict[str, Any]
    try:
        server.reset()
        rec = w.run(s.root, ctx if counted else RunContext(ctx.fx, lambda: None, ctx.scratch),
                    tag)
        settle(s, data, ctx.scratch)
        if counted:
            counts = server.stats()
            rec["requests"] = sum(counts.values())
            rec["request_breakdown"] = counts
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # one broken system must not end the whole run
        rec = {"error": f"{type(exc).__name__}: {exc}"[:500]}
        if not s.mount.proc or s.mount.proc.poll() is not None:
            s.mount.remount()
    return rec


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in runs if "error" not in r]
    out: dict[str, Any] = {"runs": runs, "errors": [r["error"] for r in runs if "error" in r],
                           "complaints": [r["complaint"] for r in runs if "complaint" in r]}
    out["median"] = statistics.median(r["seconds"] for r in ok) if ok else None
    reqs = [r["requests"] for r in ok if "requests" in r]
    if reqs:
        out["requests_median"] = statistics.median(reqs)
    return out


def run(args: argparse.Namespace, work: Path, cleanup: Cleanup) -> int:
    started = time.monotonic()
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    data, local, logs = work / "data", work / "local", work / "logs"
    for d in (data, local, logs):
        d.mkdir()
    log(f"working in {work}")
    fx: WanFixtures = build_fixtures(
        data, local, tar_files=args.tar_files, big_mib=args.big_mib, ls_small=args.ls_small,
        ls_big=args.ls_big, small_files=args.small_files, small_size=args.small_size,
        scratch_dirs=[scratch_dir(rtt) for rtt in args.rtts],
    )
    log(f"fixtures: tree of {fx.tree_files} files in {fx.tree_dirs} dirs, {args.big_mib} MiB")
    server = Server(work, data, 4 * fx.big_size + 64 * MiB, cleanup)
    notes: list[str] = []
    systems = setup_systems(args, work, data, server, cleanup, notes)
    units = {w.name: (w.per, max(1, w.units(fx))) for w in WAN_WORKLOADS}
    results: dict[str, Any] = {}
    links: dict[str, Any] = {}
    for rtt in args.rtts:
        key = f"{rtt:g}"
        log(f"RTT {key} ms: relays and mounts")
        relays = {s.name: RelayProcess(s.server_port, rtt, cleanup) for s in systems}
        links[key] = measure_link(rtt, server, systems[0].server_port,
                                  relays["agfs-fuse"].port, cleanup)
        log(f"RTT {key} ms: echo {links[key]['echo_rtt_s'] * 1000:.1f} ms, curl via relay "
            f"{links[key]['curl_relay_mbps']:.0f} MB/s")
        for s in systems:
            s.point_at(relays[s.name].port)
            s.mount.start()
        res: dict[str, Any] = {}
        results[key] = res
        ctx = RunContext(fx, server.reset, scratch_dir(rtt))
        for w in args.workloads:
            t0 = time.monotonic()
            runs: dict[str, list[dict[str, Any]]] = {s.name: [] for s in systems}
            for rep in range(args.reps):
                for s in systems:  # round-robin, so drift hits every system alike
                    tag = f"{key}-{s.name}-{rep}"
                    runs[s.name].append(run_workload_once(w, s, ctx, server, tag, data))
            res[w.name] = {n: summarize(r) for n, r in runs.items()}
            summary = ", ".join(
                f"{n} {m['median']:.2f}s" if m["median"] is not None else f"{n} error"
                for n, m in res[w.name].items())
            log(f"RTT {key} {w.name} ({time.monotonic() - t0:.0f}s): {summary}")
        for s in systems:
            s.mount.stop()
            if isinstance(s.mount, RcloneWritesMount):  # no cached files into the next round
                shutil.rmtree(s.mount.cache_dir, ignore_errors=True)
        for r in relays.values():
            r.stop()
        shutil.rmtree(data / ctx.scratch, ignore_errors=True)
    return report(args, fx, results, links, units, notes, stamp, started, systems)


def report(args: argparse.Namespace, fx: WanFixtures, results: dict[str, Any],
           links: dict[str, Any], units: dict[str, tuple[str, int]], notes: list[str],
           stamp: str, started: float, systems: list[WanSystem]) -> int:
    elapsed = time.monotonic() - started
    header = (
        f"agfs-fuse WAN bench {stamp}: {os.cpu_count()} CPUs, reps={args.reps} (median), "
        f"source tree of {fx.tree_files} files in {fx.tree_dirs} dirs, {args.big_mib} MiB "
        f"read/write, {fx.small_files} small files of {args.small_size} B, ls of "
        f"{fx.ls_small} and {fx.ls_big} entries"
    )
    lines = [header, "", "The link (one relay per backend, RTT/2 added each way):"]
    lines += link_table(links)
    for key, res in results.items():
        lines += ["", f"RTT {key} ms: median seconds; ratios = baseline time / agfs-fuse time "
                      "(>1: agfs-fuse faster); requests agfs-fuse sent per run:"]
        lines += rtt_table(res, units, [s.name for s in systems])
    for key, res in results.items():
        for wname, per_sys in res.items():
            for n, m in per_sys.items():
                if m["errors"]:
                    notes.append(f"RTT {key} {wname} on {n}: {len(m['errors'])} failed run(s): "
                                 f"{m['errors'][0]}")
                if m["complaints"]:
                    notes.append(f"RTT {key} {wname} on {n} (timed, marked !): "
                                 f"{len(m['complaints'])} run(s) ended with {m['complaints'][0]}")
    notes.append(f"systems: {', '.join(s.name for s in systems)}; rclone mount runs with "
                 "--vfs-cache-mode writes over rclone serve webdav; sshfs with defaults over "
                 "a loopback sshd; cold workloads remount first.")
    notes.append(f"Total run time {elapsed:.0f}s.")
    text = "\n".join([*lines, "", "Notes:", *[f"- {n}" for n in notes]])
    print(text)
    results_dir = Path(args.results)
    results_dir.mkdir(parents=True, exist_ok=True)
    out = {"stamp": stamp, "elapsed_s": elapsed, "args": {k: v for k, v in vars(args).items()
                                                          if k != "workloads"},
           "versions": tool_versions(), "links": links, "results": results, "units": units,
           "notes": notes, "table": text}
    jpath = results_dir / f"wan-{stamp}.json"
    jpath.write_text(json.dumps(out, indent=1, default=str))
    shutil.copyfile(jpath, results_dir / "wan-latest.json")
    (results_dir / "wan-latest.txt").write_text(text + "\n")
    ppath = results_dir / f"wan-{stamp}.png"
    names = [s.name for s in systems]
    why = chart(results, ppath, names, f"{', '.join(names)} (rclone: vfs-cache-mode writes) "
                f"through a delay relay, {stamp}, median of {args.reps}")
    if why:
        log(why)
    else:
        shutil.copyfile(ppath, results_dir / "wan-latest.png")
    log(f"wrote {jpath}" + ("" if why else f" and {ppath}"))
    return 0
