"""CAR files: a published root (the whole DAG) as one file, to carry where there is no network.

``export(client, target, out)`` writes the CAR (v1) of a root's whole DAG with kubo's ``dag export``:
blocks in the order a depth-first walk meets them, each once, so exporting the same root twice gives
the same bytes. Only local blocks are exported (offline): an incomplete root is refused before the
file is written, not fetched from peers. ``import_car(client, car)`` reads the CAR's header (its
roots), imports it, and then checks that each root is complete in the node (offline: every block of
the DAG present) before pinning it; a truncated or foreign file is refused with the root(s) it lacks.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from tce_ipfs import cidtext
from tce_ipfs.errors import NodeError, UsageError
from tce_ipfs.ipfs import roots, rpc
from tce_ipfs.log import Progress, human

log = logging.getLogger(__name__)

MAX_HEADER = 1 << 20  # a CAR header lists roots: anything this big is not one
CARV2_PRAGMA = bytes.fromhex("0aa16776657273696f6e02")  # varint 10 + dag-cbor {"version": 2}


# --- reading a CAR header (a tiny dag-cbor reader: maps, arrays, strings, ints, tag 42) -----------
def _varint(f: IO[bytes]) -> int:
    shift = result = 0
    for _ in range(10):
        b = f.read(1)
        if not b:
            raise ValueError("file ends inside a varint")
        result |= (b[0] & 0x7F) << shift
        if not b[0] & 0x80:
            return result
        shift += 7
    raise ValueError("varint too long")


def _cbor(data: bytes, pos: int = 0) -> tuple[Any, int]:
    head = data[pos]
    major, info = head >> 5, head & 0x1F
    pos += 1
    if info < 24:
        arg = info
    elif info in (24, 25, 26, 27):
        n = 1 << (info - 24)
        arg = int.from_bytes(data[pos:pos + n], "big")
        pos += n
    else:
        raise ValueError("indefinite lengths are not dag-cbor")
    if major == 0:
        return arg, pos
    if major in (2, 3):
        raw = data[pos:pos + arg]
        return (raw if major == 2 else raw.decode()), pos + arg
    if major == 4:
        items = []
        for _ in range(arg):
            item, pos = _cbor(data, pos)
            items.append(item)
        return items, pos
    if major == 5:
        out = {}
        for _ in range(arg):
            key, pos = _cbor(data, pos)
            out[key], pos = _cbor(data, pos)
        return out, pos
    if major == 6 and arg == 42:  # a CID: bytes with a leading 0x00
        raw, pos = _cbor(data, pos)
        return cidtext.from_bytes(bytes(raw)[1:]), pos
    raise ValueError(f"unexpected dag-cbor item (major type {major})")


def read_roots(car: Path) -> list[str]:
    """The roots a CAR file (v1, or v2 around a v1) names in its header. ``UsageError`` for a file
    that is not a CAR."""
    try:
        with open(car, "rb") as f:
            start = f.read(len(CARV2_PRAGMA))
            if start == CARV2_PRAGMA:
                f.read(16)  # characteristics
                offset = int.from_bytes(f.read(8), "little")
                f.seek(offset)
            else:
                f.seek(0)
            size = _varint(f)
            if not 0 < size <= MAX_HEADER:
                raise ValueError(f"header of {size} bytes")
            header, _ = _cbor(f.read(size))
        if not isinstance(header, dict) or header.get("version") != 1 or not header.get("roots"):
            raise ValueError("no version 1 header with roots")
        return [str(r) for r in header["roots"]]
    except FileNotFoundError:
        raise UsageError(f"{car}: no such file") from None
    except (ValueError, IndexError, UnicodeDecodeError, OSError) as exc:
        raise UsageError(f"{car} is not a CAR file ({exc})",
                         hint="make one with `tce-ipfs car export CID -o FILE`") from None


# --- export ----------------------------------------------------------------------------------------
@dataclass
class CarExport:
    root: str
    path: Path
    bytes: int
    dag_bytes: int
    blocks: int

    def as_json(self) -> dict[str, Any]:
        return {"root": self.root, "file": str(self.path), "bytes": self.bytes, "dag_bytes": self.dag_bytes,
                "blocks": self.blocks}


def check_target(target: str) -> str:
    """A CID, ``/ipfs/<cid>/sub/path``, ``ipfs://...`` or ``/ipns/<name>``, as a CID or an IPFS path
    (``UsageError`` for anything else, before any node is asked)."""
    text = target.strip()
    for prefix in ("ipfs://", "ipns://"):
        if text.startswith(prefix):
            text = f"/{prefix[:4]}/{text[len(prefix):]}"
    if cidtext.is_cid(text) or text.startswith(("/ipfs/", "/ipns/")):
        return text.rstrip("/")
    raise UsageError(f"{target!r} is neither a CID nor an /ipfs/ or /ipns/ path",
                     hint="e.g. bafy..., /ipfs/bafy.../16.x/x86_64/tcz, or a repo directory")


def resolve_target(client: Any, target: str) -> str:
    """The CID ``target`` (see ``check_target``) names."""
    text = check_target(target)
    return text if cidtext.is_cid(text) else rpc.resolve(client, text, timeout=60)


def export(client: Any, target: str, out: Path, *, progress: bool = True) -> CarExport:
    """Write the CAR of ``target``'s whole DAG to ``out`` (atomically; see the module doc)."""
    cid = resolve_target(client, target)
    try:
        stat = rpc.dag_stat(client, cid, offline=True, timeout=600)
    except NodeError as exc:
        raise NodeError(f"{cid} is not complete on this node: {exc.message}",
                        hint="a CAR holds only local blocks: publish or pin the root here first") from None
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.part")
    written = 0
    try:
        with open(tmp, "wb") as f, Progress(f"exporting {cid[:16]}...", stat["TotalSize"]) as bar:
            for chunk in rpc.dag_export(client, cid, timeout=600):
                f.write(chunk)
                written += len(chunk)
                if progress and bar.enabled:
                    bar.advance(len(chunk))
            f.flush()
            os.fsync(f.fileno())
        if read_roots(tmp) != [cid]:
            raise NodeError(f"kubo's export of {cid} names other roots")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    log.info("exported %s (%s in %d blocks) to %s (%s)", cid, human(stat["TotalSize"]), stat["NumBlocks"],
             out, human(written))
    return CarExport(root=cid, path=out, bytes=written, dag_bytes=stat["TotalSize"],
                     blocks=stat["NumBlocks"])


# --- import ----------------------------------------------------------------------------------------
@dataclass
class CarImport:
    path: Path
    roots: list[str]
    blocks: int = 0
    bytes: int = 0
    complete: dict[str, bool] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"file": str(self.path), "roots": self.roots, "blocks": self.blocks, "bytes": self.bytes,
                "complete": self.complete}


def import_car(client: Any, car: Path, *, expect: str | None = None, pin: bool = True) -> CarImport:
    """Import ``car`` and pin its roots once each is complete (see the module doc). ``expect``: a CID
    the CAR must hold as a root. ``NodeError`` (nothing pinned) when a root is incomplete."""
    car = Path(car)
    wanted = read_roots(car)
    if expect is not None and expect not in wanted:
        raise UsageError(f"{car} holds {', '.join(wanted)}, not {expect}")
    try:
        res = rpc.dag_import(client, car, pin_roots=False, timeout=3600)
    except NodeError as exc:
        # A truncated file fails part way; what was read before stays in the node, unpinned.
        log.warning("%s: %s", car, exc.message)
        res = {"blocks": 0, "bytes": 0}
    result = CarImport(path=car, roots=wanted, blocks=int(res.get("blocks", 0)),
                       bytes=int(res.get("bytes", 0)))
    for root in wanted:
        try:
            rpc.dag_stat(client, root, offline=True, timeout=600)
            result.complete[root] = True
        except NodeError:
            result.complete[root] = False
    missing = [r for r, ok in result.complete.items() if not ok]
    if missing:
        raise NodeError(f"{car}: root {', '.join(missing)} is incomplete after the import (a truncated or "
                        "damaged CAR file): nothing pinned",
                        hint="export it again (`tce-ipfs car export`) and check the copy")
    if pin:
        for root in wanted:
            roots.ensure_named(client, root, f"car:{car.name}")
    log.info("imported %s: %s complete (%d blocks, %s)", car, ", ".join(wanted), result.blocks,
             human(result.bytes))
    return result
