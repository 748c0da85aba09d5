"""Reading a seed from outside: its boot line and its status, from its state directory (``seed.json``,
the seed need not run) or from its kubo's API (a running seed anywhere). Used by ``seed status``,
``netboot``/``remaster --seed`` and the agent; ``ipfs.seed`` is the seed itself.

Only shared modules and ``ipfs`` ones are imported: this ships in the agent (``tests/test_layering``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from pathlib import Path
from typing import Any

from tce_ipfs.errors import NodeError, UsageError
from tce_ipfs.ipfs import opennet, rpc, swarmkey
from tce_ipfs.ipfs.node import read_api_file
from tce_ipfs.ipfs.roots import age as root_age
from tce_ipfs.ipfs.roots import parse_pin_name
from tce_ipfs.ipfs.seed import RECORD, SeedState, metrics_url
from tce_ipfs.ipfs.seedline import BootInfo, check_peers

log = logging.getLogger(__name__)


def boot_info(state: SeedState) -> BootInfo:
    """The boot line of the seed with this state (from ``seed.json``; the seed need not run now)."""
    record = state.record()
    if record is None or not record.get("root"):
        raise NodeError(f"no seed has served from {state.path} yet",
                        hint=f"start one: tce-ipfs seed serve REPO_DIR --listen ADDR --state {state.path}")
    running = state.serving_pid() is not None
    if not running:
        log.warning("the seed in %s is not running now: machines boot from it once it is", state.path)
    if record.get("net") == "public":
        # Its LAN addresses, as for any seed: a lab machine next to it boots in lan mode (no routing
        # wait); a machine anywhere else needs no ipfs.peers= at all (it finds the seed on the DHT).
        log.info("the seed in %s is on the IPFS network: this boot line's ipfs.peers= are its LAN "
                 "addresses; machines elsewhere boot with just tce=ipfs:%s (e.g. remaster --cid)",
                 state.path, record["root"])
    return BootInfo(cid=str(record["root"]), peers=check_peers(list(record.get("peers") or [])),
                    swarm_key=state.swarm_key() if record.get("private") else None, running=running,
                    ipns=record.get("ipns"), gateway=record.get("gateway"))


def boot_info_from_api(api: str) -> BootInfo:
    """The boot line of the seed whose RPC API is ``api``: its state when the repo is on this machine,
    else its newest root pinned by a seed and its non-loopback addresses."""
    with rpc.client(api, timeout=30) as client:
        repo_path = Path(str(rpc.repo_stat(client).get("RepoPath", "")))
        if (repo_path.parent / RECORD).is_file():
            return boot_info(SeedState(repo_path.parent))
        roots = sorted(((w, cid) for cid, name in rpc.pin_names(client).items()
                        if (parsed := parse_pin_name(name)) for w in [parsed[0]]), reverse=True)
        if not roots:
            raise NodeError(f"the node at {api} has no root pinned by `tce-ipfs seed serve`",
                            hint="pass --cid (and --boot-code ipfs.peers=...) instead")
        addrs = [str(a) for a in rpc.identity(client).get("Addresses") or []]
    v4 = [a for a in addrs if re.match(r"/ip4/[\d.]+/tcp/\d+/p2p/", a)]
    lan = [a for a in v4 if not a.startswith("/ip4/127.")]
    if (repo_path / swarmkey.FILENAME).exists():
        key = swarmkey.read(repo_path)
    else:
        key = None
        if not repo_path.is_dir():
            log.warning("the seed's repo is not on this machine: if its swarm is private, add "
                        "--boot-code ipfs.swarmkey=<its key>")
    return BootInfo(cid=roots[0][1], peers=check_peers(lan or v4), swarm_key=key)


def resolve(value: str) -> BootInfo:
    """``--seed``: a seed's state directory, or its RPC API multiaddr."""
    if value.startswith(("/ip4/", "/ip6/", "/dns", "/unix/")) and not Path(value).is_dir():
        return boot_info_from_api(value)
    path = Path(value)
    if not path.is_dir():
        raise UsageError(f"--seed {value}: neither a seed's state directory nor an API multiaddr",
                         hint="give the --state of `tce-ipfs seed serve`, or its API, e.g. "
                              "/ip4/127.0.0.1/tcp/5001")
    return boot_info(SeedState(path))


def _repo_bytes(repo: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(repo):
        for name in files:
            with contextlib.suppress(OSError):
                total += (Path(root) / name).stat().st_size
    return total


def status(state: SeedState, *, ledgers: bool = True) -> dict[str, Any]:
    """Running or not, peer ID, boot line, peers with bytes served to each, totals, roots pinned with
    their age, the repo's disk use, the metrics URL."""
    record = state.record() or {}
    pid = state.serving_pid()
    info: dict[str, Any] = {
        "state": str(state.path), "running": pid is not None, "pid": pid, "peer_id": state.peer_id(),
        "source": record.get("source"), "root": record.get("root"), "listen": record.get("listen", []),
        "peers_addrs": record.get("peers", []), "private": bool(record.get("private")),
        "net": record.get("net") or "lan", "announced": record.get("announced"),
        "started_at": record.get("started_at"), "stopped_at": record.get("stopped_at"),
        "metrics": metrics_url(record.get("api_tcp")) if pid is not None else None,
        "boot_line": (BootInfo(str(record["root"]), tuple(record.get("peers") or ()),
                               swarm_key="<key>" if record.get("private") else None,
                               ipns=record.get("ipns"), gateway=record.get("gateway")).line()
                      if record.get("root") else None),
        "published_at": record.get("published_at"), "root_age_s": root_age(record.get("published_at")),
        "names": [{**rec, "age_s": root_age(rec.get("published_at"))}
                  for _key, rec in sorted(state.ipns_records().items())],
    }
    roots: dict[str, dict[str, Any]] = {}
    if record.get("root"):
        roots[str(record["root"])] = {"cid": record["root"], "source": record.get("source"),
                                      "pinned_at": record.get("published_at")}
    api = read_api_file(state.repo) if pid is not None else None
    if api is None:
        info.update(repo_bytes=_repo_bytes(state.repo), peers=[], bytes_sent=None)
    else:
        with rpc.client(api, timeout=30) as client:
            bs = rpc.bitswap_stat(client)
            peers = []
            for p in rpc.swarm_peers(client):
                entry: dict[str, Any] = {"peer": str(p.get("Peer", "")), "addr": str(p.get("Addr", ""))}
                if ledgers and entry["peer"]:
                    with contextlib.suppress(NodeError):
                        ledger = rpc.bitswap_ledger(client, entry["peer"])
                        entry.update(sent=int(ledger.get("Sent", 0)), recv=int(ledger.get("Recv", 0)))
                peers.append(entry)
            for cid, name in rpc.pin_names(client).items():
                parsed = parse_pin_name(name)
                if parsed:
                    roots.setdefault(cid, {"cid": cid}).update(pinned_at=parsed[0], source=parsed[1])
            stat = rpc.repo_stat(client)
            info["network"] = opennet.network_status(client)
        info.update(peers=sorted(peers, key=lambda p: -int(p.get("sent", 0))),
                    bytes_sent=int(bs.get("DataSent", 0)), blocks_sent=int(bs.get("BlocksSent", 0)),
                    bytes_received=int(bs.get("DataReceived", 0)), repo_bytes=int(stat["RepoSize"]),
                    repo_objects=int(stat["NumObjects"]), repo_max=int(stat.get("StorageMax", 0)))
    for root in roots.values():
        root["age_s"] = root_age(root.get("pinned_at"))
        root["current"] = root["cid"] == record.get("root")
    info["roots"] = sorted(roots.values(), key=lambda r: (not r["current"], r.get("age_s") or 0))
    return info

