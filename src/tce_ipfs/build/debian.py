"""Debian packages for a target arch, on the build host: apt's index, versions, downloads, unpacking.

The Python runtime (``build.pyruntime``) and the test base's kernel kit (``testbed.guest``) are both
made from Debian packages of the *guest's* arch, whatever the host's:

* ``ensure_apt(arch)``: ``dpkg --add-architecture`` for a foreign arch and ``apt-get update`` when apt
  does not know the arch's packages yet (idempotent; needs root the first time);
* ``package_version`` / ``resolve_kernel``: what the arch's index offers (``apt-cache``), never assuming
  the host's versions;
* ``download``: ``apt-get download`` into ``cache_dir()/debs`` (each .deb fetched once);
* ``unpack``: ``dpkg-deb -x``.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tce_ipfs import proc, settings
from tce_ipfs.arch import Arch
from tce_ipfs.errors import BuildError

log = logging.getLogger(__name__)


def _is_root() -> bool:
    return os.geteuid() == 0


def _apt_knows(pkg: str) -> bool:
    done = proc.run(["apt-cache", "show", "--no-all-versions", pkg], check=False)
    return done.returncode == 0 and b"Package:" in (done.stdout or b"")


def ensure_apt(arch: Arch) -> None:
    """Make apt know ``arch``'s packages: add the dpkg architecture and run ``apt-get update`` once."""
    deb = arch.info.debian
    probe = f"linux-image-{arch.info.kernel_flavour}:{deb}"
    if _apt_knows(probe):
        return
    host = proc.output(["dpkg", "--print-architecture"])
    if deb != host and deb not in proc.output(["dpkg", "--print-foreign-architectures"]).split():
        if not _is_root():
            raise BuildError(f"dpkg does not know the {deb} architecture yet",
                             hint=f"run as root once: dpkg --add-architecture {deb} && apt-get update")
        log.info("adding dpkg architecture %s", deb)
        proc.run(["dpkg", "--add-architecture", deb], what=f"dpkg --add-architecture {deb}")
    if not _is_root():
        raise BuildError(f"apt has no {deb} package index", hint="run as root once: apt-get update")
    log.info("apt-get update (for %s)", deb)
    # Some indexes may fail (mirrors lag, security suites for minor arches): judge by the result.
    done = proc.run(["apt-get", "update", "-qq"], check=False, timeout=900, what="apt-get update")
    if not _apt_knows(probe):
        err = (done.stderr or b"").decode(errors="replace").strip()
        raise BuildError(f"apt still has no {probe} after apt-get update" + (f":\n{err}" if err else ""))


@dataclass(frozen=True)
class KernelPackage:
    package: str  # linux-image-6.1.0-50-arm64
    version: str  # 6.1.176-1
    kver: str  # 6.1.0-50-arm64


def resolve_kernel(arch: Arch, flavour: str | None = None) -> KernelPackage:
    """The kernel apt offers for ``arch``: the candidate of ``linux-image-<flavour>`` (the arch's own
    flavour unless given) and its versioned dependency (the indexes of different arches may carry
    different versions)."""
    flavour, deb = flavour or arch.info.kernel_flavour, arch.info.debian
    meta = f"linux-image-{flavour}:{deb}"
    text = proc.output(["apt-cache", "show", "--no-all-versions", meta], what=f"apt-cache show {meta}")
    depends = next((line for line in text.splitlines() if line.startswith("Depends:")), "")
    m = re.search(rf"\blinux-image-(\d[\w.+~-]*-{re.escape(flavour)})(?=[\s,(]|$)", depends)
    if not m:
        raise BuildError(f"cannot tell the kernel version from {meta}: {depends!r}")
    kver = m.group(1)
    package = f"linux-image-{kver}"
    pkg_text = proc.output(["apt-cache", "show", "--no-all-versions", f"{package}:{deb}"],
                           what=f"apt-cache show {package}")
    version = next((line.split(":", 1)[1].strip() for line in pkg_text.splitlines()
                    if line.startswith("Version:")), "")
    if not version:
        raise BuildError(f"apt-cache shows no version for {package}:{deb}")
    return KernelPackage(package, version, kver)


def _debs_dir() -> Path:
    path = settings.cache_dir() / "debs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _deb_name(package: str, version: str, deb_arch: str) -> str:
    return f"{package}_{version.replace(':', '%3a')}_{deb_arch}.deb"


def download(packages: Sequence[tuple[str, str]], deb_arch: str) -> list[Path]:
    """``apt-get download`` the (package, version) pairs missing from ``cache_dir()/debs``."""
    debs = _debs_dir()
    wanted = [(p, v, debs / _deb_name(p, v, deb_arch)) for p, v in packages]
    missing = [f"{p}:{deb_arch}={v}" for p, v, path in wanted if not path.is_file()]
    if missing:
        log.info("downloading %s", " ".join(missing))
        args = ["apt-get", "download", "-q"]
        if _is_root():
            args += ["-o", "APT::Sandbox::User=root"]  # _apt cannot write into a root-owned cache
        proc.run([*args, *missing], cwd=debs, timeout=1800, what="apt-get download")
    for _, _, path in wanted:
        if not path.is_file():
            raise BuildError(f"apt-get download did not produce {path.name}")
    return [path for _, _, path in wanted]


def package_version(pkg: str, deb_arch: str) -> str:
    text = proc.output(["apt-cache", "show", "--no-all-versions", f"{pkg}:{deb_arch}"],
                       what=f"apt-cache show {pkg}")
    for line in text.splitlines():
        if line.startswith("Version:"):
            return line.split(":", 1)[1].strip()
    raise BuildError(f"apt-cache shows no version for {pkg}:{deb_arch}")


def unpack(debs: Iterable[Path], root: Path) -> None:
    """``dpkg-deb -x`` each of ``debs`` into ``root`` (created), in order."""
    root.mkdir(parents=True, exist_ok=True)
    for d in debs:
        proc.run(["dpkg-deb", "-x", d, root], what=f"dpkg-deb -x {d.name}")
