"""What a publish takes: one repository directory, or a Tiny Core mirror tree of them.

Layouts (``scan_source``):

* ``flat``: a mirror's ``tcz/`` directory or a lab repo (``DIR/*.tcz`` + sidecars + lists + indexes);
* ``tce-dir``: ``DIR/optional/*`` + ``DIR/*.lst`` (flattened on publish);
* ``tree``: a mirror tree, TC's own URL layout ``<release>/<arch>/tcz/`` (``16.x/x86_64/tcz/``,
  ``16.x/aarch64/tcz/``, ...), or one release of it (``x86_64/tcz/``). Every ``tcz/`` directory is a
  flat repo of its own and is published at the same path, so ``tce=ipfs:<root>/16.x/x86_64/tcz``
  boots from it. What else a mirror carries (``release/`` ISOs, ``archive/``, ``latest-*``) is left out
  (``note`` problems: logged, not warnings); dot files (``.tce-ipfs/``: ``mirror pull``'s state) silently.

``Source.published()`` maps each published path (``16.x/x86_64/tcz/bash.tcz``; just ``bash.tcz`` for
a flat repo) to its file. Standard library only (plus ``tcrepo``): it ships inside the agent.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tce_ipfs import tcrepo
from tce_ipfs.errors import RepoError
from tce_ipfs.tcrepo import EXT, Problem, RepoFiles

TCZ_DIR = "tcz"
MAX_DEPTH = 2  # <release>/<arch>/tcz
_PART_RE = re.compile(r"^[A-Za-z0-9_+][A-Za-z0-9._+-]*$")


@dataclass
class Source:
    """A publish source, scanned (no content checks: see ``check``)."""

    root: Path
    layout: str  # "flat", "tce-dir" or "tree"
    repos: dict[str, RepoFiles] = field(default_factory=dict)  # prefix ("" or "16.x/x86_64/tcz") -> repo
    ignored: list[Problem] = field(default_factory=list)  # tree-level: what is left out

    def path_of(self, prefix: str, name: str) -> str:
        return f"{prefix}/{name}" if prefix else name

    def published(self) -> dict[str, Path]:
        """Every published path -> its file, sorted by path."""
        out: dict[str, Path] = {}
        for prefix, repo in self.repos.items():
            for name, path in repo.published().items():
                out[self.path_of(prefix, name)] = path
        return dict(sorted(out.items()))

    def extensions(self) -> dict[str, Path]:
        """Every published ``.tcz`` path -> its file."""
        return {self.path_of(prefix, name): path for prefix, repo in self.repos.items()
                for name, path in repo.extensions.items()}

    @property
    def extension_count(self) -> int:
        return sum(len(r.extensions) for r in self.repos.values())


def _entries(d: Path) -> list[os.DirEntry[str]]:
    with os.scandir(d) as it:
        return sorted(it, key=lambda e: e.name)


def _has_extensions(d: Path) -> bool:
    return any(e.name.endswith(EXT) for e in _entries(d))


def _find_tcz_dirs(root: Path) -> tuple[list[str], list[Problem]]:
    """``tcz/`` directories at most ``MAX_DEPTH`` levels below ``root`` (as relative prefixes), and
    the entries on the way that are left out."""
    found: list[str] = []
    left_out: list[Problem] = []

    def walk(d: Path, rel: str, depth: int) -> None:
        for entry in _entries(d):
            if entry.name.startswith("."):
                continue  # .tce-ipfs/ (mirror pull's state), editors' and rsync's temporaries
            sub = f"{rel}/{entry.name}" if rel else entry.name
            if not entry.is_dir(follow_symlinks=False):
                left_out.append(Problem(sub, "not in a tcz/ directory", "note"))
            elif entry.name == TCZ_DIR and depth > 0:
                found.append(sub)
            elif not _PART_RE.match(entry.name):
                left_out.append(Problem(sub, "unsafe directory name; not published"))
            elif depth < MAX_DEPTH:
                walk(Path(entry.path), sub, depth + 1)
            else:
                left_out.append(Problem(sub, "not a tcz/ directory", "note"))

    walk(root, "", 0)
    return found, left_out


def is_tree(directory: Path) -> bool:
    """A mirror tree: no extensions and no ``optional/`` at the top, ``tcz/`` directories below."""
    d = Path(directory)
    if not d.is_dir() or (d / "optional").is_dir() or _has_extensions(d):
        return False
    return bool(_find_tcz_dirs(d)[0])


def scan_source(directory: Path) -> Source:
    """Classify a flat repo, a tce dir or a mirror tree (see the module doc)."""
    root = Path(directory)
    if not root.is_dir():
        raise RepoError(f"{root} is not a directory")
    if not is_tree(root):
        repo = tcrepo.scan_repo(root)
        return Source(root=root, layout=repo.layout, repos={"": repo})
    prefixes, left_out = _find_tcz_dirs(root)
    source = Source(root=root, layout="tree", ignored=left_out)
    for prefix in prefixes:
        repo = tcrepo.scan_repo(root / prefix)
        if repo.layout != "flat":
            source.ignored.append(Problem(f"{prefix}/optional", "a tcz/ directory holds the extensions "
                                          "itself (no optional/); not published"))
            continue
        source.repos[prefix] = repo
    return source


def _prefixed(prefix: str, problems: list[Problem]) -> list[Problem]:
    if not prefix:
        return problems
    return [Problem(f"{prefix}/{p.file}" if p.file != "." else prefix, p.message, p.severity)
            for p in problems]


def check(source: Source, kernel: str | None = None, *, md5: bool = True, indexes: bool = True,
          sums: dict[str, str] | None = None, sizes: dict[str, int] | None = None) -> list[Problem]:
    """``tcrepo.check_repo`` for every repo of ``source`` (paths prefixed), the index cross-check
    (``tcindex.cross_check``) and the tree's own problems.

    ``sums``: ``{published .tcz path: md5}`` already known to be the file's (not hashed again).
    ``sizes``: ``{published path: bytes}`` of every file, when the caller has stat'ed them already.
    """
    from tce_ipfs import tcindex

    problems = list(source.ignored)
    if not source.repos:
        problems.append(Problem(".", "no tcz/ directory with extensions found"))
    for prefix, repo in source.repos.items():
        md5_txt = tcrepo.expected_md5s(repo)  # read once: check_repo and the index cross-check use it
        found = tcrepo.check_repo(repo, kernel, md5=False, expected=md5_txt)
        expected = md5_txt[0]
        if md5:
            found += _md5_mismatches(source, prefix, expected, sums or {})
        if indexes:
            found += tcindex.cross_check(repo, expected, size_of=_size_lookup(source, prefix, sizes))
        problems += _prefixed(prefix, found)
    return problems


def _size_lookup(source: Source, prefix: str, sizes: dict[str, int] | None) -> Callable[[str], int] | None:
    """``size_of(name)`` for the extensions of the repo at ``prefix`` from ``sizes`` (None: stat them)."""
    if sizes is None:
        return None
    return lambda name: sizes[source.path_of(prefix, name)]


def _md5_mismatches(source: Source, prefix: str, expected: dict[str, str],
                    sums: dict[str, str]) -> list[Problem]:
    """``tcrepo.md5_mismatches`` for the repo at ``prefix``, given ``sums`` by published path."""
    known = {name: digest for name in expected
             if (digest := sums.get(source.path_of(prefix, name))) is not None}
    return tcrepo.md5_mismatches(source.repos[prefix], expected, sums=known)


def md5_problems(source: Source, sums: dict[str, str]) -> list[Problem]:
    """Every ``.tcz`` of ``source`` whose content does not match its ``.md5.txt``: the md5 check of
    ``check`` alone, for a publisher that computed the md5s as it sent the files. ``sums``: ``{published
    .tcz path: md5}`` (the ones missing are hashed here)."""
    problems: list[Problem] = []
    for prefix, repo in source.repos.items():
        expected, _ = tcrepo.expected_md5s(repo)  # its own problems were check()'s to report
        problems += _prefixed(prefix, _md5_mismatches(source, prefix, expected, sums))
    return problems
