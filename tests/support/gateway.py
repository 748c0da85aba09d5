"""A gateway that lies: for the tests of the hook's ``ipfs.gateway=`` (trustless CARs)."""

from __future__ import annotations

import http.server
import threading
import urllib.request


class CorruptingGateway:
    """An HTTP proxy in front of a seed's gateway that flips one byte in the middle of the CAR of the
    file named ``target`` (a seed whose disk or memory went bad, or a liar on the path). ``port``:
    where it listens on loopback."""

    def __init__(self, upstream: str, target: str) -> None:
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                try:
                    with urllib.request.urlopen(upstream + self.path, timeout=30) as r:
                        body = bytearray(r.read())
                        status = r.status
                except Exception:
                    self.send_error(502)
                    return
                path, _, query = self.path.partition("?")
                if path.endswith("/" + proxy.target) and "format=car" in query and len(body) > 1000:
                    body[len(body) // 2] ^= 0x01
                    proxy.corrupted += 1
                self.send_response(status)
                self.send_header("Content-Type", "application/vnd.ipld.car")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(bytes(body))

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.target = target
        self.corrupted = 0
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
