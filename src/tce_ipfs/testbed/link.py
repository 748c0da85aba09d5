"""Two private lab namespaces joined by one rate-capped link: an origin behind an uplink.

(The fetch-link benchmark now uses ``lan.SwitchedLan``, where every machine has an address of its own;
this two-namespace link is kept for tests that need just an origin and one shared client side.)
"""

from __future__ import annotations

import ipaddress
import json
import logging
from pathlib import Path
from typing import Any

from tce_ipfs import proc
from tce_ipfs.errors import IsolationError, NodeError
from tce_ipfs.testbed.lab import LINK_LATENCY_MS, Lab, Managed, run_ip, tbf_burst_bytes

log = logging.getLogger(__name__)

LINK_SUBNET = "10.78.0.0/30"  # the veth pair between the two namespaces (private to them)


class ShapedLink(Managed):
    """Two private lab namespaces, ``origin`` and ``clients``, joined by one veth pair with a tbf cap.

    ::

        with ShapedLink(work_dir, rate_mbit=100) as link:
            seed = start_kubo(link.origin, "seed", kubo, repo, listen_ip=link.origin_ip)
            peer = start_kubo(link.clients, "c0", kubo, repo2, listen_ip=link.clients_ip, port=4002)
            link.tx_bytes("origin")       # bytes the origin sent over the link so far

    The origin side of the veth is rate-capped with ``tc qdisc ... tbf`` (and the clients side too with
    ``shape_both``): the origin's uplink is the bottleneck, as for a real mirror. Everything inside
    ``clients`` shares one address (``clients_ip``), so processes there reach each other through the
    namespace's own loopback path: an uncapped LAN. ``netem`` is not available here; there is no added
    delay or loss.

    Isolation: each namespace is a ``Lab`` (no DHCP) and holds only ``lo``, its (unused) bridge and its
    end of the veth, whose peer is in the *other* lab namespace (``check_isolated()``); there is no link
    to the host's namespace, no default route and no forwarding. Teardown (``close()``, ``__exit__``,
    and each lab's ``atexit`` hook) closes both labs -- every process inside stopped, both namespaces
    deleted (which destroys the veth pair) and checked to be gone -- even when one of them fails.
    """

    def __init__(self, work_dir: Path, *, rate_mbit: float, subnet: str = LINK_SUBNET,
                 shape_both: bool = True) -> None:
        if rate_mbit <= 0:
            raise NodeError(f"link rate must be positive, not {rate_mbit!r}")
        net = ipaddress.IPv4Network(subnet)
        if not net.is_private:
            raise IsolationError(f"link subnet {subnet} is not a private range")
        hosts = list(net.hosts())
        self.work_dir = Path(work_dir)
        self.rate_mbit = rate_mbit
        self.shape_both = shape_both
        self.network = net
        self.origin_ip, self.clients_ip = str(hosts[0]), str(hosts[1])
        # The bridges stay unused; distinct subnets keep the two namespaces' routes unambiguous.
        self.origin = Lab(self.work_dir / "origin", subnet="10.79.0.0/24", dhcp=False)
        self.clients = Lab(self.work_dir / "clients", subnet="10.79.1.0/24", dhcp=False)
        self.origin_if = f"tceipfs{self.origin.suffix}o"
        self.clients_if = f"tceipfs{self.clients.suffix}c"
        self._closed = False

    def _side(self, side: str) -> tuple[Lab, str, str]:
        if side == "origin":
            return self.origin, self.origin_if, self.origin_ip
        if side == "clients":
            return self.clients, self.clients_if, self.clients_ip
        raise ValueError(f"side must be 'origin' or 'clients', not {side!r}")

    def open(self) -> None:
        try:
            self.origin.open()
            self.clients.open()
            # Created inside origin, the peer end placed straight into clients: never in the host's ns.
            run_ip(self.origin.netns, "link", "add", self.origin_if, "type", "veth", "peer", "name",
                self.clients_if, "netns", self.clients.netns)
            for side in ("origin", "clients"):
                lab, ifname, ip = self._side(side)
                run_ip(lab.netns, "addr", "add", f"{ip}/{self.network.prefixlen}", "dev", ifname)
                run_ip(lab.netns, "link", "set", ifname, "up")
                if side == "origin" or self.shape_both:
                    burst = tbf_burst_bytes(self.rate_mbit)
                    proc.run(["tc", "-n", lab.netns, "qdisc", "add", "dev", ifname, "root", "tbf",
                              "rate", f"{self.rate_mbit:g}mbit", "burst", str(burst),
                              "latency", f"{LINK_LATENCY_MS}ms"],
                             timeout=30, what=f"tbf rate cap on {ifname}")
            self.check_isolated()
        except BaseException:
            self.close()
            raise
        log.info("shaped link up: %s %s <-> %s %s, %g Mbit/s", self.origin.netns, self.origin_ip,
                 self.clients.netns, self.clients_ip, self.rate_mbit)

    def close(self) -> None:
        """Close both labs (clients first), whatever happens to either. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        problems: list[str] = []
        for lab in (self.clients, self.origin):
            try:
                lab.close()
            except Exception as exc:  # keep tearing down the other one
                problems.append(str(exc))
        if problems:
            raise NodeError("shaped link teardown incomplete: " + "; ".join(problems))

    def check_isolated(self) -> None:
        """Raise ``IsolationError`` unless each namespace has only lo, its bridge and its veth end,
        the veth's peer is the other lab's namespace, and neither has a default route."""
        for side, other in (("origin", self.clients), ("clients", self.origin)):
            lab, ifname, _ = self._side(side)
            allowed = {"lo", lab.bridge, ifname}
            links = lab.links()
            extra = {str(link["ifname"]) for link in links} - allowed
            if extra:
                raise IsolationError(f"{side} namespace {lab.netns} has unexpected links: {sorted(extra)}")
            for link in links:
                if link["ifname"] == ifname:
                    peer_ns = lab.netns_named_by(link.get("link_netnsid"))
                    if peer_ns != other.netns:
                        raise IsolationError(f"{ifname}'s peer is in {peer_ns!r}, not in {other.netns}")
                elif "link_netnsid" in link:
                    raise IsolationError(f"{link['ifname']} in {lab.netns} has a peer in another namespace")
            lab.check_routes(allowed, f"{side} namespace {lab.netns}")
            forwarding = lab.exec(["sysctl", "-n", "net.ipv4.ip_forward"]).stdout or b""
            if forwarding.strip() != b"0":
                raise IsolationError(f"{side} namespace {lab.netns} forwards IPv4")

    def link_stats(self, side: str) -> dict[str, Any]:
        """The kernel's counters of one veth end: ``{"rx": {"bytes", ...}, "tx": {"bytes", ...}}``."""
        lab, ifname, _ = self._side(side)
        out = run_ip(lab.netns, "-j", "-s", "link", "show", "dev", ifname).stdout or b"[]"
        stats: dict[str, Any] = json.loads(out)[0]["stats64"]
        return stats

    def tx_bytes(self, side: str = "origin") -> int:
        """Bytes sent by ``side`` over the link so far (Ethernet frames: payload plus all headers)."""
        return int(self.link_stats(side)["tx"]["bytes"])

    def qdiscs(self, side: str) -> list[dict[str, Any]]:
        lab, ifname, _ = self._side(side)
        out = proc.run(["tc", "-n", lab.netns, "-j", "qdisc", "show", "dev", ifname], timeout=30).stdout
        qdiscs: list[dict[str, Any]] = json.loads(out or b"[]")
        return qdiscs
