"""A local HTTP mirror for tests: serves a directory on 127.0.0.1 with directory listings and ``Range``
requests (as Apache/nginx do), logs every request, and can trickle chosen files slowly (to kill a
client mid-file). Built on ``tce_ipfs.testbed.httpserve``, like the benchmarks' mirror."""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tce_ipfs.testbed.httpserve import QuietHandler, serving


@dataclass
class Log:
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Range header)
    slow: dict[str, float] = field(default_factory=dict)  # path -> bytes per second
    lock: threading.Lock = field(default_factory=threading.Lock)

    def gets(self, suffix: str = "") -> list[str]:
        with self.lock:
            return [p for p, _ in self.requests if p.endswith(suffix)]

    def ranges(self) -> list[tuple[str, str]]:
        with self.lock:
            return [(p, r) for p, r in self.requests if r]

    def clear(self) -> None:
        with self.lock:
            self.requests.clear()


class _Handler(QuietHandler):
    log_book: Log

    def do_GET(self) -> None:
        rng = self.headers.get("Range")
        with self.log_book.lock:
            self.log_book.requests.append((self.path, rng))
        path = Path(self.translate_path(self.path))
        if path.is_dir() or not path.is_file():
            super().do_GET()  # listings (and 404s) as the stock server does them
            return
        size = path.stat().st_size
        start = 0
        m = re.fullmatch(r"bytes=(\d+)-", rng or "")
        if m:
            start = int(m.group(1))
            if start >= size:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
        else:
            self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(size - start))
        self.end_headers()
        rate = self.log_book.slow.get(self.path)
        with open(path, "rb") as f:
            f.seek(start)
            step = 16384 if rate else 1 << 20
            while chunk := f.read(step):
                try:
                    self.wfile.write(chunk)
                except (BrokenPipeError, ConnectionResetError):
                    return
                if rate:
                    time.sleep(len(chunk) / rate)


@contextmanager
def serve(root: Path) -> Iterator[tuple[str, Log]]:
    """``(http://127.0.0.1:PORT, log)`` serving ``root`` until the block ends."""
    book = Log()
    with serving(root, _Handler, log_book=book) as base:
        yield base, book


def tree_contents(root: Path) -> dict[str, bytes]:
    """Relative path -> content of every file under ``root`` (dot directories skipped)."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            p = Path(dirpath) / name
            out[str(p.relative_to(root))] = p.read_bytes()
    return out
