"""IPNS names for a published root: machines follow a name, not a CID that changes with every update.

``publish_name(client, key, cid)`` makes the key in the node's keystore when it is missing (ed25519;
the node is the seed: the key stays in its repo, so the name is the same across restarts), signs a
record ``/ipns/<k51...>`` -> ``/ipfs/<cid>`` and publishes it. Who can resolve it: peers that ask this
node over the DHT protocol, which it only answers as a DHT server (``Routing.Type`` ``dhtserver``: a
seed started with ``--name``; still isolated: no bootstrap peers, the connection gater); the boot hook
resolves ``tce=ipns:`` as a DHT client of the peers it dialled. kubo republishes the record on its own
(``Ipns.RepublishPeriod``) while it runs.

``dnslink_line(domain, cid)``: the DNS TXT record that lets a domain name the root instead
(``tce=ipns:<domain>``, for machines that use DNS).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from tce_ipfs.errors import NodeError, UsageError
from tce_ipfs.ipfs import rpc

DEFAULT_LIFETIME = "48h"  # how long a record stays valid without a republish (kubo's default)
SERVING_ROUTING = ("dht", "dhtserver", "auto")  # Routing.Type values that answer DHT queries
_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_DURATION_RE = re.compile(r"^(?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h))+$")
_DOMAIN_RE = re.compile(r"^(?=.{1,253}$)(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$")


def check_key(key: str) -> str:
    if not _KEY_RE.match(key) or key == "self":
        raise UsageError(f"--name {key!r}: a key name is 1-63 of A-Z a-z 0-9 . _ - (and not 'self')",
                         hint="e.g. --name lab-mirror")
    return key


def check_duration(value: str, what: str) -> str:
    """A Go duration (``48h``, ``90m``, ``1h30m``, ``30s``), as kubo takes it."""
    if not _DURATION_RE.match(value):
        raise UsageError(f"{what} {value!r} is not a duration", hint="e.g. 48h, 90m, 1h30m, 30s")
    return value


def check_domain(domain: str) -> str:
    if not _DOMAIN_RE.match(domain):
        raise UsageError(f"--dnslink {domain!r} is not a domain name", hint="e.g. tce.lab.example.org")
    return domain


@dataclass(frozen=True)
class NameRecord:
    key: str
    name: str  # k51... (base36 libp2p key)
    value: str  # /ipfs/<cid>
    lifetime: str
    ttl: str | None

    @property
    def cid(self) -> str:
        return self.value.removeprefix("/ipfs/").split("/")[0]

    def boot_code(self, path: str = "") -> str:
        return f"tce=ipns:{self.name}" + (f"/{path.strip('/')}" if path.strip("/") else "")

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "name": self.name, "value": self.value, "lifetime": self.lifetime,
                "ttl": self.ttl, "boot_code": self.boot_code()}


def routing_type(client: Any) -> str:
    value = rpc.config_value(client, "Routing.Type")
    return str(value or "auto")


def serves_names(client: Any) -> bool:
    """Whether other peers can resolve this node's IPNS records by asking it."""
    return routing_type(client) in SERVING_ROUTING


def ensure_key(client: Any, key: str) -> str:
    """The IPNS name (k51...) of ``key`` in the node's keystore, made when missing."""
    check_key(key)
    keys = rpc.key_list(client)
    return keys[key] if key in keys else rpc.key_gen(client, key)


def publish_name(client: Any, key: str, cid: str, *, lifetime: str = DEFAULT_LIFETIME,
                 ttl: str | None = None, require_serving: bool = True) -> NameRecord:
    """Point the IPNS name of ``key`` at ``/ipfs/<cid>`` (see the module doc)."""
    check_duration(lifetime, "--lifetime")
    if ttl is not None:
        check_duration(ttl, "--ttl")
    if require_serving and not serves_names(client):
        raise UsageError(f"this node does not answer IPNS queries (Routing.Type {routing_type(client)}): "
                         "machines could not resolve the name",
                         hint="publish through a seed started with `tce-ipfs seed serve ... --name KEY` "
                              "(it answers as a LAN-only DHT server)")
    name = ensure_key(client, key)
    res = rpc.name_publish(client, key, f"/ipfs/{cid}", lifetime=lifetime, ttl=ttl)
    if res.get("Name") != name:
        raise NodeError(f"IPNS publish of key {key} answered for {res.get('Name')}, expected {name}")
    return NameRecord(key=key, name=name, value=res.get("Value", f"/ipfs/{cid}"), lifetime=lifetime, ttl=ttl)


def dnslink_line(cid: str, domain: str | None = None) -> str:
    """The TXT record a domain needs to name this root (``tce=ipns:<domain>``)."""
    return f'_dnslink.{domain or "<your.domain>"}  TXT  "dnslink=/ipfs/{cid}"'
