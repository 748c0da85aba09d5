"""A small client for IPFS Cluster's REST API (``ipfs-cluster-service``'s ``api/restapi``), stdlib only.

``ClusterAPI(addr)`` talks HTTP/1.1 to ``/unix/<path>`` (how our seeds expose it: a unix socket reaches
into a network namespace) or ``/ip4/<host>/tcp/<port>`` (``http://host:port`` also accepted). Only the
calls the seeds use: ``id``, ``peers``, ``pin``, ``unpin``, ``allocations``, ``status``/``status_all``.

Streaming endpoints (``/peers``, ``/allocations``, ``/pins``) answer a sequence of JSON objects (one per
line, an error in the ``X-Stream-Error`` trailer); ``request`` returns them as a list. Field names are
cluster's (``api/types.go``): a pin's ``peer_map`` maps cluster peer IDs to ``{"peername", "status",
"ipfs_peer_id", "error", ...}`` with ``status`` one of ``TrackerStatus`` (``pinned``, ``pinning``,
``pin_queued``, ``pin_error``, ``remote``, ``unpinned``, ``cluster_error``, ...).
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tce_ipfs.errors import NodeError, UsageError

DEFAULT_REST = "/ip4/127.0.0.1/tcp/9094"

# Pin statuses (cluster's TrackerStatus names) by what they mean for "is the root on that seed".
PINNED = "pinned"
IN_PROGRESS = frozenset({"pinning", "pin_queued"})
NOT_HERE = frozenset({"unpinned", "remote", "unpin_queued", "unpinning"})
FAILED = frozenset({"pin_error", "unpin_error", "error", "unexpectedly_unpinned"})
UNREACHABLE = "cluster_error"  # the peer did not answer (down, or not yet joined)

_TCP = re.compile(r"/ip4/(\d+\.\d+\.\d+\.\d+)/tcp/(\d+)(?:/http)?/?")
_URL = re.compile(r"http://([\w.-]+):(\d+)/?")


class _UnixConnection(http.client.HTTPConnection):
    """HTTP over a unix socket (the host name only fills the ``Host:`` header)."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("cluster", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


@dataclass(frozen=True)
class Endpoint:
    """Where a REST API is: a unix socket path, or host and port."""

    unix: str | None = None
    host: str = ""
    port: int = 0

    @classmethod
    def parse(cls, addr: str) -> Endpoint:
        if addr.startswith("/unix/"):
            return cls(unix=addr[len("/unix"):])
        m = _TCP.fullmatch(addr) or _URL.fullmatch(addr)
        if not m:
            raise UsageError(f"not a cluster REST API address: {addr!r}",
                             hint="give /unix/<path> (a seed's STATE/rest.sock) or /ip4/127.0.0.1/tcp/9094")
        return cls(host=m.group(1), port=int(m.group(2)))

    def __str__(self) -> str:
        return f"/unix{self.unix}" if self.unix else f"/ip4/{self.host}/tcp/{self.port}"


def parse_stream(body: bytes) -> list[Any]:
    """Every JSON value in ``body`` (one, or a stream of them separated by whitespace)."""
    text = body.decode(errors="replace")
    decoder = json.JSONDecoder()
    out: list[Any] = []
    pos = 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            return out
        value, pos = decoder.raw_decode(text, pos)
        out.append(value)


class ClusterAPI:
    """The REST API of one cluster peer. Every failure is a ``NodeError`` naming the call."""

    def __init__(self, addr: str, *, timeout: float = 30.0) -> None:
        self.endpoint = Endpoint.parse(addr)
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"ClusterAPI({str(self.endpoint)!r})"

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        if self.endpoint.unix:
            return _UnixConnection(self.endpoint.unix, timeout)
        return http.client.HTTPConnection(self.endpoint.host, self.endpoint.port, timeout=timeout)

    def request(self, method: str, path: str, params: Mapping[str, str] | None = None, *,
                timeout: float | None = None) -> list[Any]:
        """``method path?params``; the answer's JSON values (a list: streams have many)."""
        query = ("?" + urllib.parse.urlencode(dict(params))) if params else ""
        conn = self._connection(timeout or self.timeout)
        what = f"cluster {method} {path}"
        try:
            conn.request(method, path + query, headers={"Accept": "application/json"})
            resp = conn.getresponse()
            body = resp.read()
            trailer = resp.getheader("X-Stream-Error")
        except (OSError, http.client.HTTPException) as exc:
            raise NodeError(f"{what}: cannot reach the cluster REST API at {self.endpoint} ({exc})",
                            hint="is the cluster seed running? (tce-ipfs cluster status)") from None
        finally:
            conn.close()
        try:
            values = parse_stream(body)
        except ValueError:
            raise NodeError(f"{what}: the answer is not JSON: {body[:200]!r}") from None
        if resp.status >= 400:
            message = (values[0].get("message") if values and isinstance(values[0], dict)
                       else body[:200].decode(errors="replace"))
            raise NodeError(f"{what} failed ({resp.status}): {message}")
        if trailer:
            raise NodeError(f"{what} failed: {trailer}")
        return values

    def _one(self, method: str, path: str, params: Mapping[str, str] | None = None) -> dict[str, Any]:
        values = self.request(method, path, params)
        if len(values) != 1 or not isinstance(values[0], dict):
            raise NodeError(f"cluster {method} {path}: expected one JSON object, got {len(values)} value(s)")
        return values[0]

    # --- the calls --------------------------------------------------------------------------
    def id(self) -> dict[str, Any]:
        """This peer: ``{"id", "peername", "addresses", "cluster_peers", "version", "ipfs": {"id",
        "addresses", "error"}, "error"}``."""
        return self._one("GET", "/id")

    def peers(self) -> list[dict[str, Any]]:
        """Every peer in the peerset (each as ``id()`` describes itself, or with ``error`` set)."""
        return [p for p in self.request("GET", "/peers") if isinstance(p, dict)]

    def pin(self, cid: str, *, name: str, replication: int = -1) -> dict[str, Any]:
        """Pin ``cid`` on ``replication`` peers (-1: every peer), recursively, named ``name``."""
        return self._one("POST", f"/pins/{cid}", {
            "name": name, "mode": "recursive",
            "replication-min": str(replication), "replication-max": str(replication),
        })

    def unpin(self, cid: str) -> dict[str, Any]:
        return self._one("DELETE", f"/pins/{cid}")

    def allocations(self) -> list[dict[str, Any]]:
        """The shared pinset: ``[{"cid", "name", "allocations", "replication_factor_min", ...}]``."""
        return [p for p in self.request("GET", "/allocations", {"filter": "pin"}) if isinstance(p, dict)]

    def status(self, cid: str) -> dict[str, Any]:
        """Where ``cid`` stands on every peer: ``{"cid", "name", "peer_map": {peer: {"status", ...}}}``."""
        return self._one("GET", f"/pins/{cid}")

    def status_all(self) -> list[dict[str, Any]]:
        return [p for p in self.request("GET", "/pins") if isinstance(p, dict)]
