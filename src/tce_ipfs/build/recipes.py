"""Declarative extension recipes: ``tcz-build/<name>/recipe.toml`` (+ ``files/``) -> ``NAME.tcz``.

Recipe schema (TOML; unknown keys are errors so typos do not pass silently)::

    name = "ipfs"                 # optional; must equal the directory name
    version = "{kubo_version}"    # .info Version
    description = "..."           # .info Description
    deps = ["python{python}.tcz"] # direct dependencies (.tcz optional, -KERNEL allowed)
    python = "3.11"               # needed by `python-package` installs; also the {python} variable
    install_script = "tce.installed"   # a file in files/, installed as usr/local/tce.installed/<name>
    block_size = 4096             # optional squashfs block size (power of two, 4K..1M)
    compression = "gzip"          # optional: gzip | xz

    [info]                        # any other TC .info field (Author, Original-site, Tags, ...)
    Author = "..."

    [[install]]                   # what goes into the tree, in order
    kind = "file"                 # src (file or directory under files/) -> dest; mode optional
    kind = "kubo"                 # the kubo binary for the target arch -> dest
    kind = "python-package"       # tce_ipfs (modules + what they import) -> dest/tce_ipfs,
                                  # locked pure-Python wheels -> dest/vendor (lock, exclude)

A directory with a ``runtime.toml`` instead is a *runtime recipe*: an interpreter assembled from Debian
packages (``python3.11``), described declaratively there and built by ``tce_ipfs.build.pyruntime``;
``build()`` dispatches to it (``testbase`` applies to runtime recipes only).

Strings in version, description, deps and [info] may use ``{arch}``, ``{kubo_version}``,
``{tc_major}``, ``{tce_ipfs_version}`` and ``{python}``.

Builds are reproducible: file modes are normalised (0644, or 0755 for executables), wheels are pinned
by sha256 in the recipe's lock file and cached under ``cache_dir()/wheels``, and ``tcz.pack`` fixes
every timestamp.

``TCE_IPFS_KUBO_BIN`` (tests and development only): use that kubo binary instead of
``kubo.ensure(arch)``. It is still validated for the arch, and the kubo cache is not touched.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import stat
import tempfile
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from tce_ipfs import __version__
from tce_ipfs.arch import Arch
from tce_ipfs.build import pyruntime, tcz, vendor
from tce_ipfs.build.pyruntime import FILES_DIR, RUNTIME_FILE
from tce_ipfs.build.vendor import PACKAGE
from tce_ipfs.errors import BuildError, TczError, UsageError
from tce_ipfs.settings import KUBO_VERSION, TC_MAJOR, recipes_dir

log = logging.getLogger(__name__)

KUBO_BIN_ENV = "TCE_IPFS_KUBO_BIN"
RECIPE_FILE = "recipe.toml"
KINDS = ("file", "kubo", "python-package")

_TOP_KEYS = {"name", "version", "description", "deps", "python", "install_script", "block_size",
             "compression", "info", "install"}
_INSTALL_KEYS: dict[str, set[str]] = {
    "file": {"kind", "src", "dest", "mode"},
    "kubo": {"kind", "dest"},
    "python-package": {"kind", "dest", "modules", "lock", "exclude"},
}
_VAR_RE = re.compile(r"\{([A-Za-z_]+)\}")


@dataclass(frozen=True)
class Install:
    kind: str
    dest: str
    src: str | None = None
    mode: int | None = None
    modules: tuple[str, ...] = ()
    lock: str | None = None
    exclude: tuple[str, ...] = ()


@dataclass(frozen=True)
class Recipe:
    name: str
    dir: Path
    version: str
    description: str
    deps: tuple[str, ...]
    python: str | None
    install_script: str | None
    block_size: int
    compression: str
    info: dict[str, str]
    install: tuple[Install, ...]

    @property
    def tcz_name(self) -> str:
        return f"{self.name}.tcz"

    @property
    def path(self) -> Path:
        return self.dir / RECIPE_FILE


# ----------------------------------------------------------------------------------------- loading


def list_recipes() -> list[str]:
    """Names of the recipes in ``tcz-build/`` (directories holding a ``recipe.toml`` or a
    ``runtime.toml``), sorted."""
    root = recipes_dir()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir()
                  if (p / RECIPE_FILE).is_file() or (p / RUNTIME_FILE).is_file())


def runtime_spec(name: str) -> Path | None:
    """``tcz-build/<name>/runtime.toml`` when ``name`` is a runtime recipe, else None."""
    path = recipes_dir() / name / RUNTIME_FILE
    return path if name in list_recipes() and path.is_file() else None


def load(name: str) -> Recipe:
    """Parse and check ``tcz-build/<name>/recipe.toml`` (templates are not expanded yet)."""
    known = list_recipes()
    if name not in known:
        raise UsageError(f"no recipe named {name!r}",
                         hint=f"recipes: {', '.join(known) or '(none)'} (in {recipes_dir()})")
    if runtime_spec(name) is not None:
        raise UsageError(f"{name} is a runtime recipe ({RUNTIME_FILE}), built by tce_ipfs.build.pyruntime")
    rdir = recipes_dir() / name
    path = rdir / RECIPE_FILE
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise BuildError(f"{path}: {exc}") from None
    return _parse(name, rdir, data)


def _bad(path: Path, msg: str) -> BuildError:
    return BuildError(f"{path}: {msg}")


def _str(data: Mapping[str, Any], key: str, path: Path, default: str | None = None) -> str | None:
    value = data.get(key, default)
    if value is not None and not isinstance(value, str):
        raise _bad(path, f"{key} must be a string")
    return value


def _parse(dirname: str, rdir: Path, data: Mapping[str, Any]) -> Recipe:
    path = rdir / RECIPE_FILE
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise _bad(path, f"unknown key(s) {', '.join(unknown)}")
    name = _str(data, "name", path, dirname) or dirname
    if name != dirname:
        raise _bad(path, f"name {name!r} differs from the directory name {dirname!r}")
    try:
        tcz.check_name(f"{name}.tcz")
    except TczError as exc:
        raise _bad(path, exc.message) from None
    deps = data.get("deps", [])
    if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
        raise _bad(path, "deps must be a list of strings")
    info = data.get("info", {})
    if not isinstance(info, dict) or not all(isinstance(v, str) for v in info.values()):
        raise _bad(path, "[info] must be a table of strings")
    block_size = data.get("block_size", tcz.TC_BLOCK_SIZE)
    compression = _str(data, "compression", path, tcz.TC_COMPRESSION) or tcz.TC_COMPRESSION
    try:
        tcz.check_params(block_size, compression)
    except TczError as exc:
        raise _bad(path, exc.message) from None
    python = _str(data, "python", path)
    if python is not None and not re.fullmatch(r"3\.\d+", python):
        raise _bad(path, f"python {python!r} is not a version like 3.11")
    install_script = _str(data, "install_script", path)
    if install_script is not None:
        _inside(rdir / FILES_DIR, install_script, path, "install_script")
    raw_install = data.get("install", [])
    if not isinstance(raw_install, list) or not raw_install:
        raise _bad(path, "needs at least one [[install]] entry")
    install = tuple(_parse_install(i, entry, rdir, path) for i, entry in enumerate(raw_install, 1))
    if any(i.kind == "python-package" for i in install) and python is None:
        raise _bad(path, "a python-package install needs the top-level `python` version")
    return Recipe(
        name=name, dir=rdir, version=_str(data, "version", path, "unknown") or "unknown",
        description=_str(data, "description", path, name) or name, deps=tuple(deps), python=python,
        install_script=install_script, block_size=block_size, compression=compression,
        info=dict(info), install=install,
    )


def _parse_install(index: int, entry: Any, rdir: Path, path: Path) -> Install:
    where = f"[[install]] #{index}"
    if not isinstance(entry, dict):
        raise _bad(path, f"{where} must be a table")
    kind = entry.get("kind")
    if kind not in KINDS:
        raise _bad(path, f"{where}: kind {kind!r} is not one of {', '.join(KINDS)}")
    unknown = sorted(set(entry) - _INSTALL_KEYS[kind])
    if unknown:
        raise _bad(path, f"{where} ({kind}): unknown key(s) {', '.join(unknown)}")
    dest = entry.get("dest")
    if not isinstance(dest, str):
        raise _bad(path, f"{where}: dest must be a string")
    dest = _check_dest(dest, path, where)
    if kind == "file":
        src = entry.get("src")
        if not isinstance(src, str):
            raise _bad(path, f"{where}: src must be a string (a path under {FILES_DIR}/)")
        _inside(rdir / FILES_DIR, src, path, where)
        mode = entry.get("mode")
        if mode is not None:
            if not isinstance(mode, str) or not re.fullmatch(r"0?[0-7]{3}", mode):
                raise _bad(path, f"{where}: mode must be an octal string like \"755\"")
            return Install(kind, dest, src=src, mode=int(mode, 8))
        return Install(kind, dest, src=src)
    if kind == "kubo":
        return Install(kind, dest)
    modules = entry.get("modules", [])
    exclude = entry.get("exclude", [])
    lock = entry.get("lock")
    if not isinstance(modules, list) or not modules or not all(isinstance(m, str) for m in modules):
        raise _bad(path, f"{where}: modules must be a non-empty list of module names")
    if not all(m.startswith(PACKAGE + ".") for m in modules):
        raise _bad(path, f"{where}: modules must be submodules of {PACKAGE} "
                         "(a package brings all of its own)")
    if not isinstance(exclude, list) or not all(isinstance(e, str) for e in exclude):
        raise _bad(path, f"{where}: exclude must be a list of glob patterns")
    if lock is not None:
        if not isinstance(lock, str):
            raise _bad(path, f"{where}: lock must be a file name")
        _inside(rdir, lock, path, where)
    return Install(kind, dest, modules=tuple(modules), lock=lock, exclude=tuple(exclude))


def _check_dest(dest: str, path: Path, where: str) -> str:
    p = PurePosixPath(dest)
    if p.is_absolute() or not p.parts or ".." in p.parts or "." in dest.split("/"):
        raise _bad(path, f"{where}: dest {dest!r} must be a relative path inside the extension (no ..)")
    return str(p)


def _inside(base: Path, rel: str, path: Path, where: str) -> Path:
    full = (base / rel).resolve()
    if base.resolve() not in full.parents:
        raise _bad(path, f"{where}: {rel!r} is outside {base}")
    if not full.exists():
        raise _bad(path, f"{where}: {base / rel} does not exist")
    return full


# --------------------------------------------------------------------------------------- templates


def variables(arch: Arch, recipe: Recipe) -> dict[str, str]:
    return {
        "arch": arch.info.name,
        "kubo_version": KUBO_VERSION.removeprefix("v"),
        "tc_major": TC_MAJOR,
        "tce_ipfs_version": __version__,
        "python": recipe.python or "",
    }


def expand(text: str, values: Mapping[str, str], where: str) -> str:
    def sub(m: re.Match[str]) -> str:
        key = m.group(1)
        if key not in values:
            raise BuildError(f"{where}: unknown variable {{{key}}}",
                             hint="variables: " + ", ".join("{" + k + "}" for k in values))
        return values[key]

    return _VAR_RE.sub(sub, text)


# ------------------------------------------------------------------------------------------ build


def build(name: str, arch: Arch | str, out_dir: Path, *, epoch: int | None = None,
          testbase: bool = False) -> tcz.TczResult:
    """Build recipe ``name`` for ``arch`` into ``out_dir/<name>.tcz`` (+ sidecars).

    A runtime recipe is built by ``pyruntime``; with ``testbase`` it also writes the TEST ONLY
    ``glibc-testbase.tcz`` and lists it as a dependency (never for a real Tiny Core repo).
    """
    arch = arch if isinstance(arch, Arch) else Arch.parse(arch)
    spec = runtime_spec(name)
    if spec is not None:
        return pyruntime.build(arch, out_dir, testbase=testbase, epoch=epoch,
                               spec=pyruntime.load_spec(spec)).python
    if testbase:
        raise UsageError(f"{name} is not a runtime recipe: a test base applies to runtime recipes only")
    recipe = load(name)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    values = variables(arch, recipe)
    where = str(recipe.path)
    info = {k: expand(v, values, where) for k, v in recipe.info.items()}
    info.setdefault("Version", expand(recipe.version, values, where))
    info.setdefault("Description", expand(recipe.description, values, where))
    deps = [expand(d, values, where) for d in recipe.deps]
    with tempfile.TemporaryDirectory(prefix=f".{name}-stage-", dir=out_dir) as tmp:
        stage = Path(tmp) / "root"
        stage.mkdir()
        for item in recipe.install:
            _install(recipe, item, arch, stage)
        if recipe.install_script:
            script = recipe.dir / FILES_DIR / recipe.install_script
            _copy_file(script, _dest(stage, f"{tcz.INSTALLED_DIR}/{name}", recipe), 0o755)
        log.debug("staged %s for %s in %s", name, arch, stage)
        return tcz.pack(stage, out_dir / recipe.tcz_name, deps=deps, info=info,
                        block_size=recipe.block_size, compression=recipe.compression, epoch=epoch)


def _dest(stage: Path, dest: str, recipe: Recipe) -> Path:
    target = stage / dest
    if os.path.lexists(target):
        raise BuildError(f"{recipe.path}: two installs write {dest}")
    target.parent.mkdir(parents=True, exist_ok=True)
    return target


def _copy_file(src: Path, dst: Path, mode: int | None) -> None:
    shutil.copyfile(src, dst)
    if mode is None:
        mode = 0o755 if os.stat(src).st_mode & stat.S_IXUSR else 0o644
    dst.chmod(mode)


def _install(recipe: Recipe, item: Install, arch: Arch, stage: Path) -> None:
    if item.kind == "file":
        assert item.src is not None
        src = recipe.dir / FILES_DIR / item.src
        dst = _dest(stage, item.dest, recipe)
        if src.is_dir():
            _copy_tree(src, dst, item.mode)
        else:
            _copy_file(src, dst, item.mode)
    elif item.kind == "kubo":
        _copy_file(kubo_binary(arch), _dest(stage, item.dest, recipe), 0o755)
    else:
        _install_python(recipe, item, stage)


def _copy_tree(src: Path, dst: Path, mode: int | None) -> None:
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames.sort()
        rel = Path(dirpath).relative_to(src)
        (dst / rel).mkdir(parents=True, exist_ok=True)
        for fname in sorted(filenames):
            s = Path(dirpath) / fname
            if s.is_symlink():
                (dst / rel / fname).symlink_to(os.readlink(s))
            else:
                _copy_file(s, dst / rel / fname, mode)


def kubo_binary(arch: Arch) -> Path:
    """The kubo ``ipfs`` for ``arch``: ``kubo.ensure(arch)``, or ``$TCE_IPFS_KUBO_BIN`` (tests only)."""
    override = os.environ.get(KUBO_BIN_ENV)
    if override:
        from tce_ipfs.build import elf

        path = Path(override)
        if not path.is_file():
            raise BuildError(f"{KUBO_BIN_ENV}={override}: no such file")
        elf.validate(path, arch)
        log.info("using kubo from %s=%s", KUBO_BIN_ENV, path)
        return path
    from tce_ipfs.build import kubo

    return kubo.ensure(arch)


# ------------------------------------------------------------------------------ python-package


def _install_python(recipe: Recipe, item: Install, stage: Path) -> None:
    assert recipe.python is not None
    lib = _dest(stage, item.dest, recipe)
    lib.mkdir()
    vendor.stage_package(lib, item.modules, python=recipe.python,
                         lock=recipe.dir / item.lock if item.lock else None, exclude=item.exclude)
