"""Go programs built from the Go module proxy: what every such build on the build host shares.

kubo (``build.kubo``) and ipfs-cluster (``build.cluster``) are both downloaded as Go modules, copied
into a writable tree, patched by exact-text edits, built under a per-directory lock and cached next to
a JSON manifest. This module is that common part; it knows nothing about either program.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tce_ipfs import proc
from tce_ipfs.arch import Arch
from tce_ipfs.build import elf
from tce_ipfs.errors import BuildError, CommandFailed, UsageError

log = logging.getLogger(__name__)

# A release tag as Go modules spell it: v1.2.3, optionally with a pre-release suffix (-rc1).
_TAG_RE = re.compile(r"^v\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?$")


def release_tag(version: str, *, program: str, example: str, prerelease: bool = True) -> str:
    """``1.2.3`` or ``v1.2.3`` -> ``v1.2.3``; anything else is a ``UsageError`` naming ``program``."""
    v = version.strip()
    if v and v[0].isdigit():
        v = "v" + v
    if not _TAG_RE.match(v) or (not prerelease and "-" in v):
        raise UsageError(f"not {program} version: {version!r}", hint=f"use a release tag like {example}")
    return v


def runs_here(path: Path) -> bool:
    """Can this host run the ELF binary ``path`` (its arch is the host's)? Used to ask a fresh build
    for its version; a cross-built binary cannot be asked."""
    try:
        host = Arch.host()
    except UsageError:
        return False
    return elf.inspect(path).arch is host


def tree_digest(path: Path) -> str:
    """sha256 over a file, or over every file below a directory (relative names and contents)."""
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        h.update(f.relative_to(path.parent if f == path else path).as_posix().encode() + b"\0")
        h.update(f.read_bytes() + b"\0")
    return h.hexdigest()


def sha256_file(path: Path) -> str:
    """sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@contextlib.contextmanager
def build_lock(lock_path: Path, what: str) -> Iterator[None]:
    """An exclusive flock on ``lock_path`` (waits, and says so, when another process holds it)."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("waiting for another process %s (lock %s)", what, lock_path)
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def write_manifest(path: Path, data: dict[str, Any]) -> None:
    """Write a JSON manifest atomically (readers never see half a file)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def go_build_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment every ``go`` command of a build runs with (``GOFLAGS=-mod=mod`` + ``extra``)."""
    env = {"GOFLAGS": "-mod=mod"}
    if extra:
        env.update(extra)
    return env


def go_version() -> str:
    """The building Go's version (``go1.24.4``), recorded in manifests."""
    return proc.output(["go", "env", "GOVERSION"], what="asking go for its version")


def fetch_module(module: str, version: str, work: Path, *, name: str, releases: str) -> Path:
    """Download ``module@version`` through the Go module proxy; return its (read-only) module cache dir.

    ``name`` says what it is in errors; ``releases`` is where a user checks which versions exist.
    """
    work.mkdir(parents=True, exist_ok=True)
    try:
        out = proc.output(["go", "mod", "download", "-json", f"{module}@{version}"],
                          env=go_build_env(), cwd=work, timeout=1800, what=f"downloading {name} {version}")
    except CommandFailed as exc:
        raise BuildError(f"cannot download {name} {version} from the Go module proxy: {exc.message}",
                         hint=f"check the version exists ({releases}) and that GOPROXY is reachable") from exc
    data = json.loads(out)
    if data.get("Error"):
        raise BuildError(f"cannot download {name} {version}: {data['Error']}")
    return Path(data["Dir"])


def writable_copy(src: Path, dst: Path) -> None:
    """Copy a (read-only) module cache directory to ``dst`` and make it writable, for patching."""
    shutil.copytree(src, dst, symlinks=True)
    for root, dirs, files in os.walk(dst):
        for name in dirs + files:
            p = Path(root) / name
            if not p.is_symlink():
                mode = p.stat().st_mode
                p.chmod(mode | stat.S_IWUSR)
    dst.chmod(dst.stat().st_mode | stat.S_IWUSR)


def edit_file(root: Path, rel: str, old: str, new: str, *, count: int = 1, owner: str, table: str) -> None:
    """Replace ``old`` (exactly ``count`` times) in ``root/rel``, so an edit that no longer fits the
    source fails loudly. ``owner`` names the tree in errors (``ipfs-cluster v1.1.0``), ``table`` the
    constant that holds the edit (the hint)."""
    target = root / rel
    try:
        text = target.read_text()
    except FileNotFoundError:
        raise BuildError(f"{owner} has no {rel} to patch", hint=f"see {table}") from None
    found = text.count(old)
    if found != count:
        raise BuildError(f"patching {owner} {rel}: expected {count} occurrence(s) of {old.strip()!r}, "
                         f"found {found}", hint=f"update {table} for this version")
    target.write_text(text.replace(old, new))
