"""The agent's Python, vendored: which ``tce_ipfs`` modules it needs, and pinned pure-Python wheels.

What a recipe's ``python-package`` install (``tce-ipfs-agent.tcz``) puts under its ``dest``:

* ``tce_ipfs/``: the listed modules and every ``tce_ipfs`` module they import, found by reading the
  code (``module_closure``: module level *and* inside functions, since command handlers import
  lazily) -- the TC machine has nothing else to fall back on. ``module_imports`` is the same reader for
  one module; the layering tests use it too;
* ``vendor/``: one pure-Python wheel per line of the recipe's lock file (``name==version
  --hash=sha256:...``), fetched with pip once and cached under ``cache_dir()/wheels/<lock hash>/``,
  unpacked without RECORD/bytecode (``extract_wheel``);
* then ``check_imports`` proves the tree self-contained: an isolated interpreter with only those two
  directories on its path imports every module and builds the CLI parser.
"""

from __future__ import annotations

import ast
import fnmatch
import hashlib
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from tce_ipfs import proc
from tce_ipfs.errors import BuildError, CommandFailed, ToolMissing
from tce_ipfs.settings import cache_dir

log = logging.getLogger(__name__)

VENDOR_DIR = "vendor"
PACKAGE = "tce_ipfs"


# ------------------------------------------------------------------------------ tce_ipfs modules


def package_dir() -> Path:
    import tce_ipfs

    return Path(tce_ipfs.__file__).resolve().parent


def _module_file(pkg_dir: Path, module: str) -> Path | None:
    parts = module.split(".")[1:]
    base = pkg_dir.joinpath(*parts)
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    py = base.with_suffix(".py") if parts else None
    if py is not None and py.is_file():
        return py
    return None


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


class _Imports(ast.NodeVisitor):
    """Every import statement that can run: module level *and* inside functions (command handlers
    import lazily), but not ``if TYPE_CHECKING:`` blocks."""

    def __init__(self) -> None:
        self.found: list[ast.Import | ast.ImportFrom] = []

    def visit_Import(self, node: ast.Import) -> None:
        self.found.append(node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        self.found.append(node)

    def visit_If(self, node: ast.If) -> None:
        if not _is_type_checking(node.test):
            for stmt in node.body:
                self.visit(stmt)
        for stmt in node.orelse:
            self.visit(stmt)


def _submodules(pkg_dir: Path, module: str) -> list[str]:
    """``module`` and, when it is a package, every module below it."""
    path = _module_file(pkg_dir, module)
    if path is None or path.name != "__init__.py":
        return [module]
    out = [module]
    for child in sorted(path.parent.iterdir()):
        if child.is_dir() and (child / "__init__.py").is_file():
            out.extend(_submodules(pkg_dir, f"{module}.{child.name}"))
        elif child.suffix == ".py" and child.name != "__init__.py":
            out.append(f"{module}.{child.stem}")
    return out


def module_imports(module: str, pkg_dir: Path | None = None) -> list[str]:
    """The ``tce_ipfs`` modules ``module`` imports anywhere in its code (not under ``TYPE_CHECKING``).

    ``from tce_ipfs.x import y`` names ``tce_ipfs.x.y`` when that is a module, else ``tce_ipfs.x``; the
    packages above an imported module (which Python imports on the way) are not listed.
    """
    pkg_dir = pkg_dir or package_dir()
    path = _module_file(pkg_dir, module)
    if path is None:
        raise BuildError(f"no module {module} in {pkg_dir}")
    parts = module.split(".")
    is_pkg = path.name == "__init__.py"
    visitor = _Imports()
    visitor.visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
    found: list[str] = []
    for node in visitor.found:
        if isinstance(node, ast.Import):
            found.extend(a.name for a in node.names if _ours(a.name))
            continue
        if node.level:
            anchor = parts if is_pkg else parts[:-1]
            anchor = anchor[: len(anchor) - (node.level - 1)]
            base = ".".join([*anchor, *([node.module] if node.module else [])])
        else:
            base = node.module or ""
        if not _ours(base):
            continue
        # `from tce_ipfs import x`: x is a submodule when such a file exists, else an attribute.
        subs = [f"{base}.{a.name}" for a in node.names
                if _module_file(pkg_dir, f"{base}.{a.name}") is not None]
        if len(subs) < len(node.names):
            found.append(base)
        found.extend(subs)
    return list(dict.fromkeys(found))


def module_closure(entries: Iterable[str], pkg_dir: Path | None = None) -> list[str]:
    """``tce_ipfs`` modules the ``entries`` can reach: each entry (a package entry brings all of its
    submodules), the package ``__init__``s above, and every ``tce_ipfs`` module imported anywhere in
    them, lazily inside functions too -- the TC machine has nothing else to fall back on. Entries
    that do not exist are skipped with a warning (a module another engineer has not written yet)."""
    pkg_dir = pkg_dir or package_dir()
    seen: dict[str, Path] = {}
    todo: list[tuple[str, str]] = []
    for entry in entries:
        if _module_file(pkg_dir, entry) is None:
            log.warning("recipe module %s does not exist; not packaged", entry)
        else:
            todo.extend((m, "the recipe") for m in _submodules(pkg_dir, entry))
    while todo:
        module, why = todo.pop()
        if module in seen:
            continue
        path = _module_file(pkg_dir, module)
        if path is None:
            raise BuildError(f"{why} imports {module}, which does not exist",
                             hint="the agent .tcz must contain every tce_ipfs module its code reaches")
        seen[module] = path
        parts = module.split(".")
        for i in range(1, len(parts)):
            todo.append((".".join(parts[:i]), module))
        todo.extend((m, module) for m in module_imports(module, pkg_dir))
    return sorted(seen)


def _ours(module: str) -> bool:
    return module == PACKAGE or module.startswith(PACKAGE + ".")


# ------------------------------------------------------------------------------ locked wheels


@dataclass(frozen=True)
class Locked:
    name: str
    version: str
    hashes: frozenset[str]


def read_lock(path: Path) -> list[Locked]:
    """A pip requirements file where every line is ``name==version --hash=sha256:...``."""
    out: list[Locked] = []
    text = path.read_text(encoding="utf-8").replace("\\\n", " ")
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        m = re.fullmatch(r"([A-Za-z0-9._-]+)==([A-Za-z0-9.+!-]+)((?:\s+--hash=sha256:[0-9a-f]{64})+)", line)
        if not m:
            raise BuildError(f"{path}:{lineno}: expected `name==version --hash=sha256:<hex>`")
        hashes = frozenset(re.findall(r"sha256:([0-9a-f]{64})", m.group(3)))
        out.append(Locked(m.group(1), m.group(2), hashes))
    if not out:
        raise BuildError(f"{path}: no requirements")
    return out


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def _sha256(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _pip_env() -> dict[str, str]:
    """The user's pip configuration (index, proxy, certificates) -- proc.run() drops it otherwise."""
    keep = {"http_proxy", "https_proxy", "no_proxy", "all_proxy"}
    return {k: v for k, v in os.environ.items() if k.startswith("PIP_") or k.lower() in keep}


def wheels(lock_path: Path) -> list[Path]:
    """One pure-Python wheel per locked requirement, fetched (or built from a hash-pinned sdist) with
    pip once and cached under ``cache_dir()/wheels/<lock hash>/``. ``.complete`` in that directory
    records each wheel's sha256 (pip checked the downloads against the lock), re-checked on use."""
    locked = read_lock(lock_path)
    key = hashlib.sha256(lock_path.read_bytes()).hexdigest()[:16]
    cache = cache_dir() / "wheels" / key
    marker = cache / ".complete"
    if not marker.is_file():
        cache.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=f".{key}-", dir=cache.parent) as tmp:
            work = Path(tmp) / "wheels"
            log.info("fetching %d locked Python packages with pip", len(locked))
            try:
                proc.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--require-hashes",
                          "--no-input", "-q", "-r", str(lock_path), "-w", str(work)],
                         env=_pip_env(), timeout=900, what=f"pip wheel -r {lock_path.name}")
            except CommandFailed as exc:
                raise BuildError(f"could not fetch the packages locked in {lock_path}: {exc.message}",
                                 hint="the first build needs the Python package index (pip's own "
                                      f"configuration applies); later builds use {cache}") from None
            sums = {p.name: _sha256(p) for p in sorted(work.glob("*.whl"))}
            (work / ".complete").write_text(json.dumps(sums, indent=1, sort_keys=True) + "\n")
            try:
                os.replace(work, cache)
            except OSError:
                if not marker.is_file():  # someone else won the race: fine
                    raise
    try:
        sums = json.loads(marker.read_text())
    except ValueError:
        raise BuildError(f"{marker} is damaged", hint=f"delete {cache} and build again") from None
    by_name = {_norm(name.split("-")[0]): cache / name for name in sums}
    out = []
    for x in locked:
        whl = by_name.get(_norm(x.name))
        if whl is None or whl.name.split("-")[1] != x.version:
            raise BuildError(f"wheel cache {cache} has no {x.name}=={x.version}",
                             hint=f"delete {cache} and build again")
        if not whl.is_file() or _sha256(whl) != sums[whl.name]:
            raise BuildError(f"{whl} is missing or changed since it was fetched",
                             hint=f"delete {cache} and build again")
        out.append(whl)
    return out


def _pure(whl: Path) -> None:
    parts = whl.name[: -len(".whl")].split("-")
    if len(parts) not in (5, 6) or parts[-2] != "none" or parts[-1] != "any":
        raise BuildError(f"{whl.name} is not a pure-Python wheel (needs the none-any tag)",
                         hint="only pure-Python packages can be vendored into the agent")


def _keep_dist_info(rel: str) -> bool:
    inner = rel.split("/", 1)[1] if "/" in rel else ""
    top = inner.split("/", 1)[0].upper()
    return inner == "METADATA" or top == "LICENSES" or top.startswith(("LICENSE", "COPYING", "NOTICE"))


def extract_wheel(whl: Path, dest: Path, exclude: Iterable[str], owners: dict[str, str]) -> int:
    """Unpack a pure wheel into ``dest`` (purelib layout): code, METADATA and licence files; no
    RECORD/WHEEL/bytecode. Returns the number of files written."""
    _pure(whl)
    patterns = tuple(exclude)
    count = 0
    with zipfile.ZipFile(whl) as zf:
        for zi in sorted(zf.infolist(), key=lambda z: z.filename):
            rel = zi.filename
            if zi.is_dir():
                continue
            first = rel.split("/", 1)[0]
            if first.endswith(".data"):
                prefix = f"{first}/purelib/"
                if not rel.startswith(prefix):
                    log.debug("%s: skipping %s", whl.name, rel)
                    continue
                rel = rel[len(prefix):]
                first = rel.split("/", 1)[0]
            if first.endswith(".dist-info") and not _keep_dist_info(rel):
                continue
            if "__pycache__" in rel.split("/") or rel.endswith((".pyc", ".pyo")):
                continue
            if rel.endswith((".so", ".pyd", ".dylib")) or ".so." in rel:
                raise BuildError(f"{whl.name} contains a native library {rel}")
            if any(fnmatch.fnmatch(rel, p) for p in patterns):
                continue
            norm = PurePosixPath(rel)
            if norm.is_absolute() or ".." in norm.parts:
                raise BuildError(f"{whl.name}: unsafe path {rel!r}")
            if rel in owners:
                raise BuildError(f"{rel} is in both {owners[rel]} and {whl.name}")
            owners[rel] = whl.name
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(zf.read(zi))
            target.chmod(0o644)
            count += 1
    return count


# ---------------------------------------------------------------------------------- the staged tree


def stage_package(lib: Path, modules: Sequence[str], *, python: str, lock: Path | None,
                  exclude: Iterable[str] = ()) -> list[str]:
    """Fill the empty directory ``lib``: ``tce_ipfs/`` (``module_closure(modules)``), ``vendor/`` (the
    wheels of ``lock``, minus ``exclude`` globs), then ``check_imports`` with Python ``python``.
    Returns the packaged module names."""
    pkg_dir = package_dir()
    closure = module_closure(modules, pkg_dir)
    for module in closure:
        src = _module_file(pkg_dir, module)
        assert src is not None
        dst = lib / src.relative_to(pkg_dir.parent)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
        dst.chmod(0o644)
    log.debug("packaged %s modules: %s", PACKAGE, ", ".join(closure))
    vendor = lib / VENDOR_DIR
    vendor.mkdir()
    tops: list[str] = []
    if lock is not None:
        owners: dict[str, str] = {}
        for whl in wheels(lock):
            extract_wheel(whl, vendor, exclude, owners)
        tops = sorted({r.split("/", 1)[0].removesuffix(".py") for r in owners
                       if not r.split("/", 1)[0].endswith(".dist-info")})
    check_imports(python, lib, vendor, [m for m in closure if m != f"{PACKAGE}.__main__"], tops)
    return closure


_CHECK = r"""
import importlib, os, sys
lib, vendor = sys.argv[1], sys.argv[2]
sys.path[:0] = [lib, vendor]
names = sys.argv[3].split(",") + [n for n in sys.argv[4].split(",") if n]
for name in names:
    importlib.import_module(name)
if "tce_ipfs.cli" in names:
    importlib.import_module("tce_ipfs.cli").build_parser()
roots = (os.path.realpath(lib) + os.sep, os.path.realpath(vendor) + os.sep)
std = [os.path.realpath(p) + os.sep for p in sys.path[2:]]
for name, mod in sorted(sys.modules.items()):
    f = getattr(mod, "__file__", None)
    if f and not os.path.realpath(f).startswith(roots + tuple(std)):
        sys.exit("module %s was loaded from %s, outside the package" % (name, f))
"""


def _python_for(version: str) -> str | None:
    if f"{sys.version_info[0]}.{sys.version_info[1]}" == version:
        return sys.executable
    return shutil.which(f"python{version}", path=proc.clean_env()["PATH"])


def check_imports(version: str, lib: Path, vendor: Path, modules: list[str], tops: list[str]) -> None:
    """Prove the staged package is self-contained: a Python ``version`` started with ``-I -S -B``
    (no site-packages, no environment, no bytecode written) and only ``lib`` + ``vendor`` on its
    path imports every packaged module and vendored package and builds the CLI parser."""
    python = _python_for(version)
    if python is None:
        log.warning("python%s not found: cannot check that the vendored packages import", version)
        return
    try:
        proc.run([python, "-I", "-S", "-B", "-c", _CHECK, str(lib), str(vendor), ",".join(modules),
                  ",".join(tops)], what=f"import check of the packaged modules with python{version}")
    except ToolMissing:
        log.warning("python%s not runnable: import check skipped", version)
