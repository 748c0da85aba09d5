"""A simulated internet in network namespaces: public DHT servers and a relay, and homes behind NAT.

::

    core  (the "internet": one bridge, 192.0.0.0/24; every node and router in 192.0.0.192/26)
     |-- boot1..boot4   kubo public nodes (the bootstrap list): AutoNAT service, circuit-relay service;
     |                  boot1..boot3 also serve the DHT (boot4 does not: see "Addresses")
     |-- wan veth --- home a: router namespace (192.0.0.221 | NAT | LAN 10.61.1.0/24, DHCP)
     |                  |-- machine a1 (a namespace: a host-run kubo, e.g. the home seed)
     |                  |-- taps (QEMU guests: DHCP gives them the router as gateway)
     |-- wan veth --- home b ... home c ...

    with Internet(work_dir, homes={"a": "cone", "b": "cone"}) as net:
        net.start_servers(kubo)                        # boot1..4 (relays too; relays=False: none)
        seed = net.home("a").machine("a1")             # a namespace behind home a's NAT
        node = net.start_node(seed, "seed", kubo, repo, config=netmode.public_config(net.bootstrap()))
        tap = net.home("b").tap()                      # qemu.boot(..., net=tap)

**Addresses.** libp2p treats private addresses (10/8, 172.16/12, 192.168/16, 100.64/10) and the
documentation ranges as "not public": it will not run AutoNAT on them, keep them in the public DHT,
relay to them or hole-punch with them. So the core is 192.0.0.0/24, the IETF protocol assignment
block (RFC 6890: not globally routed, no host on the real internet has one of these addresses), and
every node and router gets one of 192.0.0.192/26, the part of it libp2p counts as public. They exist
only inside these namespaces. libp2p's defences against Sybil attacks then shape the rest: the public
DHT keeps at most 3 peers of one /16 in its routing table and drops a lookup answer that names more
(so at most 3 DHT servers here: boot1..boot3); an observed address counts once 4 different peers have
seen it, and the relay finder waits for 4 candidate relays (or 3 minutes). So boot4 is a relay and
AutoNAT server but not a DHT server, and the bootstrap list is exactly 4 long (kubo dials 4 of it):
every home node meets 4 relays and 4 observers within seconds, as it would on the real network.

**NAT.** Each home router masquerades its LAN behind its WAN address with nftables and drops every
unsolicited packet from the WAN (forward and input), as home routers do. ``cone``: Linux keeps the
source port, so one inside port maps to the same outside port for every destination (endpoint-
independent mapping, as most consumer routers; filtering stays address-and-port dependent): TCP hole
punching (simultaneous open) gets through -- the first SYN out of each router opens the way for the
other side's, and conntrack takes a SYN answered by a SYN. ``symmetric``: ``masquerade fully-random``
gives every new connection its own outside port (endpoint-dependent mapping): the port a peer
observed is useless to anyone else, so hole punching cannot work. Known limit of ``cone``: Linux
keeps a port only while the outside address:port pair is free, so a second machine of one home using
the same inside port towards the same peer gets another outside port for that peer alone (a real
endpoint-independent NAT would give it one port for every peer): tests keep one kubo on port 4001
per home and peer pair (the hook boots in home d for that reason). The bridges (the core, each home
LAN) are switches: frames they switch bypass netfilter (``_switch_only``), so only the routers'
rules act on a flow, as on the real internet.

**Nothing leaves.** No namespace has a link to the host's namespace (every veth's peer is in one of
ours: ``check_isolated()``), the core has no default route and no forwarding out, IPv6 is off
everywhere, DHCP hands out no DNS server. The core counts every packet addressed outside the simulated
world (``strays()``: per destination, an nftables set, and dropped); a test that ends with strays
has a defect. Every kubo here gets the simulated bootstrap list, never the real one.

**Teardown** (``close()``, ``__exit__``, each lab's ``atexit`` hook): every process stopped, every
namespace deleted and checked to be gone, also when a test fails half-way.

One module (over 500 lines) on purpose: the core, the home routers' NAT rules, the public servers and
the teardown above depend on one addressing plan; split apart, each part would have to restate it.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tce_ipfs import proc
from tce_ipfs.errors import IsolationError, NodeError
from tce_ipfs.testbed.lab import (
    GUEST_HOST_OFFSET,
    MAX_GUESTS,
    PREFIX,
    Lab,
    LabProcess,
    Managed,
    TapNet,
    kill_netns_pids,
    namespaces,
    run_ip,
)

log = logging.getLogger(__name__)

INTERNET = "192.0.0.0/24"  # the core's LAN; its bridge (.1) is the homes' "ISP" gateway
PUBLIC = "192.0.0.192/26"  # the nodes' and routers' addresses: public to libp2p, routed nowhere
HOME_NETS = "10.61.0.0/16"  # home LANs: 10.61.<n>.0/24, home n = 1, 2, ...
SIM_NETS = (INTERNET, HOME_NETS)  # every address of the simulated world
LINK_LOCAL_MULTICAST = "224.0.0.0/24"
SWARM_PORT = 4001
SERVERS = 4  # public nodes: libp2p trusts an observed address once 4 peers saw it (and wants 4 relays)
DHT_SERVERS = 3  # the public DHT keeps at most 3 peers per /16 (all of these share 192.0/16)
SERVER_OFFSET = 8  # boot1 = 192.0.0.200 (the first host of PUBLIC, .193, + 7)
WAN_OFFSET = 28  # home n's WAN address = .220 + n
MACHINE_OFFSET = 9  # machine k in a home = 10.61.<n>.10 + k
Nat = Literal["cone", "symmetric"]
NAT_KINDS: tuple[Nat, ...] = ("cone", "symmetric")
EDGE_TABLE = "tceipfs_edge"
# The core's nodes have public addresses and nothing in front of them: they know they are reachable
# (no AutoNAT round first; a relay serves only once it believes that).
PUBLIC_NODE = {"Internal.Libp2pForceReachability": "public"}
NAT_TABLE = "tceipfs_nat"


def _hosts(net: str) -> list[str]:
    return [str(h) for h in ipaddress.IPv4Network(net).hosts()]


def in_sim(addr: str) -> bool:
    ip = ipaddress.IPv4Address(addr)
    return any(ip in ipaddress.IPv4Network(n) for n in SIM_NETS)


@dataclass
class SimNode:
    """A kubo daemon somewhere in the simulated internet; its API is a unix socket (namespaces do not
    apply to unix sockets, so the host's tests reach it without any link into the simulation)."""

    name: str
    ip: str
    port: int
    peer_id: str
    api: str
    node: Any  # ipfs.node.Node
    process: LabProcess

    @property
    def multiaddr(self) -> str:
        return f"/ip4/{self.ip}/tcp/{self.port}/p2p/{self.peer_id}"

    def client(self, timeout: float = 30.0) -> Any:
        from tce_ipfs.ipfs import rpc

        return rpc.client(self.api, timeout=timeout)

    @property
    def running(self) -> bool:
        return self.process.alive()

    def stop(self) -> None:
        self.process.stop()


@dataclass
class Machine:
    """A computer: a namespace of its own with one veth (``eth0``) on a switch -- a home's LAN bridge
    (the router is its default gateway) or the core's (a public server: no gateway, the core is all
    there is). Its own namespace also gives it its own source address (kubo's dials leave from it)."""

    name: str
    netns: str
    ip: str
    switch: Lab  # whose bridge eth0 is plugged into; its teardown stops the machine's processes
    home: Home | None
    port_name: str  # the veth's end on the switch

    def exec_argv(self, argv: Sequence[str | os.PathLike[str]]) -> list[str]:
        return ["ip", "netns", "exec", self.netns, *(os.fspath(a) for a in argv)]

    def exec(self, argv: Sequence[str | os.PathLike[str]], **kwargs: Any) -> Any:
        kwargs.setdefault("timeout", 60)
        return proc.run(self.exec_argv(argv), **kwargs)

    def spawn(self, name: str, argv: Sequence[str | os.PathLike[str]], *,
              env: Mapping[str, str] | None = None) -> LabProcess:
        """A long-running process on this machine; the switch's teardown stops it."""
        lab = self.switch
        log_path = lab.work_dir / f"{name}.log"
        full = self.exec_argv(argv)
        popen = proc.spawn(full, log_path=log_path, env=env)
        return lab.adopt(LabProcess(name=name, argv=full, popen=popen, log_path=log_path))


@dataclass
class Home:
    """One home: a router namespace (WAN veth into the core, NAT, the LAN bridge with DHCP) and the
    machines and taps on its LAN."""

    name: str
    index: int  # 1, 2, ...
    nat: Nat
    lab: Lab  # the router's namespace; its bridge is the home LAN
    wan_ip: str
    machines: list[Machine] = field(default_factory=list)

    @property
    def netns(self) -> str:
        return self.lab.netns

    @property
    def lan(self) -> ipaddress.IPv4Network:
        return self.lab.network

    @property
    def router_ip(self) -> str:
        return self.lab.bridge_ip

    def tap(self) -> TapNet:
        """A tap on the home LAN for a QEMU guest (DHCP gives it ``<lan>.101+i`` and the router)."""
        return self.lab.tap()

    def machine(self, name: str) -> Machine:
        for m in self.machines:
            if m.name == name:
                return m
        raise NodeError(f"home {self.name} has no machine {name!r}")

    def wan_stats(self) -> dict[str, Any]:
        """The router's WAN counters (bytes and packets each way)."""
        out = run_ip(self.netns, "-j", "-s", "link", "show", "dev", "wan").stdout or b"[]"
        stats: dict[str, Any] = json.loads(out)[0]["stats64"]
        return stats

    def conntrack(self, port: int | None = SWARM_PORT) -> list[str]:
        """The router's connection-tracking table (what its NAT mapped), the entries with ``port`` as
        a source or destination port: where to look when hole punching fails -- a SYN_SENT entry whose
        answer never came, or a mapping to another outside port than the one peers observed."""
        out = proc.run(["ip", "netns", "exec", self.netns, "cat", "/proc/net/nf_conntrack"], check=False,
                       timeout=30).stdout or b""
        lines = out.decode(errors="replace").splitlines()
        if port is not None:
            lines = [ln for ln in lines if f"port={port} " in ln]
        return [" ".join(ln.split()[2:]) for ln in lines]

    def set_nat(self, nat: Nat) -> None:
        """Switch the router's NAT kind (new connections only; existing mappings stay)."""
        _nft(self.netns, _nat_rules(self.lab.bridge, nat), replace=NAT_TABLE)
        self.nat = nat


def _nft(netns: str, ruleset: str, *, replace: str | None = None) -> None:
    if replace:
        proc.run(["ip", "netns", "exec", netns, "nft", "delete", "table", "ip", replace], check=False,
                 timeout=30)
    proc.run(["ip", "netns", "exec", netns, "nft", "-f", "-"], input=ruleset.encode(), timeout=30,
             what=f"nftables in {netns}")


def _nat_rules(lan_if: str, nat: Nat) -> str:
    """The home router: masquerade the LAN behind ``wan``; from the WAN only replies get in.

    The filter sees routed packets only: ``_switch_only`` keeps bridged frames (machine to machine on
    one home LAN, home to home across the core) out of netfilter, as on a real switch."""
    random = " fully-random" if nat == "symmetric" else ""
    return f"""
table ip {NAT_TABLE} {{
    chain postrouting {{
        type nat hook postrouting priority srcnat; policy accept;
        oifname "wan" masquerade{random}
    }}
    chain forward {{
        type filter hook forward priority filter; policy drop;
        ct state established,related accept
        iifname "{lan_if}" oifname "wan" accept
        counter
    }}
    chain input {{
        type filter hook input priority filter; policy accept;
        iifname "wan" ct state established,related accept
        iifname "wan" counter drop
    }}
}}
"""


def _switch_only(netns: str) -> None:
    """Frames a bridge in ``netns`` switches do not go through netfilter (IPv4 filter, NAT, conntrack).

    Where the host has ``br_netfilter`` loaded (Docker and libvirt load it) every new namespace starts
    with ``bridge-nf-call-iptables=1`` (the setting is per namespace): frames between two machines of
    one home LAN then meet the router's forward filter (policy drop) and die, so mDNS and LAN peers do
    not work inside a home; and the core's conntrack tracks every home-to-home flow it switches, which
    no part of the real internet does. A switch is a switch: off in the namespaces that have bridges
    (ours only; the host's own setting is untouched)."""
    for key in ("bridge-nf-call-iptables", "bridge-nf-call-ip6tables", "bridge-nf-call-arptables"):
        path = f"/proc/sys/net/bridge/{key}"
        if os.path.exists(path):  # br_netfilter not loaded: nothing to turn off
            proc.run(["ip", "netns", "exec", netns, "sysctl", "-q", "-w", f"net.bridge.{key}=0"], timeout=30)


def _edge_rules() -> str:
    """The core: count (per destination) and drop every packet addressed outside the simulation.

    Link-local multicast (224.0.0.0/24, e.g. the IGMP report a bridge sends when it comes up) is not
    counted: no router forwards it, on this machine or anywhere."""
    sim = ", ".join((*SIM_NETS, LINK_LOCAL_MULTICAST))
    return f"""
table ip {EDGE_TABLE} {{
    set strays {{ type ipv4_addr; flags dynamic; size 4096; }}
    counter stray {{ }}
    chain prerouting {{
        type filter hook prerouting priority raw; policy accept;
        ip daddr != {{ {sim} }} update @strays {{ ip daddr }} counter name "stray" drop
    }}
    chain output {{
        type filter hook output priority raw; policy accept;
        ip daddr != {{ {sim}, 127.0.0.0/8 }} update @strays {{ ip daddr }} counter name "stray" drop
    }}
}}
"""


class Internet(Managed):
    """The simulated internet (see the module doc). ``homes``: name -> NAT kind, in order."""

    def __init__(self, work_dir: Path, *, homes: Mapping[str, Nat] | Sequence[str] = ("a", "b", "c")) -> None:
        self.work_dir = Path(work_dir)
        kinds: dict[str, Nat] = dict(homes) if isinstance(homes, Mapping) else dict.fromkeys(homes, "cone")
        for name, nat in kinds.items():
            if nat not in NAT_KINDS:
                raise NodeError(f"home {name}: NAT kind {nat!r} is not one of {', '.join(NAT_KINDS)}")
            if not name.isalnum() or len(name) > 3:
                raise NodeError(f"home name {name!r}: 1-3 letters or digits")
        self._kinds = kinds
        hosts = _hosts(PUBLIC)
        self.core = Lab(self.work_dir / "core", subnet=INTERNET, dhcp=False)
        self.core_ip = self.core.bridge_ip
        self.server_ips = [hosts[SERVER_OFFSET - 1 + i] for i in range(SERVERS)]
        self.homes: dict[str, Home] = {}
        self.servers: list[SimNode] = []
        self.relays_on = False
        self._host_ns: list[str] = []
        self.machines: list[Machine] = []
        self._closed = False

    # ------------------------------------------------------------------ lifecycle
    def open(self) -> None:
        try:
            self.core.open()
            _switch_only(self.core.netns)
            _nft(self.core.netns, _edge_rules())
            for index, (name, nat) in enumerate(self._kinds.items(), start=1):
                self.homes[name] = self._open_home(name, index, nat)
            self.check_isolated()
        except BaseException:
            self.close()
            raise
        log.info("simulated internet up: core %s, homes %s", self.core.netns,
                 ", ".join(f"{h.name} ({h.nat}, {h.netns})" for h in self.homes.values()))

    def _open_home(self, name: str, index: int, nat: Nat) -> Home:
        lan = f"10.61.{index}.0/24"
        lab = Lab(self.work_dir / f"home-{name}", subnet=lan, dhcp=False)
        wan_ip = _hosts(PUBLIC)[WAN_OFFSET - 1 + index]
        home = Home(name=name, index=index, nat=nat, lab=lab, wan_ip=wan_ip)
        # Registered before it opens, so close() tears it down whatever fails next.
        self.homes[name] = home
        lab.open()
        _switch_only(lab.netns)
        # The WAN veth: created in the core, its other end moved straight into the router namespace.
        core_end = f"w{name}{lab.suffix}"[:15]
        run_ip(self.core.netns, "link", "add", core_end, "type", "veth", "peer", "name", "wan", "netns",
               lab.netns)
        run_ip(self.core.netns, "link", "set", core_end, "master", self.core.bridge)
        run_ip(self.core.netns, "link", "set", core_end, "up")
        run_ip(lab.netns, "addr", "add", f"{wan_ip}/{self.core.network.prefixlen}", "dev", "wan")
        run_ip(lab.netns, "link", "set", "wan", "up")
        run_ip(lab.netns, "route", "add", "default", "via", self.core_ip, "dev", "wan")
        lab.exec(["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"])
        _nft(lab.netns, _nat_rules(lab.bridge, nat))
        self._start_dhcp(lab)
        return home

    def _start_dhcp(self, lab: Lab) -> None:
        """DHCP on the home LAN: fixed leases by MAC (as ``Lab``), the router as gateway, no DNS."""
        hosts_file = lab.work_dir / "dhcp-hosts"
        hosts_file.write_text("".join(f"{lab.guest_mac(i)},{lab.guest_ip(i)}\n" for i in range(MAX_GUESTS)))
        first = lab.network.network_address + GUEST_HOST_OFFSET + 1
        argv = [
            "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
            "--port=0", f"--interface={lab.bridge}", "--except-interface=lo", "--bind-interfaces",
            f"--listen-address={lab.bridge_ip}",
            f"--dhcp-range={first},{first + MAX_GUESTS - 1},{lab.network.netmask},1h",
            f"--dhcp-hostsfile={hosts_file}",
            f"--dhcp-option=option:router,{lab.bridge_ip}",  # a home router: the way to the internet
            "--dhcp-option=option:dns-server",  # empty: no DNS
            "--dhcp-authoritative", f"--dhcp-leasefile={lab.work_dir / 'dnsmasq.leases'}",
            f"--pid-file={lab.work_dir / 'dnsmasq.pid'}", "--user=root", "--log-dhcp", "--log-facility=-",
        ]
        dns = lab.spawn("dnsmasq", argv)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if not dns.alive():
                raise NodeError(f"dnsmasq in {lab.netns} exited: "
                                + dns.log_path.read_text(errors="replace")[-500:])
            if b":67 " in (lab.exec(["ss", "-H", "-uln"]).stdout or b""):
                return
            time.sleep(0.1)
        raise NodeError(f"dnsmasq in {lab.netns} did not bind the DHCP port")

    def close(self) -> None:
        """Stop everything, delete every namespace, check nothing is left. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        problems: list[str] = []
        for home in reversed(list(self.homes.values())):
            try:
                home.lab.kill_processes()
            except Exception as exc:  # keep tearing down whatever happens
                problems.append(f"home {home.name}: {exc}")
        for ns in self._host_ns:
            kill_netns_pids(ns)
            proc.run(["ip", "netns", "del", ns], check=False, timeout=30)
        for home in reversed(list(self.homes.values())):
            try:
                home.lab.close()
            except Exception as exc:
                problems.append(f"home {home.name}: {exc}")
        try:
            self.core.close()
        except Exception as exc:
            problems.append(f"core: {exc}")
        left = [ns for ns in self.namespaces() if ns in namespaces()]
        if left:
            problems.append(f"namespaces still there: {', '.join(left)}")
        if problems:
            raise NodeError("simulated internet teardown incomplete: " + "; ".join(problems))
        log.info("simulated internet torn down")

    def namespaces(self) -> list[str]:
        """Every namespace of the simulation (core, routers, machines)."""
        return [self.core.netns, *(h.netns for h in self.homes.values()), *self._host_ns]

    def pids(self) -> list[int]:
        pids: list[int] = []
        present = set(namespaces())
        for ns in self.namespaces():
            if ns in present:
                out = proc.run(["ip", "netns", "pids", ns], check=False, timeout=30).stdout or b""
                pids += [int(x) for x in out.split() if x.isdigit()]
        return pids

    # ------------------------------------------------------------------ homes and machines
    def home(self, name: str) -> Home:
        try:
            return self.homes[name]
        except KeyError:
            raise NodeError(f"no home {name!r} (homes: {', '.join(self.homes)})") from None

    def add_machine(self, home_name: str, name: str) -> Machine:
        """A machine on ``home``'s LAN (address ``<lan>.10+k``, the router as gateway)."""
        home = self.home(home_name)
        ip = str(home.lan.network_address + MACHINE_OFFSET + 1 + len(home.machines))
        machine = self._attach(home.lab, name, ip, gateway=home.router_ip, home=home)
        home.machines.append(machine)
        return machine

    def attach_public(self, name: str, ip: str) -> Machine:
        """A machine with a public address on the core (no NAT, no gateway)."""
        if not in_sim(ip) or ipaddress.IPv4Address(ip) not in ipaddress.IPv4Network(INTERNET):
            raise NodeError(f"{ip} is not an address of the core ({INTERNET})")
        return self._attach(self.core, name, ip, gateway=None)

    def machine(self, name: str) -> Machine:
        for m in self.machines:
            if m.name == name:
                return m
        raise NodeError(f"no machine {name!r} in the simulated internet")

    def _attach(self, switch: Lab, name: str, ip: str, *, gateway: str | None,
                home: Home | None = None) -> Machine:
        k = len([m for m in self.machines if m.switch is switch])
        netns = f"{PREFIX}{switch.suffix}m{k}"
        proc.run(["ip", "netns", "add", netns], timeout=30, what=f"creating netns {netns}")
        self._host_ns.append(netns)
        port = f"m{k}{switch.suffix}"
        run_ip(switch.netns, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", netns)
        run_ip(switch.netns, "link", "set", port, "master", switch.bridge)
        run_ip(switch.netns, "link", "set", port, "up")
        for key in ("all", "default"):
            proc.run(["ip", "netns", "exec", netns, "sysctl", "-q", "-w",
                      f"net.ipv6.conf.{key}.disable_ipv6=1"], timeout=30)
        run_ip(netns, "link", "set", "lo", "up")
        run_ip(netns, "addr", "add", f"{ip}/{switch.network.prefixlen}", "dev", "eth0")
        run_ip(netns, "link", "set", "eth0", "up")
        if gateway:
            run_ip(netns, "route", "add", "default", "via", gateway, "dev", "eth0")
        machine = Machine(name=name, netns=netns, ip=ip, switch=switch, home=home, port_name=port)
        self.machines.append(machine)
        return machine

    # ------------------------------------------------------------------ kubo nodes
    def bootstrap(self) -> list[str]:
        """The simulated bootstrap list (what every kubo here gets instead of kubo's defaults)."""
        return [s.multiaddr for s in self.servers]

    def start_servers(self, kubo: Path, *, relays: bool = True, timeout: float = 90.0) -> list[SimNode]:
        """boot1..boot4: the public nodes and the bootstrap list (see the module doc). All answer
        AutoNAT probes; with ``relays`` all offer circuit-relay service (kubo's default limits: a
        relayed connection carries 128 KiB for 2 minutes, enough to coordinate hole punching);
        without, no relay exists anywhere. Each starts with the others in its bootstrap list."""
        from tce_ipfs.ipfs import netmode

        repos = self.work_dir / "core"
        names = [f"boot{i + 1}" for i in range(SERVERS)]
        # Peer IDs first (no daemon yet), so every server starts with the full list.
        nodes = [self._node(self._attach(self.core, name, ip, gateway=None), name, kubo, repos / name)
                 for name, ip in zip(names, self.server_ips, strict=True)]
        ids = [n.init().peer_id for n in nodes]
        boot = [f"/ip4/{ip}/tcp/{SWARM_PORT}/p2p/{pid}" for ip, pid in zip(self.server_ips, ids, strict=True)]
        for i, (name, node) in enumerate(zip(names, nodes, strict=True)):
            others = [b for b in boot if not b.endswith(node.peer_id)]
            server = netmode.public_config(others, role="server", dht_server=i < DHT_SERVERS,
                                           relay_service=relays)
            node.wanted_config.update({**server, **PUBLIC_NODE})
            self.servers.append(self._start(self.core, name, node, timeout))
        self.relays_on = relays
        return self.servers

    def start_node(self, where: Machine, name: str, kubo: Path, repo: Path, *,
                   config: Mapping[str, Any], timeout: float = 90.0,
                   env: Mapping[str, str] | None = None) -> SimNode:
        """A kubo daemon on a home machine; ``config`` on top of the isolation keys (e.g.
        ``netmode.public_config(net.bootstrap())``). Its Bootstrap must be the simulated list."""
        node = self._node(where, name, kubo, repo)
        node.wanted_config.update(config)
        self.check_bootstrap(node.wanted_config)
        return self._start(where.switch, name, node, timeout, env=env)

    def _node(self, where: Machine, name: str, kubo: Path, repo: Path) -> Any:
        from tce_ipfs.ipfs.node import Node

        # Lower case: the API client puts the socket path in a URL's host part, which gets lower-cased.
        sock = Path("/tmp") / f"{PREFIX}{self.core.suffix}-{name.lower()}.sock"
        self.core.sockets.append(sock)
        sock.unlink(missing_ok=True)
        return Node(repo, kubo, listen_host=where.ip, swarm_port=SWARM_PORT,
                    allowed_networks=("127.0.0.0/8", *SIM_NETS),
                    extra_config={"Addresses.API": f"/unix{sock}"}, launcher=where.exec_argv([]))

    def check_bootstrap(self, config: Mapping[str, Any]) -> None:
        """Refuse a node whose bootstrap list names anything outside the simulation (or ``auto``)."""
        for addr in config.get("Bootstrap") or []:
            host = str(addr).split("/")[2] if str(addr).startswith("/ip4/") else None
            if host is None or not in_sim(host):
                raise IsolationError(f"bootstrap peer {addr!r} is not in the simulated internet")

    def _start(self, lab: Lab, name: str, node: Any, timeout: float,
               env: Mapping[str, str] | None = None) -> SimNode:
        from tce_ipfs.ipfs.node import DAEMON_ARGS

        self.check_bootstrap(node.wanted_config)
        node.init()
        node.start(timeout, env=env)
        assert node.process is not None
        process = lab.adopt(LabProcess(name=name, argv=node.kubo_argv(*DAEMON_ARGS), popen=node.process,
                                       log_path=node.log_path))
        api = str(node.wanted_config["Addresses.API"])
        ip = node.wanted_config["Addresses.Swarm"][0].split("/")[2]
        return SimNode(name=name, ip=ip, port=SWARM_PORT, peer_id=node.peer_id, api=api, node=node,
                       process=process)



    def set_relays(self, on: bool, *, timeout: float = 90.0) -> None:
        """Turn the relay service of every public node on or off (each restarts with the same identity
        and DHT records; the homes' reservations end with it)."""
        from tce_ipfs.ipfs.node import DAEMON_ARGS

        for i, server in enumerate(self.servers):
            server.stop()
            server.node.wanted_config["Swarm.RelayService.Enabled"] = on
            server.node.init()
            server.node.start(timeout)
            assert server.node.process is not None
            server.process = self.core.adopt(LabProcess(name=f"{server.name}-{i}", argv=server.node.kubo_argv(
                *DAEMON_ARGS), popen=server.node.process, log_path=server.node.log_path))
        self.relays_on = on

    def nat_report(self) -> str:
        """Every home router's conntrack entries on the swarm port (for a failed hole-punch assert)."""
        return "\n".join(f"home {h.name} ({h.nat}, WAN {h.wan_ip}):\n  " + "\n  ".join(h.conntrack() or ["-"])
                         for h in self.homes.values())

    # ------------------------------------------------------------------ isolation and counters
    def strays(self) -> dict[str, Any]:
        """Packets the core saw addressed outside the simulated world: ``{"packets", "bytes",
        "destinations": [...]}`` (all of them dropped there)."""
        ns = self.core.netns
        counter = json.loads(proc.run(["ip", "netns", "exec", ns, "nft", "-j", "list", "counter", "ip",
                                       EDGE_TABLE, "stray"], timeout=30).stdout or b"{}")
        packets = nbytes = 0
        for item in counter.get("nftables", []):
            if "counter" in item:
                packets, nbytes = int(item["counter"]["packets"]), int(item["counter"]["bytes"])
        found = json.loads(proc.run(["ip", "netns", "exec", ns, "nft", "-j", "list", "set", "ip", EDGE_TABLE,
                                     "strays"], timeout=30).stdout or b"{}")
        dests: list[str] = []
        for item in found.get("nftables", []):
            for elem in (item.get("set") or {}).get("elem", []):
                dests.append(str(elem["elem"]["val"] if isinstance(elem, dict) else elem))
        return {"packets": packets, "bytes": nbytes, "destinations": sorted(dests)}

    def reset_strays(self) -> None:
        ns = self.core.netns
        proc.run(["ip", "netns", "exec", ns, "nft", "reset", "counter", "ip", EDGE_TABLE, "stray"],
                 timeout=30)
        proc.run(["ip", "netns", "exec", ns, "nft", "flush", "set", "ip", EDGE_TABLE, "strays"], timeout=30)

    def check_isolated(self) -> None:
        """Raise ``IsolationError`` unless every link of every namespace stays inside the simulation
        (veth peers only in our namespaces, none in the host's), the core has no default route and
        does not forward, and IPv6 is off everywhere."""
        ours = set(self.namespaces())
        for ns in self.namespaces():
            links = json.loads(run_ip(ns, "-j", "link", "show").stdout or b"[]")
            ids = {e.get("nsid"): e.get("name") for e in
                   json.loads(run_ip(ns, "-j", "netns", "list-id").stdout or b"[]")}
            for link in links:
                if "link_netnsid" in link:
                    peer = ids.get(link["link_netnsid"])
                    if peer not in ours:
                        raise IsolationError(f"{link['ifname']} in {ns} has its peer in {peer or 'the host'}")
                elif link.get("link_type") not in ("loopback", "ether"):
                    raise IsolationError(f"unexpected link {link.get('ifname')} in {ns}")
            v6 = proc.run(["ip", "netns", "exec", ns, "sysctl", "-n", "net.ipv6.conf.all.disable_ipv6"],
                          timeout=30).stdout or b""
            if v6.strip() != b"1":
                raise IsolationError(f"IPv6 is on in {ns}")
        for route in self.core.routes():
            if route.get("dst") in ("default", "0.0.0.0/0"):
                raise IsolationError(f"the core has a default route: {route}")
        forwarding = self.core.exec(["sysctl", "-n", "net.ipv4.ip_forward"]).stdout or b""
        if forwarding.strip() != b"0":
            raise IsolationError("the core forwards IPv4")

    def connections(self, node: SimNode) -> list[dict[str, Any]]:
        """``node``'s peers with how each is connected: ``relayed`` (a /p2p-circuit address) or direct."""
        from tce_ipfs.ipfs import rpc

        with node.client() as c:
            peers = rpc.swarm_peers(c)
        return [{"peer": str(p.get("Peer", "")), "addr": str(p.get("Addr", "")),
                 "relayed": "/p2p-circuit" in str(p.get("Addr", ""))} for p in peers]


# ---------------------------------------------------------------------- a seed in a home
@dataclass
class HomeSeed:
    """A publisher at home: ``seed serve --net public`` behind the home's NAT serving one published repo
    (``node``: its kubo, reached through the seed's API socket; ``node.stop()`` stops the seed)."""

    machine: Machine
    node: SimNode
    cid: str
    reachable_s: float  # from `seed serve`'s start until its kubo was reachable through a relay
    announced_s: float  # from `seed serve`'s start until the root's provider record was out
    state: Path | None = None  # the seed's state directory (seed.json, repo, api.sock)


def wait_reachable(node: SimNode, timeout: float = 120.0) -> dict[str, Any]:
    """Wait until ``node`` is reachable from outside (public, or through a relay); its reachability."""
    from tce_ipfs.ipfs import opennet

    deadline = time.monotonic() + timeout
    seen: dict[str, Any] = {}
    while time.monotonic() < deadline:
        with node.client() as c:
            seen = opennet.reachability(c)
        if seen["state"] in ("public", "relayed"):
            return seen
        time.sleep(1)
    raise NodeError(f"{node.name} did not become reachable within {timeout:g} s (last: {seen.get('text')})")


def start_home_seed(net: Internet, home: str, kubo: Path, repo_dir: Path, *, timeout: float = 180.0,
                    env: Mapping[str, str] | None = None) -> HomeSeed:
    """A publisher at home: a machine in ``home`` runs the real ``tce-ipfs seed serve REPO --net public
    --bootstrap <the simulated list>`` (a process in the machine's namespace, stopped with the
    Internet), which publishes ``repo_dir`` and announces its root once AutoNAT has said how peers
    reach it. Returns when the seed printed its boot line. Its API is the state's ``api.sock`` (a unix
    socket: reachable from the host's namespace)."""
    from tce_ipfs.ipfs import opennet
    from tce_ipfs.ipfs.node import Node
    from tce_ipfs.ipfs.seed import SUN_PATH_MAX, SeedState

    name = f"{home}-seed"
    machine = net.add_machine(home, name)
    state = SeedState(net.work_dir / name)
    sock = state.api_socket
    # The API client puts the socket path in a URL's host part (lower-cased); a bind needs <= 107.
    if len(str(sock)) > SUN_PATH_MAX or str(sock) != str(sock).lower():
        raise NodeError(f"the home seed's API socket {sock} is too long or not lower case",
                        hint="give the Internet a short, lower-case work_dir")
    boot = net.bootstrap()
    if not boot:  # without --bootstrap the seed would take kubo's defaults: the real network
        raise NodeError("start the simulated internet's servers first (Internet.start_servers)")
    net.check_bootstrap({"Bootstrap": boot})
    argv = [sys.executable, "-m", "tce_ipfs", "seed", "serve", str(repo_dir), "--json",
            "--listen", machine.ip, "--port", str(SWARM_PORT), "--api-port", "0", "--net", "public",
            "--state", str(state.path), "--kubo", str(kubo), "--timeout", f"{timeout:g}",
            *(a for b in boot for a in ("--bootstrap", b))]
    process = machine.spawn(name, argv, env=env)
    started = time.monotonic()
    api = f"/unix{sock}"
    reachable_s: float | None = None
    ready: dict[str, Any] | None = None
    deadline = started + timeout + opennet.ANNOUNCE_MAX
    while ready is None:
        if not process.alive():
            raise NodeError(f"seed serve in home {home} exited: {_tail(process.log_path)}")
        if time.monotonic() > deadline:
            raise NodeError(f"seed serve in home {home} did not announce within "
                            f"{deadline - started:g} s: {_tail(process.log_path)}")
        ready = _ready_line(process.log_path)
        if reachable_s is None and sock.exists():
            reachable_s = _reachable_since(api, started)
        time.sleep(0.5)
    announced_s = time.monotonic() - started
    node = Node(state.repo, kubo)
    sim = SimNode(name=name, ip=machine.ip, port=SWARM_PORT, peer_id=node.peer_id, api=api, node=node,
                  process=process)
    log.info("home seed %s: %s (reachable after %s s)", name, (state.record() or {}).get("announced"),
             reachable_s)
    return HomeSeed(machine=machine, node=sim, cid=str(ready["cid"]),
                    reachable_s=announced_s if reachable_s is None else reachable_s,
                    announced_s=announced_s, state=state.path)


def _ready_line(log_path: Path) -> dict[str, Any] | None:
    """The JSON boot info ``seed serve --json`` prints once it serves (its log holds stderr too)."""
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith('{"'):
            found: dict[str, Any] = json.loads(line)
            return found
    return None


def _reachable_since(api: str, started: float) -> float | None:
    """Seconds since ``started`` if the node at ``api`` is reachable from outside now, else None."""
    from tce_ipfs.errors import TceIpfsError
    from tce_ipfs.ipfs import opennet, rpc

    try:
        with rpc.client(api, timeout=5) as c:
            if opennet.reachability(c)["state"] in ("public", "relayed"):
                return time.monotonic() - started
    except (TceIpfsError, OSError):
        pass
    return None


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"
