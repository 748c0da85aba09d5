"""What the last publish of a source gave, so that the next one adds only what changed.

One JSON file per (node, source): the root CID, and per published path the file's ``stat`` key (size,
mtime, ctime, inode), its CID, for a ``.tcz`` its md5 (so an unchanged file is neither hashed nor added
again) and, for a sidecar or list the checks read (``.md5.txt``, ``.dep``, ``*.lst``), its text (so the
checks of a republish read only the changed ones; ``tcrepo.RepoFiles.texts``). A file whose ``stat``
key differs is treated as changed: read, hashed, checked and added; if its content is in fact the same
it gets the same CID and the diff does not list it. The file is only a
shortcut: deleting it (or ``publish --full``) makes the next publish a full one, same root CID.

Where it lives: ``<base>/<hash of node peer ID and source path>.json``, ``base`` being
``STATE_DIR/publish`` for ``tce-ipfs publish``, ``<seed state>/publish`` for a seed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

FORMAT = 2  # 2: + the text of sidecars and lists
READABLE = (1, 2)  # format 1 is format 2 without texts: its entries are as good (the texts are read)


def stat_key(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


@dataclass
class Entry:
    key: tuple[int, int, int, int]  # stat_key() when it was published
    cid: str
    md5: str | None = None  # a .tcz's content md5 (None for other files, or when not checked)
    text: str | None = None  # a sidecar's or list's text, as the checks read it (None: not read)

    def as_list(self) -> list[Any]:
        return [*self.key, self.cid, self.md5, self.text]

    @classmethod
    def from_list(cls, data: list[Any]) -> Entry:
        """An entry from its JSON list (format 1: no text). Raises ``ValueError``/``TypeError`` when
        it is not one: a damaged cache is not trusted."""
        size, mtime, ctime, ino, cid, md5, *rest = data
        text = rest[0] if len(rest) == 1 else None
        if len(rest) > 1 or not isinstance(cid, str) or not all(
                v is None or isinstance(v, str) for v in (md5, text)):
            raise TypeError(f"not a publish cache entry: {str(data)[:80]}")
        return cls((int(size), int(mtime), int(ctime), int(ino)), cid, md5 or None, text)


@dataclass
class PublishCache:
    path: Path | None
    source: str
    node: str
    root: str | None = None
    published_at: str | None = None
    files: dict[str, Entry] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path | None, source: Path, node: str) -> PublishCache:
        """The cache at ``path`` if it is for this source and node, else an empty one."""
        empty = cls(path, str(source), node)
        if path is None:
            return empty
        try:
            data = json.loads(path.read_text())
            if (data.get("format") not in READABLE or data.get("source") != str(source)
                    or data.get("node") != node):
                return empty
            files = {str(k): Entry.from_list(v) for k, v in data["files"].items()}
        except FileNotFoundError:
            return empty
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:  # damaged: not trusted
            log.warning("ignoring the publish cache %s (%s): this publish adds everything", path, exc)
            return empty
        return cls(path, str(source), node, data.get("root"), data.get("published_at"), files)

    def unchanged(self, rel: str, st: os.stat_result) -> Entry | None:
        """The entry of ``rel`` when the file has not changed since it was published."""
        entry = self.files.get(rel)
        return entry if entry is not None and entry.key == stat_key(st) else None

    def unchanged_entries(self, stats: dict[str, os.stat_result]) -> dict[str, Entry]:
        """``{path: entry}`` of the files of ``stats`` (path -> stat) unchanged since they were published."""
        files = self.files
        out: dict[str, Entry] = {}
        for rel, st in stats.items():
            entry = files.get(rel)
            if entry is not None and entry.key == stat_key(st):
                out[rel] = entry
        return out

    def save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = {"format": FORMAT, "source": self.source, "node": self.node, "root": self.root,
                "published_at": self.published_at,
                "files": {rel: e.as_list() for rel, e in sorted(self.files.items())}}
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(data, separators=(",", ":")) + "\n")
        os.replace(tmp, self.path)

    def forget(self) -> None:
        if self.path is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()


def cache_path(base: Path, node: str, source: Path) -> Path:
    digest = hashlib.sha256(f"{node}\0{Path(source).resolve()}".encode()).hexdigest()[:24]
    return Path(base) / f"{digest}.json"
