"""The WAN bench's text tables and chart, from the results dictionary ``bench.wan`` builds.

Kept apart from the runner so the layout can change without touching what is measured.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.run import fmt_secs, load_matplotlib, table
from bench.wan_workloads import WAN_WORKLOADS

ASYNC = "agfs-fuse async"
"""agfs-fuse with ``-o async_upload``: ``close`` returns before the upload, as in rclone's
writes mode, so it is compared with rclone."""
SYSTEMS = ("agfs-fuse", ASYNC, "sshfs", "rclone")
"""Every system the bench knows, in table and chart order; a run may have fewer."""
COUNTED = ("agfs-fuse", ASYNC)
"""The systems whose requests the reference server counts."""
COLORS = {"agfs-fuse": "#d62728", ASYNC: "#ff7f0e", "sshfs": "#2ca02c", "rclone": "#9467bd"}


def ms(x: float | None) -> str:
    return "-" if x is None else f"{x * 1000:.1f} ms"


def link_table(links: dict[str, Any]) -> list[str]:
    """Per RTT: what the relay really added, and that it does not cap bandwidth."""
    rows = []
    for rtt, link in links.items():
        rows.append([
            f"{rtt} ms", ms(link.get("echo_rtt_s")), ms(link.get("http_added_s")),
            f"{link['curl_direct_mbps']:.0f} MB/s" if "curl_direct_mbps" in link else "-",
            f"{link['curl_relay_mbps']:.0f} MB/s" if "curl_relay_mbps" in link else "-",
        ])
    head = ["RTT asked", "1-byte echo through a relay (median)",
            "HTTP round trip added (relay - direct)", "curl GET direct", "curl GET via relay"]
    return table(head, rows)


def rtt_table(res: dict[str, Any], fx_units: dict[str, tuple[str, int]],
              present: list[str]) -> list[str]:
    """One RTT: seconds per system, agfs-fuse's speed ratios (its default mode against
    sshfs and rclone, its async mode against rclone) and its requests per unit."""
    systems = [n for n in SYSTEMS if n in present]
    rows = []
    for w in WAN_WORKLOADS:
        r = res.get(w.name)
        if not r:
            continue
        med = {n: (r.get(n) or {}).get("median") for n in systems}

        def cell(n: str, r: dict[str, Any] = r, med: dict[str, Any] = med) -> str:
            m = r.get(n)
            if not m:
                return "-"
            if med[n] is None:
                return "error"
            return fmt_secs(med[n]) + (" !" if m.get("errors") or m.get("complaints") else "")

        def ratio(ours: str, base: str, med: dict[str, Any] = med) -> str:
            a, b = med.get(ours), med.get(base)
            return f"{b / a:.2f}x" if a and b else "-"

        def requests(n: str, r: dict[str, Any] = r, name: str = w.name) -> str:
            req = (r.get(n) or {}).get("requests_median")
            per, units = fx_units[name]
            return "-" if req is None else f"{req:g} ({req / units:.2f}/{per})"

        rows.append([
            w.title, *(cell(n) for n in systems),
            *(ratio(ours, base) for ours, base in _ratios(systems)),
            *(requests(n) for n in systems if n in COUNTED),
        ])
    head = [
        "workload", *systems, *(f"{ours} vs {base}" for ours, base in _ratios(systems)),
        *(f"{n} requests" for n in systems if n in COUNTED),
    ]
    return table(head, rows)


def _ratios(systems: list[str]) -> list[tuple[str, str]]:
    """Which ratios a table shows: the default mode against both baselines, the async mode
    against rclone (whose close also returns before the upload)."""
    pairs = [("agfs-fuse", "sshfs"), ("agfs-fuse", "rclone"), (ASYNC, "rclone")]
    return [(ours, base) for ours, base in pairs if ours in systems and base in systems]


def chart(results: dict[str, Any], path: Path, present: list[str], title: str) -> str | None:
    """Seconds per workload, one panel each, bars grouped by RTT and coloured by system."""
    plt = load_matplotlib()
    if plt is None:
        return "matplotlib is not installed (pip install -e '.[bench]'); no chart"
    rtts = list(results)
    names = [w for w in WAN_WORKLOADS if any(results[r].get(w.name) for r in rtts)]
    if not names:
        return "nothing measured; no chart"
    cols = 4
    rows = (len(names) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.8 * rows), squeeze=False)
    flat = list(axes.flat)
    systems = [n for n in SYSTEMS if n in present]
    width = 0.8 / len(systems)
    for ax, w in zip(flat, names, strict=False):
        for i, n in enumerate(systems):
            vals = [((results[r].get(w.name) or {}).get(n) or {}).get("median") or 0 for r in rtts]
            xs = [k + (i - (len(systems) - 1) / 2) * width for k in range(len(rtts))]
            ax.bar(xs, vals, width, color=COLORS[n], label=n)
        ax.set_xticks(range(len(rtts)), [f"{r} ms" for r in rtts])
        ax.set_title(f"{w.title} (s)", fontsize=9)
        ax.tick_params(labelsize=8)
    flat[0].legend(fontsize=7)
    for ax in flat[len(names):]:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None
