"""A real PXE boot of the `tce-ipfs netboot` tree (QEMU, TCG): no `-kernel`.

QEMU's user network (restrict=on) serves the tree with its built-in TFTP server and names
`pxelinux.0` as the DHCP boot file; the NIC's iPXE ROM PXE-boots pxelinux, which loads the kernel and
`initrd=corepure64.gz,tce-ipfs.gz`; the hook fetches the sample repo from the host seed over IPFS
(10.0.2.100:4001 forwarded to the seed) and the guest check prints the sentinel.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from support.seed import BOOT_TIMEOUT, Seed, assert_booted, check_overlay, ipfs_tcz
from tce_ipfs.arch import Arch
from tce_ipfs.media import netboot
from tce_ipfs.media.p2p import P2PBoot
from tce_ipfs.testbed import guest, qemu

pytestmark = [pytest.mark.qemu, pytest.mark.kubo]


def test_x86_64_real_pxe_boot(work: Path, seed: Seed) -> None:
    base = guest.ensure_base(Arch.X86_64)
    cid, repo = seed.publish(base.kver)
    core = work / "core+check.gz"
    core.write_bytes(base.initrd.read_bytes() + check_overlay(repo))
    tftp = work / "tftp"
    request = P2PBoot(cid, seed.codes(), ipfs_tcz=ipfs_tcz(Arch.X86_64, work / "tcz"))
    res = netboot.netboot(tftp, request, arch=Arch.X86_64, kernel=base.kernel, initrd=core,
                          cmdline="loglevel=3 console=ttyS0,115200 panic=-1", serial=True)
    assert "pxelinux.0" in res.files
    net = qemu.user_restricted(seed.forwards, tftp=tftp, bootfile="pxelinux.0")
    boot = qemu.boot_firmware(Arch.X86_64, media=["-boot", "n"], timeout=BOOT_TIMEOUT,
                              log_path=work / "pxe.log", net=net)
    assert "PXELINUX" in boot.log_text, boot.tail()
    assert_booted(boot)
