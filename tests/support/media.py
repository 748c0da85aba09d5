"""Fake boot media for remaster/netboot tests: kernels with real headers, cpio initrds, .tcz files.

Fast stand-ins for the real test base: the code under test reads headers, cpio members and ELF headers
only, so a few KiB per file exercise the same paths as a 30 MB kernel.
"""

from __future__ import annotations

import gzip
import hashlib
import struct
from pathlib import Path

from tce_ipfs import proc
from tce_ipfs.arch import Arch

CID = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"
CID2 = "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn"
# A seed as a guest sees it (syntax only: nothing listens there).
PEER = "/ip4/10.0.2.100/tcp/4001/p2p/12D3KooWGzxzKZYveHXtpG6AsrUJBcWxHBFS2HsEoGTxrMLvKXtf"

_ELF = {Arch.X86_64: (2, 62), Arch.X86: (1, 3), Arch.AARCH64: (2, 183), Arch.ARMV7: (1, 40)}


def elf_header(arch: Arch) -> bytes:
    cls, machine = _ELF[arch]
    head = b"\x7fELF" + bytes([cls, 1, 1]) + bytes(9) + struct.pack("<HHI", 2, machine, 1)
    return head + bytes(64 - len(head))


def fake_kernel(arch: Arch) -> bytes:
    if arch in (Arch.X86_64, Arch.X86):
        data = bytearray(0x1000)
        data[0:2] = b"MZ"
        data[0x202:0x206] = b"HdrS"
        struct.pack_into("<H", data, 0x206, 0x020F)
        struct.pack_into("<H", data, 0x236, 0x7F if arch is Arch.X86_64 else 0x0)
        return bytes(data)
    if arch is Arch.AARCH64:
        data = bytearray(0x1000)
        data[0x38:0x3C] = b"ARM\x64"
        return gzip.compress(bytes(data), mtime=0)  # Debian's vmlinuz for arm64 is Image.gz
    data = bytearray(0x1000)
    struct.pack_into("<I", data, 0x24, 0x016F2818)
    return bytes(data)


def cpio_listing(gz: Path) -> list[str]:
    """`cpio -itv` of a gzip'd newc archive (GNU cpio validates the format as it goes)."""
    out = proc.output(["cpio", "-itvn", "--quiet"], input=gzip.decompress(gz.read_bytes()))
    return out.splitlines()


def cpio_gz(files: dict[str, bytes], work: Path) -> bytes:
    """A gzip'd newc cpio of ``files`` (built with the cpio tool, independent of tce_ipfs.media.cpio)."""
    tree = work / hashlib.sha256(repr(sorted(files)).encode()).hexdigest()[:12]
    for name, data in files.items():
        path = tree / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    names = sorted(str(p.relative_to(tree)) for p in tree.rglob("*"))
    out = proc.run(["cpio", "-o", "-H", "newc", "--quiet", "--reproducible"], cwd=tree,
                   input="\n".join(names).encode() + b"\n")
    return gzip.compress(out.stdout, mtime=0)


def fake_core(arch: Arch, work: Path, *, loader: bool = True) -> bytes:
    """A core.gz-like initrd whose userland is ``arch`` (busybox ELF, and TC's ld-linux name)."""
    files = {"bin/busybox": elf_header(arch) + b"busybox", "etc/os-release": b"NAME=TinyCore\n",
             "init": b"#!/bin/sh\n"}
    if loader:
        files[arch.info.ld_so.lstrip("/")] = elf_header(arch)
    return cpio_gz(files, work)


def fake_tcz(arch: Arch, out: Path) -> Path:
    tree = out.parent / (out.name + ".tree")
    (tree / "usr/local/bin").mkdir(parents=True, exist_ok=True)
    (tree / "usr/local/bin/ipfs").write_bytes(elf_header(arch) + b"kubo")
    proc.run(["mksquashfs", tree, out, "-noappend", "-quiet", "-all-root"])
    return out


def fake_p2p_initrd(arch: Arch, out: Path) -> Path:
    """A stand-in for initrd.build_hook_initrd's output: hook marker + ipfs.tcz of ``arch``."""
    tcz = fake_tcz(arch, out.parent / f"ipfs-{arch}.tcz")
    out.write_bytes(cpio_gz({"tmp/builtin/optional/ipfs.tcz": tcz.read_bytes(),
                             "usr/local/lib/tce-ipfs/marker": b"fake hook\n"}, out.parent))
    return out


def fake_iso(arch: Arch, work: Path, **kw: object) -> Path:
    from tce_ipfs.testbed import testmedia

    work.mkdir(parents=True, exist_ok=True)
    kernel = work / "kernel"
    kernel.write_bytes(fake_kernel(arch))
    core = work / "core.gz"
    core.write_bytes(fake_core(arch, work))
    return testmedia.make_test_iso(work / f"in-{arch}.iso", kernel, core, arch=arch, **kw)  # type: ignore[arg-type]


# ------------------------------------------------------------------- piCore boot-partition FAT images

MIB = 1024 * 1024


def fat_image(out: Path, files: dict[str, bytes], *, size_mib: int = 16, fat32: bool = False,
              partitioned: bool = False) -> Path:
    """A FAT boot-partition image holding ``files``: bare (mkfs.vfat), or a whole-disk image with an MBR
    whose one FAT (type 0x0c) partition starts at 1 MiB (piCore's layout; mformat at that offset)."""
    sectors = size_mib * MIB // 512
    with out.open("wb") as fh:
        fh.truncate((size_mib + 1 if partitioned else size_mib) * MIB)
    target = str(out)
    if partitioned:
        mbr = bytearray(512)
        struct.pack_into("<B3xB3xII", mbr, 446, 0x00, 0x0C, MIB // 512, sectors)
        mbr[510:512] = b"\x55\xaa"
        with out.open("r+b") as fh:
            fh.write(mbr)
        target = f"{out}@@{MIB}"
        proc.run(["mformat", "-i", target, "-T", str(sectors), "-v", "PIBOOT", "::"],
                 env={"MTOOLS_SKIP_CHECK": "1"})
    else:
        proc.run(["mkfs.vfat", *(["-F", "32"] if fat32 else []), "-n", "PIBOOT", out])
    tree = out.parent / (out.name + ".files")
    tree.mkdir(exist_ok=True)
    for name, data in files.items():
        (tree / name).write_bytes(data)
        proc.run(["mcopy", "-i", target, tree / name, f"::/{name}"], env={"MTOOLS_SKIP_CHECK": "1"})
    return out


def fat_read(image: Path, name: str, offset: int = 0) -> bytes:
    """One file's bytes from a FAT image (mtools, independent of the code under test)."""
    target = f"{image}@@{offset}" if offset else str(image)
    out = proc.run(["mcopy", "-n", "-i", target, f"::/{name}", "-"], env={"MTOOLS_SKIP_CHECK": "1"})
    return bytes(out.stdout or b"")
