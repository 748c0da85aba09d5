"""The ONE list of kubo config keys that keeps a node off the public network: ``isolation_config()``.

No bootstrap peers, no DHT or delegated routing, no AutoConf/AutoTLS/relay/hole punching/NAT mapping,
no mDNS, no DNS, no telemetry, TCP only, listening on one address, and a connection gater
(``Swarm.AddrFilters``) that refuses every address outside the allowed networks. Peers are only ever
dialled explicitly (``ipfs swarm connect`` or ``Peering.Peers``); bitswap then fetches from them.

Every kubo this project starts -- the host seed, test nodes, lab nodes -- gets these keys through
``node.Node`` and ``KUBO_ENV`` in its environment. ``config_drift`` tells which keys a repo's config
no longer has as wanted.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from tce_ipfs.errors import IsolationError, UsageError

# Environment every kubo process we run gets (on top of proc.clean_env, which drops proxies etc.).
KUBO_ENV = {
    "IPFS_TELEMETRY": "off",  # wins over config and DO_NOT_TRACK (docs/telemetry.md)
    "DO_NOT_TRACK": "1",  # the shared opt-out, for any plugin that reads only this one
}

# Networks a loopback-only node may talk to, and the ones a LAN node (a guest) may talk to.
LOOPBACK_NETS = ("127.0.0.0/8",)
PRIVATE_NETS = ("127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16")

# DNS.Resolvers catch-all that can never answer: a DoH URL on a loopback port nothing listens on.
# With it every DNS lookup kubo might try (DNSLink, /dns* multiaddrs) fails locally instead of asking
# the operating system's resolver (which may be a non-loopback nameserver).
DNS_SINKHOLE = "https://127.0.0.1:1/dns-query"


def blocked_networks(allowed: Iterable[str]) -> list[str]:
    """The complement of ``allowed`` as ``/ipX/<net>/ipcidr/<len>`` multiaddrs (v4 and v6).

    IPv6 is blocked entirely unless an allowed network is IPv6 (then its complement is listed).
    """
    result: list[str] = []
    for version, everything in ((4, "0.0.0.0/0"), (6, "::/0")):
        allow: list[Any] = [ipaddress.ip_network(n) for n in allowed]
        remaining: list[Any] = [ipaddress.ip_network(everything)]
        for net in (n for n in allow if n.version == version):
            nxt: list[Any] = []
            for block in remaining:
                if net.subnet_of(block):
                    nxt.extend(block.address_exclude(net))
                elif not block.subnet_of(net):
                    nxt.append(block)
            remaining = nxt
        proto = "ip4" if version == 4 else "ip6"
        result += [f"/{proto}/{b.network_address}/ipcidr/{b.prefixlen}" for b in sorted(remaining)]
    return result


def _peering(peers: Sequence[str]) -> list[dict[str, Any]]:
    """``Peering.Peers`` entries from full multiaddrs ``/ip4/H/tcp/P/p2p/ID`` (grouped by peer ID)."""
    by_id: dict[str, list[str]] = {}
    for addr in peers:
        head, sep, peer_id = addr.rpartition("/p2p/")
        if not sep or not head or not peer_id or "/" in peer_id:
            raise UsageError(f"peer address {addr!r} has no /p2p/<peer id> at the end")
        by_id.setdefault(peer_id, []).append(head)
    return [{"ID": pid, "Addrs": addrs} for pid, addrs in by_id.items()]


def isolation_config(
    listen_host: str = "127.0.0.1",
    *,
    swarm_port: int = 0,
    api_port: int = 0,
    gateway_port: int = 0,
    allowed_networks: Sequence[str] | None = None,
    peers: Sequence[str] = (),
    dns: bool = False,
) -> dict[str, Any]:
    """kubo config keys (dotted, as ``ipfs config --json KEY VALUE`` takes them) for an isolated node.

    ``listen_host``: the one IPv4 address the swarm listens on (loopback for the host seed; a guest's
    LAN address or ``0.0.0.0`` inside an isolated lab network). Port 0 = kernel-chosen free port.
    ``allowed_networks``: the only networks the node may connect to or accept connections from;
    default loopback only for a loopback ``listen_host``, else loopback + RFC 1918 + link-local.
    ``peers``: full multiaddrs (``.../p2p/<id>``) to keep connected (``Peering.Peers``).
    ``dns``: allow the OS resolver (only for a lab where ``/dns4/`` peer names must resolve).
    """
    try:
        host = ipaddress.IPv4Address(listen_host)
    except ValueError:
        raise UsageError(f"listen address {listen_host!r} is not an IPv4 address") from None
    if allowed_networks is None:
        allowed_networks = LOOPBACK_NETS if host.is_loopback else PRIVATE_NETS
    blocked = blocked_networks(allowed_networks)
    if not host.is_unspecified and not any(
        host in ipaddress.ip_network(n) for n in allowed_networks
    ):
        raise IsolationError(f"listen address {listen_host} is outside the allowed networks")

    return {
        # --- who we ever talk to -------------------------------------------------------------------
        # No bootstrap peers: the public ones (and AutoConf's "auto" placeholder) are the first thing
        # a default node dials.
        "Bootstrap": [],
        # AutoConf fetches a JSON from the public mainnet config service at start; off, fields emptied.
        "AutoConf.Enabled": False,
        # No content/peer routing at all: no Amino DHT, no delegated HTTP routers. Blocks come from
        # peers we connected to explicitly (bitswap asks every connected peer).
        "Routing.Type": "none",
        "Routing.DelegatedRouters": [],
        "Ipns.DelegatedPublishers": [],
        # Peers to stay connected to (the seed for a guest); empty for the seed itself.
        "Peering.Peers": _peering(peers),
        # Nothing to announce to without routing; the provide system would otherwise try the DHT.
        "Provide.Enabled": False,
        # IPNS over pubsub and pubsub itself would gossip with whoever is connected; not used.
        "Ipns.UsePubsub": False,
        "Pubsub.Enabled": False,
        # HTTP block retrieval talks HTTPS to providers found by delegated routing.
        "HTTPRetrieval.Enabled": False,
        # --- discovery and NAT traversal ----------------------------------------------------------
        # mDNS multicasts on every interface (224.0.0.251); peers are given explicitly instead.
        "Discovery.MDNS.Enabled": False,
        # AutoTLS registers with libp2p.direct and talks to Let's Encrypt.
        "AutoTLS.Enabled": False,
        # AutoNAT service dials back addresses other peers hand us; nobody here needs reachability.
        "AutoNAT.ServiceMode": "disabled",
        # Relays and hole punching find and use public relays.
        "Swarm.RelayClient.Enabled": False,
        "Swarm.RelayService.Enabled": False,
        "Swarm.EnableHolePunching": False,
        # UPnP/NAT-PMP would talk to the router.
        "Swarm.DisableNatPortMap": True,
        # --- transports and addresses -------------------------------------------------------------
        # TCP only: no UDP sockets (QUIC/WebTransport/WebRTC) and no relay or websocket transports.
        "Swarm.Transports.Network.TCP": True,
        "Swarm.Transports.Network.QUIC": False,
        "Swarm.Transports.Network.WebTransport": False,
        "Swarm.Transports.Network.WebRTCDirect": False,
        "Swarm.Transports.Network.Websocket": False,
        "Swarm.Transports.Network.Relay": False,
        # Listen on one IPv4 address (never all interfaces of the build host).
        "Addresses.Swarm": [f"/ip4/{listen_host}/tcp/{swarm_port}"],
        # The RPC API and the gateway are for local use only, always loopback.
        "Addresses.API": f"/ip4/127.0.0.1/tcp/{api_port}",
        "Addresses.Gateway": f"/ip4/127.0.0.1/tcp/{gateway_port}",
        # Announce what we listen on, nothing more; never announce an address outside our networks.
        "Addresses.Announce": [],
        "Addresses.AppendAnnounce": [],
        "Addresses.NoAnnounce": blocked,
        # The connection gater: refuse to dial or accept any address outside the allowed networks,
        # whatever a peer or a user hands us. This is the backstop for everything above.
        "Swarm.AddrFilters": blocked,
        # Our peers are private by design: publish our (private) addresses to them over identify.
        "Internal.NonPublicAddrPublishing": True,
        # --- names and DNS ------------------------------------------------------------------------
        # Every DNS lookup goes to a resolver that cannot answer (see DNS_SINKHOLE), or the OS one.
        "DNS.Resolvers": {} if dns else {".": DNS_SINKHOLE},
        # The gateway must not resolve DNSLink names (DNS) nor expose a routing API.
        "Gateway.NoDNSLink": True,
        "Gateway.ExposeRoutingAPI": False,
        # --- telemetry ----------------------------------------------------------------------------
        # Also forced off by IPFS_TELEMETRY=off in the environment of every kubo we run; a build
        # without the telemetry plugin ignores these keys.
        "Plugins.Plugins.telemetry.Config.Mode": "off",
        "Plugins.Plugins.telemetry.Disabled": True,
    }


def trustless_gateway_config(hosts: Sequence[str] = ("127.0.0.1",), port: int = 0) -> dict[str, Any]:
    """kubo config keys (dotted) that make the node's gateway a seed's trustless gateway on
    ``port`` of every address in ``hosts`` (issue 17, the hook's ``ipfs.gateway=``): it answers only
    verifiable responses -- ``?format=car`` and raw blocks, which the client checks against their CIDs
    -- never deserialized files, and only from blocks the node holds: it never fetches from the
    network for whoever asks."""
    return {
        "Addresses.Gateway": [f"/ip4/{host}/tcp/{port}" for host in hosts],
        # Only trustless responses (application/vnd.ipld.car, .raw, IPNS records): a client that
        # cannot check what it gets is refused (406), so the seed is not a web gateway for the LAN.
        "Gateway.DeserializedResponses": False,
        # Serve what is here, fetch nothing for others (a request for a CID we lack ends at once).
        "Gateway.NoFetch": True,
        "Gateway.NoDNSLink": True,
        "Gateway.ExposeRoutingAPI": False,
    }


def default_networks(listen_host: str) -> tuple[str, ...]:
    """The networks a node listening on ``listen_host`` may reach when none are given."""
    return LOOPBACK_NETS if ipaddress.ip_address(listen_host).is_loopback else PRIVATE_NETS


def check_bootstrap(bootstrap: Iterable[object], allowed_networks: Sequence[str]) -> None:
    """Refuse a bootstrap list that could reach past ``allowed_networks``: kubo dials every entry at
    start, before any other check. Only ``/ip4/`` or ``/ip6/`` addresses inside the allowed networks
    pass; kubo's ``auto`` placeholder (the public mainnet list) and ``/dns*`` names never do."""
    nets = [ipaddress.ip_network(n) for n in allowed_networks]
    for entry in bootstrap:
        addr = str(entry)
        parts = addr.split("/")
        ip: Any = None
        if len(parts) > 2 and parts[1] in ("ip4", "ip6"):
            try:
                ip = ipaddress.ip_address(parts[2])
            except ValueError:
                ip = None
        if ip is None or not any(ip in n for n in nets if n.version == ip.version):
            raise IsolationError(f"bootstrap peer {addr!r} is outside the networks this node may reach "
                                 f"({', '.join(allowed_networks)})",
                                 hint="an isolated node gets only bootstrap peers its tests or lab run")


def set_dotted(config: dict[str, Any], key: str, value: Any) -> None:
    """``config["A"]["B"]["C"] = value`` for ``key == "A.B.C"`` (creating / replacing null levels)."""
    parts = key.split(".")
    node = config
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


def get_dotted(config: Mapping[str, Any], key: str) -> Any:
    node: Any = config
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise KeyError(key)
        node = node[part]
    return node


def config_drift(config: Mapping[str, Any], wanted: Mapping[str, Any]) -> list[str]:
    """Keys of ``wanted`` whose value in ``config`` differs (missing counts as different)."""
    drift = []
    for key, value in wanted.items():
        try:
            have = get_dotted(config, key)
        except KeyError:
            drift.append(key)
            continue
        if have != value:
            drift.append(key)
    return drift
