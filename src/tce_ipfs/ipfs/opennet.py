"""RPC calls for a node on the open network (``ipfs.net=public``, ``seed serve --net public``, the
simulated internet): reachability, AutoNAT, providing and finding providers.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from typing import Any

from tce_ipfs.errors import NodeError
from tce_ipfs.ipfs.rpc import ClientError, call, config_value, identity
from tce_ipfs.ipfs.seedline import is_private

log = logging.getLogger(__name__)

# kubo's routing query event type (routing.QueryEventType) of a provider found.
EVENT_PROVIDER = 4
# s: how long an announcement waits for AutoNAT's answer (the boot hook's ANNOUNCE_MAX)
ANNOUNCE_MAX = 60.0
# Behind the home router too, beside the private networks (``seedline.is_private``): carrier-grade NAT.
CGNAT = ipaddress.IPv4Network("100.64.0.0/10")


def routes(c: Any) -> bool:
    """Is the node on an open network (public mode: it has bootstrap peers and routes)? A LAN node has
    no bootstrap peers (its DHT, if any, is just the peers it was told to dial)."""
    return bool(config_value(c, "Bootstrap")) and config_value(c, "Routing.Type") != "none"


def autonat(c: Any) -> dict[str, Any]:
    """``{"reachability": "Public"|"Private"|"Unknown", "reachable"|"unreachable"|"unknown": [...]}``
    (AutoNAT v2, ``ipfs swarm addrs autonat``)."""
    res = call("swarm addrs autonat", c._client.request, "/swarm/addrs/autonat", decoder="json")
    return dict(res[0]) if res else {}


def reachability(c: Any) -> dict[str, Any]:
    """Whether other machines can reach this node, as a TC user wants to read it.

    ``state``: ``lan`` (no routing: only named peers and its LAN reach it), ``public`` (AutoNAT found
    it reachable), ``relayed`` (behind NAT, reachable through the circuit relays in ``relays``: peers
    connect there and hole-punch a direct connection), ``unreachable`` (behind NAT, no relay yet) or
    ``unknown`` (still being probed). ``text``: one line saying so.
    """
    if not routes(c):
        return {"state": "lan", "relays": [], "addresses": [],
                "text": "LAN only (ipfs.net=lan or private): not announced beyond its own peers"}
    addrs = [str(a) for a in identity(c).get("Addresses") or []]
    relays = sorted({a.split("/p2p-circuit", 1)[0] for a in addrs if "/p2p-circuit" in a})
    nat = autonat(c)
    seen = str(nat.get("reachability") or "Unknown")
    public = [str(a) for a in nat.get("reachable") or []]
    if seen == "Public":
        state, text = "public", "public: reachable directly" + (f" at {public[0]}" if public else "")
    elif relays:
        state, text = "relayed", f"behind NAT, reachable through {len(relays)} relay(s); peers hole-punch " \
                                 "a direct connection from there"
    elif seen == "Private":
        state, text = "unreachable", "behind NAT and no relay yet: others cannot connect to this machine"
    else:
        state, text = "unknown", "not known yet (AutoNAT is still probing)"
    return {"state": state, "autonat": seen, "relays": relays, "addresses": public, "text": text}


def provide_stat(c: Any) -> dict[str, Any]:
    """kubo's provide system: ``{"records", "last_at", "interval_s"}`` (None where it does not say).

    The legacy provider (what a small machine runs) reports its last (re)provide round: how many CIDs it
    announced then and when; the sweep provider its counters.
    """
    try:
        res = c._client.request("/provide/stat", decoder="json")
    except ClientError:
        return {"records": None, "last_at": None, "interval_s": None}
    raw = dict(res[0]) if res else {}
    legacy = raw.get("Legacy") or {}
    sweep = raw.get("Sweep") or {}
    if legacy:
        last = str(legacy.get("LastRun") or "")
        return {"records": int(legacy.get("LastReprovideBatchSize") or 0),
                "total": int(legacy.get("TotalReprovides") or 0),
                "last_at": None if last.startswith("0001-") else last,
                "interval_s": int(legacy.get("ReprovideInterval") or 0) // 1_000_000_000}
    past = ((sweep.get("operations") or {}).get("past") or {})
    return {"records": int(past.get("records_provided") or 0), "total": int(past.get("keys_provided") or 0),
            "last_at": ((sweep.get("timing") or {}).get("cycle_start")),
            "interval_s": int((sweep.get("timing") or {}).get("reprovides_interval") or 0) // 1_000_000_000}


def network_status(c: Any) -> dict[str, Any]:
    """What ``status`` and ``seed status`` show about the open network: ``{"reachability": ...,
    "provide": ...}`` (``reachability``/``provide_stat``); a part kubo cannot answer is None (an old
    kubo, a node without AutoNAT), never an error: the rest of the status still matters."""
    out: dict[str, Any] = {"reachability": None, "provide": None}
    try:
        out["reachability"] = reachability(c)
    except NodeError as exc:
        out["reachability"] = {"state": "unknown", "text": f"not known: {exc.message}"}
    if out["reachability"] and out["reachability"]["state"] != "lan":
        out["provide"] = provide_stat(c)
    return out


def render_network(info: dict[str, Any] | None) -> list[str]:
    """``status`` lines for ``network_status``: reachability, then the provider records."""
    if not info or not info.get("reachability"):
        return []
    lines = [f"network:   {info['reachability']['text']}"]
    relays = info["reachability"].get("relays") or []
    if relays and info["reachability"]["state"] == "relayed":
        lines.append(f"relays:    {', '.join(relays)}")
    prov = info.get("provide")
    if prov and prov.get("records") is not None:
        every = f", again every {prov['interval_s'] // 3600} h" if prov.get("interval_s") else ""
        if prov.get("last_at"):
            lines.append(f"provided:  {prov['records']} provider record(s) at {prov['last_at']}"
                         f"{every} ({prov.get('total', 0)} since kubo started)")
        else:  # kubo's first round comes a minute after its start; new pins are announced at once
            lines.append(f"provided:  new pins announced as they come; the first round of all of them "
                         f"starts a minute after kubo's start{every}")
    return lines


def announce_how(c: Any) -> str | None:
    """How peers reach this node, once its addresses say so (the boot hook's ``announce_how``):
    directly (AutoNAT found it public), or through a relay (a relay address, and no direct public
    address left beside it that AutoNAT has not confirmed); None while that is not known yet."""
    seen = reachability(c)
    if seen["state"] == "public":
        return str(seen["text"])
    if seen["state"] != "relayed":
        return None
    direct = [str(a) for a in identity(c).get("Addresses") or [] if "/p2p-circuit" not in str(a)]
    if any(_public_ip4(a) for a in direct):
        return None
    return str(seen["text"])


def _public_ip4(addr: str) -> bool:
    parts = addr.split("/")
    if len(parts) < 3 or parts[1] != "ip4":
        return False
    return not (is_private(parts[2]) or ipaddress.IPv4Address(parts[2]) in CGNAT)


def announce(c: Any, cid: str, *, wait: float = ANNOUNCE_MAX, timeout: float = 120.0) -> dict[str, Any]:
    """Announce ``cid`` from an open-network node once peers can be told how to reach it.

    kubo announces a pin at once, with the addresses it has at that moment, and the DHT servers keep
    those with the record. Before AutoNAT has decided, a node behind NAT names its router's outside
    address as its only public one: nobody can dial that, and a peer that tries it first leaves a
    half-open entry in its own router on the very ports the hole punch then needs. So wait (at most
    ``wait`` s) for ``announce_how``, then announce again (``provide``): the fresh record carries the
    relay address. Past the bound it announces anyway (a record with a bad address beats none).
    ``{"how", "waited_s"}``; ``how`` is None when the wait ran out."""
    started = time.monotonic()
    how = announce_how(c)
    while how is None and time.monotonic() - started < wait:
        time.sleep(1.0)
        how = announce_how(c)
    provide(c, cid, timeout=timeout)
    return {"how": how, "waited_s": round(time.monotonic() - started, 1)}


def announce_root(c: Any, cid: str, *, timeout: float = 120.0) -> dict[str, Any]:
    """``announce`` for a publisher (``tce-ipfs publish``, ``seed serve --net public``): says on the
    log how peers reach the node, or why the record may be poor. A failed announcement (no DHT peer
    yet, say) is a warning, not an error: the root is published and pinned, and kubo announces its
    pins again in its next round. ``{"how", "waited_s"}`` or ``{"how": None, "error"}``."""
    log.info("announcing %s on the IPFS network (waiting up to %g s for AutoNAT to say how peers reach "
             "this node)", cid, ANNOUNCE_MAX)
    try:
        done = announce(c, cid, timeout=timeout)
    except NodeError as exc:
        log.warning("announcing %s failed (kubo announces its pins again in its next round): %s", cid,
                    exc.message)
        return {"how": None, "error": exc.message}
    if done["how"]:
        log.info("announced %s after %.1f s: %s", cid, done["waited_s"], done["how"])
    else:
        log.warning("announced %s, but AutoNAT had not said within %.0f s how peers reach this node: the "
                    "record may name an address nobody can dial (`tce-ipfs status` says when kubo "
                    "announces it again)", cid, done["waited_s"])
    return done


def provide(c: Any, cid: str, *, timeout: float = 120.0) -> None:
    """Announce ``cid`` (pinned, and its provider record put on the DHT) and wait until the record is
    out: ``pin add`` with kubo's fast provide of the root, synchronous. ``NodeError`` with kubo's
    reason when it could not (e.g. no DHT peer yet). ``ipfs routing provide`` only queues."""
    call(f"provide {cid}", c._client.request, "/pin/add", (cid,),
         opts={"fast-provide-root": "true", "fast-provide-wait": "true"}, decoder="json", timeout=timeout)


def find_providers(c: Any, cid: str, *, count: int = 1, timeout: float = 60.0) -> list[dict[str, Any]]:
    """Providers of ``cid`` from content routing: ``[{"ID", "Addrs"}]`` (at most ``count``)."""
    events = call(f"routing findprovs {cid}", c._client.request, "/routing/findprovs", (cid,),
                  opts={"num-providers": str(count)}, decoder="json", timeout=timeout)
    found: dict[str, dict[str, Any]] = {}
    for event in events or []:
        if event.get("Type") == EVENT_PROVIDER:
            for resp in event.get("Responses") or []:
                peer = str(resp.get("ID"))
                found.setdefault(peer, {"ID": peer, "Addrs": resp.get("Addrs") or []})
    return list(found.values())[:count]
