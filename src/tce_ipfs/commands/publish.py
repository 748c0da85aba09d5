"""`tce-ipfs publish SOURCE`: add a Tiny Core repository or mirror tree to kubo, print its root CID."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from tce_ipfs import settings
from tce_ipfs.cli import emit
from tce_ipfs.errors import UsageError
from tce_ipfs.ipfs import rpc
from tce_ipfs.ipfs.node import default_repo, read_api_file
from tce_ipfs.ipfs.publish import PublishResult, publish

log = logging.getLogger(__name__)

EPILOG = """\
SOURCE is one of
  a repo, flat (NAME.tcz + NAME.tcz.md5.txt/.dep/.info/... + *.lst, like a mirror's tcz/) or a tce dir
    (optional/* + onboot.lst): published as ONE flat directory, /ipfs/<root>/NAME.tcz, ...;
  a mirror tree, TC's layout <release>/<arch>/tcz/ (what `tce-ipfs mirror pull` keeps): published as
    one root, /ipfs/<root>/16.x/x86_64/tcz/NAME.tcz, so tce=ipfs:<root>/16.x/x86_64/tcz boots.
Names, .dep and .lst entries and every md5 are checked before anything is added; a mirror's index
files (md5.db.gz, sizelist.gz, dep.db.gz, ...) are cross-checked against the extensions (stale entries
are warnings).

Publishing the same SOURCE again adds only what changed (files whose size or times changed) and
rebuilds the directories around them: the root is the one a full publish gives (--full: add all).
--json carries the diff: extensions added, removed and changed since the previous root.

Names: --name KEY points an IPNS name at the root (the key is made in the node's keystore if missing)
and prints the boot code tce=ipns:<k51...> and the DNSLink TXT line. The node must answer IPNS queries:
publish through a seed started with `tce-ipfs seed serve ... --name KEY` (--seed).

examples:
  tce-ipfs publish ./repo                  print the root CID (node: `tce-ipfs node start`)
  tce-ipfs publish ./repo --json           root, per-file CIDs and sizes, the diff
  tce-ipfs publish /mnt/sda1/tce --kernel 6.6.8-tinycore64
  tce-ipfs publish /srv/tc-mirror --seed --name lab-mirror --keep 3 --dnslink tce.lab.example.org
  tce-ipfs publish ./repo --cluster STATE --keep 2
                     through the seeds' cluster (`tce-ipfs cluster`): pinned on every seed, waits
                     until it is ("pinned on 2/3 ..."), then unpins all but the newest 2 roots
"""


def default_api() -> str:
    """The seed node's API when `tce-ipfs node start` runs one, else kubo's usual 5001."""
    return read_api_file(default_repo()) or rpc.DEFAULT_API


def _seed_state(value: str) -> Any:
    """``--seed``: the seed's state (``SeedState``) for a directory, None for an API multiaddr."""
    from tce_ipfs.commands.agent import default_state
    from tce_ipfs.ipfs.seed import SeedState

    if value == "":
        return SeedState(default_state())
    if value.startswith(("/ip4/", "/ip6/", "/dns", "/unix/")) and not Path(value).is_dir():
        return None
    if not Path(value).is_dir():
        raise UsageError(f"--seed {value}: neither a seed's state directory nor an API multiaddr")
    return SeedState(Path(value))


def node_for(args: argparse.Namespace) -> tuple[str, Any, Path]:
    """(API, seed state or None, publish cache directory) for this publish."""
    if args.seed is None:
        return args.api or default_api(), None, settings.state_dir() / "publish"
    if args.api:
        raise UsageError("give --seed or --api, not both")
    state = _seed_state(args.seed)
    if state is None:
        return args.seed, None, settings.state_dir() / "publish"
    api = (f"/unix{state.api_socket}" if state.api_socket.is_socket() else None) or \
        read_api_file(state.repo)
    if not api or state.serving_pid() is None:
        raise UsageError(f"no seed is running from {state.path}",
                         hint="start it: tce-ipfs seed serve SOURCE --listen ADDR --name KEY")
    return api, state, state.publish_cache_dir


def _text(result: PublishResult, extra: dict[str, Any]) -> str:
    lines = [result.root_cid]
    if "name" in extra:
        name = extra["name"]
        for d in result.dirs or [""]:
            lines.append(f"tce=ipns:{name['name']}" + (f"/{d}" if d else ""))
        lines.append(extra["dnslink"])
    return "\n".join(lines)


def _summary(result: PublishResult, unpinned: list[str]) -> None:
    diff = result.diff
    if diff is not None:
        log.info("since %s: %d extension(s) added, %d removed, %d changed, %d other file(s) changed",
                 result.previous, len(diff["added"]), len(diff["removed"]), len(diff["changed"]),
                 len(diff["other"]))
    if unpinned:
        log.info("unpinned %d older root(s): %s", len(unpinned), ", ".join(unpinned))


def cmd_publish(args: argparse.Namespace) -> int:
    from tce_ipfs.ipfs import names, opennet, pubcache, roots

    if args.cluster:
        if args.seed is not None or args.name or args.dnslink or args.full:
            raise UsageError("--cluster goes without --seed, --name, --dnslink and --full")
        return _publish_to_cluster(args)
    if args.replication is not None:
        raise UsageError("--replication goes with --cluster")
    if args.name:
        names.check_key(args.name)
        names.check_duration(args.lifetime, "--lifetime")
        if args.ttl:
            names.check_duration(args.ttl, "--ttl")
    if args.dnslink:
        names.check_domain(args.dnslink)
    if args.keep is not None and args.keep < 1:
        raise UsageError(f"--keep {args.keep}: keep at least the root just published (1)")
    source = Path(args.repo_dir).resolve()
    api, state, cache_dir = node_for(args)
    extra: dict[str, Any] = {}
    with rpc.client(api, timeout=args.timeout) as client:
        node = rpc.peer_id(client)
        if args.name and not names.serves_names(client):
            raise UsageError(f"the node at {api} does not answer IPNS queries (Routing.Type "
                             f"{names.routing_type(client)}): machines could not resolve --name {args.name}",
                             hint="publish through a seed started with `tce-ipfs seed serve ... --name KEY` "
                                  "(--seed STATE)")
        result = publish(source, client, check=not args.no_check, progress=True, kernel=args.kernel,
                         cache=pubcache.cache_path(cache_dir, node, source), full=args.full,
                         pin_name=roots.pin_name(str(source)), node_id=node)
        if args.name:
            record = names.publish_name(client, args.name, result.root_cid, lifetime=args.lifetime,
                                        ttl=args.ttl)
            extra["name"] = record.as_dict()
            extra["dnslink"] = names.dnslink_line(result.root_cid, args.dnslink)
            if state is not None:
                state.record_name(record, str(source))
        unpinned = roots.keep(client, str(source), args.keep, current=result.root_cid) if args.keep else []
        extra["unpinned"] = unpinned
        if opennet.routes(client):
            extra["announced"] = opennet.announce_root(client, result.root_cid, timeout=args.timeout)
    if state is not None:
        _note_in_seed_record(state, str(source), result.root_cid)
    _summary(result, unpinned)
    emit(args, {**result.as_json(), **extra}, _text(result, extra))
    return 0


def _note_in_seed_record(state: Any, source: str, root: str) -> None:
    """When the seed serves this very source, what it serves (status, `netboot --seed`) is this root."""
    from tce_ipfs.ipfs.roots import now

    record = state.record()
    if record and record.get("source") == source and record.get("root") != root:
        record.pop("format", None)
        state.write_record({**record, "root": root, "published_at": now()})


def _publish_to_cluster(args: argparse.Namespace) -> int:
    """Publish to a cluster seed's kubo, pin on the cluster, wait for the seeds, drop old roots."""
    from tce_ipfs.commands.cluster import default_state
    from tce_ipfs.ipfs import clusterpins

    api, state = clusterpins.api_for(args.cluster, default_state())
    kubo_api = args.api or (clusterpins.kubo_api_of(state) if state else None)
    if kubo_api is None:
        raise UsageError(f"--cluster {args.cluster} is not a seed on this machine: which kubo gets the "
                         "files?",
                         hint="give --api (that seed's kubo RPC API), or --cluster as its state directory")

    def say(line: str) -> None:
        log.info("%s", line)

    with rpc.client(kubo_api, timeout=args.timeout) as client:
        replication = -1 if args.replication is None else args.replication
        res = clusterpins.publish_to_cluster(
            api, client, Path(args.repo_dir), replication=replication, keep=args.keep,
            timeout=args.wait_timeout, check=not args.no_check, kernel=args.kernel, progress=say, bar=True)
    log.info("%s pinned on %d/%d seeds in %.1f s%s", res.root, len(res.pinned_on), res.required,
             res.seconds_to_pinned, f"; unpinned {len(res.unpinned)} older root(s)" if res.unpinned else "")
    emit(args, res.as_json(), res.root)
    return 0


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("publish", parents=[common],
                       help="publish a TC repo or mirror tree, print its root CID",
                       description=__doc__, epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("repo_dir", metavar="SOURCE",
                   help="a repo directory (flat or tce-dir layout) or a mirror tree (<release>/<arch>/tcz/)")
    p.add_argument("--api", metavar="MULTIADDR",
                   help="kubo RPC API (default: the `tce-ipfs node start` node, else "
                        f"{rpc.DEFAULT_API})")
    p.add_argument("--seed", nargs="?", const="", metavar="STATE|API",
                   help="publish through the running lab seed (its state directory, default the one "
                        "`seed serve` uses, or its API); its records and names follow")
    p.add_argument("--no-check", action="store_true",
                   help="skip the md5/dependency checks (unsafe names are still refused)")
    p.add_argument("--kernel", metavar="RELEASE",
                   help="resolve -KERNEL dependencies for this kernel release only")
    p.add_argument("--full", action="store_true",
                   help="add every file again (default: only what changed since this source's last publish)")
    p.add_argument("--name", metavar="KEY", help="point the IPNS name of KEY (made if missing) at the root")
    p.add_argument("--lifetime", default="48h", metavar="DURATION",
                   help="how long the IPNS record stays valid without a republish (default 48h; the seed "
                        "republishes it while it runs)")
    p.add_argument("--ttl", metavar="DURATION", help="how long resolvers may cache the IPNS record")
    p.add_argument("--dnslink", metavar="DOMAIN", help="the domain for the printed DNSLink TXT line")
    p.add_argument("--keep", type=int, metavar="K",
                   help="afterwards unpin this source's roots older than the newest K (this one counts; "
                        "with --cluster: on every seed of the cluster)")
    p.add_argument("--timeout", type=float, default=600.0, metavar="S",
                   help="seconds to wait for any single API read (default 600)")
    p.add_argument("--cluster", metavar="STATE|API",
                   help="publish through the seeds' cluster: a cluster seed's state directory or its REST "
                        "API (/unix/STATE/rest.sock, /ip4/127.0.0.1/tcp/9094); the files go to that seed's "
                        "kubo (or --api)")
    p.add_argument("--replication", type=int, metavar="N",
                   help="with --cluster: pin on N seeds (default: every seed)")
    p.add_argument("--wait-timeout", type=float, default=1800.0, metavar="S",
                   help="with --cluster: seconds to wait for the seeds to pin it (default 1800)")
    p.set_defaults(func=cmd_publish)
