"""A delegated router for the simulated internet: the Delegated Routing V1 HTTP API, backed by the DHT.

What a public router (someguy, cid.contact) is to kubo's ``Routing.DelegatedRouters``, inside the
simulated core (``testbed.internet``): an HTTP server on a core address that answers

* ``GET /routing/v1/providers/{cid}``: ``{"Providers": [{"Schema": "peer", "ID", "Addrs",
  "Protocols"}]}`` (spec: specs.ipfs.tech/routing/http-routing-v1), or one record per line with
  ``Accept: application/x-ndjson``; 404 when nobody provides it;
* ``GET /routing/v1/peers/{peer-id}``: ``{"Peers": [...]}`` the same way (the ID as a base58 string
  or a CIDv1 ``libp2p-key``, both of which kubo's ``routing findpeer`` takes);

by asking a DHT server of the simulation over its RPC API (``routing findprovs``, ``routing
findpeer``), as someguy asks the Amino DHT. Nothing here ships: a test and ``tce-ipfs bench --only
routing`` run it (``start_router``) as a process in the core's namespace (``python -m
tce_ipfs.testbed.delegated``); its API socket is a unix socket, so it needs no link out of the core.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tce_ipfs.testbed.internet import Internet, Machine

log = logging.getLogger(__name__)

PORT = 8080
ROUTER_IP = "192.0.0.210"  # a public address of the core (boot1..4 are .200-.203)
NDJSON = "application/x-ndjson"
PREFIX = "/routing/v1/"
FIND_TIMEOUT = 20.0  # one DHT lookup (someguy's is 30 s; the sim's DHT answers in well under a second)
MAX_PROVIDERS = 20  # as many as a lookup may return (kubo asks for at most 20 by default)
PROTOCOLS = ["transport-bitswap"]  # what kubo's DHT providers serve


def find_providers(api: str, cid: str, count: int = MAX_PROVIDERS) -> list[dict[str, Any]]:
    from tce_ipfs.ipfs import opennet, rpc

    with rpc.client(api, timeout=FIND_TIMEOUT + 5, verify=False) as c:
        found = opennet.find_providers(c, cid, count=count, timeout=FIND_TIMEOUT)
    return [{"Schema": "peer", "ID": p["ID"], "Addrs": list(p["Addrs"]), "Protocols": PROTOCOLS}
            for p in found]


def find_peer(api: str, peer: str) -> list[dict[str, Any]]:
    from tce_ipfs.ipfs import rpc

    with rpc.client(api, timeout=FIND_TIMEOUT + 5, verify=False) as c:
        try:
            events = rpc.call(f"routing findpeer {peer}", c._client.request, "/routing/findpeer", (peer,),
                              decoder="json", timeout=FIND_TIMEOUT)
        except Exception as exc:  # not found, or a lookup error: the spec's 404
            log.info("findpeer %s: %s", peer, exc)
            return []
    out: dict[str, dict[str, Any]] = {}
    for event in events or []:
        for resp in event.get("Responses") or []:
            pid = str(resp.get("ID"))
            rec = out.setdefault(pid, {"Schema": "peer", "ID": pid, "Addrs": []})
            rec["Addrs"] += [a for a in resp.get("Addrs") or [] if a not in rec["Addrs"]]
    return list(out.values())


def make_handler(api: str, stats: dict[str, int]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            log.info("%s %s", self.address_string(), format % args)

        def _send(self, code: int, body: bytes, ctype: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if not path.startswith(PREFIX) or path.count("/") != 4:
                self._send(404, b"not found\n", "text/plain")
                return
            kind, key = path[len(PREFIX):].split("/", 1)
            started = time.monotonic()
            if kind == "providers":
                records, field = find_providers(api, key), "Providers"
            elif kind == "peers":
                records, field = find_peer(api, key), "Peers"
            else:  # ipns: this router does not resolve names (kubo then asks the DHT, or fails)
                self._send(501, b"not implemented\n", "text/plain")
                return
            stats[kind] = stats.get(kind, 0) + 1
            log.info("%s %s: %d record(s) in %.2f s", kind, key, len(records), time.monotonic() - started)
            if not records:
                self._send(404, b"no records\n", "text/plain")
            elif NDJSON in (self.headers.get("Accept") or ""):
                self._send(200, b"".join(json.dumps(r).encode() + b"\n" for r in records), NDJSON)
            else:
                self._send(200, json.dumps({field: records}).encode(), "application/json")

    return Handler


def serve(api: str, host: str, port: int) -> None:
    server = ThreadingHTTPServer((host, port), make_handler(api, {}))
    print(f"routing v1 on http://{host}:{port}", flush=True)
    server.serve_forever()


@dataclass
class Router:
    machine: Machine
    url: str
    process: Any  # lab.LabProcess

    def stop(self) -> None:
        self.process.stop()


def start_router(net: Internet, *, backend: int = 0, ip: str = ROUTER_IP, port: int = PORT,
                 timeout: float = 15.0) -> Router:
    """The router as a process on a core machine of its own at ``ip``, asking DHT server ``backend``
    (boot1 by default; ``net.start_servers`` first)."""
    machine = net.attach_public("router", ip)
    api = net.servers[backend].api
    process = machine.spawn("router", [sys.executable, "-m", "tce_ipfs.testbed.delegated", "--api", api,
                                       "--listen", f"{ip}:{port}"])
    deadline = time.monotonic() + timeout
    while True:  # up once the port answers (a connect from inside the core's namespace)
        code = f"import socket; socket.create_connection(('{ip}', {port}), 1)"
        probe = machine.exec([sys.executable, "-c", code], check=False, timeout=10)
        if probe.returncode == 0:
            break
        if not process.alive() or time.monotonic() > deadline:
            from tce_ipfs.errors import NodeError

            raise NodeError(f"the delegated router did not come up on {ip}:{port} (see {process.log_path})")
        time.sleep(0.2)
    return Router(machine=machine, url=f"http://{ip}:{port}", process=process)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tce_ipfs.testbed.delegated", description=__doc__)
    p.add_argument("--api", required=True, help="a DHT server's RPC API multiaddr (e.g. /unix/...)")
    p.add_argument("--listen", default=f"{ROUTER_IP}:{PORT}", help="HOST:PORT")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stdout)
    host, port = args.listen.rsplit(":", 1)
    serve(args.api, host, int(port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
