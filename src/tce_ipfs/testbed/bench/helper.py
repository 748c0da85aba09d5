"""Benchmark helpers run as processes inside a lab namespace (``python -m tce_ipfs.testbed.bench.helper``).

``serve-http``: the origin's HTTP mirror, its counters kept in a stats file; ``fetch-http``: one HTTP
client that starts at an agreed monotonic time (so N of them start together) and prints its timing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tce_ipfs.testbed.bench.mirror import fetch_http, mirror_server


def _serve_http(root: Path, host: str, port: int, stats: Path) -> None:
    """The origin's HTTP mirror; keeps ``stats`` (``{"bytes", "requests"}``) current, atomically."""
    served = {"bytes": 0, "requests": 0}
    lock = threading.Lock()

    def write() -> None:
        tmp = stats.with_name(stats.name + ".tmp")
        tmp.write_text(json.dumps(served))
        os.replace(tmp, stats)

    def count(n: int) -> None:
        with lock:
            served["bytes"] += n
            served["requests"] += 1
            write()

    server = mirror_server(root, host, port, count)
    write()  # "ready": the socket is bound
    server.serve_forever()


def _fetch_http_at(base: str, files: Sequence[str], at: float) -> dict[str, Any]:
    """Wait until monotonic time ``at`` (so N fetcher processes start together), then fetch."""
    time.sleep(max(0.0, at - time.monotonic()))
    start = time.monotonic()
    got = fetch_http(base, files)
    return {"start": start, "end": time.monotonic(), "bytes": got}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tce_ipfs.testbed.bench.helper",
                                     description="benchmark helpers run inside a lab namespace")
    sub = parser.add_subparsers(dest="cmd", required=True)
    serve = sub.add_parser("serve-http")
    serve.add_argument("root", type=Path)
    serve.add_argument("--bind", required=True)
    serve.add_argument("--port", type=int, required=True)
    serve.add_argument("--stats", type=Path, required=True)
    fetch = sub.add_parser("fetch-http")
    fetch.add_argument("base")
    fetch.add_argument("files", nargs="+")
    fetch.add_argument("--at", type=float, default=0.0)
    args = parser.parse_args(argv)
    if args.cmd == "serve-http":
        _serve_http(args.root, args.bind, args.port, args.stats)
    else:
        print(json.dumps(_fetch_http_at(args.base, args.files, args.at)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
