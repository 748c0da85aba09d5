"""Which arch boot media are for, read from the files themselves (never from their names).

* ``kernel_arch``: x86 bzImage (64-bit flag), arm64 ``Image`` (also gzip'd, Debian's ``vmlinuz``), 32-bit
  ARM ``zImage``, ELF ``vmlinux``;
* ``userland_arch``: the dynamic loader TC's ``getBuild`` looks for in an initrd, else ``/bin/busybox``;
* ``detect_arch`` cross-checks kernel(s) and userland (``RUNS``: a 64-bit kernel may run 32-bit
  userland, as TC's Core64 and piCore on a Pi 4 do); the *target* -- what ``ipfs.tcz`` and the repo
  must be built for -- is the userland's arch;
* ``tcz_ipfs_arch``: the arch of ``usr/local/bin/ipfs`` inside an ``ipfs.tcz``.
"""

from __future__ import annotations

import struct
import tempfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tce_ipfs import proc
from tce_ipfs.arch import Arch
from tce_ipfs.errors import RemasterError, TceIpfsError
from tce_ipfs.media import cpio

# Which userland a kernel can run (a 64-bit kernel runs 32-bit binaries: TC's Core64 is an x86_64
# kernel with x86 userland; piCore on a Pi 4 may run a v8 kernel under armhf userland).
RUNS = {
    Arch.X86_64: (Arch.X86_64, Arch.X86),
    Arch.X86: (Arch.X86,),
    Arch.AARCH64: (Arch.AARCH64, Arch.ARMV7),
    Arch.ARMV7: (Arch.ARMV7,),
}


def kernel_arch(data: bytes) -> Arch | None:
    """The arch a kernel image is for, from its header (None when it is none we know).

    * x86 bzImage: boot protocol magic ``HdrS`` at 0x202; ``xloadflags`` (protocol >= 2.12, at 0x236)
      bit 0 ``XLF_KERNEL_64`` marks a 64-bit kernel;
    * arm64 ``Image``: magic ``ARM\\x64`` at 0x38 (also inside a gzip'd ``Image.gz``, Debian's vmlinuz);
    * 32-bit ARM ``zImage``: magic 0x016F2818 at 0x24;
    * an ELF ``vmlinux``: e_machine.
    """
    if len(data) >= 0x240 and data[0x202:0x206] == b"HdrS":
        version = struct.unpack_from("<H", data, 0x206)[0]
        if version < 0x020C:
            return None
        xloadflags = struct.unpack_from("<H", data, 0x236)[0]
        return Arch.X86_64 if xloadflags & 0x1 else Arch.X86
    if len(data) >= 0x40 and data[0x38:0x3C] == b"ARM\x64":
        return Arch.AARCH64
    if len(data) >= 0x28 and struct.unpack_from("<I", data, 0x24)[0] == 0x016F2818:
        return Arch.ARMV7
    if data[:2] == b"\x1f\x8b":
        try:
            head = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data, 0x1000)
        except zlib.error:
            return None
        return kernel_arch(head)
    if data[:4] == b"\x7fELF":
        return elf_arch(data)
    return None


def elf_arch(data: bytes) -> Arch | None:
    """Arch of an ELF header (class, byte order, e_machine) -- enough for "what userland is this"."""
    if len(data) < 20 or data[:4] != b"\x7fELF" or data[5] != 1:  # little-endian only
        return None
    elf_class = {1: 32, 2: 64}.get(data[4])
    machine = struct.unpack_from("<H", data, 18)[0]
    names = {3: "EM_386", 62: "EM_X86_64", 40: "EM_ARM", 183: "EM_AARCH64"}
    for arch in Arch:
        if arch.info.elf_machine == names.get(machine) and arch.info.elf_class == elf_class:
            return arch
    return None


def cpio_files(data: bytes) -> dict[str, bytes]:
    """Path (no leading ``/`` or ``./``) -> content of every regular file or symlink in a cpio stream."""
    files: dict[str, bytes] = {}
    for member in cpio.parse_cpio(data):
        name = str(member.name).lstrip("./").lstrip("/")
        files[name] = bytes(member.data)
    return files


def userland_arch(initrd_path: Path) -> Arch | None:
    """Arch of an initrd's userland: the dynamic loader TC's ``getBuild`` looks for, else /bin/busybox."""
    try:
        files = cpio_files(cpio.read_initrd(initrd_path))
    except TceIpfsError:
        raise
    except Exception as exc:  # a corrupt archive: say which file
        raise RemasterError(f"{initrd_path.name}: not a readable initrd ({exc})") from None
    for arch in Arch:
        if arch.info.ld_so.lstrip("/") in files:
            target = files[arch.info.ld_so.lstrip("/")]
            found = elf_arch(target)
            if found is not None:
                return found
            return arch  # a symlink (its target's name is not an ELF): the name is TC's own test
    for name in ("bin/busybox", "sbin/init", "init"):
        found = elf_arch(files.get(name, b""))
        if found is not None:
            return found
    return None


def _head(path: Path, size: int = 0x10000) -> bytes:
    with path.open("rb") as fh:
        return fh.read(size)


@dataclass
class ArchReport:
    kernel: Arch | None
    userland: Arch | None

    @property
    def target(self) -> Arch | None:
        """What P2P binaries and the repo must be for: the userland's (TC's getBuild), else the kernel's."""
        return self.userland or self.kernel


def detect_arch(kernels: Sequence[Path], initrd_path: Path | None) -> ArchReport:
    """Detect and cross-check kernel(s) and userland; raise ``RemasterError`` if they cannot work together."""
    karchs: dict[Path, Arch | None] = {k: kernel_arch(_head(k)) for k in kernels}
    userland = userland_arch(initrd_path) if initrd_path else None
    known = {a for a in karchs.values() if a is not None}
    if userland is None and len(known) > 1:
        raise RemasterError("kernels of different arches and no userland arch to choose: "
                            + ", ".join(f"{k.name}={a}" for k, a in karchs.items()))
    for path, karch in karchs.items():
        if karch is not None and userland is not None and userland not in RUNS[karch]:
            raise RemasterError(f"arch mismatch: kernel {path.name} is {karch}, "
                                f"its initrd's userland is {userland}")
    kernel = next(iter(known)) if len(known) == 1 else None
    if kernel is None and userland is None:
        names = ", ".join(k.name for k in kernels)
        raise RemasterError(f"cannot tell the arch of {names} (not a bzImage/arm64 Image/zImage/ELF) "
                            "nor of the initrd's userland")
    if len(known) > 1 and userland is not None:
        kernel = max(known, key=lambda a: a.is_64bit)
    return ArchReport(kernel=kernel, userland=userland)


def check_requested_arch(report: ArchReport, requested: Arch | None, what: str) -> Arch:
    target = report.target
    assert target is not None
    if requested is not None and requested is not target:
        detail = f"kernel {report.kernel}" + (f", userland {report.userland}" if report.userland else "")
        raise RemasterError(f"arch mismatch: --arch {requested} but {what} is {target} ({detail})",
                            hint=f"use --arch {target} (or leave --arch out: it is detected)")
    return target


def tcz_ipfs_arch(tcz: Path) -> Arch | None:
    """Arch of ``usr/local/bin/ipfs`` inside a ``.tcz`` (squashfs), read with unsquashfs."""
    with tempfile.TemporaryDirectory(prefix="tce-ipfs-tcz-") as tmp:
        dest = Path(tmp) / "x"
        proc.run(["unsquashfs", "-n", "-no-xattrs", "-d", dest, tcz, "usr/local/bin/ipfs"],
                 what=f"reading {tcz.name}", timeout=300)
        binary = dest / "usr/local/bin/ipfs"
        if not binary.is_file():
            raise RemasterError(f"{tcz.name} has no usr/local/bin/ipfs")
        with binary.open("rb") as fh:
            return elf_arch(fh.read(64))
