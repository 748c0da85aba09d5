"""Tiny Core repository rules, shared by the build host and the agent on the booted machine.

* extension names (``is_valid_name``/``check_name``): ``[A-Za-z0-9._+-]``, ending in ``.tcz``, no path
  parts, not starting with ``-`` or ``.``, at most ``NAME_MAX`` characters;
* ``.dep`` files (``parse_dep``): one name per line, blank and ``#`` lines ignored, whitespace and CR
  stripped, ``.tcz`` added when missing, ``-KERNEL`` replaced by ``-<kernel release>``;
* ``closure()``: a dependency closure in load order (dependencies before dependents, each name once,
  loops reported and broken) -- what tce-load's ``recursive_scan_dep`` does;
* ``scan_repo()``/``check_repo()``: a repository directory, either flat (``DIR/*.tcz`` + sidecars +
  ``*.lst``, like a mirror's ``tcz/``) or a tce dir (``DIR/optional/*.tcz`` + ``DIR/*.lst``), checked
  for what a client would trip over: md5 mismatches, missing ``.md5.txt``, unresolved deps, list entries
  naming missing extensions, unsafe file names.

Standard library only (plus ``tce_ipfs.errors``): it ships inside ``tce-ipfs-agent.tcz``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tce_ipfs.errors import RepoError, UsageError

log = logging.getLogger(__name__)

EXT = ".tcz"
# Longest extension name we accept: leaves room for ".md5.txt" and friends within NAME_MAX (255)
# of every Linux file system, and is far beyond any real extension name.
NAME_MAX = 200
_NAME_RE = re.compile(r"^[A-Za-z0-9_+][A-Za-z0-9._+-]*\.tcz$")
_FILE_RE = re.compile(r"^[A-Za-z0-9_+][A-Za-z0-9._+-]*$")
KERNEL_TOKEN = "-KERNEL"

# Per-extension sidecar suffixes (appended to NAME.tcz).
SIDECARS = (".md5.txt", ".dep", ".info", ".list", ".tree", ".zsync")
# Repository-level index files a mirror's tcz/ directory carries (published as they are).
INDEX_FILES = frozenset({"md5.db.gz", "dep.db.gz", "tags.db.gz", "provides.db", "provides.db.gz",
                         "provides.db.zsync", "sizelist.gz", "sizelist", "info.lst"})
# *.lst files that are not lists of extensions to check.
NOT_EXTENSION_LISTS = frozenset({"info.lst"})


# --- names ---------------------------------------------------------------------------------------


def name_problem(name: str) -> str | None:
    """Why ``name`` is not an acceptable extension file name (``None`` when it is)."""
    if not name:
        return "empty name"
    if len(name) > NAME_MAX:
        return f"name longer than {NAME_MAX} characters"
    if "/" in name or "\\" in name or name in (".", "..") or ".." in name.split("/"):
        return "name has path components"
    if "\0" in name:
        return "name contains a NUL byte"
    if not name.endswith(EXT):
        return f"name does not end in {EXT}"
    if name == EXT:
        return "name has nothing before .tcz"
    if name.startswith(("-", ".")):
        return f"name starts with {name[0]!r}"
    if not _NAME_RE.match(name):
        bad = sorted({ch for ch in name if not re.match(r"[A-Za-z0-9._+-]", ch)})
        return f"name has characters outside [A-Za-z0-9._+-]: {''.join(bad)!r}"
    return None


def is_valid_name(name: str) -> bool:
    return name_problem(name) is None


def check_name(name: str, *, what: str = "extension name") -> str:
    """Return ``name`` when it is a valid extension file name, else raise ``UsageError``."""
    problem = name_problem(name)
    if problem:
        raise UsageError(f"invalid {what} {name!r}: {problem}",
                         hint="extension names use A-Z a-z 0-9 . _ + - and end in .tcz")
    return name


def normalize(entry: str, kernel: str | None = None) -> str:
    """A name as tce-load treats it: stripped, ``.tcz`` appended if missing, ``-KERNEL`` replaced."""
    name = entry.strip()
    if name and not name.endswith(EXT):
        name += EXT
    if kernel and KERNEL_TOKEN in name:
        name = name.replace(KERNEL_TOKEN, "-" + kernel)
    return name


def kernel_pattern(name: str) -> re.Pattern[str] | None:
    """For ``foo-KERNEL.tcz`` a regex matching ``foo-<any kernel release>.tcz`` (else None)."""
    if KERNEL_TOKEN not in name:
        return None
    head, _, tail = name.partition(KERNEL_TOKEN)
    return re.compile(re.escape(head) + r"-[A-Za-z0-9._+-]+" + re.escape(tail) + "$")


# --- .dep and .lst files -------------------------------------------------------------------------


def parse_list(text: str, kernel: str | None = None, *, source: str = "<list>") -> list[str]:
    """Names in a ``.dep`` or ``.lst`` text, in order, each once (see module doc).

    Raises ``RepoError`` naming ``source`` and the line for an unacceptable name.
    """
    names: list[str] = []
    seen: set[str] = set()
    bad: list[str] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()  # also drops the CR of CRLF files
        if not line or line.startswith("#"):
            continue
        name = normalize(line, kernel)
        problem = name_problem(name)
        if problem:
            bad.append(f"{source}: line {lineno}: {line!r}: {problem}")
            continue
        if name not in seen:
            seen.add(name)
            names.append(name)
    if bad:
        raise RepoError(f"{source}: invalid entries", problems=bad)
    return names


def parse_dep(text: str, kernel: str | None = None, *, source: str = "<dep>") -> list[str]:
    """The direct dependencies listed in a ``NAME.tcz.dep`` text."""
    return parse_list(text, kernel, source=source)


def closure(
    roots: Iterable[str],
    dep_reader: Callable[[str], str | None],
    kernel: str | None = None,
    *,
    on_cycle: Callable[[list[str]], None] | None = None,
) -> list[str]:
    """Every extension needed to load ``roots``, dependencies first, each once.

    ``dep_reader(name)`` returns the text of ``name``'s ``.dep`` file, or ``None`` when it has none.
    A dependency loop is reported to ``on_cycle`` (default: a warning) as the list of names around
    the loop, and broken where it closes (like tce-load, which warns and carries on).
    """
    done: set[str] = set()
    on_path: set[str] = set()
    order: list[str] = []

    def report(cycle: list[str]) -> None:
        if on_cycle is not None:
            on_cycle(cycle)
        else:
            log.warning("dependency loop: %s", " -> ".join(cycle))

    def deps_of(name: str) -> list[str]:
        text = dep_reader(name)
        return parse_dep(text, kernel, source=f"{name}.dep") if text else []

    for root in roots:
        start = normalize(root, kernel)
        check_name(start)
        if start in done:
            continue
        path = [start]
        on_path.add(start)
        stack = [iter(deps_of(start))]
        while stack:
            for dep in stack[-1]:
                if dep in done:
                    continue
                if dep in on_path:
                    report([*path[path.index(dep):], dep])
                    continue
                path.append(dep)
                on_path.add(dep)
                stack.append(iter(deps_of(dep)))
                break
            else:
                stack.pop()
                name = path.pop()
                on_path.discard(name)
                done.add(name)
                order.append(name)
    return order


# --- md5 -----------------------------------------------------------------------------------------


def md5_file(path: Path, bufsize: int = 1 << 20) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(bufsize):
            h.update(chunk)
    return h.hexdigest()


def parse_md5_txt(text: str) -> tuple[str, str]:
    """``(hexdigest, file name)`` from md5sum output ``<md5>  NAME.tcz`` (or ``<md5> *NAME``)."""
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    m = re.match(r"^([0-9a-fA-F]{32})\s+\*?(\S.*)?$", line)
    if not m:
        raise ValueError("not md5sum output")
    return m[1].lower(), (m[2] or "").strip()


# --- repositories --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a repository. ``file`` is relative to the repo directory."""

    file: str
    message: str
    severity: str = "error"  # "error" blocks publishing; "warning" is reported; "note" is logged

    @property
    def is_error(self) -> bool:
        return self.severity == "error"

    def __str__(self) -> str:
        return f"{self.file}: {self.message}" + (f" ({self.severity})" if not self.is_error else "")


@dataclass
class RepoFiles:
    """The files of a repository directory, classified. Keys are file names (flat, as published)."""

    root: Path
    layout: str  # "flat" (DIR/*.tcz) or "tce-dir" (DIR/optional/*.tcz + DIR/*.lst)
    extensions: dict[str, Path] = field(default_factory=dict)  # NAME.tcz
    sidecars: dict[str, Path] = field(default_factory=dict)  # NAME.tcz.md5.txt, .dep, ...
    lists: dict[str, Path] = field(default_factory=dict)  # onboot.lst, ...
    indexes: dict[str, Path] = field(default_factory=dict)  # md5.db.gz, ...
    ignored: list[Problem] = field(default_factory=list)  # stray or unsafe files, not published
    # Sidecar and list texts by name, as ``text()`` read them: each file is read once per scan (the
    # checks and the index cross-check both want the .dep files), and a publisher may fill it
    # beforehand with the texts of files it knows unchanged (``pubcache``: same stat key).
    texts: dict[str, str] = field(default_factory=dict)

    @property
    def ext_dir(self) -> Path:
        return self.root / "optional" if self.layout == "tce-dir" else self.root

    def published(self) -> dict[str, Path]:
        """Everything that goes into the published (flat) directory, by name, sorted."""
        every = {**self.extensions, **self.sidecars, **self.lists, **self.indexes}
        return dict(sorted(every.items()))

    def rel(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.root))
        except ValueError:
            return str(path)

    def text(self, name: str) -> str | None:
        """The text of sidecar or list ``name`` (kept in ``texts``); None when the repo has no such file."""
        text = self.texts.get(name)
        if text is None:
            path = self.sidecars.get(name) or self.lists.get(name)
            if path is None:
                return None
            text = self.texts[name] = path.read_text(errors="replace")
        return text

    def dep_text(self, name: str) -> str | None:
        return self.text(name + ".dep")


def _classify(name: str) -> str:
    if name.endswith(EXT):
        return "extension"
    for suffix in SIDECARS:
        if name.endswith(EXT + suffix):
            return "sidecar"
    if name in INDEX_FILES:
        return "index"
    if name.endswith(".lst"):
        return "list"
    return "stray"


def scan_repo(directory: Path) -> RepoFiles:
    """Classify the files of a flat or tce-dir repository (no content checks; see ``check_repo``)."""
    root = Path(directory)
    if not root.is_dir():
        raise RepoError(f"{root} is not a directory")
    layout = "tce-dir" if (root / "optional").is_dir() else "flat"
    repo = RepoFiles(root=root, layout=layout)

    def entries(d: Path) -> list[os.DirEntry[str]]:
        with os.scandir(d) as it:
            return sorted(it, key=lambda e: e.name)

    # (directory, kinds of file published from it)
    if layout == "flat":
        dirs = [(root, {"extension", "sidecar", "index", "list"})]
    else:
        dirs = [(root, {"list"}), (root / "optional", {"extension", "sidecar", "index"})]
    for d, kinds in dirs:
        under = "" if d == root else f"{d.name}/"  # what repo.rel() gives, without pathlib per file
        for entry in entries(d):
            path = d / entry.name
            rel = under + entry.name
            if entry.is_dir():
                if not (layout == "tce-dir" and d == root and entry.name == "optional"):
                    repo.ignored.append(Problem(rel, "directory ignored (not published)", "warning"))
                continue
            kind = _classify(entry.name)
            if kind not in kinds:
                where = "" if kind == "stray" else f" here ({repo.layout} layout)"
                repo.ignored.append(Problem(rel, f"not a Tiny Core repository file{where}; "
                                            "not published", "warning"))
                continue
            if not entry.is_file():  # fifos, sockets, dangling symlinks
                repo.ignored.append(Problem(rel, "not a regular file"))
                continue
            if kind == "extension":
                problem = name_problem(entry.name)
                if problem:
                    repo.ignored.append(Problem(rel, f"unsafe extension name: {problem}"))
                else:
                    repo.extensions[entry.name] = path
                continue
            if not _FILE_RE.match(entry.name) or len(entry.name) > NAME_MAX + 10:
                repo.ignored.append(Problem(rel, "unsafe file name"))
                continue
            target = {"sidecar": repo.sidecars, "list": repo.lists, "index": repo.indexes}[kind]
            target[entry.name] = path
    return repo


def _kernel_resolves(name: str, extensions: Iterable[str], kernel: str | None) -> bool:
    if kernel:
        return normalize(name, kernel) in extensions
    pattern = kernel_pattern(name)
    return pattern is not None and any(pattern.match(e) for e in extensions)


def expected_md5s(repo: RepoFiles) -> tuple[dict[str, str], list[Problem]]:
    """``{NAME.tcz: md5 from NAME.tcz.md5.txt}`` and the problems with the ``.md5.txt`` files."""
    problems: list[Problem] = []
    expected: dict[str, str] = {}
    for name in sorted(repo.extensions):
        md5_name = name + ".md5.txt"
        md5_path = repo.sidecars.get(md5_name)
        if md5_path is None:
            problems.append(Problem(repo.rel(repo.extensions[name]), f"no {md5_name} next to it"))
            continue
        try:
            digest, listed = parse_md5_txt(repo.text(md5_name) or "")
        except ValueError:
            problems.append(Problem(repo.rel(md5_path), "not in md5sum format (<md5>  NAME.tcz)"))
            continue
        if listed != name:  # tce-load runs `md5sum -c NAME.tcz.md5.txt` in the same directory
            problems.append(Problem(repo.rel(md5_path), f"names {listed!r} instead of {name!r}"))
            continue
        expected[name] = digest
    return expected, problems


def md5_sums(repo: RepoFiles, names: Iterable[str], *, workers: int | None = None) -> dict[str, str]:
    """``{name: md5}`` of these extensions, hashed in parallel (hashlib releases the GIL)."""
    todo = sorted(names)
    with ThreadPoolExecutor(max_workers=workers or min(8, (os.cpu_count() or 2))) as pool:
        sums = list(pool.map(lambda n: md5_file(repo.extensions[n]), todo))
    return dict(zip(todo, sums, strict=True))


def md5_mismatches(repo: RepoFiles, expected: dict[str, str], *, workers: int | None = None,
                   sums: dict[str, str] | None = None) -> list[Problem]:
    """Hash every extension in ``expected`` and report each one whose content does not match its
    ``.md5.txt``. ``sums``: digests already known (not hashed again)."""
    known = dict(sums or {})
    known.update(md5_sums(repo, set(expected) - set(known), workers=workers))
    return [Problem(repo.rel(repo.extensions[name]), f"md5 {known[name]} does not match {name}.md5.txt "
                    f"({expected[name]}): corrupt or truncated")
            for name in sorted(expected) if known[name] != expected[name]]


def _each_parsed(repo: RepoFiles, files: dict[str, Path], parse: Callable[..., list[str]],
                 problems: list[Problem]) -> Iterator[tuple[str, str, list[str]]]:
    """``(key, rel, entries)`` for each of ``files`` (key -> a .dep or list file) that ``parse``
    (``parse_dep``, ``parse_list``) reads; the problems of the others go to ``problems``, under ``rel``
    (the file's path in the repo)."""
    for key, path in files.items():
        rel = repo.rel(path)
        try:
            entries = parse(repo.text(path.name) or "", None, source=rel)
        except RepoError as exc:
            problems += [Problem(rel, p.split(": ", 1)[1]) for p in exc.problems]
            continue
        yield key, rel, entries


def check_repo(directory: Path | RepoFiles, kernel: str | None = None, *, md5: bool = True,
               workers: int | None = None,
               expected: tuple[dict[str, str], list[Problem]] | None = None) -> list[Problem]:
    """Everything wrong with a repository, each ``Problem`` naming its file (errors and warnings).

    * every ``NAME.tcz`` has ``NAME.tcz.md5.txt`` in md5sum format naming it, with a matching hash
      (the hashing, the only slow part, is skipped with ``md5=False``: see ``md5_mismatches``);
    * every ``.dep`` entry names an extension in the repo (``-KERNEL``: for ``kernel`` if given,
      else any kernel variant), and the dependency graph has no loops;
    * every ``*.lst`` entry names an extension in the repo;
    * sidecars without their ``.tcz``; stray and unsafe file names.

    ``expected``: what ``expected_md5s(repo)`` gives, when the caller has it already.
    """
    repo = directory if isinstance(directory, RepoFiles) else scan_repo(directory)
    problems: list[Problem] = list(repo.ignored)
    names = set(repo.extensions)
    if not names:
        problems.append(Problem(".", f"no {EXT} files found" + (" in optional/" if repo.layout ==
                                                                 "tce-dir" else "")))

    md5s, md5_txt_problems = expected if expected is not None else expected_md5s(repo)
    problems += md5_txt_problems
    if md5:
        problems += md5_mismatches(repo, md5s, workers=workers)

    # sidecars without an extension
    for side, path in repo.sidecars.items():
        base = side[: side.index(EXT) + len(EXT)]
        if base not in names:
            problems.append(Problem(repo.rel(path), f"{base} is missing", "warning"))

    # dependencies
    deps: dict[str, list[str]] = {}
    dep_files = {name: repo.sidecars[name + ".dep"] for name in sorted(names)
                 if name + ".dep" in repo.sidecars}
    for name, rel, entries in _each_parsed(repo, dep_files, parse_dep, problems):
        resolved = []
        for dep in entries:
            if KERNEL_TOKEN in dep:
                if not _kernel_resolves(dep, names, kernel):
                    want = f"{normalize(dep, kernel)}" if kernel else f"any kernel variant of {dep}"
                    problems.append(Problem(rel, f"dependency {dep} not in repo (looked for {want})"))
                elif kernel:
                    resolved.append(normalize(dep, kernel))
            elif dep not in names:
                problems.append(Problem(rel, f"dependency {dep} not in repo"))
            else:
                resolved.append(dep)
        deps[name] = resolved
    cycles: list[list[str]] = []
    closure(sorted(deps), lambda n: "\n".join(deps.get(n, [])), None, on_cycle=cycles.append)
    for cycle in cycles:
        problems.append(Problem(repo.rel(repo.sidecars[cycle[0] + ".dep"]),
                                f"dependency loop {' -> '.join(cycle)}", "warning"))

    # lists
    lists = {lst: path for lst, path in sorted(repo.lists.items()) if lst not in NOT_EXTENSION_LISTS}
    for _lst, rel, entries in _each_parsed(repo, lists, parse_list, problems):
        for entry in entries:
            ok = _kernel_resolves(entry, names, kernel) if KERNEL_TOKEN in entry else entry in names
            if not ok:
                problems.append(Problem(rel, f"lists {entry}, which is not in the repo"))
    return problems


def errors_only(problems: Sequence[Problem]) -> list[Problem]:
    return [p for p in problems if p.is_error]
