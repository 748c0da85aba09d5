"""kubo's ``ipfs`` binary per arch: built from source with Go (module proxy), or taken from the user.

``ensure(arch)`` returns ``cache_dir()/kubo/<version>/<recipe>/<arch>/ipfs``, a static binary checked
by ``elf.validate``. Next to it, ``ipfs.json`` (the manifest) records version, arch, sha256, size, the
build recipe and how long the build took. A second call reads the manifest and returns at once.

The *recipe* (build tags, -ldflags, -gcflags, the plugin list, the per-version source fixups and size
patches, including a digest of our Go sources they add) is hashed into ``recipe_id()``, which is part
of the cache path: each recipe builds into its own directory, so checkouts with different recipes (two
branches) never rebuild over each other's binary. Builds hold a lock file per version+recipe+arch, so
concurrent callers (two pytest processes) build once and share the result.
The recipe (how the binary is kept small, the seed role's variant) is data in ``build.kuborecipe``;
the Go-module plumbing kubo shares with ipfs-cluster is ``build.gomodule``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tce_ipfs import proc
from tce_ipfs.arch import Arch
from tce_ipfs.build import elf, kuborecipe
from tce_ipfs.build.gomodule import (
    build_lock,
    edit_file,
    fetch_module,
    go_build_env,
    go_version,
    runs_here,
    sha256_file,
    writable_copy,
    write_manifest,
)
from tce_ipfs.build.kuborecipe import (
    PLAIN,
    SEED,
    VARIANTS,
    Add,
    Edit,
    Go,
    Remove,
    Step,
    normalize_version,
    recipe,
    recipe_id,
    variant_patches,
)
from tce_ipfs.errors import BuildError, CommandFailed, UsageError
from tce_ipfs.settings import KUBO_MODULE, KUBO_VERSION, cache_dir

# What callers name through this module: ensure(arch, variant=kubo.SEED), kubo.recipe_id(), ...
__all__ = [
    "PLAIN", "SEED", "VARIANTS", "KuboBinary", "binary_path", "build_args", "ensure", "load",
    "normalize_version", "prepare_source", "recipe", "recipe_id", "std_overlay", "version_dir",
]

log = logging.getLogger(__name__)

BUILD_TIMEOUT = 3600.0  # a cold build for a new arch on 2 cores takes minutes; this is a hang guard
MANIFEST_NAME = "ipfs.json"


@dataclass(frozen=True)
class KuboBinary:
    """What the manifest next to a cached binary says."""

    path: Path
    version: str
    arch: Arch
    sha256: str
    size: int
    source: str  # "built" or "given" (copied from --from PATH)
    recipe: str | None  # recipe_id() for built binaries
    seconds: float
    raw: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {**self.raw, "path": str(self.path)}


def version_dir(version: str) -> Path:
    return cache_dir() / "kubo" / normalize_version(version)


def binary_path(arch: Arch, version: str = KUBO_VERSION, variant: str = PLAIN) -> Path:
    """Where the binary for the current recipe lives: ``kubo/<version>/<recipe_id>/<arch>/ipfs``."""
    return version_dir(version) / recipe_id(version, variant) / arch.info.name / "ipfs"


def load(arch: Arch, version: str = KUBO_VERSION, variant: str = PLAIN) -> KuboBinary | None:
    """The cached binary's manifest, or None when there is no (readable) one."""
    path = binary_path(arch, version, variant)
    try:
        raw = json.loads((path.parent / MANIFEST_NAME).read_text())
        return KuboBinary(
            path=path,
            version=str(raw["version"]),
            arch=Arch.parse(str(raw["arch"])),
            sha256=str(raw["sha256"]),
            size=int(raw["size"]),
            source=str(raw["source"]),
            recipe=raw.get("recipe"),
            seconds=float(raw.get("seconds", 0.0)),
            raw=raw,
        )
    except (OSError, ValueError, KeyError, TypeError, UsageError):
        return None


def _cached(arch: Arch, version: str, *, accept_given: bool, variant: str = PLAIN) -> KuboBinary | None:
    """The cached binary if its manifest matches the file and the current recipe; else None."""
    m = load(arch, version, variant)
    if m is None or m.version != version or m.arch is not arch:
        return None
    if m.source == "built" and m.recipe != recipe_id(version, variant):
        log.info("kubo %s for %s was built with another recipe; rebuilding", version, arch)
        return None
    if m.source == "given" and not accept_given:
        return None
    try:
        st = m.path.stat()
    except FileNotFoundError:
        return None
    if st.st_size != m.size:
        return None
    if st.st_mtime_ns != m.raw.get("mtime_ns") and sha256_file(m.path) != m.sha256:
        log.warning("cached kubo %s changed on disk; replacing it", m.path)
        return None
    elf.validate(m.path, arch)
    return m


def _fetch_source(version: str, work: Path) -> Path:
    """Download ``kubo@version`` through the module proxy; return its (read-only) module cache dir."""
    return fetch_module(KUBO_MODULE, version, work, name="kubo",
                        releases="https://github.com/ipfs/kubo/releases")


def prepare_source(version: str, variant: str = PLAIN) -> Path:
    """kubo's source for ``version`` (and ``variant``) with our fixups and plugin list, ready to build
    (cached)."""
    version = normalize_version(version)
    rid = recipe_id(version, variant)
    src = version_dir(version) / f"src-{rid}"
    marker = src / ".tce-ipfs-prepared"
    if marker.exists():
        return src
    with build_lock(version_dir(version) / f"src-{rid}.lock", f"preparing kubo {version} source"):
        if marker.exists():
            return src
        log.info("fetching kubo %s source (Go module proxy)", version)
        moddir = _fetch_source(version, version_dir(version) / "tmp")
        if src.exists():
            shutil.rmtree(src)
        tmp = src.with_name(src.name + ".partial")
        if tmp.exists():
            shutil.rmtree(tmp)
        writable_copy(moddir, tmp)
        _check_source_version(tmp, version)
        for step in kuborecipe.SOURCE_FIXUPS.get(version, ()):
            log.info("applying source fixup: %s", step)
            _apply(step, tmp, version, "kuborecipe.SOURCE_FIXUPS")
        patches = kuborecipe.SLIM_PATCHES.get(version, ())
        if not patches:
            log.warning("no size patches for kubo %s (kuborecipe.SLIM_PATCHES): the binary will be larger",
                        version)
        for step in patches:
            log.debug("applying size patch: %s", step)
            _apply(step, tmp, version, "kuborecipe.SLIM_PATCHES")
        for step in variant_patches(version, variant):
            log.info("applying %s build patch: %s", variant, step)
            _apply(step, tmp, version, "kuborecipe.SEED_PATCHES")
        plugin_dir = tmp / "plugin" / "plugins"
        missing = [p for p in kuborecipe.PRELOAD_PLUGINS if not (plugin_dir / p).is_dir()]
        if missing:
            raise BuildError(f"kubo {version} has no plugin(s) {', '.join(missing)} in plugin/plugins",
                             hint="adjust kuborecipe.PRELOAD_PLUGINS for this version")
        (tmp / "plugin" / "loader" / "preload.go").write_text(kuborecipe.preload_go())
        (tmp / ".tce-ipfs-prepared").write_text(json.dumps(recipe(version, variant), sort_keys=True) + "\n")
        tmp.rename(src)
    return src


def _go(args: list[str], src: Path, what: str, table: str) -> str:
    try:
        return proc.output(["go", *args], env=go_build_env(), cwd=src, timeout=1800, what=what)
    except CommandFailed as exc:
        raise BuildError(exc.message, hint=f"see {table}") from exc


def _apply(step: Step, src: Path, version: str, table: str) -> None:
    if isinstance(step, Go):
        _go(list(step.args), src, f"source step `{step}` for kubo {version}", table)
    elif isinstance(step, Edit):
        edit_file(src, step.path, step.old, step.new, count=step.count, owner=f"kubo {version}", table=table)
    elif isinstance(step, Remove):
        target = src / step.path
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
        else:
            raise BuildError(f"kubo {version} has no {step.path} to remove",
                             hint=f"update {table} for this version")
    elif isinstance(step, Add):
        source, target = step.source_path, src / step.path
        if not source.exists():
            raise BuildError(f"{source} is missing (a kubo build input of this checkout)",
                             hint=f"see {table}")
        if target.exists():
            raise BuildError(f"kubo {version} already has {step.path}; {step} would overwrite it",
                             hint=f"update {table} for this version")
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target)
        else:
            shutil.copyfile(source, target)
    else:
        what = f"vendoring {step.module} for kubo {version}"
        selected = _go(["list", "-m", "-f", "{{.Version}}", step.module], src, what, table).strip()
        info = json.loads(_go(["mod", "download", "-json", f"{step.module}@{selected}"], src, what, table))
        if info.get("Error") or not info.get("Dir"):
            raise BuildError(f"cannot download {step.module}@{selected}: {info.get('Error', 'no Dir')}")
        writable_copy(Path(info["Dir"]), src / step.path)
        _go(["mod", "edit", f"-replace={step.module}=./{step.path}"], src, what, table)


def _check_source_version(src: Path, version: str) -> None:
    text = (src / "version.go").read_text() if (src / "version.go").exists() else ""
    m = re.search(r'CurrentVersionNumber\s*=\s*"([^"]+)"', text)
    if m and "v" + m.group(1) != version:
        raise BuildError(f"kubo source for {version} says it is {m.group(1)}")


def build_args(arch: Arch, out: Path, overlay: Path | None = None) -> list[str]:
    return [
        "go", "build", "-buildvcs=false", "-trimpath",
        "-tags", ",".join(kuborecipe.BUILD_TAGS),
        f"-ldflags={kuborecipe.LDFLAGS}",
        f"-gcflags={kuborecipe.GCFLAGS}",
        *([f"-overlay={overlay}"] if overlay else []),
        "-o", str(out),
        "./cmd/ipfs",
    ]


def std_overlay(version: str, work: Path) -> Path | None:
    """Write ``STD_PATCHES`` for ``version`` as a ``go build -overlay`` file under ``work``: each
    edited standard-library file is a copy of the building Go's own file with the edit applied
    (so the overlay always matches that Go). None when there is nothing to patch."""
    edits = kuborecipe.STD_PATCHES.get(normalize_version(version), ())
    if not edits:
        return None
    goroot = Path(proc.output(["go", "env", "GOROOT"], what="asking go for GOROOT").strip())
    owner = f"Go {go_version()}'s standard library ({goroot / 'src'})"
    if work.exists():
        shutil.rmtree(work)
    replace: dict[str, str] = {}
    for e in edits:
        original = goroot / "src" / e.path
        if not original.is_file():
            raise BuildError(f"{owner} has no {e.path} to patch",
                             hint="update kuborecipe.STD_PATCHES for this Go")
        copy = work / "src" / e.path
        if str(original) not in replace:
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(original, copy)
            replace[str(original)] = str(copy)
        edit_file(work / "src", e.path, e.old, e.new, count=e.count, owner=owner,
                  table="kuborecipe.STD_PATCHES")
    overlay = work / "overlay.json"
    overlay.write_text(json.dumps({"Replace": replace}, indent=2, sort_keys=True) + "\n")
    return overlay


def _host_version(path: Path) -> str | None:
    """``ipfs version --number`` when ``path`` runs here (host arch), else None."""
    if not runs_here(path):
        return None
    with tempfile.TemporaryDirectory(prefix="tce-ipfs-kubo-") as repo:
        out = proc.output([path, "version", "--number"], env={"IPFS_PATH": repo}, timeout=60,
                          what=f"running {path} version")
    return out.splitlines()[-1].strip() if out else ""


def _build(arch: Arch, version: str, dest: Path, variant: str = PLAIN) -> dict[str, Any]:
    src = prepare_source(version, variant)
    log.info("building kubo %s%s for %s (first time: a few minutes)", version,
             f" ({variant} build)" if variant else "", arch)
    out = dest.with_name(f".ipfs.{os.getpid()}.partial")
    args = build_args(arch, out, std_overlay(version, dest.parent / "overlay"))
    started = time.monotonic()
    try:
        result = proc.run(args, env=go_build_env(arch.go_env), cwd=src, timeout=BUILD_TIMEOUT,
                          what=f"building kubo {version} for {arch}")
    except CommandFailed as exc:
        (dest.parent / "build.log").write_text(exc.stderr)
        out.unlink(missing_ok=True)
        raise BuildError(f"building kubo {version} for {arch} failed: {exc.message}",
                         hint=f"full log: {dest.parent / 'build.log'}") from exc
    seconds = time.monotonic() - started
    (dest.parent / "build.log").write_bytes(result.stderr or b"")
    try:
        elf.validate(out, arch)
        ran = _host_version(out)
        if ran is not None and "v" + ran != version:
            raise BuildError(f"built kubo says it is version {ran}, expected {version}")
    except BaseException:
        out.unlink(missing_ok=True)
        raise
    os.replace(out, dest)
    log.info("built kubo %s for %s in %.0f s (%.1f MB)", version, arch, seconds, dest.stat().st_size / 1e6)
    env = {k: v for k, v in sorted(go_build_env(arch.go_env).items())}
    return {
        "source": "built",
        "recipe": recipe_id(version, variant),
        "build": {**recipe(version, variant), "go": go_version(), "env": env,
                  "command": args[:-3] + args[-1:]},
        "seconds": round(seconds, 1),
    }


def _take(arch: Arch, version: str, given: Path, dest: Path) -> dict[str, Any]:
    info = elf.validate(given, arch)
    ran = _host_version(given)
    if ran is not None and "v" + ran != version:
        raise UsageError(f"{given} is kubo {ran}, expected {version}",
                         hint=f"pass --version v{ran} to store it under its own version")
    if ran is None:
        log.warning("cannot run a %s binary here; trusting that %s is kubo %s", arch, given, version)
    tmp = dest.with_name(f".ipfs.{os.getpid()}.partial")
    shutil.copyfile(given, tmp)
    tmp.chmod(0o755)
    os.replace(tmp, dest)
    return {"source": "given", "from": str(given.resolve()), "recipe": None, "seconds": 0.0,
            "elf": info.as_dict() | {"path": str(dest)}}


def ensure(arch: Arch, version: str = KUBO_VERSION, *, from_path: Path | None = None,
           rebuild: bool = False, variant: str = PLAIN) -> Path:
    """A validated static kubo ``ipfs`` for ``arch`` at ``cache_dir()/kubo/<version>/<recipe>/<arch>/ipfs``.

    Built from source the first time (or when the recipe changed, or with ``rebuild``); with
    ``from_path``, that binary is validated and copied in instead. A binary given earlier with
    ``from_path`` is reused by later calls without it (until ``rebuild``). ``variant=SEED``: the seed
    role's build (its own recipe, so its own directory).
    """
    version = normalize_version(version)
    variant_patches(version, variant)  # an unknown variant fails before anything else
    dest = binary_path(arch, version, variant)
    if from_path is not None:
        from_path = Path(from_path)
        elf.validate(from_path, arch)  # fail before taking any lock
    elif not rebuild:
        hit = _cached(arch, version, accept_given=True, variant=variant)
        if hit is not None:
            return hit.path
    dest.parent.mkdir(parents=True, exist_ok=True)
    with build_lock(dest.parent / ".lock", f"building kubo {version} for {arch}"):
        if from_path is not None:
            m = load(arch, version, variant)
            if m is not None and m.source == "given" and dest.exists() and m.sha256 == sha256_file(from_path):
                return dest
            meta = _take(arch, version, from_path, dest)
        else:
            # Someone may have finished the same build while we waited for the lock.
            hit = None if rebuild else _cached(arch, version, accept_given=True, variant=variant)
            if hit is not None:
                return hit.path
            meta = _build(arch, version, dest, variant)
        try:
            elf.validate(dest, arch)  # _build/_take checked already; this guards the cache itself
        except BaseException:
            dest.unlink(missing_ok=True)
            raise
        st = dest.stat()
        manifest = {
            "version": version,
            "arch": arch.info.name,
            **({"variant": variant} if variant else {}),
            "sha256": sha256_file(dest),
            "size": st.st_size,
            "mtime_ns": st.st_mtime_ns,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            **meta,
        }
        write_manifest(dest.parent / MANIFEST_NAME, manifest)
    return dest
