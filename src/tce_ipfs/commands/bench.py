"""`tce-ipfs bench`: measure publish and fetch against their baselines; writes JSON and a PNG.

Scenarios: ``publish`` (vs a bare ``ipfs add -r``), ``fetch-loopback`` (IPFS vs an HTTP mirror, all on
loopback: software overhead only), ``fetch-link`` (a lab that boots at once: for each ``--clients``
N, N machines -- network namespaces on one switched LAN, each running the real boot hook -- fetch the
boot closure from the origin, seed and HTTP mirror behind a ``--link-mbit`` uplink; needs root) and
``boot`` (one QEMU guest per ``--arch`` booted alternately with ``tce=ipfs:`` from a host seed and
``tce=http://`` from a host mirror; medians, ratios and a stacked bar per mode of where the boot spent
its time: ``boot-results.json``, ``boot.png``). The default runs those four (``fetch-link`` only as
root). ``--only routing``: content routing from a home behind NAT on the simulated internet -- DHT
client, delegated HTTP router, both (root; ``routing-results.json``, ``routing.png``).
``--only mirror``: a whole TC mirror tree (``--mirror-extensions``, ``--mirror-mib``): publish vs
a bare ``ipfs add -r``, republish after 1% of the extensions changed, IPNS resolution through a seed.
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

# testbed.bench.SCENARIOS + testbed.bench.boot.SCENARIO (not imported here: building the CLI must stay
# cheap; a test checks they match)
HOST_SCENARIOS = ("publish", "fetch-loopback", "fetch-link", "mirror", "routing")
BOOT = "boot"
SCENARIOS = (*HOST_SCENARIOS, BOOT)
# mirror writes GiBs, routing builds a simulated internet (root): only with --only
DEFAULT = tuple(s for s in SCENARIOS if s not in ("mirror", "routing"))


def _numbers(kind: type[int] | type[float], text: str) -> tuple[Any, ...]:
    """Parse a list like "1,4,8,16" into (1, 4, 8, 16); every value must be positive."""
    try:
        values = tuple(kind(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of numbers: {text!r}") from None
    if not values or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"needs positive numbers: {text!r}")
    return values


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("bench", parents=[common], description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       help="benchmark publish/fetch vs bare add / HTTP mirror")
    p.add_argument("--out", type=Path, default=Path("bench-results"),
                   help="where results.json and bench.png go")
    p.add_argument("--extensions", type=int, default=200, help="extensions in the publish benchmark")
    p.add_argument("--total-mib", type=int, default=500, help="total size of the publish benchmark repo")
    p.add_argument("--fetch-mib", type=int, default=30,
                   help="size of the fetch benchmark repo (its boot closure is a quarter)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--clients", type=lambda t: _numbers(int, t), default=(1, 4, 8, 16), metavar="N[,N...]",
                   help="lab sizes: machines booting at once in fetch-link (fetch-loopback: the largest)")
    p.add_argument("--link-mbit", type=lambda t: _numbers(float, t), default=(100.0, 20.0),
                   metavar="MBIT[,MBIT...]", help="origin uplink caps in fetch-link (tc tbf), Mbit/s")
    p.add_argument("--stock-seed", action="store_true",
                   help="fetch-link also against a stock kubo seed (without the seed build's super-seeding)")
    p.add_argument("--mirror-extensions", type=int, default=3000,
                   help="extensions in the mirror benchmark's tree (2 releases x 2 arches)")
    p.add_argument("--mirror-mib", type=int, default=3072, help="total size of the mirror benchmark's tree")
    p.add_argument("--only", choices=SCENARIOS, action="append",
                   help="run only this scenario (repeatable)")
    p.add_argument("--arch", type=Arch.parse, action="append", dest="arches",
                   help="guest arch of the boot benchmark (repeatable; default x86_64)")
    p.add_argument("--boot-mode", choices=("http", "ipfs", "gateway"), action="append", dest="boot_modes",
                   help="boot benchmark modes (repeatable; default all three: tce=http://, tce=ipfs: "
                        "over bitswap, tce=ipfs: with ipfs.gateway= the seed's trustless gateway)")
    p.add_argument("--memory", type=int, default=512, help="guest RAM in MiB in the boot benchmark")
    p.set_defaults(func=run)


def _link_lines(f: dict[str, Any]) -> list[str]:
    lines = [f"fetch-link ({f['payload_bytes'] / 2**20:.1f} MiB closure, real hook per machine):"]
    for cap, rows in f["summary"].items():
        for n, r in rows.items():
            stock = (f", stock seed {r['ipfs-stock_egress_ratio']:.2f}x"
                     if "ipfs-stock_egress_ratio" in r else "")
            failed = sum(r.get(f"{k}_failed_machines", 0) for k in ("http", "ipfs", "ipfs-stock"))
            lines.append(f"  {cap} Mbit/s, N={n}: all ready IPFS {r['ipfs_wall_s']:.1f} s, "
                         f"HTTP {r['http_wall_s']:.1f} s ({r['time_ratio']:.2f}x); origin egress / payload "
                         f"IPFS {r['ipfs_egress_ratio']:.2f}x{stock}, HTTP {r['http_egress_ratio']:.2f}x"
                         + (f"; {failed} machine(s) did not load the closure (see results.json)"
                            if failed else ""))
    return lines


def _mirror_lines(m: dict[str, Any]) -> list[str]:
    ipns = m["ipns"]
    return [f"mirror ({m['extensions']} extensions, {m['files']} files, {m['bytes'] / 2**30:.2f} GiB):",
            f"  publish / bare add -r: {m['publish_ratio_median']:.2f}x (target <= 1.1x)",
            f"  republish after {m['changed_extensions']} changed: {m['republish_s'][0]:.1f} s = "
            f"{100 * m['republish_fraction']:.1f}% of a full publish (target <= 5%)",
            f"  ipns through a seed ({ipns['where']}): kubo start to resolved CID "
            f"{ipns['start_to_resolved_median_s']:.2f} s median (target <= 1 s)"]


def _fetch_lines(f: dict[str, Any]) -> list[str]:
    s, c, n = f["single"], f["concurrent"], f["clients"]
    where = f"{f['link_mbit']:g} Mbit/s origin link" if "link_mbit" in f else "loopback"
    wire = (f" (wire: IPFS {c['ipfs_wire_ratio']:.2f}, HTTP {c['http_wire_ratio']:.2f})"
            if "ipfs_wire_ratio" in c else "")
    return [f"{f['scenario']} ({where}, {f['payload_bytes'] / 2**20:.1f} MiB closure):",
            f"  IPFS/HTTP time: 1 client {s['time_ratio']:.2f}x, {n} clients {c['time_ratio']:.2f}x",
            f"  origin egress / payload, {n} clients: IPFS {c['ipfs_egress_ratio']:.2f}, "
            f"HTTP {c['http_egress_ratio']:.2f}{wire}"]


def _routing_lines(r: dict[str, Any]) -> list[str]:
    lines = [f"routing (simulated internet, median of {r['repeats']}; s from kubo start):"]
    for ms, one in r["delays"].items():
        s = one["summary"]
        for mode in ("dht", "delegated", "both"):
            m = s.get(mode)
            if m:
                lines.append(f"  +{ms} ms {mode}: provider {m.get('t_provider_s')} s, first block "
                             f"{m.get('t_first_byte_s')} s, file {m.get('t_file_s')} s; "
                             f"CPU {m.get('cpu_s')} s, "
                             f"peak RSS {m.get('peak_rss_mib')} MiB, {m.get('new_flows')} new flows"
                             + (f"; {m['failed']} failed" if m.get("failed") else ""))
        lines.append(f"  +{ms} ms HTTP mirror: file {s.get('http_file_s')} s")
    return lines


def _x(ratio: float | None) -> str:
    return "n/a" if ratio is None else f"{ratio:.2f}x"


def _boot_lines(boot: dict[str, Any]) -> list[str]:
    lines = []
    for arch, data in boot["arches"].items():
        med = data["median"]
        for mode, key in (("ipfs", "ratio"), ("gateway", "ratio_gateway")):
            r = data.get(key) or {}
            if mode not in med or "http" not in med or not r:
                continue
            lines.append(f"boot {arch} {mode} ({data['extensions']} extensions, "
                         f"median of {data['repeats']}): "
                         f"wall {med[mode]['wall_s']:.1f} s / HTTP {med['http']['wall_s']:.1f} s = "
                         f"{_x(r['wall'])} (QEMU CPU {_x(r['cpu'])}); hook {_x(r['hook'])}; "
                         f"kubo start -> first byte {med[mode]['first_byte_s']} s")
    return lines


def run(args: argparse.Namespace) -> int:
    from tce_ipfs.cli import emit

    if args.repeats < 1 or args.fetch_mib < 1 or args.memory < 64 or args.mirror_extensions < 4 \
            or args.mirror_mib < 1:
        raise UsageError("--repeats, --fetch-mib and --mirror-mib must be positive, --memory at least 64, "
                         "--mirror-extensions at least 4")
    scenarios = tuple(args.only or DEFAULT)
    if not args.only and os.geteuid() != 0:
        log.warning("not root: skipping fetch-link (it needs network namespaces)")
        scenarios = tuple(s for s in scenarios if s != "fetch-link")
    lines: list[str] = []
    data: dict[str, Any] = {}
    host = tuple(s for s in scenarios if s in HOST_SCENARIOS)
    if host:
        from tce_ipfs.build import kubo
        from tce_ipfs.testbed import bench

        cfg = bench.BenchConfig(extensions=args.extensions, total_mib=args.total_mib, repeats=args.repeats,
                                clients=args.clients, fetch_mib=args.fetch_mib, link_mbit=args.link_mbit,
                                stock_seed=args.stock_seed, mirror_extensions=args.mirror_extensions,
                                mirror_mib=args.mirror_mib, out=args.out)
        results = bench.run(kubo.ensure(Arch.host()), cfg, host)
        if results.publish:
            lines.append(f"publish / bare add: {results.publish['ratio_median']:.2f}x")
        if results.fetch_loopback:
            lines += _fetch_lines(results.fetch_loopback)
        if results.fetch_link:
            lines += _link_lines(results.fetch_link)
        if results.mirror:
            lines += _mirror_lines(results.mirror)
        if results.routing:
            lines += _routing_lines(results.routing)
        plots = [p for p in ("bench.png", "fetch-link.png", "routing.png") if (args.out / p).exists()]
        lines.append(f"results: {args.out / 'results.json'}, plots: "
                     + ", ".join(str(args.out / p) for p in plots))
        data.update(publish=results.publish, fetch_loopback=results.fetch_loopback,
                    fetch_link=results.fetch_link, mirror=results.mirror, routing=results.routing)
    if BOOT in scenarios:
        from tce_ipfs.testbed.bench import boot

        boot_cfg = boot.BootBenchConfig(arches=tuple(args.arches or (Arch.X86_64,)), repeats=args.repeats,
                                        memory=args.memory, out=args.out,
                                        modes=tuple(args.boot_modes or boot.MODES))
        data["boot"] = boot.run(boot_cfg)
        lines += _boot_lines(data["boot"])
        lines.append(f"results: {args.out / 'boot-results.json'}, plot: {args.out / 'boot.png'}")
    emit(args, data, "\n".join(lines))
    return 0
