"""Build ``python3.11.tcz`` (and the test-only ``glibc-testbase.tcz``) for a guest arch from Debian.

The runtime recipe ``tcz-build/python3.11/runtime.toml`` says what goes in, and why (Debian packages,
C modules kept, stdlib parts dropped, glibc's sonames) and names the launcher, the ``.pth`` file and
glibc-testbase's install script in its ``files/``. Steps:

1. ``apt-get download`` (through ``build.debian``: cached in ``cache_dir()/debs``) the packages
   for the arch's Debian architecture: the interpreter and standard library, the libraries the kept
   ELF files need (found from their ``DT_NEEDED`` with pyelftools, each mapped to a package in
   ``runtime.toml``; an unmapped soname is an error), and ``libc6`` for the test base;
2. ``dpkg-deb -x`` them into a scratch tree;
3. stage the extension: trimmed stdlib, the kept C modules, the interpreter, its private libraries,
   the launcher; precompile the stdlib (``.pyc``, unchecked-hash: the image is read-only and its
   timestamps are normalised) when this build host runs CPython 3.11 (same bytecode);
4. ``tcz.pack`` both images.

``tce-ipfs tcz build python3.11 --arch A -o DIR [--testbase]`` (``recipes.build`` dispatches here for a
directory with a ``runtime.toml``), or ``build(arch, out_dir, testbase=...)``.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import shutil
import stat
import sys
import tempfile
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tce_ipfs import proc
from tce_ipfs.arch import Arch
from tce_ipfs.build import debian, elf, tcz
from tce_ipfs.errors import BuildError, CommandFailed
from tce_ipfs.settings import recipes_dir

log = logging.getLogger(__name__)

RUNTIME_FILE = "runtime.toml"  # what makes tcz-build/<name>/ a runtime recipe (recipes.build dispatches)
FILES_DIR = "files"  # the recipe directory's files (launcher, .pth, install script), as for recipe.toml
PYVER = "3.11"
PREFIX = "usr/local"
STDLIB = f"{PREFIX}/lib/python{PYVER}"
REAL_BIN = f"{STDLIB}/bin/python{PYVER}"
LIB_DEPS = f"{STDLIB}/lib-deps"

_KEYS = {"name", "description", "launcher", "site_pth", "packages", "keep_dynload", "drop", "sources",
         "libraries", "glibc"}
_GLIBC_KEYS = {"name", "install_script", "package", "provides"}


@dataclass(frozen=True)
class Spec:
    dir: Path  # the recipe directory (runtime.toml, files/)
    name: str
    description: str
    launcher: str  # files in files/
    site_pth: str
    packages: tuple[str, ...]
    keep_dynload: frozenset[str]
    drop: tuple[str, ...]
    sources: bool
    libraries: dict[str, str]
    glibc_name: str
    glibc_install_script: str
    glibc_package: str
    glibc_provides: frozenset[str]

    def file(self, name: str) -> Path:
        return self.dir / FILES_DIR / name


@dataclass(frozen=True)
class RuntimeBuild:
    python: tcz.TczResult
    glibc: tcz.TczResult | None
    versions: dict[str, str]  # Debian package -> version used


def load_spec(path: Path | None = None) -> Spec:
    """Parse a ``runtime.toml`` (default: ``tcz-build/python3.11/``); unknown keys are errors."""
    path = path or recipes_dir() / f"python{PYVER}" / RUNTIME_FILE
    try:
        data: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
        g = data["glibc"]
        unknown = sorted(set(data) - _KEYS) + sorted(f"glibc.{k}" for k in set(g) - _GLIBC_KEYS)
        if unknown:
            raise BuildError(f"{path}: unknown key(s) {', '.join(unknown)}")
        spec = Spec(
            dir=path.parent,
            name=str(data["name"]),
            description=str(data["description"]),
            launcher=str(data["launcher"]),
            site_pth=str(data["site_pth"]),
            packages=tuple(data["packages"]),
            keep_dynload=frozenset(data["keep_dynload"]),
            drop=tuple(data["drop"]),
            sources=bool(data.get("sources", True)),
            libraries=dict(data["libraries"]),
            glibc_name=str(g["name"]),
            glibc_install_script=str(g["install_script"]),
            glibc_package=str(g["package"]),
            glibc_provides=frozenset(g["provides"]),
        )
    except tomllib.TOMLDecodeError as exc:
        raise BuildError(f"{path}: {exc}") from None
    except KeyError as exc:
        raise BuildError(f"{path}: missing key {exc}") from None
    if spec.name != path.parent.name:
        raise BuildError(f"{path}: name {spec.name!r} differs from the directory name {path.parent.name!r}")
    for name in (spec.launcher, spec.site_pth, spec.glibc_install_script):
        if not spec.file(name).is_file():
            raise BuildError(f"{path}: {spec.file(name)} does not exist")
    return spec


# ------------------------------------------------------------------------------------------ debs
def _fetch(arch: Arch, packages: Iterable[str]) -> tuple[list[Path], dict[str, str]]:
    deb = arch.info.debian
    debian.ensure_apt(arch)
    versions = {p: debian.package_version(p, deb) for p in dict.fromkeys(packages)}
    return debian.download(sorted(versions.items()), deb), versions


def _inside(root: Path, path: Path) -> Path:
    """Follow ``path``'s symlinks the way they would resolve with ``root`` as ``/``."""
    for _ in range(40):
        if not path.is_symlink():
            return path
        target = os.readlink(path)
        path = root / target.lstrip("/") if os.path.isabs(target) else path.parent / target
    raise BuildError(f"symlink loop at {path}")


def _find_lib(root: Path, soname: str) -> Path:
    """The real file behind ``soname`` in an unpacked Debian tree (lib/<triplet>/ or usr/lib/<triplet>/)."""
    for cand in [*sorted(root.glob(f"lib/*/{soname}")), *sorted(root.glob(f"usr/lib/*/{soname}"))]:
        real = _inside(root, cand)
        if real.is_file():
            return real
    raise BuildError(f"{soname} is not in the unpacked Debian packages")


# ----------------------------------------------------------------------------------------- stage
def _drop(stdlib: Path, patterns: Iterable[str]) -> None:
    pats = list(patterns)
    for path in sorted(stdlib.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        rel = path.relative_to(stdlib).as_posix()
        if any(fnmatch.fnmatch(rel, p) for p in pats) and os.path.lexists(path):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()


def _prune_symlinks(tree: Path) -> None:
    """Debian links some files to /etc or /usr/share (sitecustomize.py ...): drop links leaving the tree."""
    for path in list(tree.rglob("*")):
        if path.is_symlink():
            target = os.readlink(path)
            resolved = (path.parent / target).resolve()
            if os.path.isabs(target) or not str(resolved).startswith(str(tree.resolve())):
                log.debug("dropping symlink %s -> %s", path.relative_to(tree), target)
                path.unlink()


def _check_elf(path: Path, arch: Arch) -> elf.ElfInfo:
    info = elf.inspect(path)
    if info.arch is not arch:
        raise BuildError(f"{path.name} is {info.describe()}, expected {arch}")
    return info


def _precompile(stdlib: Path, *, sources: bool) -> bool:
    """Compile the stdlib (unchecked-hash .pyc: the image is read-only, its mtimes normalised).

    Without ``sources`` the .pyc files replace the .py files (legacy layout, next to where the .py was):
    about a third smaller, at the price of tracebacks without source lines.
    """
    if sys.version_info[:2] != (3, 11):
        log.warning("build host runs Python %d.%d, not 3.11: the stdlib is shipped as .py only",
                    *sys.version_info[:2])
        return False
    # A fresh, isolated interpreter with a fixed hash seed: marshal's output (interned strings, refs)
    # depends on what the compiling process has already loaded, so compiling in-process would make the
    # .pyc bytes -- and the image -- vary with the caller.
    args = [sys.executable, "-I", "-m", "compileall", "-qq", "-j", "1", "-d", f"/{STDLIB}",
            "--invalidation-mode", "unchecked-hash"]
    if not sources:
        args.append("-b")
    try:
        proc.run([*args, str(stdlib)], env={"PYTHONHASHSEED": "0"}, what="compiling the standard library")
    except CommandFailed as exc:
        raise BuildError(f"compiling the standard library failed: {exc}") from None
    if not sources:
        for py in stdlib.rglob("*.py"):
            py.unlink()
    return True


def stage_python(spec: Spec, arch: Arch, unpacked: Path, stage: Path) -> list[elf.ElfInfo]:
    """Lay out python3.11.tcz's tree in ``stage``; return the ELF files in it (for their NEEDED)."""
    src_lib = unpacked / f"usr/lib/python{PYVER}"
    stdlib = stage / STDLIB
    shutil.copytree(src_lib, stdlib, symlinks=True)
    _drop(stdlib, spec.drop)
    dynload = stdlib / "lib-dynload"
    for so in sorted(dynload.iterdir()):
        if so.name.split(".", 1)[0] not in spec.keep_dynload:
            so.unlink()
    missing = spec.keep_dynload - {p.name.split(".", 1)[0] for p in dynload.iterdir()}
    if missing:
        raise BuildError(f"lib-dynload has no {', '.join(sorted(missing))} (runtime.toml keep_dynload)")
    _prune_symlinks(stage)

    real_bin = stage / REAL_BIN
    real_bin.parent.mkdir(parents=True)
    shutil.copy2(unpacked / f"usr/bin/python{PYVER}", real_bin)
    elves = [_check_elf(real_bin, arch), *(_check_elf(p, arch) for p in sorted(dynload.iterdir()))]
    if not elves[0].interpreter:
        raise BuildError(f"python{PYVER} from Debian has no program interpreter")
    # glibc's own sonames, and its loader (some arches list ld-linux-*.so.* in DT_NEEDED)
    from_glibc = spec.glibc_provides | {Path(elves[0].interpreter).name}

    deps_dir = stage / LIB_DEPS
    deps_dir.mkdir(parents=True)
    needed = sorted({n for e in elves for n in e.needed})
    for soname in needed:
        if soname in from_glibc:
            continue
        if soname not in spec.libraries:
            raise BuildError(f"the interpreter or a kept module needs {soname}, which runtime.toml "
                             "does not map to a Debian package",
                             hint="add it to [libraries], or drop the module from keep_dynload")
        lib = deps_dir / soname
        shutil.copy2(_find_lib(unpacked, soname), lib)
        info = _check_elf(lib, arch)
        extra = [n for n in info.needed if n not in from_glibc]
        if extra:
            raise BuildError(f"{soname} needs {', '.join(extra)} (not handled)")

    bindir = stage / PREFIX / "bin"
    bindir.mkdir(parents=True)
    shutil.copyfile(spec.file(spec.launcher), bindir / f"python{PYVER}")
    (bindir / f"python{PYVER}").chmod(0o755)
    (bindir / "python3").symlink_to(f"python{PYVER}")
    pth_dir = stdlib / "dist-packages"
    pth_dir.mkdir()
    shutil.copyfile(spec.file(spec.site_pth), pth_dir / "tce-site.pth")
    _precompile(stdlib, sources=spec.sources)
    for path in stage.rglob("*"):  # the Debian tree has a few group-writable or odd modes
        if path.is_file() and not path.is_symlink():
            path.chmod(0o755 if path.stat().st_mode & stat.S_IXUSR else 0o644)
    return elves


def stage_glibc(spec: Spec, interpreter: str, unpacked: Path, stage: Path) -> None:
    """glibc-testbase's tree: the loader and libs in /lib (TC's layout), plus the PT_INTERP path, and
    an install script that replaces the test base's empty loader placeholder."""
    lib = stage / "lib"
    lib.mkdir(parents=True)
    loader = Path(interpreter).name
    shutil.copy2(_find_lib(unpacked, loader), lib / loader)
    for soname in sorted(spec.glibc_provides):
        shutil.copy2(_find_lib(unpacked, soname), lib / soname)
    if Path(interpreter).parent != Path("/lib"):  # x86_64: /lib64/ld-linux-x86-64.so.2
        link = stage / interpreter.lstrip("/")
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(lib / loader, link.parent))
    script = stage / tcz.INSTALLED_DIR / spec.glibc_name
    script.parent.mkdir(parents=True)
    shutil.copyfile(spec.file(spec.glibc_install_script), script)
    for path in stage.rglob("*"):
        if path.is_file() and not path.is_symlink():
            path.chmod(0o755)


# ----------------------------------------------------------------------------------------- build
def build(arch: Arch | str, out_dir: Path, *, testbase: bool = False, epoch: int | None = None,
          spec: Spec | None = None) -> RuntimeBuild:
    """``out_dir/python3.11.tcz`` (+ sidecars); with ``testbase`` also ``glibc-testbase.tcz``, listed in
    python3.11.tcz.dep (the test repo's arrangement; never for a real Tiny Core repo)."""
    arch = arch if isinstance(arch, Arch) else Arch.parse(arch)
    spec = spec or load_spec()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".python-runtime-", dir=out_dir) as tmp:
        work = Path(tmp)
        debs, versions = _fetch(arch, [*spec.packages, *spec.libraries.values(), spec.glibc_package])
        unpacked = work / "debs"
        debian.unpack(debs, unpacked)
        stage = work / "python"
        elves = stage_python(spec, arch, unpacked, stage)
        interp = str(elves[0].interpreter)
        pyversion = versions[spec.packages[0]]
        info = {
            "Title": f"{spec.name}.tcz",
            "Description": spec.description,
            "Version": pyversion,
            "Author": "Python Software Foundation (Debian packaging)",
            "Original-site": "https://www.python.org (from Debian bookworm packages)",
            "Copying-policy": "PSF-2.0; zlib: Zlib; expat: MIT",
            "Tags": "python python3 interpreter",
            "Comments": (f"From Debian {spec.packages[0]} {pyversion} for {arch}.\n"
                         f"Needs glibc ({interp}) from the base system.\n"
                         "Trimmed: no tests, idle, tkinter, ensurepip, pydoc, ssl, ctypes,\n"
                         "sqlite3, curses, dbm, lib2to3, distutils, unittest.\n"
                         + ("" if spec.sources else "Standard library as .pyc only (no .py).\n")
                         + f"/usr/local/bin/python3 -> python{PYVER} (launcher)."),
            "Change-log": "first version",
            "Current": pyversion,
        }
        deps = [f"{spec.glibc_name}.tcz"] if testbase else []
        python = tcz.pack(stage, out_dir / f"{spec.name}.tcz", deps=deps, info=info, epoch=epoch)
        glibc = None
        if testbase:
            gstage = work / "glibc"
            stage_glibc(spec, interp, unpacked, gstage)
            gversion = versions[spec.glibc_package]
            ginfo = {
                "Title": f"{spec.glibc_name}.tcz",
                "Description": "TEST ONLY: glibc for the tce-ipfs busybox test base",
                "Version": gversion,
                "Author": "GNU C Library contributors (Debian packaging)",
                "Original-site": "https://www.gnu.org/software/libc/ (Debian libc6)",
                "Copying-policy": "LGPL-2.1-or-later",
                "Tags": "glibc test",
                "Comments": ("NOT FOR A REAL TINY CORE, which has glibc in its base.\n"
                             "The tce-ipfs test base is busybox only; this gives it\n"
                             f"the loader ({interp}), libc and libm from Debian\n"
                             f"{spec.glibc_package}={gversion} so python{PYVER}.tcz can run."),
                "Change-log": "first version",
                "Current": gversion,
            }
            glibc = tcz.pack(gstage, out_dir / f"{spec.glibc_name}.tcz", info=ginfo, epoch=epoch)
    return RuntimeBuild(python=python, glibc=glibc, versions=versions)
