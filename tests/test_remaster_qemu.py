"""Remastered boot media really boot with P2P extensions (QEMU, TCG).

* x86_64: a Tiny-Core-layout ISO remastered with `--default` boots from `-cdrom` through isolinux (no
  `-kernel`), takes the P2P entry, fetches the sample repo from a host seed over IPFS and prints the
  sentinel -- gzip with a second initrd, and zstd appended to the base initrd;
* aarch64: a piCore-style boot partition remastered in place -- a directory, and a whole-disk image
  (MBR + FAT, through mtools; its files read back with mcopy); QEMU boots its kernel with the files of
  config.txt's `initramfs` list concatenated in order and cmdline.txt as the command line.

The guest check (/opt/bootsync.sh printing the sentinel) rides in the *input* media's base initrd, so
everything the P2P entry adds comes from `tce-ipfs remaster` alone.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from support.media import fat_image, fat_read
from support.seed import BOOT_TIMEOUT, Seed, assert_booted, check_overlay, ipfs_tcz
from tce_ipfs.arch import Arch
from tce_ipfs.media import bootcfg, iso, picore
from tce_ipfs.media.p2p import P2PBoot
from tce_ipfs.testbed import guest, qemu, testmedia

pytestmark = [pytest.mark.qemu, pytest.mark.kubo]


@pytest.mark.parametrize(("compression", "append_initrd"), [("gzip", False), ("zstd", True)])
def test_x86_64_iso_boots_from_cdrom(work: Path, seed: Seed, compression: str, append_initrd: bool) -> None:
    base = guest.ensure_base(Arch.X86_64)
    cid, repo = seed.publish(base.kver)
    core = work / "corepure64+check.gz"
    core.write_bytes(base.initrd.read_bytes() + check_overlay(repo))
    src = work / "CorePure64-test.iso"
    if not src.exists():
        testmedia.make_test_iso(src, base.kernel, core)
    tcz = ipfs_tcz(Arch.X86_64, work / "tcz-x86_64")
    out = work / f"p2p-{compression}.iso"
    res = iso.remaster_iso(src, out, P2PBoot(cid, seed.codes(), compression=compression, ipfs_tcz=tcz),
                           make_default=True, append_initrd=append_initrd)
    assert res.arch is Arch.X86_64
    boot = qemu.boot_firmware(Arch.X86_64, media=["-cdrom", str(out), "-boot", "d"], timeout=BOOT_TIMEOUT,
                              net=qemu.user_restricted(seed.forwards),
                              log_path=work / f"cdrom-{compression}.log")
    assert_booted(boot)
    loaded = re.findall(r"^Loading (/boot/\S+?)\.\.\.", boot.log_text, re.MULTILINE)
    initrds = ["/boot/tce-ipfs.gz"] if append_initrd else ["/boot/corepure64.gz", "/boot/tce-ipfs.gz"]
    assert loaded == ["/boot/vmlinuz64", *initrds]  # isolinux took the P2P entry by default


PI_CONFIG = """\
# piCore64-style config.txt (test)
[pi4]
kernel kernel8.img
initramfs rootfs-piCore64.gz,check.gz followkernel
[pi3]
kernel kernel8.img
initramfs rootfs-piCore64.gz,check.gz followkernel
[ALL]
cmdline cmdline.txt
"""


@pytest.mark.parametrize("media", ["dir", "image"])
def test_aarch64_boot_partition(work: Path, seed: Seed, media: str) -> None:
    base = guest.ensure_base(Arch.AARCH64)
    cid, repo = seed.publish(base.kver)
    files = {"kernel8.img": base.kernel.read_bytes(), "rootfs-piCore64.gz": base.initrd.read_bytes(),
             "check.gz": check_overlay(repo), "config.txt": PI_CONFIG.encode(),
             "cmdline.txt": b"console=ttyAMA0 root=/dev/ram0 rootwait nortc loglevel=3 panic=-1\n"}
    tcz = ipfs_tcz(Arch.AARCH64, work / "tcz-aarch64")
    boot = work / f"pi-boot-{media}"
    boot.mkdir()
    if media == "dir":
        for name, data in files.items():
            (boot / name).write_bytes(data)
        res = picore.remaster_bootdir(boot, P2PBoot(cid, seed.codes(), ipfs_tcz=tcz), arch=Arch.AARCH64)
    else:  # a whole-disk image (MBR, FAT at 1 MiB) edited through mtools; boot what mcopy reads back
        size = sum(len(d) for d in files.values()) // (1024 * 1024) + 64
        img = fat_image(work / "piCore.img", files, size_mib=size, partitioned=True)
        res = picore.remaster_bootimage(img, P2PBoot(cid, seed.codes(), ipfs_tcz=tcz), arch=Arch.AARCH64)
        for name in [*files, "tce-ipfs.gz"]:
            (boot / name).write_bytes(fat_read(img, name, offset=1024 * 1024))
    assert res.arch is Arch.AARCH64
    # Boot exactly what the firmware would: [pi4]'s kernel, its initramfs list in order, cmdline.txt.
    pi = bootcfg.parse_config_txt((boot / "config.txt").read_text())
    assert pi.initramfs[0] == ["rootfs-piCore64.gz", "check.gz", "tce-ipfs.gz"]
    cmdline = (boot / "cmdline.txt").read_text()
    assert cmdline.count("\n") == 1 and f"tce=ipfs:{cid}" in cmdline
    result = qemu.boot(Arch.AARCH64, boot / pi.kernels[0], [boot / f for f in pi.initramfs[0]],
                       cmdline.strip(), timeout=BOOT_TIMEOUT, net=qemu.user_restricted(seed.forwards),
                       log_path=work / f"aarch64-{media}.log")
    assert_booted(result)
