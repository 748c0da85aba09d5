"""Add P2P boot to a piCore boot partition: a directory, or a FAT image of it (bare or in an MBR disk).

``remaster_bootdir`` edits ``config.txt`` + ``cmdline.txt`` as piCore ships them: ``tce-ipfs.gz`` is
appended to every ``initramfs`` list, ``tce=ipfs:<CID>`` and the codes go into each cmdline file -- in
place, or into a copy. ``remaster_bootimage`` does the same to a FAT image through mtools (no mount,
no root), all or nothing: the image changes only once every check has passed.
"""

from __future__ import annotations

import logging
import os
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path

from tce_ipfs import proc
from tce_ipfs.arch import Arch
from tce_ipfs.errors import RemasterError, UsageError
from tce_ipfs.media import bootcfg
from tce_ipfs.media.detect import check_requested_arch, detect_arch
from tce_ipfs.media.iso import is_iso, tree_manifest
from tce_ipfs.media.p2p import P2P_NAME, P2PBoot, check_output, scratch

log = logging.getLogger(__name__)

# The names piCore's firmware looks for when config.txt names no kernel (newest Pi first).
PI_KERNELS = ("kernel8.img", "kernel7l.img", "kernel7.img", "kernel.img")


# ----------------------------------------------------------------------------- piCore boot partition

@dataclass
class BootDirLayout:
    root: Path
    config: Path
    cmdlines: list[Path]
    kernels: list[Path]
    initramfs: list[list[str]]


def detect_bootdir(root: Path) -> BootDirLayout:
    missing = []
    config = root / "config.txt"
    if not config.is_file():
        raise RemasterError(f"{root} is neither an ISO nor a piCore boot partition; missing: config.txt")
    pi = bootcfg.parse_config_txt(config.read_text(errors="replace"))
    if not pi.initramfs:
        missing.append("an `initramfs FILE[,FILE...] followkernel` line in config.txt")
    cmdlines = [root / c for c in pi.cmdlines]
    missing += [f"{c.name} (cmdline file)" for c in cmdlines if not c.is_file()]
    for files in pi.initramfs:
        missing += [f"{f} (initramfs listed in config.txt)" for f in files
                    if f != P2P_NAME and not (root / f).is_file()]
    kernels = [root / k for k in pi.kernels if (root / k).is_file()]
    if not kernels:
        kernels = [p for p in (root / n for n in PI_KERNELS) if p.is_file()]
    if not kernels:
        missing.append("a kernel (`kernel FILE` in config.txt, or kernel8.img / kernel7l.img)")
    if missing:
        raise RemasterError("not a piCore boot partition; missing: " + "; ".join(missing))
    return BootDirLayout(root=root, config=config, cmdlines=cmdlines, kernels=kernels,
                         initramfs=pi.initramfs)


@dataclass
class BootDirResult:
    output: Path
    arch: Arch
    cid: str
    cmdline: str
    initramfs: list[list[str]]

    def as_dict(self) -> dict[str, object]:
        return {"output": str(self.output), "arch": str(self.arch), "cid": self.cid,
                "cmdline": self.cmdline, "initramfs": self.initramfs}


def remaster_bootdir(src: Path, boot: P2PBoot, *, out: Path | None = None,
                     arch: Arch | None = None) -> BootDirResult:
    """Add the P2P initramfs and ``tce=ipfs:`` to a piCore boot partition (in place, or a copy at ``out``)."""
    layout = detect_bootdir(src)
    if out is not None:
        if out.exists():
            raise UsageError(f"{out} exists; give a new directory (or no -o to edit {src} in place)")
        check_output(out, [src])
    rootfs = next(src / f for f in layout.initramfs[0] if f != P2P_NAME)
    report = detect_arch(layout.kernels, rootfs)
    target = check_requested_arch(report, arch, src.name)
    cmdline_text = {c: c.read_text(errors="replace") for c in layout.cmdlines}
    config_text = bootcfg.edit_config_txt(layout.config.read_text(errors="replace"), P2P_NAME)

    with scratch() as tmp:
        p2p = boot.write_initrd(target, tmp / P2P_NAME)
        new_cmdlines = {}
        for path, text in cmdline_text.items():
            first = text.splitlines()[0] if text.strip() else ""
            new_cmdlines[path.name] = boot.cmdline(first) + "\n"
        dest = src
        if out is not None:
            staged = tmp / "copy"
            shutil.copytree(src, staged, symlinks=True)
            dest = staged
        _replace(dest / P2P_NAME, p2p.read_bytes())
        _replace(dest / "config.txt", config_text.encode())
        for name, text in new_cmdlines.items():
            _replace(dest / name, text.encode())
        if out is not None:
            shutil.move(dest, out)
            dest = out
    cmdline = new_cmdlines[layout.cmdlines[0].name].strip()
    return BootDirResult(output=dest, arch=target, cid=boot.cid, cmdline=cmdline,
                         initramfs=bootcfg.parse_config_txt(config_text).initramfs)


def _replace(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tce-ipfs-tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


# ------------------------------------------------------------------- piCore boot partition as an image

SECTOR = 512
MBR_GPT_PROTECTIVE = 0xEE
MTOOLS_ENV = {"MTOOLS_SKIP_CHECK": "1"}  # images from other tools may have odd geometry: don't refuse


def _fat_boot_sector(sector: bytes) -> bool:
    """A FAT12/16 (fs type at 0x36) or FAT32 (at 0x52) boot sector with the 0x55AA signature."""
    return (len(sector) >= SECTOR and sector[510:512] == b"\x55\xaa"
            and (sector[0x36:0x39] == b"FAT" or sector[0x52:0x57] == b"FAT32"))


def fat_image_offset(path: Path) -> int | None:
    """Byte offset of the FAT boot partition in ``path``, or None when it is no FAT/MBR disk image.

    0 for a bare partition image (``piCore-boot.img``); for a whole-disk image with an MBR partition
    table, the first partition's start (piCore's boot partition). GPT is refused, as is an MBR whose
    first partition is not FAT. An ISO is none (a hybrid ISO carries an MBR too).
    """
    if not path.is_file() or is_iso(path):
        return None
    with path.open("rb") as fh:
        mbr = fh.read(SECTOR)
        if len(mbr) < SECTOR or mbr[510:512] != b"\x55\xaa":
            return None
        if _fat_boot_sector(mbr):
            return 0
        parts = [struct.unpack_from("<B3xB3xII", mbr, 446 + 16 * i) for i in range(4)]
        used = [(ptype, lba, count) for _status, ptype, lba, count in parts if ptype and count]
        if not used:
            return None
        if any(ptype == MBR_GPT_PROTECTIVE for ptype, _, _ in used):
            raise RemasterError(f"{path.name}: a GPT disk image; only MBR (piCore's layout) or a bare FAT "
                                "boot-partition image is supported",
                                hint="extract the boot partition (dd with its offset) and remaster that")
        ptype, lba = int(used[0][0]), int(used[0][1])
        fh.seek(lba * SECTOR)
        if not _fat_boot_sector(fh.read(SECTOR)):
            raise RemasterError(f"{path.name}: first partition (type 0x{ptype:02x}, sector {lba}) is not a "
                                "FAT boot partition")
        return lba * SECTOR


def _mtools_image(image: Path, offset: int) -> str:
    return f"{image}@@{offset}" if offset else str(image)


def fat_list(image: Path, offset: int = 0) -> dict[str, str]:
    """Every file in a FAT image: case-folded path -> path as stored (FAT names are case-insensitive)."""
    out = proc.run(["mdir", "-/", "-b", "-i", _mtools_image(image, offset), "::"], env=MTOOLS_ENV,
                   what=f"listing {image.name}", timeout=120)
    files = {}
    for line in (out.stdout or b"").decode(errors="replace").splitlines():
        name = line.strip().removeprefix("::/")
        if name and not name.endswith("/"):
            files[name.casefold()] = name
    return files


def fat_read(image: Path, name: str, dest: Path, offset: int = 0) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    proc.run(["mcopy", "-n", "-i", _mtools_image(image, offset), f"::/{name}", dest], env=MTOOLS_ENV,
             what=f"reading {name} from {image.name}", timeout=300)


def fat_write(image: Path, src: Path, name: str, offset: int = 0) -> None:
    proc.run(["mcopy", "-o", "-D", "o", "-i", _mtools_image(image, offset), src, f"::/{name}"],
             env=MTOOLS_ENV, what=f"writing {name} into {image.name}", timeout=300)


def _bootimg_needed(config: str) -> set[str]:
    """Files of a piCore boot partition the directory code reads: config, cmdlines, kernels, initramfs
    (and a P2P initrd already there, so that an unchanged one is not written again)."""
    pi = bootcfg.parse_config_txt(config)
    names = {"config.txt", P2P_NAME, *pi.cmdlines, *pi.kernels, *PI_KERNELS}
    for files in pi.initramfs:
        names.update(files)
    return names


def remaster_bootimage(src: Path, boot: P2PBoot, *, out: Path | None = None,
                       arch: Arch | None = None) -> BootDirResult:
    """``remaster_bootdir`` for a FAT boot-partition image (bare or the first MBR partition), via mtools.

    No mount (no root): the files the directory code reads are copied out into a scratch directory,
    ``remaster_bootdir`` edits them there (every check runs first), and the changed/added files are
    written into a copy of the image that then replaces the output (``out``, or ``src`` in place -- as
    with a directory) by one ``rename``. A refusal or a failed write (e.g. a full FAT) leaves ``src``
    byte-identical and no output behind.
    """
    if out is not None:
        if out.exists():
            raise UsageError(f"{out} exists; give a new image name (or no -o to edit {src} in place)")
        check_output(out, [src])
    offset = fat_image_offset(src)
    if offset is None:
        raise RemasterError(f"{src.name} is not a FAT boot-partition image (no FAT boot sector or MBR)")
    final = out if out is not None else src
    with scratch() as tmp:
        stored = fat_list(src, offset)
        if "config.txt" not in stored:
            raise RemasterError(f"{src.name}: a FAT image but not a piCore boot partition; "
                                "missing: config.txt")
        root = tmp / src.name  # named like the image: the directory code's messages name it
        root.mkdir()
        fat_read(src, stored["config.txt"], root / "config.txt", offset)
        for name in sorted(_bootimg_needed((root / "config.txt").read_text(errors="replace"))):
            if name != "config.txt" and name.casefold() in stored:
                fat_read(src, stored[name.casefold()], root / name, offset)
        before = tree_manifest(root)
        res = remaster_bootdir(root, boot, arch=arch)
        changed = [n for n, digest in tree_manifest(root).items() if before.get(n) != digest]
        staged = final.with_name(f".{final.name}.tce-ipfs-tmp")
        try:
            if not changed and out is None:  # already up to date: leave the image as it is
                return BootDirResult(output=final, arch=res.arch, cid=res.cid, cmdline=res.cmdline,
                                     initramfs=res.initramfs)
            shutil.copyfile(src, staged)
            shutil.copymode(src, staged)
            for name in changed:
                fat_write(staged, root / name, stored.get(name.casefold(), name), offset)
            os.replace(staged, final)
        finally:
            staged.unlink(missing_ok=True)
    log.info("%s: wrote %s", final.name, ", ".join(changed) or "nothing (already up to date)")
    return BootDirResult(output=final, arch=res.arch, cid=res.cid, cmdline=res.cmdline,
                         initramfs=res.initramfs)
