"""`tce-ipfs bench`: measure publish and fetch against their baselines; writes JSON and a PNG.

Scenarios: ``publish`` (vs a bare ``ipfs add -r``), ``fetch-loopback`` (IPFS vs an HTTP mirror, all on
loopback: software overhead only) and ``fetch-link`` (the origin -- seed and mirror -- behind a
``--link-mbit`` uplink in a private network namespace, ``--clients`` fetchers on an uncapped LAN
behind it; needs root). The default runs all three (``fetch-link`` only as root).
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Any

from tce_ipfs.arch import Arch
from tce_ipfs.errors import UsageError

log = logging.getLogger(__name__)

# testbed.bench.SCENARIOS (not imported here: building the CLI must stay cheap; a test checks they match)
SCENARIOS = ("publish", "fetch-loopback", "fetch-link")


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("bench", parents=[common], description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       help="benchmark publish/fetch vs bare add / HTTP mirror")
    p.add_argument("--out", type=Path, default=Path("bench-results"),
                   help="where results.json and bench.png go")
    p.add_argument("--extensions", type=int, default=200, help="extensions in the publish benchmark")
    p.add_argument("--total-mib", type=int, default=500, help="total size of the publish benchmark repo")
    p.add_argument("--fetch-mib", type=int, default=100,
                   help="size of the fetch benchmark repo (its boot closure is about a quarter)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--clients", type=int, default=3, help="concurrent fetchers in the fetch benchmarks")
    p.add_argument("--link-mbit", type=float, default=100.0,
                   help="origin uplink rate in the fetch-link benchmark (tc tbf), Mbit/s")
    p.add_argument("--only", choices=SCENARIOS, action="append",
                   help="run only this scenario (repeatable)")
    p.set_defaults(func=run)


def _fetch_lines(f: dict[str, Any]) -> list[str]:
    s, c, n = f["single"], f["concurrent"], f["clients"]
    where = f"{f['link_mbit']:g} Mbit/s origin link" if "link_mbit" in f else "loopback"
    wire = (f" (wire: IPFS {c['ipfs_wire_ratio']:.2f}, HTTP {c['http_wire_ratio']:.2f})"
            if "ipfs_wire_ratio" in c else "")
    return [f"{f['scenario']} ({where}, {f['payload_bytes'] / 2**20:.1f} MiB closure):",
            f"  IPFS/HTTP time: 1 client {s['time_ratio']:.2f}x, {n} clients {c['time_ratio']:.2f}x",
            f"  origin egress / payload, {n} clients: IPFS {c['ipfs_egress_ratio']:.2f}, "
            f"HTTP {c['http_egress_ratio']:.2f}{wire}"]


def run(args: argparse.Namespace) -> int:
    from tce_ipfs.build import kubo
    from tce_ipfs.cli import emit
    from tce_ipfs.testbed import bench

    if args.clients < 1 or args.repeats < 1 or args.link_mbit <= 0 or args.fetch_mib < 1:
        raise UsageError("--clients, --repeats, --fetch-mib and --link-mbit must be positive")
    scenarios = tuple(args.only or SCENARIOS)
    if not args.only and os.geteuid() != 0:
        log.warning("not root: skipping fetch-link (it needs network namespaces)")
        scenarios = tuple(s for s in scenarios if s != "fetch-link")
    cfg = bench.BenchConfig(extensions=args.extensions, total_mib=args.total_mib, repeats=args.repeats,
                            clients=args.clients, fetch_mib=args.fetch_mib, link_mbit=args.link_mbit,
                            out=args.out)
    results = bench.run(kubo.ensure(Arch.host()), cfg, scenarios)
    lines = []
    if results.publish:
        lines.append(f"publish / bare add: {results.publish['ratio_median']:.2f}x")
    for f in (results.fetch_loopback, results.fetch_link):
        if f:
            lines += _fetch_lines(f)
    lines.append(f"results: {args.out / 'results.json'}, plot: {args.out / 'bench.png'}")
    emit(args, {"publish": results.publish, "fetch_loopback": results.fetch_loopback,
                "fetch_link": results.fetch_link}, "\n".join(lines))
    return 0
