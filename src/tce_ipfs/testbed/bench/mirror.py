"""The HTTP mirror baseline: a plain file server that counts the bytes it serves, and its client."""

from __future__ import annotations

import functools
import http.server
import threading
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any


class _MirrorHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files from ``directory``; ``on_served(n)`` is called before each body is sent (so the
    count is complete by the time a client has the bytes)."""

    on_served: Callable[[int], None] = staticmethod(lambda n: None)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def copyfile(self, source: Any, outputfile: Any) -> None:
        data = source.read()
        self.on_served(len(data))
        outputfile.write(data)


def mirror_server(root: Path, host: str, port: int,
                   on_served: Callable[[int], None]) -> http.server.ThreadingHTTPServer:
    handler = type("Handler", (_MirrorHandler,), {"on_served": staticmethod(on_served)})
    return http.server.ThreadingHTTPServer((host, port),
                                           functools.partial(handler, directory=str(root)))


@contextmanager
def http_mirror(root: Path) -> Iterator[tuple[str, dict[str, int]]]:
    """A plain HTTP mirror on loopback serving ``root``; yields (base URL, counters)."""
    served = {"bytes": 0, "requests": 0}
    lock = threading.Lock()

    def count(n: int) -> None:
        with lock:
            served["bytes"] += n
            served["requests"] += 1

    server = mirror_server(root, "127.0.0.1", 0, count)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", served
    finally:
        server.shutdown()
        server.server_close()


def fetch_http(base: str, files: Sequence[str]) -> int:
    total = 0
    for f in files:
        with urllib.request.urlopen(f"{base}/{f}", timeout=120) as resp:
            total += len(resp.read())
    return total
