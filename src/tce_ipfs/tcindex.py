"""The repository-level index files of a Tiny Core mirror's ``tcz/`` directory: read, write, cross-check.

What each one holds (TC's own scripts read them; formats from those scripts):

| file | format | read by |
|---|---|---|
| ``md5.db.gz`` | ``<md5>  NAME.tcz`` per line, the ``.md5.txt`` lines | ``tce-update`` |
| ``sizelist.gz`` (``sizelist``) | ``NAME.tcz <bytes>`` per line | ``tce-size`` |
| ``dep.db.gz`` | records separated by a blank line: ``NAME.tcz``, then its dependencies | ``depends-on.sh`` |
| ``provides.db`` (``.gz``) | records: ``NAME.tcz``, then the paths it installs | ``provides.sh`` |
| ``tags.db.gz`` | ``NAME.tcz`` then its tags, one line per extension | ``search.sh`` |
| ``info.lst`` | ``NAME.tcz`` per line | the Apps browser |

``cross_check(repo)`` sets them against the extensions in the directory (what a client gets wrong
when they disagree: ``tce-update`` fetches by a stale md5, ``tce-size`` adds stale sizes, ...). Index
problems are warnings: the extensions themselves are fine and boot; the index is what is stale.
``write_indexes(dir)`` makes them from the directory (deterministic: gzip without a time stamp), for a
mirror built from a lab's own extensions and for the synthetic mirrors of the tests.

Standard library only (plus ``tcrepo``): used by ``publish`` and ``mirror pull``, also on Tiny Core.
"""

from __future__ import annotations

import gzip
import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path

from tce_ipfs.errors import RepoError
from tce_ipfs.tcrepo import EXT, Problem, RepoFiles, is_valid_name, parse_dep, parse_md5_txt

MD5_DB = "md5.db.gz"
SIZELIST = "sizelist.gz"
SIZELIST_PLAIN = "sizelist"
DEP_DB = "dep.db.gz"
PROVIDES_DB = "provides.db"
PROVIDES_DB_GZ = "provides.db.gz"
TAGS_DB = "tags.db.gz"
INFO_LST = "info.lst"
# What write_indexes() writes (provides.db.zsync is zsyncmake's: not made here).
WRITTEN = (MD5_DB, SIZELIST, DEP_DB, PROVIDES_DB, PROVIDES_DB_GZ, TAGS_DB, INFO_LST)
# Past this many problems of one kind in one index, the rest are counted, not listed.
MAX_LISTED = 10


def read_index(path: Path) -> str:
    """The text of an index file (gunzipped when the name ends in ``.gz``)."""
    data = path.read_bytes()
    if path.name.endswith(".gz"):
        data = gzip.decompress(data)
    return data.decode("utf-8", errors="replace")


def gzip_bytes(data: bytes) -> bytes:
    """gzip without a name or time stamp: the same input always gives the same bytes (same CID)."""
    return gzip.compress(data, compresslevel=9, mtime=0)


# --- parsing -------------------------------------------------------------------------------------


def parse_md5_db(text: str) -> dict[str, str]:
    """``{NAME.tcz: md5}`` from ``md5.db`` lines (lines that are not md5sum output are skipped)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            digest, name = parse_md5_txt(line)
        except ValueError:
            continue
        if name:
            out[name] = digest
    return out


def parse_sizelist(text: str) -> dict[str, int]:
    """``{NAME.tcz: bytes}`` from ``sizelist`` lines ``NAME.tcz <bytes>``."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        words = line.split()
        if len(words) >= 2 and words[1].isdigit():
            out[words[0]] = int(words[1])
    return out


def parse_records(text: str) -> dict[str, list[str]]:
    """``{first line: following lines}`` of blank-line-separated records (``dep.db``, ``provides.db``)."""
    out: dict[str, list[str]] = {}
    for record in re.split(r"\n\s*\n", text.replace("\r", "")):
        lines = [ln.strip() for ln in record.splitlines() if ln.strip()]
        if lines:
            out[lines[0]] = lines[1:]
    return out


def parse_first_words(text: str) -> list[str]:
    """The first word of each non-empty line (``tags.db``, ``info.lst``)."""
    return [line.split()[0] for line in text.splitlines() if line.split()]


# --- cross-checking ------------------------------------------------------------------------------


class _Collector:
    """Problems of one index, the first ``MAX_LISTED`` of each kind listed, the rest counted."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.problems: list[Problem] = []
        self._counts: dict[str, int] = {}
        self._examples: dict[str, str] = {}

    def add(self, kind: str, message: str) -> None:
        n = self._counts.get(kind, 0) + 1
        self._counts[kind] = n
        if n <= MAX_LISTED:
            self.problems.append(Problem(self.file, message, "warning"))
        else:
            self._examples.setdefault(kind, message)

    def finish(self) -> list[Problem]:
        for kind, n in self._counts.items():
            if n > MAX_LISTED:
                self.problems.append(Problem(self.file, f"... and {n - MAX_LISTED} more: {kind}", "warning"))
        return self.problems


def _names_check(col: _Collector, listed: Iterable[str], present: set[str], *, what: str,
                 want_all: bool) -> None:
    listed_set = set(listed)
    for name in sorted(listed_set - present):
        col.add("stale entries", f"stale entry {name}: not in the directory ({what})")
    if want_all:
        for name in sorted(present - listed_set):
            col.add("extensions missing", f"{name} is missing from it ({what})")


def cross_check(repo: RepoFiles, md5s: dict[str, str] | None = None, *,
                size_of: Callable[[str], int] | None = None) -> list[Problem]:
    """Every index file of ``repo`` against its extensions (warnings; see the module doc).

    ``md5s``: ``{NAME.tcz: md5}`` from the ``.md5.txt`` files (``tcrepo.expected_md5s``; read here when
    not given). ``size_of(name)``: an extension's size in bytes (default: ``stat``).
    """
    if md5s is None:
        from tce_ipfs.tcrepo import expected_md5s

        md5s, _ = expected_md5s(repo)
    present = set(repo.extensions)
    sizes = size_of or (lambda name: repo.extensions[name].stat().st_size)
    problems: list[Problem] = []
    for index, path in sorted(repo.indexes.items()):
        if index.endswith(".zsync"):
            continue
        col = _Collector(repo.rel(path))
        try:
            text = read_index(path)
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            col.add("unreadable", f"cannot read it: {exc}")
            problems += col.finish()
            continue
        if index == MD5_DB:
            listed = parse_md5_db(text)
            _names_check(col, listed, present, what="tce-update would look for it", want_all=True)
            for name in sorted(present & set(listed)):
                if name in md5s and listed[name] != md5s[name]:
                    col.add("stale md5s", f"stale md5 for {name}: {listed[name]}, but {name}.md5.txt "
                                          f"says {md5s[name]} (tce-update would refuse or re-fetch it)")
        elif index in (SIZELIST, SIZELIST_PLAIN):
            sized = parse_sizelist(text)
            _names_check(col, sized, present, what="tce-size", want_all=True)
            for name in sorted(present & set(sized)):
                actual = sizes(name)
                if sized[name] != actual:
                    col.add("stale sizes",
                            f"stale size for {name}: {sized[name]} bytes, the file has {actual}")
        elif index == DEP_DB:
            records = parse_records(text)
            _names_check(col, records, present, what="depends-on.sh", want_all=False)
            for name in sorted(present):
                have = _deps_of(repo, name)
                listed_deps = sorted(records.get(name, []))
                if have is not None and listed_deps != have:
                    col.add("stale dependencies", f"stale dependencies for {name}: {listed_deps or 'none'}, "
                                                  f"{name}.dep says {have or 'none'}")
        elif index in (PROVIDES_DB, PROVIDES_DB_GZ):
            _names_check(col, parse_records(text), present, what="provides.sh", want_all=False)
        elif index == TAGS_DB:
            _names_check(col, parse_first_words(text), present, what="search.sh", want_all=False)
        elif index == INFO_LST:
            _names_check(col, parse_first_words(text), present, what="the Apps browser", want_all=False)
        problems += col.finish()
    return problems


def _deps_of(repo: RepoFiles, name: str) -> list[str] | None:
    """The sorted dependencies in ``name``'s ``.dep`` ([] without one); None when it cannot be read."""
    text = repo.dep_text(name)
    if text is None:
        return []
    try:
        return sorted(parse_dep(text, None))
    except RepoError:  # a bad .dep is check_repo's error to report, not the index's
        return None


# --- writing -------------------------------------------------------------------------------------


def _sidecar_text(directory: Path, name: str, suffix: str) -> str:
    try:
        return (directory / f"{name}{suffix}").read_text(errors="replace")
    except FileNotFoundError:
        return ""


def _tags(info: str) -> str:
    for line in info.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() == "tags":
            return " ".join(value.split())
    return ""


def index_texts(directory: Path) -> dict[str, bytes]:
    """The index files for the extensions in ``directory`` (see ``write_indexes``), by name."""
    names = sorted(e.name for e in os.scandir(directory)
                   if e.name.endswith(EXT) and is_valid_name(e.name) and e.is_file())
    md5_lines, size_lines, deps, provides, tags = [], [], [], [], []
    for name in names:
        md5_txt = _sidecar_text(directory, name, ".md5.txt").strip()
        if md5_txt:
            md5_lines.append(md5_txt.splitlines()[0] + "\n")
        size_lines.append(f"{name} {(directory / name).stat().st_size}\n")
        dep_text = _sidecar_text(directory, name, ".dep")
        dep_names = [ln.strip() for ln in dep_text.splitlines() if ln.strip() and not ln.startswith("#")]
        if dep_names:
            deps.append("\n".join([name, *dep_names]) + "\n")
        files = [ln.strip() for ln in _sidecar_text(directory, name, ".list").splitlines() if ln.strip()]
        provides.append("\n".join([name, *files]) + "\n")
        tags.append(f"{name}\t{_tags(_sidecar_text(directory, name, '.info'))}".rstrip() + "\n")
    provides_text = "\n".join(provides).encode()
    return {
        MD5_DB: gzip_bytes("".join(md5_lines).encode()),
        SIZELIST: gzip_bytes("".join(size_lines).encode()),
        DEP_DB: gzip_bytes("\n".join(deps).encode()),
        PROVIDES_DB: provides_text,
        PROVIDES_DB_GZ: gzip_bytes(provides_text),
        TAGS_DB: gzip_bytes("".join(tags).encode()),
        INFO_LST: "".join(f"{n}\n" for n in names).encode(),
    }


def write_indexes(directory: Path, only: Iterable[str] = WRITTEN) -> list[str]:
    """(Re)write the index files of a ``tcz/`` directory from its extensions and sidecars; returns the
    names written. ``-KERNEL`` dependencies are kept as written (the mirror's ``dep.db`` does too)."""
    texts = index_texts(Path(directory))
    written = []
    for name in only:
        tmp = Path(directory) / f".{name}.tmp"
        tmp.write_bytes(texts[name])
        os.replace(tmp, Path(directory) / name)
        written.append(name)
    return written
