"""Uploading a directory tree to kubo in one ``/add`` request (mirror publishing): the multipart stream
of a tree given as ``(path, file)`` pairs, the md5 of every ``.tcz`` computed from the bytes as they are
sent, and the answer read while the upload is still going (``duplex``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tce_ipfs.errors import NodeError
from tce_ipfs.ipfs.rpc import UPLOAD_CHUNK

DIRECTORY = "application/x-directory"  # how kubo's /add tells a directory part from a file part
ADD_OPTS = {"cid-version": "1", "raw-leaves": "true"}  # the publisher's parameters (same CIDs everywhere)


def _tree_stream_class() -> Any:
    from ipfshttpclient import multipart

    class TreeStream(multipart.StreamBase, multipart.StreamFileMixin):  # type: ignore[misc]
        """multipart/form-data of a directory tree given as ``(path, file or None for a directory)``,
        directories before what they hold (what kubo's /add expects)."""

        def __init__(self, entries: Sequence[tuple[str, Path | None]], chunk_size: int,
                     on_sent: Callable[[int], None] | None = None,
                     digests: dict[Path, str] | None = None) -> None:
            self.entries = entries
            self.on_sent = on_sent
            self.digests = digests
            self._md5: Any = None
            super().__init__("tree", chunk_size=chunk_size)

        def _gen_file_chunks(self, file: Any) -> Any:
            for chunk in super()._gen_file_chunks(file):
                if self._md5 is not None:
                    self._md5.update(chunk)
                yield chunk
                if self.on_sent is not None:
                    self.on_sent(len(chunk))  # file content only: what the progress bar counts

        def _body(self) -> Any:
            for name, path in self.entries:
                if path is None:
                    yield from self._gen_file(name, content_type=DIRECTORY)
                    continue
                want = self.digests is not None and name.endswith(".tcz")
                self._md5 = hashlib.md5(usedforsecurity=False) if want else None
                with open(path, "rb") as f:
                    yield from self._gen_file(name, file=f, content_type="application/octet-stream")
                if self._md5 is not None and self.digests is not None:
                    self.digests[path] = self._md5.hexdigest()
            yield from self._gen_end()

    return TreeStream


def tree_entries(top: str, files: dict[str, Path]) -> list[tuple[str, Path | None]]:
    """``files`` (``a/b/name`` -> file) as the parts of one upload under the directory ``top``: every
    directory once, before its contents (depth first, sorted)."""
    entries: list[tuple[str, Path | None]] = [(top, None)]
    made: set[str] = set()
    for rel in sorted(files, key=lambda r: r.split("/")):
        parts = rel.split("/")
        for depth in range(1, len(parts)):
            d = "/".join(parts[:depth])
            if d not in made:
                made.add(d)
                entries.append((f"{top}/{d}", None))
        entries.append((f"{top}/{rel}", files[rel]))
    return entries


def add_tree(c: Any, files: dict[str, Path], *, pin: bool = True, pin_name: str | None = None,
             on_sent: Callable[[int], None] | None = None, to_files: str | None = None,
             digests: dict[Path, str] | None = None, cids: dict[str, str] | None = None,
             timeout: float | None = None) -> str:
    """Add ``files`` (relative path -> file) as ONE directory tree, CIDv1 with raw leaves; return the
    root's CID. ``to_files``: the tree is also linked into MFS at that path (``ipfs add --to-files``;
    it must not exist, its parent must): what an unpinned add needs to be kept from the garbage
    collector until it is linked where it belongs.

    kubo answers while it still reads the upload; the answer is read as it comes (``duplex``). Without
    ``cids`` it is the root only (``quieter``: ``dir_cids`` lists what the files became); ``cids`` is
    filled with ``{path: CID}`` of every file from the answer. ``on_sent(bytes)`` counts the upload as
    it is sent (the progress bar). ``digests``: filled with the md5 of every ``.tcz`` sent, computed
    from the bytes as they go out (no second read of the file).
    """
    top = "tree"
    opts = dict(ADD_OPTS, pin="true" if pin else "false")
    if cids is None:
        opts["quieter"] = "true"
    if pin_name:
        opts["pin-name"] = pin_name
    if to_files is not None:
        opts["to-files"] = to_files.rstrip("/")
    stream = _tree_stream_class()(tree_entries(top, files), UPLOAD_CHUNK, on_sent, digests)
    from tce_ipfs.ipfs import duplex

    events = list(duplex.post(c.tce_api, "add", opts, stream.body(), stream.headers(), timeout=timeout))
    if not events or "Hash" not in events[-1]:
        raise NodeError("IPFS add returned no root directory CID")
    if cids is not None:
        prefix = top + "/"
        cids.update({name[len(prefix):]: str(e["Hash"]) for e in events
                     if "Hash" in e and (name := str(e.get("Name", ""))).startswith(prefix)
                     and name[len(prefix):] in files})
    return str(events[-1]["Hash"])
