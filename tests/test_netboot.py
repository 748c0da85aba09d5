"""`tce-ipfs netboot`: the PXE/iPXE tree (no QEMU; the real PXE boot is in test_netboot_qemu.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from support.media import CID, PEER, fake_core, fake_iso, fake_kernel, fake_p2p_initrd
from tce_ipfs import cli
from tce_ipfs.arch import Arch
from tce_ipfs.errors import CidError, RemasterError, UsageError
from tce_ipfs.media import bootcfg, netboot
from tce_ipfs.media.p2p import P2PBoot


def _netboot(out: Path, cid: str, *, arch: Arch | None = None, kernel: Path | None = None,
             initrd: Path | None = None, from_iso: Path | None = None, serial: bool = False,
             **boot: Any) -> netboot.NetbootResult:
    """``netboot.netboot`` with the P2P request built from ``cid`` and ``boot`` (its checks run too)."""
    return netboot.netboot(out, P2PBoot(cid, **boot), arch=arch, kernel=kernel, initrd=initrd,
                           from_iso=from_iso, serial=serial)


@pytest.fixture
def inputs(tmp_path: Path) -> tuple[Path, Path, Path]:
    kernel = tmp_path / "bzImage"
    kernel.write_bytes(fake_kernel(Arch.X86_64))
    core = tmp_path / "core.gz"
    core.write_bytes(fake_core(Arch.X86_64, tmp_path))
    return kernel, core, fake_p2p_initrd(Arch.X86_64, tmp_path / "p2p.gz")


def test_netboot_tree(tmp_path: Path, inputs: tuple[Path, Path, Path]) -> None:
    kernel, core, p2p = inputs
    out = tmp_path / "tftp"
    res = _netboot(out, CID, kernel=kernel, initrd=core, p2p_initrd=p2p, serial=True,
                          codes={"ipfs.peers": PEER})
    assert res.arch is Arch.X86_64
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == sorted(
        ["vmlinuz64", "corepure64.gz", "tce-ipfs.gz", "pxelinux.0", "ldlinux.c32", "pxelinux.cfg/default",
         "boot.ipxe", "README.txt"])
    assert (out / "vmlinuz64").read_bytes() == kernel.read_bytes()
    assert (out / "tce-ipfs.gz").read_bytes() == p2p.read_bytes()
    assert (out / "pxelinux.0").read_bytes() == netboot.PXELINUX.read_bytes()
    cmdline = f"loglevel=3 tce=ipfs:{CID} ipfs.peers={PEER}"
    assert res.cmdline == cmdline
    entry = bootcfg.parse_syslinux((out / "pxelinux.cfg/default").read_text(), ours=True).default_entry()
    assert (entry.kernel, entry.initrds, entry.append) == ("vmlinuz64", ["corepure64.gz", "tce-ipfs.gz"],
                                                           cmdline)
    ipxe = (out / "boot.ipxe").read_text()
    assert ipxe.startswith("#!ipxe\n") and "initrd tce-ipfs.gz" in ipxe and cmdline in ipxe
    readme = (out / "README.txt").read_text()
    assert "dnsmasq" in readme and "--tftp-root" in readme and "http" in readme
    # again into the same directory: replaced, not duplicated
    _netboot(out, CID, kernel=kernel, initrd=core, p2p_initrd=p2p)
    assert "ipfs.peers" not in (out / "pxelinux.cfg/default").read_text()


def test_netboot_from_iso(tmp_path: Path) -> None:
    iso = fake_iso(Arch.X86, tmp_path / "iso")
    p2p = fake_p2p_initrd(Arch.X86, tmp_path / "p2p.gz")
    res = _netboot(tmp_path / "tftp", CID, from_iso=iso, p2p_initrd=p2p)
    assert res.arch is Arch.X86
    assert res.cmdline == f"loglevel=3 console=ttyS0,115200 panic=-1 tce=ipfs:{CID}"
    assert {"vmlinuz", "core.gz"} <= set(res.files)


def test_netboot_arm_has_no_pxelinux(tmp_path: Path) -> None:
    kernel = tmp_path / "Image.gz"
    kernel.write_bytes(fake_kernel(Arch.AARCH64))
    core = tmp_path / "rootfs.gz"
    core.write_bytes(fake_core(Arch.AARCH64, tmp_path))
    p2p = fake_p2p_initrd(Arch.AARCH64, tmp_path / "p2p.gz")
    res = _netboot(tmp_path / "out", CID, arch=Arch.AARCH64, kernel=kernel, initrd=core,
                          p2p_initrd=p2p)
    assert "pxelinux.0" not in res.files and "boot.ipxe" in res.files


def _refused(out: Path, exc: type[Exception], match: str, **kw: object) -> None:
    with pytest.raises(exc, match=match):
        _netboot(out, **kw)  # type: ignore[arg-type]
    assert not out.exists()


def test_netboot_refusals(tmp_path: Path, inputs: tuple[Path, Path, Path]) -> None:
    kernel, core, p2p = inputs
    out = tmp_path / "never"
    _refused(out, CidError, "invalid CID", cid="bafyNOPE", kernel=kernel, initrd=core, p2p_initrd=p2p)
    _refused(out, RemasterError, "--arch aarch64 but bzImage is x86_64", cid=CID, arch=Arch.AARCH64,
             kernel=kernel, initrd=core, p2p_initrd=p2p)
    wrong = fake_p2p_initrd(Arch.X86, tmp_path / "p2p-x86.gz")
    _refused(out, RemasterError, "x86 ipfs binary", cid=CID, kernel=kernel, initrd=core, p2p_initrd=wrong)
    _refused(out, UsageError, "both --kernel and --initrd", cid=CID, kernel=kernel)
    notiso = tmp_path / "x.iso"
    notiso.write_text("hello")
    _refused(out, RemasterError, "not an ISO 9660", cid=CID, from_iso=notiso, p2p_initrd=p2p)


def test_netboot_cli(tmp_path: Path, inputs: tuple[Path, Path, Path],
                     capsys: pytest.CaptureFixture[str]) -> None:
    kernel, core, p2p = inputs
    out = tmp_path / "cli"
    rc = cli.main(["netboot", "--cid", CID, "-o", str(out), "--kernel", str(kernel), "--initrd", str(core),
                   "--p2p-initrd", str(p2p), "--boot-code", "ipfs.timeout=60", "--json"])
    assert rc == 0 and (out / "boot.ipxe").is_file()
    assert '"arch": "x86_64"' in capsys.readouterr().out
