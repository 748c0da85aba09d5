"""``bench.png``: every IPFS figure beside its baseline (grey, on the left), one column per scenario."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tce_ipfs.testbed.bench.scenarios import BenchResults

BASELINE_COLOUR, IPFS_COLOUR = "#999999", "#2a7ab9"


def _panel(ax: Any, labels: tuple[str, str], values: tuple[float, float], title: str, ylabel: str) -> None:
    """One baseline-vs-IPFS bar pair: the baseline always grey and on the left."""
    ax.bar(list(labels), list(values), color=[BASELINE_COLOUR, IPFS_COLOUR])
    ax.set_title(title)
    ax.set_ylabel(ylabel)


def _grouped_panel(ax: Any, groups: Sequence[str], http: Sequence[float], ipfs: Sequence[float],
                   title: str, ylabel: str) -> None:
    """Baseline-vs-IPFS bar pairs side by side, one pair per group (baseline grey, on the left)."""
    width = 0.38
    xs = range(len(groups))
    ax.bar([x - width / 2 for x in xs], list(http), width, color=BASELINE_COLOUR, label="HTTP mirror")
    ax.bar([x + width / 2 for x in xs], list(ipfs), width, color=IPFS_COLOUR, label="IPFS seed")
    ax.set_xticks(list(xs), list(groups))
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize="small")


def _fetch_panels(ax_time: Any, ax_egress: Any, f: dict[str, Any]) -> None:
    median = statistics.median
    s, c, n = f["single"], f["concurrent"], f["clients"]
    s_http = s.get("http_s") or s["http_wall_s"]
    s_ipfs = s.get("ipfs_s") or s["ipfs_wall_s"]
    where = (f"origin behind {f['link_mbit']:g} Mbit/s" if f["scenario"] == "fetch-link"
             else "all on loopback")
    groups = ("1 client", f"{n} clients")
    _grouped_panel(ax_time, groups, (median(s_http), median(c["http_wall_s"])),
                   (median(s_ipfs), median(c["ipfs_wall_s"])),
                   f"{f['scenario']}: {f['payload_bytes'] / 2**20:.0f} MiB closure, {where}\n"
                   f"IPFS/HTTP time: 1 client {s['time_ratio']:.2f}x, {n} clients {c['time_ratio']:.2f}x",
                   "wall seconds (median)")
    egress_groups = [f"{n} clients (app)"]
    http_e, ipfs_e = [c["http_egress_ratio"]], [c["ipfs_egress_ratio"]]
    if "http_wire_ratio" in c:
        egress_groups.append(f"{n} clients (wire)")
        http_e.append(c["http_wire_ratio"])
        ipfs_e.append(c["ipfs_wire_ratio"])
    _grouped_panel(ax_egress, egress_groups, http_e, ipfs_e,
                   f"{f['scenario']}: origin bytes sent / payload", "origin egress / payload")


def plot(results: BenchResults, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    if results.fetch_link:
        paths.append(plot_fetch_link(results.fetch_link, out / "fetch-link.png"))
    columns = [name for name, data in (("publish", results.publish),
                                       ("fetch-loopback", results.fetch_loopback)) if data]
    if not columns:
        return paths
    fig, axes = plt.subplots(2, max(len(columns), 1), figsize=(6 * max(len(columns), 1), 8),
                             squeeze=False)
    median = statistics.median
    for col, name in enumerate(columns):
        top, bottom = axes[0][col], axes[1][col]
        if name == "publish":
            p = results.publish
            _panel(top, ("bare ipfs add -r", "tce-ipfs publish"),
                   (median(p["bare_add_s"]), median(p["publish_s"])),
                   f"publish {p['extensions']} ext, {p['bytes'] / 2**20:.0f} MiB\n"
                   f"ratio {p['ratio_median']:.2f}x", "seconds (median)")
            bottom.axis("off")
        else:
            _fetch_panels(top, bottom, results.fetch_loopback)
    fig.tight_layout()
    path = out / "bench.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return [path, *paths]


# ---------------------------------------------------------------------- fetch-link.png
STOCK_COLOUR = "#e0a030"
LABELS = {"http": "HTTP mirror", "ipfs": "IPFS, polite seed", "ipfs-stock": "IPFS, stock kubo seed"}
COLOURS = {"http": BASELINE_COLOUR, "ipfs": IPFS_COLOUR, "ipfs-stock": STOCK_COLOUR}


def plot_fetch_link(result: dict[str, Any], path: Path) -> Path:
    """Origin egress / payload and time until all are ready, against N, one column per origin cap."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tce_ipfs.testbed.bench.lab import KINDS

    caps = result["caps_mbit"]
    fig, axes = plt.subplots(2, len(caps), figsize=(6 * len(caps), 8), squeeze=False)
    mib = result["payload_bytes"] / 2**20
    for col, cap in enumerate(caps):
        rows = result["summary"][f"{cap:g}"]
        ns = sorted(int(n) for n in rows)
        for kind in KINDS:
            pts = [(n, rows[str(n)].get(f"{kind}_egress_ratio"), rows[str(n)].get(f"{kind}_wall_s"))
                   for n in ns]
            pts = [p for p in pts if p[1] is not None]
            if not pts:
                continue
            style = {"color": COLOURS[kind], "marker": "o", "label": LABELS[kind]}
            axes[0][col].plot([p[0] for p in pts], [p[1] for p in pts], **style)
            axes[1][col].plot([p[0] for p in pts], [p[2] for p in pts], **style)
        for row, (title, ylabel) in enumerate((("origin bytes sent / payload", "origin egress / payload"),
                                               ("time until all machines are ready", "seconds (median)"))):
            ax = axes[row][col]
            ax.set_title(f"fetch-link, origin capped at {cap:g} Mbit/s: {title}\n"
                         f"{mib:.1f} MiB boot closure, real hook per machine, {result['cpus']} host cores",
                         fontsize="medium")
            ax.set_xlabel("machines booting at once (N)")
            ax.set_ylabel(ylabel)
            ax.set_xticks(ns)
            ax.grid(alpha=0.3)
            ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
