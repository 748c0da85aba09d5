"""Add P2P boot (``tce=ipfs:<CID>``) to a Tiny Core ISO (``remaster_iso``), and the ISO tools around it.

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

Compression: gzip by default -- Tiny Core's kernels are built with gzip initramfs support only;
zstd (via ``zstandard``) needs a kernel with ``CONFIG_RD_ZSTD`` (Debian's have it).

``build_iso`` (Tiny Core's mkisofs flags), ``extract_iso``, ``read_iso_file`` and the manifests also
serve ``netboot --from-iso`` and the test media. A piCore boot partition is ``media.picore``'s.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shlex
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tce_ipfs import proc
from tce_ipfs.arch import Arch
from tce_ipfs.errors import RemasterError
from tce_ipfs.media import bootcfg
from tce_ipfs.media.detect import check_requested_arch, detect_arch
from tce_ipfs.media.p2p import P2P_NAME, P2PBoot, check_output, scratch

log = logging.getLogger(__name__)

ISOHYBRID_MBR = Path("/usr/lib/ISOLINUX/isohdpfx.bin")
ISOLINUX_BIN = Path("/usr/lib/ISOLINUX/isolinux.bin")
SYSLINUX_BIOS = Path("/usr/lib/syslinux/modules/bios")
CFG_CANDIDATES = ("boot/isolinux/isolinux.cfg", "isolinux/isolinux.cfg", "boot/syslinux/syslinux.cfg")

# (kernel, initrd) pairs as Tiny Core ships them: Core / TinyCore / CorePlus, and CorePure64.
TC_PAIRS = (("boot/vmlinuz", "boot/core.gz"), ("boot/vmlinuz64", "boot/corepure64.gz"))


# ----------------------------------------------------------------------------------------- ISO files

def is_iso(path: Path) -> bool:
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


def remaster_iso(src: Path, out: Path, boot: P2PBoot, *, arch: Arch | None = None,
                 make_default: bool = False, append_initrd: bool = False) -> RemasterResult:
    """Remaster ``src`` into ``out`` (see the module doc). Nothing is written to ``out`` on refusal."""
    if not src.is_file():
        raise RemasterError(f"{src}: no such file")
    if not is_iso(src):
        raise RemasterError(f"{src.name} is not an ISO 9660 image (no CD001 signature at byte 32769)",
                            hint="pass a Tiny Core .iso (Core, TinyCore, CorePlus, CorePure64)")
    check_output(out, [src])

    with scratch() as tmp:
        torito = el_torito(src)
        tree = tmp / "tree"
        extract_iso(src, tree)
        layout = detect_layout(tree, torito)
        report = detect_arch([tree / layout.kernel], tree / layout.initrds[0])
        target = check_requested_arch(report, arch, src.name)
        log.info("%s: %s layout, %s (kernel %s), entry %r", src.name, layout.flavour, target,
                 report.kernel, layout.entry)

        p2p = boot.write_initrd(target, tmp / P2P_NAME)
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
        text = bootcfg.add_p2p_entry(cfg_path.read_text(errors="replace"), cid=boot.cid, codes=boot.codes,
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
    return RemasterResult(output=out, arch=target, cid=boot.cid, cmdline=entry.append or "", initrds=initrds,
                          layout=layout.flavour, efi=torito.efi, compression=boot.compression,
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
