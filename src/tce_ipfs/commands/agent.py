"""`tce-ipfs install|status|seed|unseed`: the agent on a booted Tiny Core machine.

Imports only what ``tce-ipfs-agent.tcz`` ships (``tce_ipfs.agent``, the seed library ``ipfs.seed`` and
the CLI's ``emit``), so it works on Tiny Core where the build-host modules are absent.

``seed`` is one command group on both sides: ``seed serve|status|pin`` (bare ``seed``: pin). On the
build host ``commands.seed`` registers it first (with the host's kubo build and ``install-unit``) and
this module leaves it alone.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from tce_ipfs.cli import emit
from tce_ipfs.errors import NodeError
from tce_ipfs.ipfs import opennet
from tce_ipfs.log import human

if TYPE_CHECKING:
    from tce_ipfs.ipfs.seed import SeedOptions
    from tce_ipfs.ipfs.seedline import BootInfo

log = logging.getLogger(__name__)

SYSTEM_STATE = Path("/var/lib/tce-ipfs/lab-seed")  # root's seed (what a system service uses)

EPILOG_INSTALL = """\
Like `tce-load -wi NAME`, but from the IPFS repository this machine booted with (tce=ipfs:<CID>) or
--cid, through the local kubo: dependency closure from the repo's .dep files, md5 check of every
file, loaded with tce-load -i as the tc user. The fetched files stay pinned, so this machine serves
them to its peers.

examples:
  tce-ipfs install extra                    fetch extra.tcz + its deps into <tcedir>/optional, load
  tce-ipfs install extra --onboot           ... and add it to onboot.lst
  tce-ipfs install nano --cid bafy...       from another repository
"""

EPILOG_STATUS = """\
examples:
  tce-ipfs status            repo CID, peers (bytes sent/received each), totals, pinned extensions
  tce-ipfs status --json
  tce-ipfs status --repo     (publisher) the seed's root, its age, its IPNS name; `seed status` has all
"""

EPILOG_SEED = """\
seed serve REPO_DIR|CID --listen ADDR|IFACE
    The lab's seed, in the foreground: a kubo with its repo in --state (so its peer ID stays the same
    across restarts) listens on the named private address(es) (--port, default 4001), publishes the
    repo directory (or pins the CID) and prints the boot line for the lab's machines:
        tce=ipfs:<CID> ipfs.peers=/ip4/<addr>/tcp/<port>/p2p/<peer id> [ipfs.swarmkey=<key>]
    SIGTERM or Ctrl-C stops it cleanly; SIGHUP publishes the directory again. A non-private address
    (or 0.0.0.0) is refused unless --public. `tce-ipfs netboot|remaster --seed STATE` take the boot
    line from here. On Tiny Core: kubo from ipfs.tcz, state in <tcedir>/tce-ipfs-seed.
    --net public (a publisher at home): the seed also joins the open IPFS network -- kubo's bootstrap
    peers (or --bootstrap), the DHT as a client, AutoNAT, circuit relays and hole punching through the
    home router's NAT -- and after each publish announces the root once it knows how peers reach it
    (directly, or through a relay). Tiny Core machines anywhere then boot with just tce=ipfs:<CID>; the
    printed ipfs.peers= line stays the one for this LAN. `seed status` shows whether it is reachable
    and its provider records. Not with --private/--swarm-key or --mdns.
seed status
    running or not, peers connected and bytes served to each and in total, roots pinned and their
    age, the repo's disk use, kubo's Prometheus metrics URL.
seed [pin] [NAME...]   (on TC)
    adds <tcedir>/optional/*.tcz and /tmp/builtin/optional/*.tcz (what the boot hook fetched), with
    their .md5.txt/.dep, to the local kubo with the publisher's parameters (CIDv1, raw leaves), so they
    get the repository's CIDs, and pins them: peers can fetch them from here. `unseed` unpins them
    (--gc also frees their blocks at once).

examples:
  tce-ipfs seed serve /srv/tce --listen 192.168.1.10
  tce-ipfs seed serve /srv/tce --listen eth1 --private --state /var/lib/tce-ipfs/lab-seed
  tce-ipfs seed serve /srv/tce --listen eth0 --net public     (at home, behind the router)
  tce-ipfs seed status --json
  tce-ipfs seed               (on TC) pin every extension in the tce dir
  tce-ipfs seed pin nano      (on TC) just nano.tcz
  tce-ipfs unseed --gc
"""


def _api(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--api", metavar="MULTIADDR",
                        help="kubo RPC API (default $TCE_IPFS_API or /ip4/127.0.0.1/tcp/5001)")


def cmd_install(args: argparse.Namespace) -> int:
    from tce_ipfs.agent import ops

    def say(msg: str) -> None:
        if not args.json:
            print(f"tce-ipfs: {msg}", file=sys.stderr)

    res = ops.install(args.name, cid=args.cid, onboot=args.onboot, api=args.api, progress=say)
    fetched = sum(res.fetched.values())
    text = (f"{res.name}: OK ({len(res.closure)} extension(s); fetched {len(res.fetched)} "
            f"({fetched} bytes), reused {len(res.reused)}, loaded {len(res.loaded)}"
            + (", added to onboot list" if res.onboot else "") + ")")
    emit(args, res.as_json(), text)
    return 0


def render_repo_status(info: dict[str, Any]) -> str:
    """``status --repo``: what the seed publishes, and how old it is."""
    if not info.get("root"):
        return f"no root published from {info['state']} yet"
    lines = [f"root:      {info['root']} (published {_duration(info.get('root_age_s'))} ago"
             f"{', ' + str(info.get('source')) if info.get('source') else ''})"]
    for rec in info.get("names", []):
        current = "" if rec["value"].removeprefix("/ipfs/") == info["root"] else ", NOT the current root"
        lines.append(f"ipns:      {rec['name']} -> {rec['value']} (published {_duration(rec.get('age_s'))} "
                     f"ago{current})")
    kept = [r for r in info.get("roots", []) if not r["current"]]
    if kept:
        lines.append("older:     " + ", ".join(f"{r['cid']} ({_duration(r['age_s'])})" for r in kept))
    lines += opennet.render_network(info.get("network"))
    return "\n".join(lines)


def cmd_status(args: argparse.Namespace) -> int:
    if args.repo is not None:  # the publisher's side: the seed's status, its repo part
        from tce_ipfs.ipfs import seed, seedstatus

        state = seed.SeedState(Path(args.repo) if args.repo else default_state())
        info = seedstatus.status(state, ledgers=False)
        emit(args, {k: info.get(k) for k in ("state", "running", "root", "source", "published_at",
                                              "root_age_s", "names", "roots", "network")},
             render_repo_status(info))
        return 0
    from tce_ipfs.agent import ops

    info = ops.status(api=args.api)
    emit(args, info, ops.render_status(info))
    return 0


def _rows(rows: list[dict[str, Any]], key: str, yes: str, no: str) -> str:
    if not rows:
        return "no extensions in the tce dir's optional/"
    return "\n".join(f"{r['name']}: {r['cid']} ({yes if r.get(key) else no})" for r in rows)


def cmd_seed_pin(args: argparse.Namespace) -> int:
    from tce_ipfs.agent import ops

    rows = ops.seed(getattr(args, "names", []), api=args.api)
    emit(args, rows, _rows(rows, "in_repo", "same CID as the booted repo", "pinned"))
    return 0


# --------------------------------------------------------------------------------- seed serve
def on_tiny_core() -> bool:
    """A booted Tiny Core (tce-setup's /etc/sysconfig/tcedir link), not the build host."""
    from tce_ipfs.agent.machine import Machine

    return Machine().path("/etc/sysconfig/tcedir").is_symlink()


def default_state() -> Path:
    """Where ``seed serve`` keeps its repo unless ``--state`` says: ``<tcedir>/tce-ipfs-seed`` on Tiny
    Core (on the disk when the tce dir is), ``/var/lib/tce-ipfs/lab-seed`` for root (a system
    service), else ``STATE_DIR/lab-seed``; ``$TCE_IPFS_STATE`` moves the latter two."""
    from tce_ipfs.agent.machine import Machine

    if on_tiny_core():
        return Machine().tcedir() / "tce-ipfs-seed"
    if os.geteuid() == 0 and not os.environ.get("TCE_IPFS_STATE"):
        return SYSTEM_STATE
    from tce_ipfs import settings

    return settings.state_dir() / "lab-seed"


def kubo_on_path() -> Path:
    """kubo's ``ipfs`` from PATH (Tiny Core: ipfs.tcz links it into /usr/local/bin)."""
    # PATH first; then where tce-load links ipfs.tcz's binary (a service's PATH may lack it).
    found = shutil.which("ipfs") or shutil.which("ipfs", path="/usr/local/bin")
    if not found:
        raise NodeError("no kubo `ipfs` binary found", hint="load ipfs.tcz (tce-load -i ipfs) or pass --kubo")
    return Path(found)


def serve_options(p: argparse.ArgumentParser) -> None:
    """The options of ``seed serve`` (and of ``seed install-unit``, which writes them into a unit)."""
    p.add_argument("source", metavar="REPO_DIR|CID",
                   help="a TC repo directory (flat, or a tce dir) to publish, or a root CID to pin")
    p.add_argument("--listen", action="append", default=[], metavar="ADDR|IFACE", required=True,
                   help="private IPv4 address or interface to serve on (repeatable)")
    p.add_argument("--port", type=int, default=4001, metavar="N", help="swarm TCP port (default 4001)")
    p.add_argument("--state", type=Path, metavar="DIR", help=f"state directory: kubo repo (peer ID), "
                   f"seed.json (default: {SYSTEM_STATE} for root, else STATE_DIR/lab-seed; on TC "
                   "<tcedir>/tce-ipfs-seed)")
    p.add_argument("--kubo", type=Path, metavar="PATH", help="kubo `ipfs` binary (default: this host's "
                                                            "build; on TC the one ipfs.tcz provides)")
    p.add_argument("--api-port", type=int, default=5001, metavar="N",
                   help="RPC API (and Prometheus metrics) port on 127.0.0.1 (default 5001; 0 = any)")
    p.add_argument("--gateway-port", type=int, metavar="N",
                   help="also serve a trustless HTTP gateway (CARs and raw blocks of what the seed "
                        "holds, nothing fetched for others) on the listen addresses, port N: the boot line "
                        "then says ipfs.gateway=, and machines take each file as one CAR (checked block by "
                        "block against its CID) instead of over bitswap -- less CPU on a slow machine")
    p.add_argument("--public", action="store_true",
                   help="allow a non-private listen address (and peers from anywhere)")
    p.add_argument("--net", choices=("lan", "public"), default="lan",
                   help="lan (default): the lab's LAN only, nothing announced; public: join the open "
                        "IPFS network (DHT client, AutoNAT, relays, hole punching) and announce the root, "
                        "so Tiny Core machines anywhere boot with just tce=ipfs:<CID>")
    p.add_argument("--bootstrap", action="append", default=[], metavar="MULTIADDR",
                   help="with --net public: a bootstrap peer instead of kubo's defaults (repeatable; "
                        ".../p2p/<id>)")
    p.add_argument("--private", action="store_true",
                   help="private swarm: make a swarm key (once; kept in the state) and print it")
    p.add_argument("--swarm-key", metavar="HEX|FILE", help="private swarm with this key (64 hex or a "
                                                          "swarm.key file)")
    p.add_argument("--mdns", action="store_true", help="LAN discovery (mDNS): for a private lab LAN only")
    p.add_argument("--peer", action="append", default=[], metavar="MULTIADDR",
                   help="a peer to fetch a CID from (repeatable; .../p2p/<id>)")
    p.add_argument("--timeout", type=float, default=600.0, metavar="S",
                   help="seconds for publishing or pinning (per API read, default 600)")
    p.add_argument("--name", metavar="KEY",
                   help="also serve an IPNS name (key KEY in the seed's keystore, made once) pointing at "
                        "each root it serves: the boot line says tce=ipns:<k51...>; the seed then answers "
                        "the LAN's DHT queries for it")
    p.add_argument("--lifetime", default="48h", metavar="DURATION",
                   help="IPNS record lifetime (default 48h; the seed republishes it while it runs)")
    p.add_argument("--ttl", metavar="DURATION", help="IPNS record TTL (how long resolvers may cache it)")
    p.add_argument("--keep", type=int, metavar="K",
                   help="keep the newest K roots of the source pinned, unpin older ones (at each publish)")


def seed_options(args: argparse.Namespace) -> SeedOptions:
    """Every serve option checked (listen addresses resolved), before anything starts."""
    from tce_ipfs.ipfs import seed, seedline, swarmkey

    key = args.swarm_key
    if key is not None and Path(key).is_file():
        key = swarmkey.parse(Path(key).read_text())
    return seed.SeedOptions(listen=seedline.resolve_listen(args.listen, public=args.public), port=args.port,
                            api_port=args.api_port, public=args.public, mdns=args.mdns,
                            private=args.private, swarm_key=key, peers=tuple(args.peer),
                            timeout=args.timeout, name=args.name, lifetime=args.lifetime, ttl=args.ttl,
                            keep=args.keep, gateway_port=getattr(args, "gateway_port", None),
                            net=args.net, bootstrap=tuple(args.bootstrap))


def _print_ready(args: argparse.Namespace, state: Path) -> Callable[[BootInfo], None]:
    def ready(info: BootInfo) -> None:
        if getattr(args, "json", False):
            print(json.dumps({**info.as_dict(), "state": str(state)}, sort_keys=True), flush=True)
        else:
            print(info.line(), flush=True)
        log.info("serving %s from %s on %s (SIGTERM or Ctrl-C stops it)", info.cid, args.source,
                 ", ".join(info.peers))
        if info.swarm_key:
            log.info("private swarm: the boot line carries the key; other kubo peers need "
                     "the file %s", state / "repo" / "swarm.key")
        if args.net == "public":
            log.info("on the IPFS network: machines beyond this LAN boot with just tce=ipfs:%s (they find "
                     "this seed through the DHT); the ipfs.peers= above are for this LAN", info.cid)
    return ready


def cmd_seed_serve(args: argparse.Namespace) -> int:
    from tce_ipfs.ipfs import seed

    options = seed_options(args)
    seed.check_source(args.source)  # before looking for (or building) kubo
    state = seed.SeedState(args.state or default_state())
    if on_tiny_core() and str(state.path).startswith("/tmp/"):
        log.warning("the state %s is in RAM on Tiny Core: the peer ID changes at every boot; "
                    "give --state on a disk", state.path)
    kubo = args.kubo or args.find_kubo()
    server = seed.SeedServer(state, kubo, options, args.source)

    def stop(signum: int, _frame: FrameType | None) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # one clean stop; a second signal waits for it
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        raise seed.Stopped(signal.Signals(signum).name)

    def reload(_signum: int, _frame: FrameType | None) -> None:
        server.request_reload()

    handlers = {sig: signal.signal(sig, fn) for sig, fn in
                ((signal.SIGTERM, stop), (signal.SIGINT, stop), (signal.SIGHUP, reload))}
    try:
        server.run(_print_ready(args, state.path))
    except seed.Stopped as why:
        log.info("seed stopped (%s)", why)
        return 0
    finally:
        for sig, old in handlers.items():
            signal.signal(sig, old)
    return 0  # pragma: no cover -- run() only returns by an exception


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    s = int(seconds)
    for unit, size, sub, subsize in (("d", 86400, "h", 3600), ("h", 3600, "min", 60), ("min", 60, "s", 1)):
        if s >= size:
            return f"{s // size} {unit} {(s % size) // subsize} {sub}"
    return f"{s} s"


def render_seed_status(info: dict[str, Any]) -> str:
    running = f"running, pid {info['pid']}" if info["running"] else "not running"
    lines = [f"seed:      {info['state']} ({running})", f"peer id:   {info.get('peer_id') or '-'}"]
    if info.get("root"):
        lines += [f"serving:   {info['root']} from {info.get('source')}",
                  f"boot line: {info['boot_line']}",
                  f"listen:    {', '.join(info['peers_addrs'])}"]
    if info.get("private"):
        lines.append(f"private:   yes (key in {Path(info['state']) / 'repo' / 'swarm.key'})")
    if info.get("net") == "public":
        ann = info.get("announced") or {}
        said = ann.get("how") or ann.get("error") or "before AutoNAT said how peers reach it"
        lines.append("net:       public (the IPFS network; machines anywhere boot with tce=ipfs:<root>)"
                     + (f"\nannounced: the root at {ann['at']}: {said}" if ann.get("at") else ""))
    for rec in info.get("names", []):
        lines.append(f"ipns:      {rec['name']} (key {rec['key']}) -> {rec['value']}, published "
                     f"{_duration(rec.get('age_s'))} ago, lifetime {rec.get('lifetime')}")
    for i, root in enumerate(info.get("roots", [])):
        mark = "current, " if root["current"] else ""
        lines.append(f"{'roots:' if i == 0 else '':11}{root['cid']} ({mark}pinned {_duration(root['age_s'])} "
                     f"ago, from {root.get('source') or '?'})")
    lines.append(f"repo:      {human(info.get('repo_bytes') or 0)} on disk"
                 + (f" in {info['repo_objects']} blocks" if "repo_objects" in info else ""))
    if info["running"]:
        peers = info.get("peers", [])
        lines.append(f"served:    {human(info.get('bytes_sent') or 0)} in total since "
                     f"{info.get('started_at')}; {len(peers)} peer(s) connected")
        for p in peers:
            sent = f"  sent {human(p['sent'])}, received {human(p['recv'])}" if "sent" in p else ""
            lines.append(f"  {p['addr']}/p2p/{p['peer']}{sent}")
        lines += opennet.render_network(info.get("network"))
        if info.get("metrics"):
            lines.append(f"metrics:   {info['metrics']}")
    return "\n".join(lines)


def cmd_seed_status(args: argparse.Namespace) -> int:
    from tce_ipfs.ipfs import seed, seedstatus

    info = seedstatus.status(seed.SeedState(args.state or default_state()))
    emit(args, info, render_seed_status(info))
    return 0


def add_seed_group(sub: Any, common: argparse.ArgumentParser) -> Any:
    """The ``seed`` command group (serve, status, pin; bare ``seed`` pins); returns its actions."""
    fmt = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser("seed", parents=[common], formatter_class=fmt, epilog=EPILOG_SEED,
                       help="serve a TC repo to the LAN (seed serve|status); on TC also pin this "
                            "machine's extensions",
                       description="The lab's seed, and seeding a Tiny Core machine's extensions.")
    _api(p)
    p.set_defaults(func=cmd_seed_pin, names=[])
    actions = p.add_subparsers(dest="seed_action", metavar="ACTION")
    serve = actions.add_parser("serve", parents=[common], formatter_class=fmt, epilog=EPILOG_SEED,
                               help="serve a repo dir or CID to the LAN, print the boot line",
                               description="Serve a TC repo to the lab's machines (foreground).")
    serve_options(serve)
    serve.set_defaults(func=cmd_seed_serve, find_kubo=kubo_on_path)
    status = actions.add_parser("status", parents=[common], formatter_class=fmt, epilog=EPILOG_SEED,
                                help="peers, bytes served, roots pinned and their age, disk use",
                                description="Show the seed's state.")
    status.add_argument("--state", type=Path, metavar="DIR", help="the seed's state directory "
                        "(default: as for `seed serve`)")
    status.set_defaults(func=cmd_seed_status)
    pin = actions.add_parser("pin", parents=[common], formatter_class=fmt, epilog=EPILOG_SEED,
                             help="(on TC) pin the tce dir's extensions for peers",
                             description="Pin this machine's extensions so peers can fetch them.")
    pin.add_argument("names", nargs="*", metavar="NAME", help="extensions (default: all of them)")
    _api(pin)
    pin.set_defaults(func=cmd_seed_pin)
    return actions


def cmd_unseed(args: argparse.Namespace) -> int:
    from tce_ipfs.agent import ops

    rows = ops.unseed(args.names, api=args.api, gc=args.gc)
    emit(args, rows, _rows(rows, "unpinned", "unpinned", "was not pinned"))
    return 0


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser("install", parents=[common], formatter_class=fmt, epilog=EPILOG_INSTALL,
                       help="(on TC) install an extension from the booted IPFS repo, with its deps")
    p.add_argument("name", help="extension name (with or without .tcz)")
    p.add_argument("--cid", help="repository root CID (default: the one this machine booted with)")
    p.add_argument("--onboot", action="store_true", help="also append it to the onboot list")
    _api(p)
    p.set_defaults(func=cmd_install)

    p = sub.add_parser("status", parents=[common], formatter_class=fmt, epilog=EPILOG_STATUS,
                       help="(on TC) repo CID, peers, bytes served/received, pinned extensions; "
                            "--repo: the seed's published root and its age")
    _api(p)
    p.add_argument("--repo", nargs="?", const="", metavar="STATE",
                   help="instead: the root the lab seed publishes (its state; default as `seed serve`), "
                        "how old it is, its IPNS name (the repo part of `seed status`)")
    p.set_defaults(func=cmd_status)

    if "seed" not in sub.choices:  # on the build host commands.seed registered the whole group
        add_seed_group(sub, common)

    p = sub.add_parser("unseed", parents=[common], formatter_class=fmt, epilog=EPILOG_SEED,
                       help="(on TC) release the extensions `seed` pinned")
    p.add_argument("names", nargs="*", metavar="NAME", help="extensions (default: all of them)")
    _api(p)
    p.add_argument("--gc", action="store_true", help="run `ipfs repo gc` afterwards")
    p.set_defaults(func=cmd_unseed)
