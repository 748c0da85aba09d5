"""The HTTP mirror baseline: a plain file server (``testbed.httpserve``) that counts the bytes it
serves, and its client; and the same server as a process inside a lab namespace (``start_in``, run by
``bench.helper``)."""

from __future__ import annotations

import http.server
import json
import os
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import tce_ipfs
from tce_ipfs.errors import NodeError
from tce_ipfs.testbed.httpserve import QuietHandler, directory_server, serving

PORT = 8080  # the mirror inside the origin namespace (its own network: no clash possible)


class _MirrorHandler(QuietHandler):
    """Serves files from ``directory``; ``on_served(n)`` is called before each body is sent (so the
    count is complete by the time a client has the bytes)."""

    on_served: Callable[[int], None] = staticmethod(lambda n: None)

    def copyfile(self, source: Any, outputfile: Any) -> None:
        data = source.read()
        self.on_served(len(data))
        outputfile.write(data)


def mirror_server(root: Path, host: str, port: int,
                   on_served: Callable[[int], None]) -> http.server.ThreadingHTTPServer:
    return directory_server(root, _MirrorHandler, host, port, on_served=staticmethod(on_served))


@contextmanager
def http_mirror(root: Path) -> Iterator[tuple[str, dict[str, int]]]:
    """A plain HTTP mirror on loopback serving ``root``; yields (base URL, counters)."""
    served = {"bytes": 0, "requests": 0}
    lock = threading.Lock()

    def count(n: int) -> None:
        with lock:
            served["bytes"] += n
            served["requests"] += 1

    with serving(root, _MirrorHandler, on_served=staticmethod(count)) as base:
        yield base, served


def fetch_http(base: str, files: Sequence[str]) -> int:
    total = 0
    for f in files:
        with urllib.request.urlopen(f"{base}/{f}", timeout=120) as resp:
            total += len(resp.read())
    return total


# ---------------------------------------------------------------- the mirror inside a lab namespace
def src_dir() -> str:
    """Where the ``tce_ipfs`` package lives (PYTHONPATH for our helpers inside a namespace)."""
    return str(Path(tce_ipfs.__file__).resolve().parents[1])


def helper_argv(*args: str | os.PathLike[str]) -> list[str]:
    """The helper's command line (``python -m tce_ipfs.testbed.bench.helper ...``), run in a namespace."""
    return [sys.executable, "-m", f"{__package__}.helper", *(os.fspath(a) for a in args)]


def served_bytes(stats: Path) -> int:
    """What the mirror started by ``start_in`` has served so far."""
    return int(json.loads(stats.read_text())["bytes"])


def start_in(lab: Any, root: Path, host: str, stats: Path) -> Any:
    """The HTTP mirror as a process inside ``lab``'s namespace on ``host``:``PORT``; its counters go to
    ``stats`` (``served_bytes``)."""
    stats.unlink(missing_ok=True)
    mirror = lab.spawn("http-mirror", helper_argv("serve-http", root, "--bind", host,
                                                  "--port", str(PORT), "--stats", stats),
                       env={"PYTHONPATH": src_dir()})
    deadline = time.monotonic() + 30
    while not stats.exists():
        if not mirror.alive() or time.monotonic() > deadline:
            raise NodeError("the HTTP mirror in the origin namespace did not come up: "
                            + mirror.log_path.read_text(errors="replace")[-500:])
        time.sleep(0.05)
    return mirror
