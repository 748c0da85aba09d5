"""Add P2P boot (``tce=ipfs:<CID>``) to Tiny Core boot media: an ISO, or a piCore boot partition.

ISO (``remaster_iso``):

1. every check first -- CID syntax, boot codes, ISO 9660 signature, TC layout (isolinux config, the
   default entry's kernel and initrd), arch of kernel and userland (from the files, never the names),
   the ``ipfs.tcz`` arch -- in a scratch directory; nothing is written next to the output until all
   pass, and the output appears by one ``rename`` at the very end;
2. the P2P initrd goes in as ``boot/tce-ipfs.gz``: a second initrd (``INITRD /boot/core.gz,
   /boot/tce-ipfs.gz``; isolinux takes comma lists), or with ``append_initrd`` the base initrd and the
   P2P one concatenated into that file (for loaders that take one initrd). ``core.gz`` itself is never
   changed, so the original entries boot exactly as before;
3. ``isolinux.cfg`` gets one ``LABEL tce-ipfs`` block (``bootcfg``): remastering a remastered ISO
   replaces it, never adds a second;
4. ``xorriso -as mkisofs`` with Tiny Core's flags plus an isohybrid MBR; El Torito images after the
   BIOS one (EFI) are carried over as xorriso reports them (``-report_el_torito as_mkisofs``).

Boot partition (``remaster_bootdir``): ``config.txt`` + ``cmdline.txt`` as piCore ships them; as a FAT
image (``remaster_bootimage``: bare, or the first partition of an MBR disk image) through mtools, no mount.

Compression: gzip by default -- Tiny Core's kernels are built with gzip initramfs support only;
zstd (via ``zstandard``) needs a kernel with ``CONFIG_RD_ZSTD`` (Debian's have it).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import shlex
import shutil
import struct
import tempfile
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tce_ipfs import cidtext, proc
from tce_ipfs.arch import Arch
from tce_ipfs.errors import RemasterError, TceIpfsError, UsageError
from tce_ipfs.media import bootcfg, initrd

log = logging.getLogger(__name__)

P2P_NAME = "tce-ipfs.gz"
ISOHYBRID_MBR = Path("/usr/lib/ISOLINUX/isohdpfx.bin")
ISOLINUX_BIN = Path("/usr/lib/ISOLINUX/isolinux.bin")
SYSLINUX_BIOS = Path("/usr/lib/syslinux/modules/bios")
CFG_CANDIDATES = ("boot/isolinux/isolinux.cfg", "isolinux/isolinux.cfg", "boot/syslinux/syslinux.cfg")
# (kernel, initrd) pairs as Tiny Core ships them: Core / TinyCore / CorePlus, and CorePure64.
TC_PAIRS = (("boot/vmlinuz", "boot/core.gz"), ("boot/vmlinuz64", "boot/corepure64.gz"))
COMPRESSIONS = ("gzip", "zstd")

# Which userland a kernel can run (a 64-bit kernel runs 32-bit binaries: TC's Core64 is an x86_64
# kernel with x86 userland; piCore on a Pi 4 may run a v8 kernel under armhf userland).
RUNS = {
    Arch.X86_64: (Arch.X86_64, Arch.X86),
    Arch.X86: (Arch.X86,),
    Arch.AARCH64: (Arch.AARCH64, Arch.ARMV7),
    Arch.ARMV7: (Arch.ARMV7,),
}


# ------------------------------------------------------------------------------------ arch detection

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


def _cpio_files(data: bytes) -> dict[str, bytes]:
    """Path (no leading ``/`` or ``./``) -> content of every regular file or symlink in a cpio stream."""
    files: dict[str, bytes] = {}
    for member in initrd.parse_cpio(data):
        name = str(member.name).lstrip("./").lstrip("/")
        files[name] = bytes(member.data)
    return files


def userland_arch(initrd_path: Path) -> Arch | None:
    """Arch of an initrd's userland: the dynamic loader TC's ``getBuild`` looks for, else /bin/busybox."""
    try:
        files = _cpio_files(initrd.read_initrd(initrd_path))
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


# ------------------------------------------------------------------------------------ ipfs.tcz check

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


def check_tcz_arch(tcz: Path, target: Arch) -> None:
    found = tcz_ipfs_arch(tcz)
    if found is not target:
        raise RemasterError(f"arch mismatch: {tcz.name} holds a {found or 'non-Linux/unknown'} ipfs binary, "
                            f"the boot media is {target}",
                            hint=f"build it for {target}: tce-ipfs tcz build ipfs --arch {target}")


def check_p2p_initrd_arch(path: Path, target: Arch) -> None:
    """The P2P initrd's ``ipfs.tcz`` must match ``target`` (checked whether we built it or not)."""
    files = _cpio_files(initrd.read_initrd(path))
    tczs = [n for n in files if n.endswith("/ipfs.tcz")]
    if not tczs:
        raise RemasterError(f"{path.name} is not a P2P boot initrd (no ipfs.tcz inside)")
    with tempfile.TemporaryDirectory(prefix="tce-ipfs-p2p-") as tmp:
        tcz = Path(tmp) / "ipfs.tcz"
        tcz.write_bytes(files[tczs[0]])
        check_tcz_arch(tcz, target)


def build_p2p_initrd(arch: Arch, out: Path, *, ipfs_tcz: Path | None, p2p_initrd: Path | None,
                     compression: str) -> Path:
    """The P2P initrd for ``arch`` at ``out``: a given one (checked) or ``initrd.build_hook_initrd``."""
    if compression not in COMPRESSIONS:
        raise UsageError(f"unknown compression {compression!r}", hint="use gzip or zstd")
    if compression == "zstd" and p2p_initrd is None:
        log.warning("zstd initrd: needs a kernel with CONFIG_RD_ZSTD; Tiny Core's own kernels take gzip only")
    if p2p_initrd is not None:
        shutil.copyfile(p2p_initrd, out)
    else:
        if ipfs_tcz is not None:
            check_tcz_arch(ipfs_tcz, arch)
        initrd.build_hook_initrd(arch, out, ipfs_tcz=ipfs_tcz, compression=compression)
    check_p2p_initrd_arch(out, arch)
    return out


# ----------------------------------------------------------------------------------------- ISO files

def _is_iso(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            fh.seek(0x8001)
            return fh.read(5) == b"CD001"
    except OSError:
        return False


def _xorriso_report(iso: Path, *args: str) -> str:
    # Absolute: as_mkisofs names the input by this path in --interval:local_fs:...:PATH. A boot image
    # xorriso cannot re-enable (an EFI image outside the tree) is a SORRY, not a failure: report anyway.
    out = proc.run(["xorriso", "-return_with", "FAILURE", "32", "-indev", iso.resolve(), *args],
                   what=f"reading {iso.name}", timeout=120)
    return (out.stdout or b"").decode(errors="replace")


def volume_id(iso: Path) -> str:
    for line in _xorriso_report(iso, "-pvd_info").splitlines():
        if line.startswith("Volume Id"):
            return line.split(":", 1)[1].strip() or "TCE-IPFS"
    return "TCE-IPFS"


@dataclass
class BootImage:
    num: str
    platform: str  # "BIOS" or "UEFI"
    lba: int  # 2048-byte blocks
    path: str | None = None  # in the ISO tree, when it is a file there
    blocks: int = 0  # 2048-byte blocks, when it is not a file


@dataclass
class ElTorito:
    catalog: str | None = None  # ISO path of boot.cat
    bios_image: str | None = None
    images: list[BootImage] = field(default_factory=list)
    append_partitions: list[list[str]] = field(default_factory=list)  # [N, type, interval]
    flags: list[str] = field(default_factory=list)  # -appended_part_as_gpt, -part_like_isohybrid

    @property
    def efi(self) -> bool:
        return any(img.platform == "UEFI" for img in self.images)

    def alt_args(self, tree: Path) -> list[str]:
        """mkisofs args re-creating every image after the BIOS one (EFI), and appended partitions.

        An image that is a file in the tree is named by path; one in an appended partition refers to
        that partition; any other hidden image is copied out of the input into ``tree`` first.
        """
        args: list[str] = []
        for part in self.append_partitions:
            args += ["-append_partition", *part]
        args += self.flags
        for img in self.images:
            if img.platform == "BIOS" and img.path == self.bios_image:
                continue
            args += ["-eltorito-alt-boot", "-e"]
            if img.path is not None:
                args.append(img.path)
            else:
                num = self._partition_at(img.lba)
                if num is not None:
                    args.append(f"--interval:appended_partition_{num}:all::")
                else:
                    args.append(f"boot/tce-ipfs-eltorito-{img.num}.img")
            args.append("-no-emul-boot")
            if img.platform == "UEFI" and img.path is not None and not self.append_partitions:
                args.append("-isohybrid-gpt-basdat")
        return args

    def _partition_at(self, lba: int) -> str | None:
        for num, _type, interval in self.append_partitions:
            m = re.match(r"--interval:local_fs:(\d+)d-", interval)
            if m and int(m.group(1)) == lba * 4:
                return num
        return None

    def hidden_images(self) -> list[BootImage]:
        """Images neither in the tree nor in an appended partition (copied into the tree by bytes)."""
        return [i for i in self.images
                if i.path is None and i.platform != "BIOS" and self._partition_at(i.lba) is None]


def el_torito(iso: Path) -> ElTorito:
    """What the input boots with (``-report_el_torito plain`` and ``as_mkisofs``)."""
    info = ElTorito()
    images: dict[str, BootImage] = {}
    for line in _xorriso_report(iso, "-report_el_torito", "plain").splitlines():
        head, _, rest = line.partition(":")
        head = head.strip()
        words = rest.split()
        if head == "El Torito cat path":
            info.catalog = rest.strip().lstrip("/")
        elif head == "El Torito boot img" and len(words) >= 8:
            images[words[0]] = BootImage(num=words[0], platform=words[1], lba=int(words[7]))
        elif head == "El Torito img path" and len(words) >= 2 and words[0] in images:
            images[words[0]].path = rest.split(None, 1)[1].strip().lstrip("/")
        elif head == "El Torito img blks" and len(words) >= 2 and words[0] in images:
            images[words[0]].blocks = int(words[1])
    info.images = list(images.values())
    bios = [i for i in info.images if i.platform == "BIOS"]
    info.bios_image = bios[0].path if bios else None
    if len(info.images) > 1:
        tokens = shlex.split(_xorriso_report(iso, "-report_el_torito", "as_mkisofs"))
        pos = 0
        while pos < len(tokens):
            if tokens[pos] == "-append_partition" and pos + 3 < len(tokens):
                info.append_partitions.append(tokens[pos + 1:pos + 4])
                pos += 4
                continue
            if tokens[pos] in ("-appended_part_as_gpt", "-part_like_isohybrid"):
                info.flags.append(tokens[pos])
            pos += 1
    return info


def copy_hidden_images(iso: Path, torito: ElTorito, tree: Path) -> None:
    for img in torito.hidden_images():
        if not img.blocks:
            raise RemasterError(f"cannot tell the size of El Torito image {img.num} ({img.platform}) "
                                f"in {iso.name}, so it cannot be carried over")
        with iso.open("rb") as fh:
            fh.seek(img.lba * 2048)
            data = fh.read(img.blocks * 2048)
        (tree / f"boot/tce-ipfs-eltorito-{img.num}.img").write_bytes(data)


def extract_iso(iso: Path, dest: Path) -> None:
    proc.run(["xorriso", "-osirrox", "on", "-indev", iso, "-extract", "/", dest],
             what=f"extracting {iso.name}", timeout=600)
    for root, dirs, files in os.walk(dest):
        for name in dirs + files:
            path = Path(root) / name
            if not path.is_symlink():
                path.chmod(path.stat().st_mode | 0o200)
    dest.chmod(dest.stat().st_mode | 0o200)


@dataclass
class IsoLayout:
    root: Path
    cfg: str  # paths relative to the ISO root
    isolinux_bin: str
    catalog: str
    kernel: str
    initrds: list[str]
    flavour: str  # "Core", "CorePure64" or "custom" (from the layout, for messages only)
    cde: bool
    entry: str  # the label the P2P entry is based on


def _iso_path(root: Path, ref: str, cfg_dir: str) -> str:
    """A syslinux file reference -> path relative to the ISO root (absolute, or relative to the cfg)."""
    ref = ref.strip()
    rel = ref.lstrip("/") if ref.startswith("/") else str(Path(cfg_dir) / ref)
    return os.path.normpath(rel)


def detect_layout(root: Path, torito: ElTorito | None = None) -> IsoLayout:
    """Tiny Core's ISO layout in an extracted tree; ``RemasterError`` lists everything missing."""
    missing: list[str] = []
    cfg = next((c for c in CFG_CANDIDATES if (root / c).is_file()), None)
    if cfg is None:
        missing.append("boot/isolinux/isolinux.cfg (isolinux boot menu)")
    cfg_dir = str(Path(cfg).parent) if cfg else "boot/isolinux"
    bios = (torito.bios_image if torito and torito.bios_image else None) or f"{cfg_dir}/isolinux.bin"
    if not (root / bios).is_file():
        missing.append(f"{bios} (El Torito BIOS boot image)")
    pairs = [p for p in TC_PAIRS if (root / p[0]).is_file() and (root / p[1]).is_file()]
    if not pairs:
        missing.append("a kernel and its initrd: boot/vmlinuz + boot/core.gz (Core) "
                       "or boot/vmlinuz64 + boot/corepure64.gz (CorePure64)")
    kernel = initrd = None
    entry = ""
    initrds: list[str] = []
    if cfg is not None:
        text = (root / cfg).read_text(errors="replace")
        parsed = bootcfg.parse_syslinux(text)
        if not parsed.entries:
            missing.append(f"a LABEL entry in {cfg}")
        else:
            base = parsed.default_entry()
            entry = base.label
            append = parsed.global_append if base.append is None else base.append
            refs = base.initrds + bootcfg.split_initrd(append)[0]
            kernel = _iso_path(root, base.kernel, cfg_dir) if base.kernel else None
            initrds = [_iso_path(root, r, cfg_dir) for r in refs]
            if kernel is None or not (root / kernel).is_file():
                missing.append(f"the kernel of entry {entry!r} ({base.kernel or 'no KERNEL line'})")
            if not initrds:
                missing.append(f"an initrd in entry {entry!r} (INITRD or initrd=)")
            missing += [f"{i} (initrd of entry {entry!r})" for i in initrds if not (root / i).is_file()]
            initrd = initrds[0] if initrds else None
    if missing:
        raise RemasterError("not a Tiny Core ISO layout; missing: " + "; ".join(missing),
                            hint="expected boot/isolinux/{isolinux.bin,isolinux.cfg} and "
                                 "boot/vmlinuz[64] + boot/core.gz|corepure64.gz as Tiny Core ships them")
    assert cfg is not None and kernel is not None and initrd is not None
    initrds = [i for i in initrds if Path(i).name != P2P_NAME]  # a remastered ISO's default
    flavour = {"boot/core.gz": "Core", "boot/corepure64.gz": "CorePure64"}.get(initrds[0], "custom")
    catalog = (torito.catalog if torito and torito.catalog else None) or f"{cfg_dir}/boot.cat"
    return IsoLayout(root=root, cfg=cfg, isolinux_bin=bios, catalog=catalog, kernel=kernel,
                     initrds=initrds, flavour=flavour, cde=(root / "cde").is_dir(), entry=entry)


@dataclass
class RemasterResult:
    output: Path
    arch: Arch
    cid: str
    cmdline: str
    initrds: list[str]
    layout: str
    efi: bool
    compression: str
    default: bool

    def as_dict(self) -> dict[str, object]:
        return {"output": str(self.output), "arch": str(self.arch), "cid": self.cid,
                "cmdline": self.cmdline, "initrds": self.initrds, "layout": self.layout,
                "efi": self.efi, "compression": self.compression, "default": self.default}


@contextlib.contextmanager
def _scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="tce-ipfs-remaster-") as tmp:
        yield Path(tmp)


def _check_output(out: Path, inputs: Sequence[Path]) -> None:
    if not out.parent.is_dir():
        raise UsageError(f"output directory {out.parent} does not exist")
    for src in inputs:
        if out.resolve() == src.resolve():
            raise UsageError(f"output {out} is the input; write the remastered media elsewhere")


def remaster_iso(
    src: Path,
    out: Path,
    cid: str,
    *,
    arch: Arch | None = None,
    codes: Mapping[str, str | None] | None = None,
    make_default: bool = False,
    compression: str = "gzip",
    append_initrd: bool = False,
    ipfs_tcz: Path | None = None,
    p2p_initrd: Path | None = None,
) -> RemasterResult:
    """Remaster ``src`` into ``out`` (see the module doc). Nothing is written to ``out`` on refusal."""
    cid = cidtext.validate(cid, allow_path=True)
    codes = dict(codes or {})
    if compression not in COMPRESSIONS:
        raise UsageError(f"unknown compression {compression!r}", hint="use gzip or zstd")
    if not src.is_file():
        raise RemasterError(f"{src}: no such file")
    if not _is_iso(src):
        raise RemasterError(f"{src.name} is not an ISO 9660 image (no CD001 signature at byte 32769)",
                            hint="pass a Tiny Core .iso (Core, TinyCore, CorePlus, CorePure64)")
    _check_output(out, [src])
    for extra in (ipfs_tcz, p2p_initrd):
        if extra is not None and not extra.is_file():
            raise UsageError(f"{extra}: no such file")

    with _scratch() as tmp:
        torito = el_torito(src)
        tree = tmp / "tree"
        extract_iso(src, tree)
        layout = detect_layout(tree, torito)
        report = detect_arch([tree / layout.kernel], tree / layout.initrds[0])
        target = check_requested_arch(report, arch, src.name)
        log.info("%s: %s layout, %s (kernel %s), entry %r", src.name, layout.flavour, target,
                 report.kernel, layout.entry)

        p2p = build_p2p_initrd(target, tmp / P2P_NAME, ipfs_tcz=ipfs_tcz, p2p_initrd=p2p_initrd,
                               compression=compression)
        dest = tree / "boot" / P2P_NAME
        dest.parent.mkdir(parents=True, exist_ok=True)
        if append_initrd:
            with dest.open("wb") as fh:
                for part in [*(tree / i for i in layout.initrds), p2p]:
                    fh.write(part.read_bytes())
            initrds = ["/boot/" + P2P_NAME]
        else:
            shutil.copyfile(p2p, dest)
            initrds = ["/" + i for i in layout.initrds] + ["/boot/" + P2P_NAME]

        cfg_path = tree / layout.cfg
        text = bootcfg.add_p2p_entry(cfg_path.read_text(errors="replace"), cid=cid, codes=codes,
                                     initrds=initrds, make_default=make_default, base_label=layout.entry)
        cfg_path.write_text(text)
        entry = bootcfg.p2p_entry(text)
        assert entry is not None

        (tree / layout.catalog).unlink(missing_ok=True)
        copy_hidden_images(src, torito, tree)
        # Every check passed. Written beside the output and renamed: OUT is never half an ISO.
        staged = out.with_name(f".{out.name}.tce-ipfs-part")
        try:
            build_iso(tree, staged, volume=volume_id(src), bios_image=layout.isolinux_bin,
                      catalog=layout.catalog, alt_args=torito.alt_args(tree))
            os.replace(staged, out)
        finally:
            staged.unlink(missing_ok=True)
    return RemasterResult(output=out, arch=target, cid=cid, cmdline=entry.append or "", initrds=initrds,
                          layout=layout.flavour, efi=torito.efi, compression=compression,
                          default=make_default)


def build_iso(tree: Path, out: Path, *, volume: str, bios_image: str = "boot/isolinux/isolinux.bin",
              catalog: str = "boot/isolinux/boot.cat", alt_args: Sequence[str] = ()) -> None:
    """Tiny Core's mkisofs flags (book, part 2 ch. 1) through xorriso, plus an isohybrid MBR."""
    args: list[str | os.PathLike[str]] = [
        "xorriso", "-as", "mkisofs", "-o", out, "-l", "-J", "-r", "-V", volume[:32],
        "-no-emul-boot", "-boot-load-size", "4", "-boot-info-table",
        "-b", bios_image, "-c", catalog,
    ]
    if ISOHYBRID_MBR.is_file():
        args += ["-isohybrid-mbr", ISOHYBRID_MBR]
    args += list(alt_args)
    args.append(tree)
    proc.run(args, what=f"writing {out.name}", timeout=900)


def iso_manifest(iso: Path) -> dict[str, str]:
    """ISO path -> sha256 of every file (extracts to a scratch dir). For checks and tests."""
    with tempfile.TemporaryDirectory(prefix="tce-ipfs-manifest-") as tmp:
        extract_iso(iso, Path(tmp) / "t")
        return tree_manifest(Path(tmp) / "t")


def tree_manifest(root: Path) -> dict[str, str]:
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            out[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def read_iso_file(iso: Path, path: str) -> bytes:
    with tempfile.TemporaryDirectory(prefix="tce-ipfs-iso-") as tmp:
        dest = Path(tmp) / "f"
        proc.run(["xorriso", "-osirrox", "on", "-indev", iso, "-extract", "/" + path.lstrip("/"), dest],
                 what=f"reading {path} from {iso.name}", timeout=300)
        return dest.read_bytes()


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
        kernels = [p for p in (root / n for n in ("kernel8.img", "kernel7l.img", "kernel7.img",
                                                  "kernel.img")) if p.is_file()]
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


def remaster_bootdir(
    src: Path,
    cid: str,
    *,
    out: Path | None = None,
    arch: Arch | None = None,
    codes: Mapping[str, str | None] | None = None,
    compression: str = "gzip",
    ipfs_tcz: Path | None = None,
    p2p_initrd: Path | None = None,
) -> BootDirResult:
    """Add the P2P initramfs and ``tce=ipfs:`` to a piCore boot partition (in place, or a copy at ``out``)."""
    cid = cidtext.validate(cid, allow_path=True)
    codes = dict(codes or {})
    if compression not in COMPRESSIONS:
        raise UsageError(f"unknown compression {compression!r}", hint="use gzip or zstd")
    layout = detect_bootdir(src)
    if out is not None:
        if out.exists():
            raise UsageError(f"{out} exists; give a new directory (or no -o to edit {src} in place)")
        _check_output(out, [src])
    rootfs = next(src / f for f in layout.initramfs[0] if f != P2P_NAME)
    report = detect_arch(layout.kernels, rootfs)
    target = check_requested_arch(report, arch, src.name)
    cmdline_text = {c: c.read_text(errors="replace") for c in layout.cmdlines}
    config_text = bootcfg.edit_config_txt(layout.config.read_text(errors="replace"), P2P_NAME)

    with _scratch() as tmp:
        p2p = build_p2p_initrd(target, tmp / P2P_NAME, ipfs_tcz=ipfs_tcz, p2p_initrd=p2p_initrd,
                               compression=compression)
        new_cmdlines = {}
        for path, text in cmdline_text.items():
            first = text.splitlines()[0] if text.strip() else ""
            new_cmdlines[path.name] = bootcfg.edit_cmdline(first, cid, codes) + "\n"
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
    return BootDirResult(output=dest, arch=target, cid=cid, cmdline=cmdline,
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
    if not path.is_file() or _is_iso(path):
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
    names = {"config.txt", P2P_NAME, *pi.cmdlines, *pi.kernels, "kernel8.img", "kernel7l.img",
             "kernel7.img", "kernel.img"}
    for files in pi.initramfs:
        names.update(files)
    return names


def remaster_bootimage(
    src: Path,
    cid: str,
    *,
    out: Path | None = None,
    arch: Arch | None = None,
    codes: Mapping[str, str | None] | None = None,
    compression: str = "gzip",
    ipfs_tcz: Path | None = None,
    p2p_initrd: Path | None = None,
) -> BootDirResult:
    """``remaster_bootdir`` for a FAT boot-partition image (bare or the first MBR partition), via mtools.

    No mount (no root): the files the directory code reads are copied out into a scratch directory,
    ``remaster_bootdir`` edits them there (every check runs first), and the changed/added files are
    written into a copy of the image that then replaces the output (``out``, or ``src`` in place -- as
    with a directory) by one ``rename``. A refusal or a failed write (e.g. a full FAT) leaves ``src``
    byte-identical and no output behind.
    """
    cid = cidtext.validate(cid, allow_path=True)
    if out is not None:
        if out.exists():
            raise UsageError(f"{out} exists; give a new image name (or no -o to edit {src} in place)")
        _check_output(out, [src])
    offset = fat_image_offset(src)
    if offset is None:
        raise RemasterError(f"{src.name} is not a FAT boot-partition image (no FAT boot sector or MBR)")
    final = out if out is not None else src
    with _scratch() as tmp:
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
        res = remaster_bootdir(root, cid, arch=arch, codes=codes, compression=compression,
                               ipfs_tcz=ipfs_tcz, p2p_initrd=p2p_initrd)
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


# ------------------------------------------------------------------------------- test media (TESTS ONLY)

TEST_ISOLINUX_CFG = """\
SERIAL 0 115200
display boot.msg
default {label}
label {label}
\tkernel /boot/{kernel}
\tinitrd /boot/{initrd}
\tappend loglevel=3 {extra}

label {label}-base
\tkernel /boot/{kernel}
\tappend initrd=/boot/{initrd} loglevel=3 base norestore {extra}
implicit 0
prompt 1
timeout {timeout}
F1 boot.msg
"""


def make_test_iso(out: Path, kernel: Path, initrd: Path, *, arch: Arch = Arch.X86_64, efi: str | None = None,
                  cde: bool = False, extra_append: str = "console=ttyS0,115200 panic=-1",
                  timeout: int = 10) -> Path:
    """TEST ONLY: a Tiny-Core-layout ISO around a test kernel/initrd (CorePure64 names for x86_64).

    Laid out like Tiny Core's own ISOs (boot/vmlinuz64 + boot/corepure64.gz, boot/isolinux/{isolinux.bin,
    ldlinux.c32, isolinux.cfg, boot.msg}) with a serial console (``SERIAL 0`` and ``extra_append``) so
    QEMU tests can read it, and a short menu ``timeout`` (tenths of a second; TC's is 300). ``efi``:
    None, ``"file"`` (an EFI image file in the tree) or ``"appended"`` (an appended EFI partition).
    """
    names = {Arch.X86_64: ("vmlinuz64", "corepure64.gz", "corepure64"), Arch.X86: ("vmlinuz", "core.gz",
                                                                                    "microcore")}
    if arch not in names:
        raise UsageError(f"test ISOs are x86 only, not {arch}")
    kname, iname, label = names[arch]
    with tempfile.TemporaryDirectory(prefix="tce-ipfs-testiso-") as tmp:
        tree = Path(tmp) / "tree"
        iso = tree / "boot/isolinux"
        iso.mkdir(parents=True)
        shutil.copyfile(kernel, tree / "boot" / kname)
        shutil.copyfile(initrd, tree / "boot" / iname)
        shutil.copyfile(ISOLINUX_BIN, iso / "isolinux.bin")
        shutil.copyfile(SYSLINUX_BIOS / "ldlinux.c32", iso / "ldlinux.c32")
        (iso / "isolinux.cfg").write_text(TEST_ISOLINUX_CFG.format(
            label=label, kernel=kname, initrd=iname, extra=extra_append, timeout=timeout))
        (iso / "boot.msg").write_text("Test Tiny Core layout (tce-ipfs tests)\n\nPress <Enter> to begin "
                                      f"or type a label: {label}, {label}-base\n")
        if cde:
            (tree / "cde/optional").mkdir(parents=True)
            (tree / "cde/onboot.lst").write_text("")
        alt: list[str] = []
        if efi == "file":
            (tree / "boot/efiboot.img").write_bytes(b"\xeb\x3c\x90" + bytes(64 * 1024 - 3))
            alt = ["-eltorito-alt-boot", "-e", "boot/efiboot.img", "-no-emul-boot", "-isohybrid-gpt-basdat"]
        elif efi == "appended":
            img = Path(tmp) / "esp.img"
            img.write_bytes(b"\xeb\x3c\x90" + bytes(64 * 1024 - 3))
            alt = ["-append_partition", "2", "0xef", str(img), "-appended_part_as_gpt",
                   "-eltorito-alt-boot", "-e", "--interval:appended_partition_2:all::", "-no-emul-boot"]
        build_iso(tree, out, volume="Core" if arch is Arch.X86 else "CorePure64", alt_args=alt)
    return out
