"""Publishing through the seeds' cluster, its pinset as a table, and boot lines naming every seed.

``publish_to_cluster(api, kubo_client, repo)``: ``publish.publish`` to one seed's kubo, pin the root on
the cluster (replication factor -1 = every seed, or N), wait until it is pinned on the required seeds
(``progress`` gets a line when the count changes), and with ``keep`` unpin our older roots. Roots are
pinned under ``seed.pin_name()`` names; ``--keep`` and ``boot_info`` only ever look at those.
``cluster_status(api)``: the seeds and every root with its status on each. ``boot_info(api)``: the
newest root and every answering seed's kubo address (``netboot``/``remaster --from-cluster``).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tce_ipfs.errors import NodeError, UsageError
from tce_ipfs.ipfs.clusterapi import PINNED, UNREACHABLE, ClusterAPI
from tce_ipfs.ipfs.clusterconfig import ALL, RECORD, ClusterState, lan_addrs
from tce_ipfs.ipfs.node import Node, read_api_file
from tce_ipfs.ipfs.publish import PublishResult, publish
from tce_ipfs.ipfs.seed import BootInfo, check_peers, parse_pin_name, pin_name

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------- the cluster view
def _seed_view(peer: dict[str, Any]) -> dict[str, Any]:
    ipfs = peer.get("ipfs") or {}
    return {"id": peer.get("id"), "peername": peer.get("peername") or "", "error": peer.get("error") or "",
            "addrs": [str(a) for a in peer.get("addresses") or []],
            "kubo_id": ipfs.get("id"), "kubo_addrs": [str(a) for a in ipfs.get("addresses") or []]}


def root_rows(pins: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every pin of the cluster as a row: cid, name, published (for ours), per seed status, complete."""
    rows = []
    for pin in pins:
        name = str(pin.get("name") or "")
        parsed = parse_pin_name(name)
        peers = {pid: {"peername": str(p.get("peername") or pid), "status": str(p.get("status") or ""),
                       "error": str(p.get("error") or "")}
                 for pid, p in (pin.get("peer_map") or {}).items()}
        want = [p for p in peers.values() if p["status"] not in ("remote", UNREACHABLE)]
        rows.append({"cid": str(pin.get("cid")), "name": name, "ours": parsed is not None,
                     "published_at": parsed[0] if parsed else None, "source": parsed[1] if parsed else None,
                     "peers": peers, "pinned": sum(p["status"] == PINNED for p in peers.values()),
                     "complete": bool(want) and all(p["status"] == PINNED for p in want),
                     "unreachable": sorted(p["peername"] for p in peers.values()
                                           if p["status"] == UNREACHABLE)})
    rows.sort(key=lambda r: (r["published_at"] or "", r["cid"]), reverse=True)
    for i, row in enumerate(r for r in rows if r["ours"]):
        row["current"] = i == 0
    return rows


def cluster_status(api: ClusterAPI) -> dict[str, Any]:
    """The cluster as one peer sees it: the seeds (peerset) and every root with its status per seed."""
    seeds = sorted((_seed_view(p) for p in api.peers()), key=lambda s: s["peername"])
    return {"seeds": seeds, "roots": root_rows(api.status_all())}


# ------------------------------------------------------------------------------ publishing through it
@dataclass
class ClusterPublish:
    root: str
    result: PublishResult
    replication: int
    pinned_on: list[str] = field(default_factory=list)  # peernames
    required: int = 0
    unreachable: list[str] = field(default_factory=list)
    seconds_to_pinned: float = 0.0
    unpinned: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {**self.result.as_json(), "cluster": {
            "replication": self.replication, "required": self.required, "pinned_on": self.pinned_on,
            "unreachable": self.unreachable, "seconds_to_pinned": round(self.seconds_to_pinned, 2),
            "unpinned": self.unpinned}}


Progress = Callable[[str], None]


def wait_pinned(api: ClusterAPI, cid: str, *, replication: int = ALL, timeout: float = 1800.0,
                poll: float = 0.5, progress: Progress | None = None) -> tuple[list[str], int, list[str]]:
    """Wait until ``cid`` is pinned on the required seeds: ``replication`` of them, or (-1) every seed
    that answers. Returns (peernames pinned, required, peernames unreachable); ``progress`` gets a
    line each time the count changes. ``NodeError`` at ``timeout`` naming the seeds still missing."""
    deadline = time.monotonic() + timeout
    shown = ""
    while True:
        peers = (api.status(cid).get("peer_map") or {}).values()
        pinned = sorted(str(p.get("peername")) for p in peers if p.get("status") == PINNED)
        unreachable = sorted(str(p.get("peername")) for p in peers if p.get("status") == UNREACHABLE)
        reachable = [p for p in peers if p.get("status") != UNREACHABLE]
        required = len(reachable) if replication == ALL else replication
        line = f"{cid}: pinned on {len(pinned)}/{required}" + (
            f" ({len(unreachable)} seed(s) unreachable: {', '.join(unreachable)})" if unreachable else "")
        if line != shown and progress is not None:
            progress(line)
        shown = line
        if required and len(pinned) >= required:
            return pinned, required, unreachable
        if time.monotonic() > deadline:
            missing = sorted(f"{p.get('peername')} ({p.get('status')}"
                             + (f": {p['error']}" if p.get("error") else "") + ")"
                             for p in reachable if p.get("status") != PINNED)
            raise NodeError(f"{cid} pinned on {len(pinned)}/{required} seeds after {timeout:g} s; "
                            f"not yet: {', '.join(missing) or 'no seed'}",
                            hint="`tce-ipfs cluster status` shows each seed; a seed keeps pinning in "
                                 "the background")
        time.sleep(poll)


def wait_unpinned(api: ClusterAPI, cids: Sequence[str], *, timeout: float = 600.0, poll: float = 0.5) -> None:
    """Wait until no reachable seed holds any of ``cids`` any more (unpinning is asynchronous)."""
    deadline = time.monotonic() + timeout
    pending = list(cids)
    while pending:
        still = []
        for cid in pending:
            peers = (api.status(cid).get("peer_map") or {}).values()
            if any(p.get("status") not in ("unpinned", UNREACHABLE) for p in peers):
                still.append(cid)
        pending = still
        if not pending:
            return
        if time.monotonic() > deadline:
            raise NodeError(f"old roots still pinned on some seed after {timeout:g} s: {', '.join(pending)}")
        time.sleep(poll)


def our_roots(api: ClusterAPI) -> list[tuple[str, str]]:
    """(published time, cid) of every root pinned through ``publish --cluster``, newest first."""
    roots = []
    for pin in api.allocations():
        parsed = parse_pin_name(str(pin.get("name") or ""))
        if parsed:
            roots.append((parsed[0], str(pin["cid"])))
    return sorted(roots, reverse=True)


def publish_to_cluster(api: ClusterAPI, kubo_client: Any, repo_dir: Path, *, replication: int = ALL,
                       keep: int | None = None, timeout: float = 1800.0, check: bool = True,
                       kernel: str | None = None, progress: Progress | None = None,
                       bar: bool = False) -> ClusterPublish:
    """Publish ``repo_dir`` to the seed's kubo, pin the root on the cluster (``replication`` seeds,
    -1: all), wait until it is pinned on them; with ``keep``, unpin our roots older than the last
    ``keep`` (the new one counts) and wait until the seeds have dropped them."""
    if replication == 0 or replication < ALL:
        raise UsageError(f"--replication {replication}: give a number of seeds (>= 1), or -1 for all")
    if keep is not None and keep < 1:
        raise UsageError("--keep must be at least 1 (the root just published)")
    seeds = [p for p in api.peers() if not p.get("error")]
    if replication > len(seeds):
        raise UsageError(f"--replication {replication}: the cluster has {len(seeds)} seed(s) up")
    result = publish(repo_dir, kubo_client, check=check, progress=bar, kernel=kernel)
    root = result.root_cid
    started = time.monotonic()
    known = dict((cid, when) for when, cid in our_roots(api))
    name = pin_name(str(Path(repo_dir).resolve()), known.get(root))  # a republished root keeps its age
    api.pin(root, name=name, replication=replication)
    pinned, required, unreachable = wait_pinned(api, root, replication=replication, timeout=timeout,
                                                progress=progress)
    out = ClusterPublish(root=root, result=result, replication=replication, pinned_on=pinned,
                         required=required, unreachable=unreachable,
                         seconds_to_pinned=time.monotonic() - started)
    if keep is not None:
        roots = [cid for _when, cid in our_roots(api) if cid != root]
        old = roots[keep - 1:]
        for cid in old:
            if progress:
                progress(f"unpinning older root {cid}")
            api.unpin(cid)
        wait_unpinned(api, old, timeout=timeout)
        out.unpinned = old
    return out


# ------------------------------------------------------------------------------------ boot lines
def boot_info(api: ClusterAPI, *, swarm_key: str | None = None) -> BootInfo:
    """The boot line for machines booting from the cluster's seeds: the newest root published
    through it, and every seed's kubo address(es) that answers now."""
    roots = our_roots(api)
    if not roots:
        raise NodeError(f"the cluster at {api.endpoint} has no root published with `tce-ipfs publish "
                        "--cluster`", hint="publish one, or pass --cid and --boot-code ipfs.peers=...")
    peers: list[str] = []
    down = []
    for seed in api.peers():
        if seed.get("error") or (seed.get("ipfs") or {}).get("error"):
            down.append(seed.get("peername") or seed.get("id"))
            continue
        addrs = [str(a) for a in (seed.get("ipfs") or {}).get("addresses") or []]
        lan = lan_addrs(addrs, loopback_ok=False)
        peers += lan or lan_addrs(addrs, loopback_ok=True)
    if down:
        log.warning("seed(s) not answering now, left out of ipfs.peers=: %s", ", ".join(map(str, down)))
    return BootInfo(cid=roots[0][1], peers=check_peers(list(dict.fromkeys(peers))), swarm_key=swarm_key)


def find_state(value: str, default: Path | None = None) -> ClusterState | None:
    """The local cluster seed state behind ``--cluster``/``--from-cluster`` (a state directory, or a
    REST socket inside one, or the default state when the API is its), else None."""
    path = Path(value)
    if path.is_dir():
        state = ClusterState(path)
        return state if state.record_path.exists() else None
    if value.startswith("/unix/"):
        state = ClusterState(Path(value[len("/unix"):]).parent)
        return state if state.record_path.exists() else None
    if default is not None and (default / RECORD).exists():
        state = ClusterState(default)
        with contextlib.suppress(NodeError, KeyError, UsageError):
            if ClusterAPI(value, timeout=10).id().get("id") == state.record().get("cluster_peer_id"):
                return state
    return None


def api_for(value: str, default: Path | None = None) -> tuple[ClusterAPI, ClusterState | None]:
    """``--cluster STATE|API``: the REST API to talk to, and the local state when there is one."""
    path = Path(value)
    if path.is_dir():
        state = find_state(value)
        if state is None:
            raise UsageError(f"{value} is not a cluster seed's state directory (no {RECORD})")
        return ClusterAPI(state.rest_api()), state
    if not value.startswith(("/unix/", "/ip4/", "http://")):
        raise UsageError(f"--cluster {value}: neither a cluster seed's state nor a REST API address",
                         hint="give the seed's --state, or its REST API (/unix/STATE/rest.sock, "
                              "/ip4/127.0.0.1/tcp/9094)")
    return ClusterAPI(value), find_state(value, default)


def kubo_api_of(state: ClusterState) -> str:
    """The running kubo API of a local cluster seed (what ``publish --cluster`` adds to)."""
    addr = read_api_file(state.repo) if Node(state.repo).running else None
    if not addr:
        raise NodeError(f"the cluster seed's kubo in {state.path} is not running",
                        hint=f"tce-ipfs cluster start --state {state.path}")
    return addr
