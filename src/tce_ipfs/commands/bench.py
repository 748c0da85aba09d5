"""`tce-ipfs bench`: measure publish and fetch against their baselines; writes JSON and a PNG."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from tce_ipfs.arch import Arch


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("bench", parents=[common], description=__doc__,
                       help="benchmark publish/fetch vs bare add / HTTP mirror")
    p.add_argument("--out", type=Path, default=Path("bench-results"),
                   help="where results.json and bench.png go")
    p.add_argument("--extensions", type=int, default=200, help="extensions in the publish benchmark")
    p.add_argument("--total-mib", type=int, default=500, help="total size of the publish benchmark repo")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--clients", type=int, default=3, help="concurrent fetchers in the egress benchmark")
    p.add_argument("--only", choices=["publish", "fetch"], action="append",
                   help="run only this scenario (repeatable)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tce_ipfs import bench, kubo
    from tce_ipfs.cli import emit

    cfg = bench.BenchConfig(extensions=args.extensions, total_mib=args.total_mib, repeats=args.repeats,
                            clients=args.clients, out=args.out)
    results = bench.run(kubo.ensure(Arch.host()), cfg, tuple(args.only or ("publish", "fetch")))
    lines = []
    if results.publish:
        lines.append(f"publish / bare add:      {results.publish['ratio_median']:.2f}x")
    if results.fetch:
        lines.append(f"IPFS fetch / HTTP fetch: {results.fetch['ratio_median']:.2f}x")
    if results.egress:
        e = results.egress
        lines.append(f"origin egress ratio ({e['clients']} clients): IPFS {e['ipfs_egress_ratio']:.2f}, "
                     f"HTTP {e['http_egress_ratio']:.2f}")
    lines.append(f"results: {args.out / 'results.json'}, plot: {args.out / 'bench.png'}")
    emit(args, {"publish": results.publish, "fetch": results.fetch, "egress": results.egress},
         "\n".join(lines))
    return 0
