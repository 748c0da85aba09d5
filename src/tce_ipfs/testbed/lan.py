"""A switched lab LAN where every machine has a network namespace (and so an address) of its own.

::

    with SwitchedLan(work_dir, machines=16, origin_mbit=100) as lan:
        start_kubo(lan.origin, "seed", kubo, repo, listen_ip=lan.origin_ip)   # the origin's seed
        lan.machines[3].exec([...])          # anything inside machine 3 (its eth0 is lan.machine_ip(3))
        lan.origin_tx_bytes()                # what the origin sent onto the LAN so far (wire bytes)

What a lab of real machines has and a single namespace does not: one address per machine (libp2p's
resource manager limits connections *per IP*: 16 nodes behind one address are refused), one link per
machine, and LAN multicast between them (mDNS discovery works exactly as on a real switch).

Topology: a *switch* namespace holds one bridge (the switch; its own address is the switch's
management address, nothing listens there). The origin and every machine are bare namespaces
(``Lab(bridge=False)``) with one veth pair each: the end inside is called ``eth0`` (as on a booting
TC machine), the other end is a port of the bridge. The origin's uplink is the bottleneck, as for a
mirror: ``tc ... tbf`` caps what the origin's ``eth0`` sends. Machine links are not shaped (a switched
LAN is much faster than one mirror's uplink; on this host the CPU limits them anyway).

Isolation (``check_isolated()``, also run by ``open()``): every namespace holds only ``lo`` and its
one veth end (the switch: ``lo``, the bridge and its ports), each veth's peer is in the switch
namespace (or, for a port, in one of this LAN's namespaces), no namespace has a default route or
IPv6, and none forwards. Nothing links to the host's namespace; nothing can be routed out.
Teardown (``close()``) closes every namespace -- all processes stopped, namespaces deleted and
checked gone -- even when one of them fails; ``Lab``'s ``atexit`` hook covers a crash.
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

LAN_SUBNET = "10.80.0.0/24"
ORIGIN_HOST = 2  # 10.80.0.2; .1 is the switch's own (management) address
MACHINE_HOST_OFFSET = 11  # machine i is 10.80.0.(11 + i)
MAX_MACHINES = 200
IFNAME = "eth0"


class SwitchedLan(Managed):
    """An origin and ``machines`` machines, each in its own namespace, on one switch (bridge)."""

    def __init__(self, work_dir: Path, *, machines: int, origin_mbit: float | None = None,
                 subnet: str = LAN_SUBNET) -> None:
        net = ipaddress.IPv4Network(subnet)
        if not net.is_private:
            raise IsolationError(f"LAN subnet {subnet} is not a private range")
        if not 0 <= machines <= min(MAX_MACHINES, net.num_addresses - MACHINE_HOST_OFFSET - 2):
            raise NodeError(f"a switched LAN holds 0..{MAX_MACHINES} machines, not {machines}")
        if origin_mbit is not None and origin_mbit <= 0:
            raise NodeError(f"origin rate must be positive, not {origin_mbit!r}")
        self.work_dir = Path(work_dir)
        self.network = net
        self.origin_mbit = origin_mbit
        self.switch = Lab(self.work_dir / "switch", subnet=subnet, dhcp=False)
        self.origin = Lab(self.work_dir / "origin", subnet=subnet, bridge=False)
        self.machines = [Lab(self.work_dir / f"m{i}", subnet=subnet, bridge=False) for i in range(machines)]
        self.origin_ip = str(net.network_address + ORIGIN_HOST)
        self._closed = False

    # ------------------------------------------------------------------ addresses
    def machine_ip(self, index: int) -> str:
        return str(self.network.network_address + MACHINE_HOST_OFFSET + index)

    def _members(self) -> list[tuple[Lab, str, str]]:
        """(namespace, switch port name, address) for the origin and every machine."""
        return [(self.origin, "origin", self.origin_ip),
                *((m, f"m{i}", self.machine_ip(i)) for i, m in enumerate(self.machines))]

    # ------------------------------------------------------------------ lifecycle
    def open(self) -> None:
        try:
            self.switch.open()
            for lab, port, ip in self._members():
                lab.open()
                # Created inside the switch, the inner end moved straight into the member's namespace:
                # never in the host's namespace.
                run_ip(self.switch.netns, "link", "add", port, "type", "veth", "peer", "name", IFNAME,
                    "netns", lab.netns)
                run_ip(self.switch.netns, "link", "set", port, "master", self.switch.bridge)
                run_ip(self.switch.netns, "link", "set", port, "up")
                run_ip(lab.netns, "addr", "add", f"{ip}/{self.network.prefixlen}", "dev", IFNAME)
                run_ip(lab.netns, "link", "set", IFNAME, "up")
            if self.origin_mbit is not None:
                burst = tbf_burst_bytes(self.origin_mbit)
                proc.run(["tc", "-n", self.origin.netns, "qdisc", "add", "dev", IFNAME, "root", "tbf",
                          "rate", f"{self.origin_mbit:g}mbit", "burst", str(burst),
                          "latency", f"{LINK_LATENCY_MS}ms"], timeout=30, what="tbf rate cap on the origin")
            self.check_isolated()
        except BaseException:
            self.close()
            raise
        log.info("switched LAN up: origin %s%s, %d machines", self.origin_ip,
                 f" ({self.origin_mbit:g} Mbit/s)" if self.origin_mbit else "", len(self.machines))

    def close(self) -> None:
        """Close every namespace (machines, origin, then the switch). Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        problems: list[str] = []
        for lab in (*self.machines, self.origin, self.switch):
            try:
                lab.close()
            except Exception as exc:  # keep tearing down the others
                problems.append(str(exc))
        if problems:
            raise NodeError("switched LAN teardown incomplete: " + "; ".join(problems))

    def kill_machine_processes(self) -> None:
        """Stop everything running on the machines (their kubo daemons); the LAN stays up."""
        for m in self.machines:
            m.kill_processes()

    # ------------------------------------------------------------------ isolation proof
    def check_isolated(self) -> None:
        members = self._members()
        names = {lab.netns for lab, _, _ in members}
        ports = {port for _, port, _ in members}
        sw = self.switch
        for link in sw.links():
            name = str(link["ifname"])
            if name in ("lo", sw.bridge):
                continue
            if name not in ports:
                raise IsolationError(f"switch {sw.netns} has an unexpected link {name}")
            if link.get("master") != sw.bridge:
                raise IsolationError(f"switch port {name} is not on the bridge")
            peer = sw.netns_named_by(link.get("link_netnsid"))
            if peer not in names:
                raise IsolationError(f"switch port {name}'s peer is in {peer!r}, not in this LAN")
        sw.check_routes({"lo", sw.bridge}, f"switch {sw.netns}")
        for lab, _, _ in members:
            links = lab.links()
            extra = {str(x["ifname"]) for x in links} - {"lo", IFNAME}
            if extra:
                raise IsolationError(f"{lab.netns} has unexpected links: {sorted(extra)}")
            for link in links:
                if link["ifname"] == IFNAME and lab.netns_named_by(link.get("link_netnsid")) != sw.netns:
                    raise IsolationError(f"{IFNAME} in {lab.netns} is not linked to the switch")
            lab.check_routes({"lo", IFNAME}, f"namespace {lab.netns}")
        for lab in (sw, *(m for m, _, _ in members)):
            if (lab.exec(["sysctl", "-n", "net.ipv4.ip_forward"]).stdout or b"").strip() != b"0":
                raise IsolationError(f"namespace {lab.netns} forwards IPv4")

    # ------------------------------------------------------------------ counters
    def link_stats(self, lab: Lab) -> dict[str, Any]:
        """Kernel counters of ``lab``'s eth0: ``{"rx": {"bytes", ...}, "tx": {...}}``."""
        out = run_ip(lab.netns, "-j", "-s", "link", "show", "dev", IFNAME).stdout or b"[]"
        stats: dict[str, Any] = json.loads(out)[0]["stats64"]
        return stats

    def origin_tx_bytes(self) -> int:
        """Bytes the origin has sent onto the LAN (Ethernet frames: payload plus all headers)."""
        return int(self.link_stats(self.origin)["tx"]["bytes"])

    def origin_qdisc(self) -> list[dict[str, Any]]:
        out = proc.run(["tc", "-n", self.origin.netns, "-j", "qdisc", "show", "dev", IFNAME],
                       timeout=30).stdout
        qdiscs: list[dict[str, Any]] = json.loads(out or b"[]")
        return qdiscs
