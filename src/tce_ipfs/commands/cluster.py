"""`tce-ipfs cluster build|init|start|stop|status`: several seeds as one IPFS Cluster."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tce_ipfs.arch import Arch
from tce_ipfs.cli import emit
from tce_ipfs.commands import action_group
from tce_ipfs.errors import UsageError
from tce_ipfs.log import human
from tce_ipfs.settings import CLUSTER_VERSION

if TYPE_CHECKING:
    from tce_ipfs.ipfs.cluster import ClusterSeed
    from tce_ipfs.ipfs.clusterconfig import ClusterOptions

log = logging.getLogger(__name__)

SYSTEM_STATE = Path("/var/lib/tce-ipfs/cluster-seed")

EPILOG = f"""\
Each seed machine runs one cluster seed: an isolated kubo (as `tce-ipfs seed serve`: no bootstrap,
no DHT, the named private addresses only) and an ipfs-cluster-service peer beside it (IPFS Cluster
{CLUSTER_VERSION}, CRDT consensus). A root published through any seed is pinned on every seed (or on
--replication N of them) and followed by every republish; a seed that joins later pins the current
roots by itself. Machines boot with every seed in ipfs.peers=, so they boot while any seed is up.

The first seed makes the cluster secret (STATE/secret, mode 0600). Another seed joins with ONE
command: copy that file (and STATE/repo/swarm.key for a private lab swarm) to it, then
  tce-ipfs cluster start --listen ADDR --join <first seed's cluster address> --secret FILE

Isolation: the cluster peer listens on the --listen addresses (TCP --port) and nowhere else, is a
private libp2p network (the secret), announces no public address, has no mDNS (unless --mdns), no
relays, NAT port mapping or hole punching (patched out of the binary, which also refuses any peer
address outside 10/8, 172.16/12, 192.168/16, 169.254/16, 127/8), no tracing or metrics exporter.
Its REST API is the unix socket STATE/rest.sock (and 127.0.0.1:--rest-port), its IPFS proxy
STATE/proxy.sock; the Pinning Service API is off.

examples:
  tce-ipfs cluster build                                       build ipfs-cluster (cached)
  tce-ipfs cluster start --listen eth1                         the first seed
  tce-ipfs cluster start --listen 192.168.1.11 --join /ip4/192.168.1.10/tcp/9096/p2p/12D3KooW... \\
      --secret ./secret                                        a second seed joins
  tce-ipfs publish /srv/tce --cluster /var/lib/tce-ipfs/cluster-seed --keep 2
  tce-ipfs cluster status                                      seeds, roots, pinned where
  tce-ipfs netboot --from-cluster /var/lib/tce-ipfs/cluster-seed -o /srv/tftp
"""


def default_state() -> Path:
    """``/var/lib/tce-ipfs/cluster-seed`` for root (a system service), else ``STATE_DIR/cluster-seed``."""
    if os.geteuid() == 0 and not os.environ.get("TCE_IPFS_STATE"):
        return SYSTEM_STATE
    from tce_ipfs import settings

    return settings.state_dir() / "cluster-seed"


def _state_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--state", type=Path, metavar="DIR",
                   help=f"the seed's state directory (default: {SYSTEM_STATE} for root, else "
                        "STATE_DIR/cluster-seed)")


def _seed_options(p: argparse.ArgumentParser, *, required: bool) -> None:
    from tce_ipfs.ipfs.clusterconfig import CLUSTER_PORT, REST_PORT

    p.add_argument("--listen", action="append", default=[], metavar="ADDR|IFACE", required=required,
                   help="private IPv4 address or interface of this seed (repeatable)"
                        + ("" if required else "; needed the first time (init)"))
    p.add_argument("--join", action="append", default=[], metavar="ADDR",
                   help="an existing seed's cluster address /ip4/.../tcp/9096/p2p/<id> (repeatable)")
    p.add_argument("--secret", metavar="FILE", help="file with the cluster secret (the first seed's "
                   "STATE/secret; '-' reads stdin; default $CLUSTER_SECRET, else a new one)")
    p.add_argument("--name", help="this seed's name in the cluster (default: <hostname>-<address>)")
    p.add_argument("--port", type=int, default=CLUSTER_PORT, metavar="N",
                   help=f"cluster TCP port (default {CLUSTER_PORT})")
    p.add_argument("--ipfs-port", type=int, default=4001, metavar="N",
                   help="the seed's kubo swarm port (default 4001: what ipfs.peers= names)")
    p.add_argument("--api-port", type=int, default=5001, metavar="N",
                   help="kubo RPC API port on 127.0.0.1 (default 5001; 0 = any; also STATE/api.sock)")
    p.add_argument("--rest-port", type=int, default=REST_PORT, metavar="N",
                   help=f"cluster REST API port on 127.0.0.1 (default {REST_PORT}; 0 = the unix socket "
                        "STATE/rest.sock only)")
    p.add_argument("--private", action="store_true",
                   help="private kubo swarm: make a swarm key (once; kept in STATE/repo/swarm.key)")
    p.add_argument("--swarm-key", metavar="HEX|FILE",
                   help="private kubo swarm with this key (the first seed's STATE/repo/swarm.key)")
    p.add_argument("--mdns", action="store_true",
                   help="LAN discovery (mDNS) for kubo and cluster: a private lab LAN only")
    p.add_argument("--kubo", type=Path, metavar="PATH", help="kubo `ipfs` (default: this host's build)")
    p.add_argument("--service", type=Path, metavar="PATH",
                   help="ipfs-cluster-service (default: `tce-ipfs cluster build`'s)")


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    actions = action_group(sub, common, "cluster", help="several seeds as one IPFS Cluster",
                           description="Seeds as an IPFS Cluster: every root pinned on every seed.",
                           epilog=EPILOG)
    b = actions.add_parser("build", parents=[common], formatter_class=fmt, epilog=EPILOG,
                           help="build (or reuse) ipfs-cluster-service and ipfs-cluster-ctl",
                           description="Build IPFS Cluster from the Go module proxy: static, isolated, "
                                       "cached.")
    b.add_argument("--arch", metavar="ARCH", help="target arch (default: this machine's)")
    b.add_argument("--version", dest="cluster_version", default=CLUSTER_VERSION, metavar="vX.Y.Z",
                   help=f"ipfs-cluster release (default {CLUSTER_VERSION}; the proxy also serves v1.0.8)")
    b.add_argument("--rebuild", action="store_true", help="build even if cached")
    b.set_defaults(func=cmd_build)

    for name, func, text, required in (
        ("init", cmd_init, "make (or re-configure) this machine's cluster seed", True),
        ("start", cmd_start, "start the seed (kubo + cluster peer; initialises it the first time)", False),
    ):
        p = actions.add_parser(name, parents=[common], formatter_class=fmt, epilog=EPILOG, help=text,
                               description=text[0].upper() + text[1:] + ".")
        _state_arg(p)
        _seed_options(p, required=required)
        if name == "start":
            p.add_argument("--timeout", type=float, default=120.0, metavar="S",
                           help="seconds to wait for the seed to be up and joined (default 120)")
        p.set_defaults(func=func)

    p = actions.add_parser("bench", parents=[common], formatter_class=fmt,
                           help="(root) measure replication to N seeds on a lab LAN vs HTTP mirrors",
                           description="Benchmark: a repo published through one of N cluster seeds in a "
                                       "private lab namespace, time to pinned on all, vs N-1 HTTP mirrors "
                                       "syncing it; RSS of the seeds. Writes cluster-results.json and "
                                       "cluster.png.")
    p.add_argument("--out", type=Path, default=Path("bench-results"), help="where the results go")
    p.add_argument("--seeds", type=int, default=3, help="cluster seeds (default 3)")
    p.add_argument("--total-mib", type=int, default=500, help="repo size (default 500 MiB)")
    p.add_argument("--extensions", type=int, default=200, help="extensions in the repo (default 200)")
    p.set_defaults(func=cmd_bench)

    p = actions.add_parser("stop", parents=[common], help="stop the seed (cluster peer, then kubo)",
                           description="Stop this machine's cluster seed.")
    _state_arg(p)
    p.set_defaults(func=cmd_stop)

    p = actions.add_parser("status", parents=[common], formatter_class=fmt, epilog=EPILOG,
                           help="the seeds, and per seed which roots are pinned and complete",
                           description="This seed, the cluster's seeds, and every root's status on each.")
    _state_arg(p)
    p.add_argument("--cluster", metavar="API", help="ask this REST API instead (no local state needed)")
    p.set_defaults(func=cmd_status)


# -------------------------------------------------------------------------------------- handlers
def cmd_build(args: argparse.Namespace) -> int:
    from tce_ipfs.build import cluster

    arch = Arch.parse(args.arch) if args.arch else Arch.host()
    built = cluster.ensure(arch, args.cluster_version, rebuild=args.rebuild)
    progs = built.raw["programs"]
    text = "\n".join(f"{path}\n  {name} {built.version} for {arch}: {human(progs[name]['size'])} "
                     f"({progs[name]['size']} bytes), sha256 {progs[name]['sha256']}"
                     for name, path in ((cluster.SERVICE, built.service), (cluster.CTL, built.ctl)))
    emit(args, built.as_dict(), text)
    return 0


def _read_secret(value: str | None) -> str | None:
    from tce_ipfs.ipfs.clusterconfig import check_secret

    if value == "-":
        return check_secret(sys.stdin.readline())
    if value:
        try:
            return check_secret(Path(value).read_text())
        except FileNotFoundError:
            raise UsageError(f"--secret {value}: no such file",
                             hint="copy the first seed's STATE/secret here (never put it on a command "
                                  "line)") from None
    env = os.environ.get("CLUSTER_SECRET")
    return check_secret(env) if env else None


def _options(args: argparse.Namespace, state: Path) -> ClusterOptions | None:
    """The options given on the command line (None: ``start`` without --listen on an existing seed)."""
    from tce_ipfs.ipfs import seed
    from tce_ipfs.ipfs.clusterconfig import ClusterOptions, ClusterState

    if not args.listen:
        if ClusterState(state).initialized:
            return None
        raise UsageError(f"no cluster seed in {state} yet: give --listen ADDR|IFACE (and --join to join one)")
    return ClusterOptions(listen=seed.resolve_listen(args.listen), port=args.port, ipfs_port=args.ipfs_port,
                          api_port=args.api_port, rest_port=args.rest_port, mdns=args.mdns,
                          join=tuple(args.join), name=args.name)


def _swarm_key(args: argparse.Namespace) -> str | None:
    from tce_ipfs.ipfs import swarmkey

    key = args.swarm_key
    if key is None:
        return None
    return swarmkey.parse(Path(key).read_text()) if Path(key).is_file() else swarmkey.check_hex(key)


def _seed(args: argparse.Namespace, *, binaries: bool) -> ClusterSeed:
    from tce_ipfs.ipfs.cluster import ClusterSeed
    from tce_ipfs.ipfs.clusterconfig import ClusterState

    state = ClusterState(args.state or default_state())
    if not binaries:
        return ClusterSeed(state)
    service = args.service
    if service is None:
        from tce_ipfs.build import cluster

        service = cluster.ensure().service
    kubo_bin = args.kubo
    if kubo_bin is None:
        from tce_ipfs.build import kubo

        kubo_bin = kubo.ensure(Arch.host())
    return ClusterSeed(state, service=service, kubo=kubo_bin)


def _init(args: argparse.Namespace) -> ClusterSeed:
    state = (args.state or default_state()).absolute()
    options = _options(args, state)  # every option checked before anything is built or written
    secret, key = _read_secret(args.secret), _swarm_key(args)
    seed = _seed(args, binaries=True)
    if options is None:
        if args.join or secret or key or args.private:
            raise UsageError("--join, --secret, --swarm-key and --private need --listen (they re-initialise)")
        return seed
    seed.init(options, secret=secret, swarm_key=key, private=args.private)
    return seed


def _join_hint(info: dict[str, Any]) -> str:
    state = Path(info["state"])
    addr = (info.get("cluster_addrs") or ["<this seed's cluster address>"])[0]
    key = f" --swarm-key <copy of {state / 'repo' / 'swarm.key'}>" if info.get("private") else ""
    return (f"another seed joins with: tce-ipfs cluster start --listen ADDR --join {addr} "
            f"--secret <copy of {state / 'secret'}>{key}")


def cmd_init(args: argparse.Namespace) -> int:
    seed = _init(args)
    record = seed.state.record()
    info = {"state": str(seed.state.path), "options": record["options"], "private": seed.state.swarm_key()
            is not None, "secret": str(seed.state.secret_path)}
    emit(args, info, f"cluster seed initialised in {seed.state.path} (secret: {seed.state.secret_path}, "
                     f"mode 0600)\nnext: tce-ipfs cluster start --state {seed.state.path}")
    return 0


def cmd_start(args: argparse.Namespace) -> int:
    seed = _init(args)
    if not seed.state.initialized:
        raise UsageError(f"no cluster seed in {seed.state.path}", hint="give --listen (and --join)")
    seed.start(timeout=args.timeout)
    info = seed.status()
    emit(args, info, render_status(info) + "\n" + _join_hint(info))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    import tempfile

    from tce_ipfs.build import cluster, kubo
    from tce_ipfs.testbed.bench import cluster as bench

    if os.geteuid() != 0:
        raise UsageError("the cluster benchmark needs root (it builds a private lab namespace)")
    if args.seeds < 2 or args.total_mib < 1 or args.extensions < 1:
        raise UsageError("--seeds must be at least 2, --total-mib and --extensions positive")
    service, kubo_bin = cluster.ensure().service, kubo.ensure(Arch.host())
    with tempfile.TemporaryDirectory(prefix="tce-ipfs-cluster-bench-") as tmp:
        res = bench.run(kubo_bin, service, Path(tmp), args.out, seeds=args.seeds, total_mib=args.total_mib,
                        extensions=args.extensions)
    first, http = res["first"], res["http"]
    text = (f"{res['payload_bytes'] / 2**20:.0f} MiB to {res['seeds']} seeds: add {first['add_s']} s, "
            f"pinned on all {first['to_all_s']} s after the pin ({first['pinned_at_s']})\n"
            f"HTTP mirrors ({http['mirrors']}) synced in {http['seconds']} s; cluster/HTTP "
            f"{res.get('ratio_cluster_vs_http')}\n"
            f"update (+1 extension, --keep 1): on all in {res['update']['to_all_s']} s\n"
            f"RSS: " + ", ".join(f"{k} cluster {_mib(v['cluster'])} kubo {_mib(v['kubo'])}"
                                 for k, v in res["rss"].items()) + "\n"
            f"results: {args.out / 'cluster-results.json'}")
    emit(args, res, text)
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    seed = _seed(args, binaries=False)
    stopped = seed.stop()
    emit(args, {"state": str(seed.state.path), "stopped": stopped},
         "stopped" if stopped else f"not running ({seed.state.path})")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    if args.cluster:
        from tce_ipfs.ipfs import clusterpins

        api, _state = clusterpins.api_for(args.cluster)
        info = {"rest_api": str(api.endpoint), "running": True, **clusterpins.cluster_status(api)}
    else:
        info = _seed(args, binaries=False).status()
    emit(args, info, render_status(info))
    return 0


# -------------------------------------------------------------------------------------- output
def _mib(n: int | None) -> str:
    return human(n) if n is not None else "?"


def render_status(info: dict[str, Any]) -> str:
    lines = []
    if "state" in info:
        run = (f"running, pid {info['pid']} (RSS {_mib(info.get('rss'))}); kubo pid {info.get('kubo_pid')} "
               f"(RSS {_mib(info.get('kubo_rss'))})" if info["running"] else "not running")
        lines += [f"seed:      {info['state']} ({run})",
                  f"name:      {info.get('peername') or '-'}",
                  f"cluster:   {', '.join(info.get('cluster_addrs') or []) or '-'}",
                  f"kubo:      {', '.join(info.get('kubo_addrs') or []) or '-'}"
                  + ("  (private swarm)" if info.get("private") else "")]
    lines.append(f"REST API:  {info.get('rest_api')}")
    seeds = info.get("seeds")
    if seeds is not None:
        lines.append(f"seeds ({len(seeds)}):")
        for s in seeds:
            where = f"kubo {s['kubo_addrs'][0]}" if s.get("kubo_addrs") else "no kubo address"
            state = f"DOWN ({s['error']})" if s["error"] else where
            lines.append(f"  {s['peername'] or s['id']}: {state}")
        roots = [r for r in info.get("roots", []) if r["ours"]] + [r for r in info.get("roots", [])
                                                                  if not r["ours"]]
        if not roots:
            lines.append("roots:     none yet (tce-ipfs publish REPO_DIR --cluster ...)")
        for r in roots:
            total = sum(p["status"] not in ("remote",) for p in r["peers"].values())
            what = ("current, " if r.get("current") else "") + (
                f"published {r['published_at']} from {r['source']}" if r["ours"] else f"pin {r['name']!r}")
            state = "complete" if r["complete"] else "INCOMPLETE"
            lines.append(f"root {r['cid']} ({what}): {state}, pinned on {r['pinned']}/{total}")
            per = ", ".join(f"{p['peername']} {p['status']}" + (f" ({p['error']})" if p["error"] else "")
                            for p in sorted(r["peers"].values(), key=lambda p: p["peername"]))
            lines.append(f"    {per}")
    return "\n".join(lines)
