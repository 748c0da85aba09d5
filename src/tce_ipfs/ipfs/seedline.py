"""Where a seed listens and the boot line it prints: listen addresses (private networks only, unless
the admin says public), the peer addresses a machine is given, and ``BootInfo`` (``tce=... ipfs.peers=...
[ipfs.swarmkey=...]``). Used by the lab seed (``ipfs.seed``), the cluster seeds and the media commands.

Only shared modules and ``ipfs`` ones are imported: this ships in the agent (``tests/test_layering``).
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tce_ipfs import bootcodes, proc
from tce_ipfs.errors import NodeError, TceIpfsError, UsageError
from tce_ipfs.ipfs import swarmkey
from tce_ipfs.ipfs.isolation import LOOPBACK_NETS, PRIVATE_NETS

log = logging.getLogger(__name__)

MAX_PEERS = bootcodes.BY_NAME["ipfs.peers"].max_count or 16
ANY_IPV4 = ("0.0.0.0/0",)
_IFNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@-]{0,14}")


def is_private(addr: str) -> bool:
    """Loopback, RFC 1918 or link-local (the networks ``isolation.PRIVATE_NETS`` allows)."""
    ip = ipaddress.IPv4Address(addr)
    return any(ip in ipaddress.IPv4Network(net) for net in PRIVATE_NETS)


def interface_addresses() -> dict[str, list[str]]:
    """IPv4 addresses per interface, from ``ip -4 addr show`` (iproute2 and busybox print the same)."""
    text = (proc.run(["ip", "-4", "addr", "show"], timeout=30, what="ip addr show").stdout or b"").decode()
    found: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        head = re.match(r"\d+:\s+([^:@\s]+)", line)
        if head:
            current = head.group(1)
            found.setdefault(current, [])
            continue
        addr = re.match(r"\s+inet\s+(\d+\.\d+\.\d+\.\d+)", line)
        if addr and current is not None:
            found[current].append(addr.group(1))
    return found


def _candidates() -> str:
    """A hint naming this machine's private addresses (what ``--listen`` probably wants)."""
    try:
        pairs = [f"{name} {a}" for name, addrs in interface_addresses().items() for a in addrs
                 if is_private(a) and not ipaddress.IPv4Address(a).is_loopback]
    except TceIpfsError:
        pairs = []
    example = pairs[0].split()[0] if pairs else "eth1"
    return (f"private addresses here: {', '.join(pairs)}; " if pairs else "") + \
        f"name the lab LAN's address or interface, e.g. --listen {example}"


def check_listen(addr: str, *, public: bool = False) -> str:
    """``addr`` (IPv4) if a seed may listen there; a non-private address needs ``public``."""
    ip = ipaddress.IPv4Address(addr)
    if public:
        return str(ip)
    if ip.is_unspecified:
        raise UsageError("refusing to listen on 0.0.0.0 without --public: that is every interface, "
                         "public ones included", hint=_candidates())
    if not is_private(str(ip)):
        raise UsageError(f"refusing to listen on {ip} without --public: it is not a private address "
                         f"(10/8, 172.16/12, 192.168/16, 169.254/16, 127/8), so the seed would serve "
                         f"this repo to the internet and take connections from anywhere",
                         hint=_candidates() + " (or pass --public if it must serve a public network)")
    return str(ip)


def resolve_listen(values: Sequence[str], *, public: bool = False) -> tuple[str, ...]:
    """IPv4 addresses from ``--listen`` values (an address, or an interface: all its IPv4 addresses),
    each checked with ``check_listen``. Nothing is bound or sent: this only reads the interfaces."""
    if not values:
        raise UsageError("name where the seed listens: --listen ADDR or --listen IFACE", hint=_candidates())
    addrs: list[str] = []
    interfaces: dict[str, list[str]] | None = None
    for value in values:
        try:
            found = [str(ipaddress.IPv4Address(value))]
        except ValueError:
            if not _IFNAME.fullmatch(value):
                raise UsageError(f"--listen {value!r} is neither an IPv4 address nor an interface name",
                                 hint=_candidates()) from None
            interfaces = interfaces if interfaces is not None else interface_addresses()
            if value not in interfaces:
                raise UsageError(f"--listen {value}: no such network interface", hint=_candidates()) from None
            found = interfaces[value]
            if not found:
                raise UsageError(f"--listen {value}: the interface has no IPv4 address",
                                 hint=_candidates()) from None
        addrs += [check_listen(a, public=public) for a in found]
    return tuple(dict.fromkeys(addrs))


def allowed_networks(listen: Sequence[str], *, public: bool) -> tuple[str, ...]:
    """Whom the seed's connection gater lets in: loopback for a loopback-only seed, the private
    networks for a LAN seed, any IPv4 address for a ``public`` one."""
    if public:
        return ANY_IPV4
    if all(ipaddress.IPv4Address(a).is_loopback for a in listen):
        return LOOPBACK_NETS
    return PRIVATE_NETS


# ---------------------------------------------------------------------------------- the boot line
@dataclass(frozen=True)
class BootInfo:
    """What a machine needs on its kernel command line to boot from this seed."""

    cid: str
    peers: tuple[str, ...]  # full multiaddrs .../p2p/<peer id>
    swarm_key: str | None = None  # 64 hex when the swarm is private
    running: bool = True
    ipns: str | None = None  # the IPNS name (k51...) the seed keeps pointing at ``cid`` (serve --name)
    gateway: str | None = None  # its trustless gateway, http://addr:port (serve --gateway-port)

    def codes(self) -> dict[str, str | None]:
        """Boot codes for ``P2PBoot`` (``tce=`` comes from the CID)."""
        codes: dict[str, str | None] = {"ipfs.peers": ",".join(self.peers)}
        if self.swarm_key:
            codes[swarmkey.BOOT_CODE] = self.swarm_key
        if self.gateway:
            codes["ipfs.gateway"] = self.gateway
        return codes

    def line(self) -> str:
        """``tce=ipfs:<CID> ipfs.peers=... [ipfs.swarmkey=...] [ipfs.gateway=...]``: the words for the
        kernel command line (``tce=ipns:<name>`` when the seed serves a name: machines then follow its
        updates)."""
        tce = f"tce=ipns:{self.ipns}" if self.ipns else f"tce=ipfs:{self.cid}"
        return " ".join([tce, *(f"{k}={v}" for k, v in self.codes().items())])

    def as_dict(self) -> dict[str, Any]:
        return {"cid": self.cid, "peers": list(self.peers), "private": self.swarm_key is not None,
                "boot_line": self.line(), "running": self.running, "ipns": self.ipns,
                "gateway": self.gateway}


def check_peers(peers: Sequence[str]) -> tuple[str, ...]:
    if not peers:
        raise NodeError("the seed reports no swarm address to put in ipfs.peers=")
    if len(peers) > MAX_PEERS:
        log.warning("the seed has %d addresses; the boot line names the first %d", len(peers), MAX_PEERS)
        peers = peers[:MAX_PEERS]
    bootcodes.check("ipfs.peers", ",".join(peers))
    return tuple(peers)


def own_peers(addrs: Sequence[str], listen: Sequence[str]) -> tuple[str, ...]:
    """The running seed's ``.../p2p/<id>`` addresses on the listen addresses, in their order."""
    wild = "0.0.0.0" in listen
    out: list[str] = []
    for want in listen:
        for addr in addrs:
            m = re.match(r"/ip4/([\d.]+)/tcp/\d+/p2p/", addr)
            if m and (m.group(1) == want or (wild and want == "0.0.0.0"
                                             and not ipaddress.IPv4Address(m.group(1)).is_loopback)):
                out.append(addr)
    # A loopback address is no use to another machine (it would dial itself) next to a LAN one.
    lan = [a for a in out if not a.startswith("/ip4/127.")]
    return check_peers(list(dict.fromkeys(lan or out)))
