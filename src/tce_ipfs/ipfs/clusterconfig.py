"""A cluster seed's options, state directory and ``service.json`` (the cluster peer's configuration).

See ``ipfs.cluster`` for the seed itself (start, stop, status) and ``ipfs.clusterpins`` for publishing
through the cluster.

A site with several seeds runs one ``ClusterSeed`` per seed machine. The cluster (CRDT consensus) keeps
one shared pinset; a root published through any seed is pinned on every seed (replication factor -1)
or on N of them, follows every republish, and a seed that joins later pins the current roots by
itself. Pin replication is IPFS Cluster's; this module only sets it up, isolates it and drives it.

The state directory (``ClusterState``, mode 0700)::

    repo/           the seed's kubo repo (its Identity is the seed's kubo peer ID); swarm.key (0600)
                    when the lab swarm is private
    service/        IPFS_CLUSTER_PATH: service.json (0600, our config), identity.json (0600, the
                    cluster peer ID), peerstore, the cluster datastore, daemon.log
    secret          the cluster secret (64 hex, 0600): every peer of the cluster needs the same one
    cluster.json    options and what the last start found (peer IDs, addresses, the other seeds)
    api.sock        kubo's RPC API      rest.sock  cluster's REST API      proxy.sock  its IPFS proxy

Isolation, the same rules as every kubo here: the kubo is ``seed.seed_node`` (``isolation_config()``,
swarm on the named private addresses only, the gater). The cluster peer listens on the same
addresses (TCP only: no QUIC), is a private libp2p network (the secret), announces no address outside
the allowed networks, has mDNS off (``mdns`` for a private lab LAN), no relay hop, no tracing or
metrics exporter, its REST API and IPFS proxy on unix sockets in the state (REST also on TCP loopback
``rest_port``) and the Pinning Service API off. What configuration cannot turn off (UPnP port
mapping, AutoNAT service, relays, hole punching) is patched out of the binary, which also gets a
connection gater for private addresses (``build.cluster``).

Roots published through the cluster are pinned under ``seed.pin_name()`` names (``tce-ipfs-seed <UTC
time> <source>``): ``--keep`` and ``--from-cluster`` only ever look at those.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from tce_ipfs.errors import NodeError, UsageError
from tce_ipfs.ipfs import swarmkey
from tce_ipfs.ipfs.isolation import LOOPBACK_NETS, PRIVATE_NETS, blocked_networks, get_dotted
from tce_ipfs.ipfs.seed import DEFAULT_API_PORT, DEFAULT_PORT, SUN_PATH_MAX, SeedOptions, StateDir
from tce_ipfs.ipfs.seedline import check_listen

FORMAT = 1  # of cluster.json
RECORD = "cluster.json"
SECRET = "secret"
SERVICE_DIR = "service"
SERVICE_CONFIG = "service.json"
DAEMON_LOG = "daemon.log"
PID_FILE = "tce-ipfs.pid"
REST_SOCKET, PROXY_SOCKET = "rest.sock", "proxy.sock"  # next to StateDir.api_socket (kubo's)
CLUSTER_PORT = 9096  # cluster's usual swarm port
REST_PORT = 9094  # cluster's usual REST port (on loopback); 0: the unix socket only
CLUSTER_NAME = "tce-ipfs"  # the CRDT pubsub topic every seed shares
DATASTORE = "leveldb"  # lighter than pebble's default 1 GiB cache; a seed's pinset is tiny
ALL = -1  # replication factor: every seed
_HEX64 = re.compile(r"[0-9a-f]{64}")
_PEER_ADDR = re.compile(r"/ip4/(\d+\.\d+\.\d+\.\d+)/tcp/(\d+)/p2p/(\w+)")


# ------------------------------------------------------------------------------------- options
def check_secret(value: str) -> str:
    """A cluster secret: 64 hex digits (32 bytes), lowercased."""
    key = value.strip().lower()
    if not _HEX64.fullmatch(key):
        raise UsageError("not a cluster secret (64 hex digits expected)",
                         hint="give the first seed's STATE/secret file (--secret FILE)")
    return key


def check_peer_addr(addr: str) -> str:
    """A cluster peer's address ``/ip4/<private>/tcp/<port>/p2p/<id>`` (what ``--join`` takes)."""
    m = _PEER_ADDR.fullmatch(addr.strip())
    if not m:
        raise UsageError(f"--join {addr!r}: expected /ip4/<address>/tcp/<port>/p2p/<cluster peer id>",
                         hint="`tce-ipfs cluster status` on the first seed prints its address")
    check_listen(m.group(1))  # a private address (the cluster's gater admits nothing else anyway)
    return addr.strip()


@dataclass(frozen=True)
class ClusterOptions:
    """How one cluster seed runs (checked when made). ``listen``: addresses ``seedline.resolve_listen``
    returned; ``ipfs_port``/``api_port``: its kubo's swarm and TCP API ports (0: any free one)."""

    listen: tuple[str, ...]
    port: int = CLUSTER_PORT
    ipfs_port: int = DEFAULT_PORT
    api_port: int = DEFAULT_API_PORT
    rest_port: int = REST_PORT
    mdns: bool = False
    join: tuple[str, ...] = ()
    name: str | None = None

    def __post_init__(self) -> None:
        self.kubo_options()  # listen addresses and ports checked the seed's way
        for what, port in (("--port", self.port), ("--rest-port", self.rest_port)):
            if not 0 <= port <= 65535:
                raise UsageError(f"{what} {port}: not a TCP port")
        if self.port == 0:
            raise UsageError("--port 0: the other seeds need a fixed cluster port to join")
        object.__setattr__(self, "join", tuple(check_peer_addr(a) for a in self.join))

    def kubo_options(self, *, swarm_key: str | None = None, peers: Sequence[str] = ()) -> SeedOptions:
        return SeedOptions(listen=self.listen, port=self.ipfs_port, api_port=self.api_port, mdns=self.mdns,
                           swarm_key=swarm_key, peers=tuple(peers))

    def as_dict(self) -> dict[str, Any]:
        return {"listen": list(self.listen), "port": self.port, "ipfs_port": self.ipfs_port,
                "api_port": self.api_port, "rest_port": self.rest_port, "mdns": self.mdns,
                "join": list(self.join), "name": self.name}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClusterOptions:
        return cls(listen=tuple(data["listen"]), port=int(data["port"]), ipfs_port=int(data["ipfs_port"]),
                   api_port=int(data["api_port"]), rest_port=int(data["rest_port"]),
                   mdns=bool(data["mdns"]), join=tuple(data.get("join") or ()), name=data.get("name"))


# ------------------------------------------------------------------------------------- state
@dataclass
class ClusterState(StateDir):
    """A cluster seed's state directory (see the module doc)."""

    RECORD: ClassVar[str] = RECORD

    @property
    def service_dir(self) -> Path:
        return self.path / SERVICE_DIR

    @property
    def secret_path(self) -> Path:
        return self.path / SECRET

    @property
    def rest_socket(self) -> Path:
        return self.path / REST_SOCKET

    @property
    def proxy_socket(self) -> Path:
        return self.path / PROXY_SOCKET

    @property
    def initialized(self) -> bool:
        return (self.service_dir / SERVICE_CONFIG).is_file() and self.record_path.is_file()

    def record(self) -> dict[str, Any]:
        try:
            data = json.loads(self.record_path.read_text())
        except FileNotFoundError:
            raise NodeError(f"{self.path} is not a cluster seed's state (no {RECORD})",
                            hint="make one: tce-ipfs cluster init --listen ADDR [--join ADDR]") from None
        except (OSError, ValueError) as exc:
            raise NodeError(f"cannot read {self.record_path}: {exc}") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise NodeError(f"{self.record_path} is not a cluster record this tce-ipfs understands")
        return data

    def update_record(self, **changes: Any) -> dict[str, Any]:
        data = self.record() if self.record_path.exists() else {"format": FORMAT}
        data.update(changes)
        tmp = self.record_path.with_name(RECORD + ".tmp")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, self.record_path)
        return data

    def options(self) -> ClusterOptions:
        return ClusterOptions.from_dict(self.record()["options"])

    def secret(self) -> str | None:
        try:
            return check_secret(self.secret_path.read_text())
        except FileNotFoundError:
            return None
        except PermissionError:
            raise NodeError(f"cannot read the cluster secret {self.secret_path}",
                            hint="run this as the user the seed runs as (or root)") from None

    def swarm_key(self) -> str | None:
        return swarmkey.read(self.repo) if self.repo.is_dir() else None

    def rest_api(self) -> str:
        """The REST API to talk to this seed: its unix socket (when the path fits), else TCP."""
        if len(str(self.rest_socket)) <= SUN_PATH_MAX:
            return f"/unix{self.rest_socket}"
        port = self.options().rest_port
        if not port:
            raise NodeError(f"the state path {self.path} is too long for a unix socket and --rest-port is 0")
        return f"/ip4/127.0.0.1/tcp/{port}"


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with mode 0600 from the first byte (never readable by others)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def kubo_api(state: ClusterState, options: ClusterOptions) -> str:
    """The kubo API cluster's connector and proxy use (the unix socket when its path fits)."""
    if len(str(state.api_socket)) <= SUN_PATH_MAX:
        return f"/unix{state.api_socket}"
    if not options.api_port:
        raise UsageError(f"the state path {state.path} is too long for a unix socket; give --api-port")
    return f"/ip4/127.0.0.1/tcp/{options.api_port}"


def service_config(state: ClusterState, options: ClusterOptions, secret: str,
                   peer_addresses: Sequence[str] = ()) -> dict[str, Any]:
    """``service.json`` keys (dotted) for an isolated cluster seed; everything else keeps cluster's
    defaults. ``peer_addresses``: the other seeds, dialled at every start."""
    loopback = all(ipaddress.IPv4Address(a).is_loopback for a in options.listen)
    rest = [f"/unix{state.rest_socket}"] if len(str(state.rest_socket)) <= SUN_PATH_MAX else []
    if options.rest_port:
        rest.append(f"/ip4/127.0.0.1/tcp/{options.rest_port}")
    if not rest:
        raise UsageError(f"the state path {state.path} is too long for a unix socket; give --rest-port")
    proxy = [f"/unix{state.proxy_socket}"] if len(str(state.proxy_socket)) <= SUN_PATH_MAX else []
    return {
        "cluster.peername": options.name or f"{socket.gethostname()}-{options.listen[0]}",
        # The private network: only peers holding the secret complete a handshake.
        "cluster.secret": secret,
        # The named addresses only, TCP only (QUIC cannot do private networks).
        "cluster.listen_multiaddress": [f"/ip4/{a}/tcp/{options.port}" for a in options.listen],
        "cluster.announce_multiaddress": [],
        "cluster.no_announce_multiaddress": blocked_networks(LOOPBACK_NETS if loopback else PRIVATE_NETS),
        "cluster.enable_relay_hop": False,
        # mDNS multicasts on every link: only for a private lab LAN, when asked ("0s": off).
        "cluster.mdns_interval": "10s" if options.mdns else "0s",
        "cluster.peer_addresses": list(peer_addresses),
        "cluster.replication_factor_min": ALL,
        "cluster.replication_factor_max": ALL,
        "cluster.disable_repinning": True,
        # A pin that failed (no seed had the blocks yet) is retried after this, not after 12 min.
        "cluster.pin_recover_interval": "1m0s",
        # Seeds learn of a new or a lost seed within seconds (a ping is one small pubsub message).
        "cluster.monitor_ping_interval": "5s",
        "consensus.crdt.cluster_name": CLUSTER_NAME,
        "consensus.crdt.trusted_peers": ["*"],  # membership is the secret
        # The pinset's newest heads go round every 10 s (upstream: 1 min), so a seed that joins or comes
        # back gets the current roots within seconds; one small pubsub message each time.
        "consensus.crdt.rebroadcast_interval": "10s",
        "api.restapi.http_listen_multiaddress": rest,
        "api.ipfsproxy.listen_multiaddress": proxy,
        "api.ipfsproxy.node_multiaddress": kubo_api(state, options),
        "ipfs_connector.ipfshttp.node_multiaddress": kubo_api(state, options),
        # Connect the seeds' kubos soon after start (they have no routing: bitswap asks connected peers).
        "ipfs_connector.ipfshttp.connect_swarms_delay": "3s",
        "observations.metrics.enable_stats": False,
        "observations.metrics.prometheus_endpoint": "/ip4/127.0.0.1/tcp/8888",
        "observations.tracing.enable_tracing": False,
        "observations.tracing.jaeger_agent_endpoint": "/ip4/127.0.0.1/udp/6831",
    }


# Sections of cluster's default config we turn off by leaving them out (cluster then does not start
# the component): the Pinning Service API (another HTTP listener), and the proxy without a socket.
def drop_sections(config: dict[str, Any], *, proxy: bool) -> None:
    api = config.get("api", {})
    api.pop("pinsvcapi", None)
    if not proxy:
        api.pop("ipfsproxy", None)


def config_drift(config: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    drift = []
    for key, value in wanted.items():
        try:
            if get_dotted(config, key) != value:
                drift.append(key)
        except KeyError:
            drift.append(key)
    if "pinsvcapi" in config.get("api", {}):
        drift.append("api.pinsvcapi")
    return drift


def lan_addrs(addrs: Sequence[str], *, loopback_ok: bool) -> list[str]:
    """``/ip4/../tcp/../p2p/..`` addresses another machine can dial (loopback ones only when allowed)."""
    out = []
    for addr in addrs:
        m = _PEER_ADDR.fullmatch(str(addr))
        if not m:
            continue
        ip = ipaddress.IPv4Address(m.group(1))
        if ip.is_loopback and not loopback_ok:
            continue
        if any(ip in ipaddress.IPv4Network(n) for n in PRIVATE_NETS):
            out.append(str(addr))
    return out
