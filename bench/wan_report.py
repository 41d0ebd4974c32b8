"""The WAN bench's text tables and chart, from the results dictionary ``bench.wan`` builds.

Kept apart from the runner so the layout can change without touching what is measured.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.run import fmt_secs, load_matplotlib, table
from bench.wan_workloads import WAN_WORKLOADS

SYSTEMS = ("agfs-fuse", "sshfs", "rclone")
COLORS = {"agfs-fuse": "#d62728", "sshfs": "#2ca02c", "rclone": "#9467bd"}


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


def rtt_table(res: dict[str, Any], fx_units: dict[str, tuple[str, int]]) -> list[str]:
    """One RTT: seconds per system, agfs-fuse's speed ratios and its requests per unit."""
    rows = []
    for w in WAN_WORKLOADS:
        r = res.get(w.name)
        if not r:
            continue
        med = {n: (r.get(n) or {}).get("median") for n in SYSTEMS}
        a = med["agfs-fuse"]

        def cell(n: str, r: dict[str, Any] = r, med: dict[str, Any] = med) -> str:
            m = r.get(n)
            if not m:
                return "-"
            if med[n] is None:
                return "error"
            return fmt_secs(med[n]) + (" !" if m.get("errors") or m.get("complaints") else "")

        def ratio(n: str, a: float | None = a, med: dict[str, Any] = med) -> str:
            b = med[n]
            return f"{b / a:.2f}x" if a and b else "-"

        req = (r.get("agfs-fuse") or {}).get("requests_median")
        per, units = fx_units[w.name]
        rows.append([
            w.title, cell("agfs-fuse"), cell("sshfs"), cell("rclone"), ratio("sshfs"),
            ratio("rclone"), "-" if req is None else f"{req:g}",
            "-" if req is None else f"{req / units:.2f}/{per}",
        ])
    head = ["workload", "agfs-fuse", "sshfs", "rclone writes", "vs sshfs", "vs rclone",
            "agfs-fuse requests", "per unit"]
    return table(head, rows)


def chart(results: dict[str, Any], path: Path, title: str) -> str | None:
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
    width = 0.8 / len(SYSTEMS)
    for ax, w in zip(flat, names, strict=False):
        for i, n in enumerate(SYSTEMS):
            vals = [((results[r].get(w.name) or {}).get(n) or {}).get("median") or 0 for r in rtts]
            xs = [k + (i - 1) * width for k in range(len(rtts))]
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
