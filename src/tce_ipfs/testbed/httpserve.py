"""HTTP file servers for the testbed, made one way: a ``SimpleHTTPRequestHandler`` subclass serving a
directory, in a thread, on loopback. The benchmarks' HTTP mirror baseline (``bench.mirror``: it counts
the bytes it serves), the mirror guests reach in the end-to-end tests (``e2e.http_mirror``) and the
test suite's mirror with ``Range`` requests and slow files (``tests/support/httpmirror.py``) differ
only in their handlers."""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    """The stock file handler (listings, 404s, ``If-Modified-Since``), minus its log line per request."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


def directory_server(root: Path, handler: type[QuietHandler] = QuietHandler, host: str = "127.0.0.1",
                     port: int = 0, **state: Any) -> http.server.ThreadingHTTPServer:
    """A bound (not yet serving) server of ``root`` on ``host``:``port`` (0: a free port). ``state``
    becomes class attributes of a subclass of ``handler`` made for this server alone (its counters, its
    request log), so two servers never share them."""
    cls = type(handler.__name__, (handler,), state) if state else handler
    return http.server.ThreadingHTTPServer((host, port), functools.partial(cls, directory=str(root)))


@contextmanager
def serving(root: Path, handler: type[QuietHandler] = QuietHandler, **state: Any) -> Iterator[str]:
    """``http://127.0.0.1:PORT`` serving ``root`` (see ``directory_server``) until the block ends."""
    server = directory_server(root, handler, **state)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
