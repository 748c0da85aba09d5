"""Progress reporting that only draws on a terminal (logs stay clean in CI)."""

from __future__ import annotations

import sys
import time


class Progress:
    """``with Progress("adding", total) as p: p.advance(n)`` -- a one-line counter on a TTY."""

    def __init__(self, label: str, total: int, unit: str = "B") -> None:
        self.label = label
        self.total = max(total, 1)
        self.unit = unit
        self.done = 0
        self.enabled = sys.stderr.isatty()
        self._last = 0.0

    def __enter__(self) -> Progress:
        return self

    def advance(self, amount: int) -> None:
        self.done = min(self.done + amount, self.total)  # an upload counts its framing too
        now = time.monotonic()
        if self.enabled and (now - self._last > 0.1 or self.done >= self.total):
            self._last = now
            pct = 100 * self.done // self.total
            sys.stderr.write(f"\r{self.label}: {pct:3d}% ({human(self.done)}/{human(self.total)})")
            sys.stderr.flush()

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            sys.stderr.write("\n")


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"
