"""A netboot tree for lab machines: kernel, base initrd, P2P initrd, pxelinux and iPXE configs, README.

Layout of ``DIR`` (x86/x86_64; for ARM only the iPXE script is written -- pxelinux is BIOS-only)::

    vmlinuz64  corepure64.gz  tce-ipfs.gz      (vmlinuz + core.gz for x86: Tiny Core's names)
    pxelinux.0  ldlinux.c32  pxelinux.cfg/default
    boot.ipxe  README.txt

Everything is validated (CID, boot codes, inputs, arches) before ``DIR`` is created or touched.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tce_ipfs.arch import Arch
from tce_ipfs.errors import RemasterError, UsageError
from tce_ipfs.media import bootcfg, iso
from tce_ipfs.media.detect import check_requested_arch, detect_arch
from tce_ipfs.media.p2p import P2P_NAME, P2PBoot

log = logging.getLogger(__name__)

PXELINUX = Path("/usr/lib/PXELINUX/pxelinux.0")
LDLINUX = iso.SYSLINUX_BIOS / "ldlinux.c32"
NAMES = {Arch.X86_64: ("vmlinuz64", "corepure64.gz"), Arch.X86: ("vmlinuz", "core.gz"),
         Arch.AARCH64: ("vmlinuz-aarch64", "rootfs-aarch64.gz"),
         Arch.ARMV7: ("vmlinuz-armv7", "rootfs-armv7.gz")}
DEFAULT_CMDLINE = "loglevel=3"

README = """\
Tiny Core netboot with extensions from IPFS (written by `tce-ipfs netboot`)
==========================================================================

Boot code: {codes}
Arch: {arch}

Files: {kernel} (kernel), {initrd} (Tiny Core base initrd), {p2p} (P2P boot initrd: hook + kubo),
{pxe}boot.ipxe (iPXE script).

Serve it over TFTP (BIOS PXE, pxelinux)
---------------------------------------
Make this directory the TFTP root and point DHCP's boot file at pxelinux.0. With dnsmasq as DHCP +
TFTP server on the lab interface (here eth1, 192.168.50.0/24):

    dnsmasq --no-daemon --port=0 --interface=eth1 --bind-interfaces \\
            --dhcp-range=192.168.50.100,192.168.50.200,12h \\
            --enable-tftp --tftp-root={dir} --dhcp-boot=pxelinux.0

pxelinux reads pxelinux.cfg/default and loads the kernel and both initrds
(`initrd={initrd},{p2p}`: the kernel unpacks them in order).

Serve it over HTTP (iPXE)
-------------------------
Copy the directory to any web server (or `busybox httpd -f -p 8080 -h {dir}`) and chain the
script from iPXE:  `chain http://SERVER:8080/boot.ipxe`. With dnsmasq, hand iPXE the script and
everything else pxelinux:

    --dhcp-match=set:ipxe,175 --dhcp-boot=tag:ipxe,http://SERVER:8080/boot.ipxe \\
    --dhcp-boot=tag:!ipxe,pxelinux.0

The script loads its files relative to its own URL, so TFTP works as well (`chain tftp://SERVER/boot.ipxe`).

At boot the machine needs DHCP on eth* and a route to the peers named in `ipfs.peers=` (or any
peer that has the CID). Kernel and initrds are gzip-compressed unless built with --compression zstd
(needs a kernel with CONFIG_RD_ZSTD; Tiny Core's kernels only take gzip).
"""


@dataclass
class NetbootResult:
    output: Path
    arch: Arch
    cid: str
    cmdline: str
    files: list[str]

    def as_dict(self) -> dict[str, object]:
        return {"output": str(self.output), "arch": str(self.arch), "cid": self.cid,
                "cmdline": self.cmdline, "files": self.files}


def _from_iso(image: Path, tmp: Path) -> tuple[Path, Path, str]:
    """Kernel, base initrd (concatenated if the entry has several) and command line of an ISO's default."""
    if not iso.is_iso(image):
        raise RemasterError(f"{image.name} is not an ISO 9660 image")
    tree = tmp / "iso"
    iso.extract_iso(image, tree)
    layout = iso.detect_layout(tree, iso.el_torito(image))
    cfg = bootcfg.parse_syslinux((tree / layout.cfg).read_text(errors="replace"))
    entry = cfg.entry(layout.entry)
    assert entry is not None
    append = cfg.global_append if entry.append is None else entry.append
    base = tmp / "base-initrd"
    with base.open("wb") as fh:
        for name in layout.initrds:
            fh.write((tree / name).read_bytes())
    return tree / layout.kernel, base, bootcfg.split_initrd(append)[1]


def netboot(
    out: Path,
    boot: P2PBoot,
    *,
    arch: Arch | None = None,
    kernel: Path | None = None,
    initrd: Path | None = None,
    from_iso: Path | None = None,
    cmdline: str | None = None,
    serial: bool = False,
) -> NetbootResult:
    """Write the netboot tree into ``out`` (created; an existing directory keeps its other files).

    Kernel and base initrd: ``kernel`` + ``initrd``, or the default entry of the TC ISO ``from_iso``.
    """
    if (kernel is None) != (initrd is None):
        raise UsageError("give both --kernel and --initrd (or --from-iso, or neither for the test base)")
    if from_iso is not None and kernel is not None:
        raise UsageError("--from-iso and --kernel/--initrd exclude each other")
    if from_iso is None and kernel is None:
        raise UsageError("give --kernel and --initrd, or --from-iso")
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out} exists and is not a directory")
    for path in (kernel, initrd, from_iso):
        if path is not None and not path.is_file():
            raise UsageError(f"{path}: no such file")

    with tempfile.TemporaryDirectory(prefix="tce-ipfs-netboot-") as tmp_name:
        tmp = Path(tmp_name)
        base_cmdline = DEFAULT_CMDLINE
        if from_iso is not None:
            kernel, initrd, base_cmdline = _from_iso(from_iso, tmp)
        assert kernel is not None and initrd is not None
        if cmdline is not None:
            base_cmdline = cmdline
        report = detect_arch([kernel], initrd)
        target = check_requested_arch(report, arch, kernel.name)
        kname, iname = NAMES[target]
        pxe = target in (Arch.X86, Arch.X86_64)
        if pxe:
            for src in (PXELINUX, LDLINUX):
                if not src.is_file():
                    raise RemasterError(f"{src} not found", hint="install pxelinux and syslinux-common")
        p2p = boot.write_initrd(target, tmp / P2P_NAME)
        initrds = [iname, P2P_NAME]
        full = boot.cmdline(base_cmdline)

        # Everything checked: write.
        stage = tmp / "stage"
        stage.mkdir()
        shutil.copyfile(kernel, stage / kname)
        shutil.copyfile(initrd, stage / iname)
        shutil.copyfile(p2p, stage / P2P_NAME)
        files = [kname, iname, P2P_NAME]
        if pxe:
            shutil.copyfile(PXELINUX, stage / "pxelinux.0")
            shutil.copyfile(LDLINUX, stage / "ldlinux.c32")
            (stage / "pxelinux.cfg").mkdir()
            (stage / "pxelinux.cfg/default").write_text(
                bootcfg.syslinux_netboot(kname, initrds, full, serial=serial))
            files += ["pxelinux.0", "ldlinux.c32", "pxelinux.cfg/default"]
        (stage / "boot.ipxe").write_text(bootcfg.ipxe_script(kname, initrds, full))
        (stage / "README.txt").write_text(README.format(
            codes=" ".join(boot.boot_codes()), arch=target, kernel=kname, initrd=iname,
            p2p=P2P_NAME, pxe="pxelinux.0 + ldlinux.c32 + pxelinux.cfg/default (pxelinux), "
            if pxe else "", dir=out.resolve()))
        files += ["boot.ipxe", "README.txt"]
        out.mkdir(parents=True, exist_ok=True)
        for name in files:
            dest = out / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp_dest = dest.with_name(f".{dest.name}.tce-ipfs-tmp")
            shutil.copyfile(stage / name, tmp_dest)
            os.replace(tmp_dest, dest)
    log.info("netboot tree for %s in %s", target, out)
    return NetbootResult(output=out, arch=target, cid=boot.cid, cmdline=full, files=files)
