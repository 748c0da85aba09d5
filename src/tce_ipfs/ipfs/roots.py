"""The roots a node has published: their pins, their age, and keeping only the newest K.

Every root ``publish`` (and a seed) adds is pinned under a name ``"<PIN_PREFIX><UTC time> <source>"``
(``pin_name``), the time being when that root was first published; publishing the same content again
keeps the name, so a root's age is the age of its content. ``published_roots`` reads them back from
the node, newest first; ``keep(client, source, k)`` unpins all but the newest ``k`` roots of one
source (other sources' roots and pins not made by us are never touched).
"""

from __future__ import annotations

import calendar
import logging
import time
from dataclasses import dataclass
from typing import Any

from tce_ipfs.errors import UsageError
from tce_ipfs.ipfs import rpc

log = logging.getLogger(__name__)

PIN_PREFIX = "tce-ipfs-seed "  # kept as the lab seed named its pins first (old pins still count)
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def now() -> str:
    return time.strftime(TIME_FORMAT, time.gmtime())


def age(stamp: str | None) -> float | None:
    """Seconds since a ``TIME_FORMAT`` stamp (None when there is none or it does not parse)."""
    if not stamp:
        return None
    try:
        return max(0.0, time.time() - calendar.timegm(time.strptime(stamp, TIME_FORMAT)))
    except ValueError:
        return None


def pin_name(source: str, when: str | None = None) -> str:
    return f"{PIN_PREFIX}{when or now()} {source}"[:255]


def parse_pin_name(name: str) -> tuple[str, str] | None:
    """``(time, source)`` of one of our pin names, None for any other pin."""
    if not name.startswith(PIN_PREFIX):
        return None
    when, _, source = name[len(PIN_PREFIX):].partition(" ")
    return when, source


@dataclass(frozen=True)
class Root:
    cid: str
    published_at: str
    source: str

    @property
    def age_s(self) -> float | None:
        return age(self.published_at)


def published_roots(client: Any, source: str | None = None) -> list[Root]:
    """Our roots pinned on the node (of one ``source``, or all), newest first."""
    roots = []
    for cid, name in rpc.pin_names(client).items():
        parsed = parse_pin_name(name)
        if parsed is None:
            continue
        when, src = parsed
        # a long source is cut to fit the pin name: compare it cut the same way
        if source is None or src == pin_name(source, when)[len(PIN_PREFIX) + len(when) + 1:]:
            roots.append(Root(cid, when, src))
    return sorted(roots, key=lambda r: (r.published_at, r.cid), reverse=True)


def ensure_named(client: Any, cid: str, source: str, *, timeout: float | None = None) -> None:
    """Give ``cid``'s pin our name unless it has one already (its first publish time stays)."""
    if parse_pin_name(rpc.pin_names(client).get(cid, "")) is None:
        rpc.pin_add_named(client, cid, pin_name(source), timeout=timeout)


def keep(client: Any, source: str, k: int, *, current: str) -> list[str]:
    """Unpin all but the newest ``k`` roots published from ``source`` (``current`` always stays);
    returns the CIDs unpinned. Their blocks go at the node's next garbage collection."""
    if k < 1:
        raise UsageError(f"--keep {k}: keep at least the root just published (1)")
    roots = [r for r in published_roots(client, source) if r.cid != current]
    drop = roots[k - 1:]
    for root in drop:
        rpc.pin_rm(client, root.cid)
        log.info("unpinned %s (published %s from %s)", root.cid, root.published_at, root.source)
    return [r.cid for r in drop]
