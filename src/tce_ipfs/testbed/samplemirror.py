"""A synthetic Tiny Core mirror tree, shaped like TC's: ``<release>/<arch>/tcz/`` directories of
extensions with every sidecar (``.md5.txt .dep .info .list .tree .zsync``) and the index files
(``md5.db.gz sizelist.gz dep.db.gz provides.db(.gz) tags.db.gz info.lst``), plus what a mirror holds
besides (``latest-*`` at the top, ``release/`` next to ``tcz/``), which publishing leaves out.

The filler extensions are not squashfs images (publishing, ``mirror pull`` and the checks look at
bytes, md5s, names and dependencies, never inside); a boot directory (``boot=``) also gets the real
sample repo (``samplerepo``) and its ``onboot.lst``, so a guest boots from
``tce=ipfs:<root>/<release>/<arch>/tcz``. Used by the tests and ``tce-ipfs bench``.
"""

from __future__ import annotations

import hashlib
import random
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tce_ipfs import tcindex

RELEASES = ("15.x", "16.x")
ARCHES = ("x86_64", "aarch64")


@dataclass
class SampleMirror:
    path: Path
    dirs: list[str]  # "16.x/x86_64/tcz", ...
    extensions: dict[str, list[str]] = field(default_factory=dict)  # dir -> NAME.tcz, sorted
    boot_dir: str | None = None
    bytes: int = 0

    def tcz(self, prefix: str) -> Path:
        return self.path / prefix


def body(name: str, size: int, generation: int = 0) -> bytes:
    """Deterministic incompressible bytes for an extension (``generation`` gives new content)."""
    return random.Random(f"{name}/{generation}".encode()).randbytes(size)


def write_extension(d: Path, name: str, data: bytes, deps: Sequence[str] = (), *, tags: str = "") -> None:
    """``NAME.tcz`` and every sidecar a mirror carries for it."""
    stem = name.removesuffix(".tcz")
    (d / name).write_bytes(data)
    (d / f"{name}.md5.txt").write_text(f"{hashlib.md5(data).hexdigest()}  {name}\n")
    if deps:
        (d / f"{name}.dep").write_text("".join(f"{x}\n" for x in deps))
    else:
        (d / f"{name}.dep").unlink(missing_ok=True)
    (d / f"{name}.info").write_text(
        f"Title:          {name}\nDescription:    synthetic extension {stem}\nVersion:        1.0\n"
        f"Author:         tce-ipfs tests\nOriginal-site:  none\nCopying-policy: MIT\n"
        f"Size:           {max(1, len(data) // 1024)}K\nExtension_by:   tce-ipfs\n"
        f"Tags:           {tags or stem + ' synthetic'}\nComments:       none\n"
        f"Change-log:     first version\nCurrent:        2026/01/01\n")
    (d / f"{name}.list").write_text(f"usr/local/share/{stem}/data\nusr/local/bin/{stem}\n")
    (d / f"{name}.tree").write_text(name + "\n" + "".join(f"   {x}\n" for x in deps))
    (d / f"{name}.zsync").write_text(f"zsync: 0.6.2\nFilename: {name}\nLength: {len(data)}\n"
                                     f"Blocksize: 2048\nSHA-1: {hashlib.sha1(data).hexdigest()}\n\n")


def _filler_deps(i: int, names: Sequence[str]) -> list[str]:
    """A sparse, loop-free dependency graph: every 5th extension needs up to two earlier ones."""
    if i % 5 or i < 10:
        return []
    return [names[i // 2], names[i // 3]] if i // 2 != i // 3 else [names[i // 2]]


def build(out: Path, *, extensions: int = 300, ext_bytes: int = 4096,
          releases: Sequence[str] = RELEASES, arches: Sequence[str] = ARCHES,
          boot: tuple[str, Path] | None = None, extras: bool = True) -> SampleMirror:
    """A mirror tree under ``out`` with ``extensions`` fillers per ``tcz/`` directory, each of about
    ``ext_bytes`` bytes (sizes vary +-50%). ``boot``: ``(dir, sample repo directory)`` whose files (and
    ``onboot.lst``) are copied into that ``tcz/`` directory (e.g. ``("16.x/x86_64/tcz", repo)``)."""
    out.mkdir(parents=True, exist_ok=True)
    mirror = SampleMirror(path=out, dirs=[f"{r}/{a}/tcz" for r in releases for a in arches])
    for prefix in mirror.dirs:
        d = out / prefix
        d.mkdir(parents=True, exist_ok=True)
        release = prefix.split("/")[0]
        names = [f"pkg{i:05d}-{release.removesuffix('.x')}.tcz" for i in range(extensions)]
        rng = random.Random(prefix)
        for i, name in enumerate(names):
            size = max(64, int(ext_bytes * rng.uniform(0.5, 1.5)))
            write_extension(d, name, body(f"{prefix}/{name}", size), _filler_deps(i, names))
        if boot is not None and boot[0] == prefix:
            for f in sorted(Path(boot[1]).iterdir()):
                if f.is_file():
                    shutil.copy2(f, d / f.name)
            mirror.boot_dir = prefix
        tcindex.write_indexes(d)
        mirror.extensions[prefix] = sorted(p.name for p in d.glob("*.tcz"))
        if extras:
            (d.parent / "release").mkdir(exist_ok=True)
            (d.parent / "release" / "README").write_text("ISOs live here on a real mirror\n")
    if extras:
        for arch in arches:
            (out / f"latest-{arch}").write_text(f"{releases[-1].removesuffix('.x')}.0\n")
    mirror.bytes = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return mirror


def change(mirror: SampleMirror, prefix: str, name: str, *, generation: int = 1,
           reindex: bool = True) -> None:
    """Give one extension new content (new ``.tcz``, ``.md5.txt``, ``.zsync``...), as a mirror update does."""
    d = mirror.tcz(prefix)
    old = (d / name).stat().st_size
    deps = [ln.strip() for ln in (d / f"{name}.dep").read_text().splitlines()] \
        if (d / f"{name}.dep").exists() else []
    write_extension(d, name, body(f"{prefix}/{name}", old, generation), deps)
    if reindex:
        tcindex.write_indexes(d)


def add(mirror: SampleMirror, prefix: str, name: str, size: int = 4096, *, reindex: bool = True) -> None:
    write_extension(mirror.tcz(prefix), name, body(f"{prefix}/{name}", size))
    mirror.extensions[prefix] = sorted({*mirror.extensions[prefix], name})
    if reindex:
        tcindex.write_indexes(mirror.tcz(prefix))


def remove(mirror: SampleMirror, prefix: str, name: str, *, reindex: bool = True) -> None:
    d = mirror.tcz(prefix)
    for f in d.glob(f"{name}*"):
        if f.name == name or f.name.startswith(name + "."):
            f.unlink()
    mirror.extensions[prefix] = [n for n in mirror.extensions[prefix] if n != name]
    if reindex:
        tcindex.write_indexes(d)
