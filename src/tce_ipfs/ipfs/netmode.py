"""A node's network mode: what it may talk to, as the boot code ``ipfs.net=`` and ``seed serve --net``.

* ``lan``: today's isolated node (``isolation.isolation_config()``): peers named (``ipfs.peers``,
  ``Peering.Peers``) or found by mDNS on the machine's own link; no routing, no bootstrap, nothing
  announced.
* ``public``: the open IPFS network. Bootstrap peers (kubo's defaults, ``"auto"`` + AutoConf, unless a
  list is given), content routing as a DHT *client* (a small machine never serves the DHT), AutoNAT to
  learn whether it is reachable, the circuit-relay client and hole punching (DCUtR, over TCP) to get
  through NAT, and provider records for what it holds -- the roots only, so a Tiny Core machine
  announces the repo root, the list and each extension file, not every 256 KiB block.
* ``private``: a private swarm (``ipfs.swarmkey``): like ``lan``, only peers with the key can connect.

``public_config()`` is the host side's copy of what the boot hook writes for ``ipfs.net=public``
(``initrd-hooks/lib/kubo.sh``, ``net_public_sets``); ``tests/test_netmode.py`` holds the two together.
It is applied on top of ``isolation_config()``, whose connection gater (``Swarm.AddrFilters``) the
caller sets from the networks it may reach. The simulated internet of the tests (``testbed.internet``)
builds its DHT servers and relay from the same function (``role``).

Only the shared modules are imported: this ships in the agent (``seed serve --net public`` on TC).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from tce_ipfs.errors import UsageError

MODES = ("public", "lan", "private")
AUTO = "auto"  # kubo's placeholder: "take this from AutoConf" (the mainnet defaults)
Role = Literal["client", "server"]

# What a small machine announces and how often (README "Seeding to the network").
PROVIDE_STRATEGY = "roots"  # the pinned roots: repo root, list, each NAME.tcz / .md5.txt / .dep
REPROVIDE_INTERVAL = "22h"  # kubo's default: records live 48 h on the DHT, so one missed round is fine
PROVIDE_WORKERS = 4  # kubo's default is 16 parallel DHT puts; a few dozen roots need far fewer
# The sweep provider batches CIDs by keyspace region, which pays off from thousands of CIDs on; a TC
# machine holds a few dozen roots, and the legacy provider announces a new pin at once.
SWEEP = False


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise UsageError(f"network mode {mode!r}: one of {', '.join(MODES)}")
    return mode


def resolve_mode(mode: str | None, *, peers: bool, swarm_key: bool) -> str:
    """The mode a node runs in, as the hook decides it: the one given, else ``private`` with a swarm
    key, ``lan`` when peers are named (a lab's boot line), ``public`` otherwise (a machine at home)."""
    if mode is not None:
        check_mode(mode)
        if swarm_key and mode == "public":
            raise UsageError("a private swarm (swarm key) cannot join the public network",
                             hint="drop the swarm key, or use network mode private")
        if mode == "private" and not swarm_key:
            raise UsageError("network mode private needs a swarm key")
        return "private" if swarm_key else mode
    if swarm_key:
        return "private"
    return "lan" if peers else "public"


def public_config(bootstrap: Sequence[str] | None = None, *, role: Role = "client",
                  dht_server: bool | None = None, relay_service: bool = False,
                  port_mapping: bool | None = None,
                  memory: str | None = None) -> dict[str, Any]:
    """kubo config keys (dotted) that put a node on an open network, on top of ``isolation_config()``.

    ``bootstrap``: full multiaddrs ending in ``/p2p/<id>``; ``None`` means kubo's defaults (``"auto"``
    with AutoConf on, and with it kubo's delegated HTTP routers) -- only ever for a real machine.
    ``role``: ``client`` (a TC machine, a home seed) or ``server`` (a public node that answers AutoNAT
    probes and, unless ``dht_server=False``, serves the DHT: the simulated internet's bootstrap
    nodes). ``relay_service``: also relay for NATed peers (circuit relay v2, kubo's default limits).
    ``port_mapping``: UPnP/NAT-PMP with the home router (default: on with kubo's defaults, off with a
    given list). ``memory``: ``Swarm.ResourceMgr.MaxMemory`` (libp2p scales its limits from it).
    """
    auto = bootstrap is None
    if bootstrap is not None:
        for addr in bootstrap:
            if "/p2p/" not in addr or addr == AUTO:
                raise UsageError(f"bootstrap peer {addr!r} must be a multiaddr ending in /p2p/<peer id>")
    server = role == "server"
    dht_server = server if dht_server is None else dht_server
    config: dict[str, Any] = {
        "Bootstrap": [AUTO] if auto else list(bootstrap or ()),
        "AutoConf.Enabled": auto,
        # A client: the Amino DHT as a client, plus (with kubo's defaults) the delegated routers in
        # parallel -- whichever answers first. A server keeps a routing table others can query.
        "Routing.Type": "dhtserver" if dht_server else ("autoclient" if auto else "dhtclient"),
        "Routing.DelegatedRouters": [AUTO] if auto else [],
        "Ipns.DelegatedPublishers": [AUTO] if auto else [],
        # Announce what is pinned (the roots), reprovide before the records expire.
        "Provide.Enabled": not server,
        "Provide.Strategy": PROVIDE_STRATEGY,
        "Provide.DHT.Interval": REPROVIDE_INTERVAL,
        "Provide.DHT.MaxWorkers": PROVIDE_WORKERS,
        "Provide.DHT.SweepEnabled": SWEEP,
        # NAT traversal: AutoNAT (the client is always on; servers answer others' probes), the
        # circuit-relay client, hole punching; relays only on a relay.
        "AutoNAT.ServiceMode": "enabled" if server else "disabled",
        "Swarm.Transports.Network.Relay": True,
        "Swarm.RelayClient.Enabled": not server,
        "Swarm.RelayService.Enabled": relay_service,
        "Swarm.EnableHolePunching": not server,
        "Swarm.DisableNatPortMap": not (auto if port_mapping is None else port_mapping),
        # The DHT over loopback is only for tests on one host; never on an open network.
        "Routing.LoopbackAddressesOnLanDHT": False,
    }
    if auto or any(a.startswith(("/dns", "/dnsaddr")) for a in bootstrap or ()):
        config["DNS.Resolvers"] = {}  # the operating system's resolver (for /dnsaddr/ bootstrap names)
    if memory is not None:
        config["Swarm.ResourceMgr.MaxMemory"] = memory
    return config
