"""USB seeding in QEMU: a guest with a virtual USB stick (xhci + usb-storage, a FAT file system labelled
TCEUSB) holding a CAR of the repo (``tce-ipfs car export``) boots its onboot set with no peer it can
reach and no mirror (``ipfs.car=LABEL=TCEUSB:/repo.car``); a truncated CAR is one console line and the
boot goes on from the seed.

The test base loads only virtio drivers; the USB stack and FAT come as an extra initrd made here from
the same Debian kernel package (its modules appended to the base's load list), as udev would load them
on Tiny Core. The product is unchanged by that: the hook only runs modprobe, findfs/blkid and mount.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from support import need_tool
from tce_ipfs.arch import Arch
from tce_ipfs.build import debian
from tce_ipfs.ipfs import car
from tce_ipfs.testbed import e2e, guest, qemu, samplerepo

pytestmark = [pytest.mark.qemu, pytest.mark.kubo]

USB_MODULES = ["xhci-pci", "usb-storage", "uas", "sd_mod", "vfat", "nls_cp437", "nls_utf8", "nls_ascii"]
MODULE_DIRS = ["drivers/usb", "drivers/scsi", "fs/fat", "fs/nls", "lib", "crypto", "block"]


@pytest.fixture(scope="module")
def kit(work: Path) -> e2e.GuestKit:
    return e2e.prepare_kit(Arch.X86_64, work)


@pytest.fixture(scope="module")
def seed(work: Path) -> Iterator[e2e.Seed]:
    with e2e.Seed(work) as s:
        yield s


@pytest.fixture(scope="module")
def usb_initrd(kit: e2e.GuestKit, work: Path) -> Path:
    """An extra initrd with the USB storage + FAT modules of the guest's kernel, loaded at boot."""
    package, version = kit.base.kernel_package.split()
    (deb,) = debian.download([(package, version)], kit.arch.info.debian)
    tree = work / "kernel-tree"
    kdir = f"lib/modules/{kit.base.kver}"
    tree.mkdir()
    wanted = [f"./{kdir}/kernel/{d}/*" for d in MODULE_DIRS] + [f"./{kdir}/modules.*"]
    tar = subprocess.run(f"dpkg-deb --fsys-tarfile {deb} | tar -x -C {tree} --wildcards "
                         + " ".join(f"'{w}'" for w in wanted), shell=True, capture_output=True, check=False)
    assert (tree / kdir / "kernel/drivers/usb/storage/usb-storage.ko").is_file(), tar.stderr
    subprocess.run(["depmod", "-b", str(tree), kit.base.kver], check=True)
    extra = [m for m in guest.module_closure(tree, kit.base.kver, USB_MODULES) if m not in kit.base.modules]
    files: dict[str, tuple[bytes, int]] = {
        f"{kdir}/{rel}": ((tree / kdir / rel).read_bytes(), 0o644) for rel in extra}
    autoload = "".join(f"{m}\n" for m in [*kit.base.modules, *extra])
    files[f"{kdir}/{guest.AUTOLOAD_LIST}"] = (autoload.encode(), 0o644)
    shutil.rmtree(tree)
    return guest.write_overlay(work / "usb-modules.gz", files)


def usb_stick(path: Path, car_file: Path) -> Path:
    """A raw FAT image labelled TCEUSB with ``car_file`` as /repo.car (no mount needed: mtools)."""
    need_tool("mkfs.vfat")
    need_tool("mcopy")
    size_mib = max(8, car_file.stat().st_size // (1 << 20) + 4)
    subprocess.run(["mkfs.vfat", "-C", "-n", "TCEUSB", str(path), str(size_mib * 1024)], check=True,
                   capture_output=True)
    subprocess.run(["mcopy", "-i", str(path), str(car_file), "::/repo.car"], check=True, capture_output=True)
    return path


def usb_args(image: Path) -> list[str]:
    return ["-device", "qemu-xhci,id=xhci", "-drive", f"if=none,id=stick,format=raw,file={image}",
            "-device", "usb-storage,bus=xhci.0,drive=stick,removable=on"]


def _boot(kit: e2e.GuestKit, usb: Path, image: Path, codes: str, check: Path, net: qemu.NetSpec,
          log: Path) -> e2e.BootOutcome:
    result = qemu.boot(kit.arch, kit.base.qemu_kernel, [kit.base.initrd, usb, kit.hook_initrd, check],
                       f"quiet {codes}", timeout=400, net=net, memory=512, log_path=log,
                       extra_args=usb_args(image))
    return e2e.BootOutcome(result=result, fields=e2e.parse_fields(result.sentinel_line))


def test_a_guest_boots_its_onboot_set_from_a_usb_car_with_no_peer(
        kit: e2e.GuestKit, seed: e2e.Seed, usb_initrd: Path, work: Path) -> None:
    repo = samplerepo.build(work / "repo", [kit.base.kver])
    cid = seed.publish(repo.path)
    with seed.client() as client:
        exported = car.export(client, cid, work / "repo.car", progress=False)
    image = usb_stick(work / "stick.img", exported.path)
    # The only peer named is not reachable: nothing is forwarded into the guest's network.
    codes = (f"tce=ipfs:{cid} ipfs.car=LABEL=TCEUSB:/repo.car ipfs.peers={seed.guest_multiaddr} "
             "ipfs.timeout=150")
    outcome = _boot(kit, usb_initrd, image, codes,
                    e2e.check_initrd(work, samplerepo.check_script(repo), "check-car.gz"),
                    qemu.user_restricted({}), work / "console-car.log")
    assert outcome.ok, outcome.result.tail(80)
    lines = outcome.console_lines()
    loaded = f"tce-ipfs: loaded 6 extensions from ipfs:{cid} (CAR LABEL=TCEUSB:/repo.car) in "
    assert any(ln.startswith(loaded) for ln in lines), lines
    assert outcome.fields["extensions"].split(",") == repo.closure
    assert outcome.fields["car"] == "ok" and outcome.fields["peers_connected"] == "0"


def test_a_truncated_car_is_one_line_and_the_seed_is_used(
        kit: e2e.GuestKit, seed: e2e.Seed, usb_initrd: Path, work: Path) -> None:
    repo = samplerepo.build(work / "repo2", [kit.base.kver])
    cid = seed.publish(repo.path)
    with seed.client() as client:
        exported = car.export(client, cid, work / "full.car", progress=False)
    cut = work / "cut.car"
    cut.write_bytes(exported.path.read_bytes()[: exported.path.stat().st_size * 2 // 3])
    image = usb_stick(work / "stick-cut.img", cut)
    codes = (f"tce=ipfs:{cid} ipfs.car=LABEL=TCEUSB:/repo.car ipfs.peers={seed.guest_multiaddr} "
             "ipfs.timeout=150")
    outcome = _boot(kit, usb_initrd, image, codes,
                    e2e.check_initrd(work, samplerepo.check_script(repo), "check-cut.gz"),
                    seed.net(), work / "console-cut.log")
    assert outcome.ok, outcome.result.tail(80)
    lines = outcome.console_lines()
    car_lines = [ln for ln in lines if "ipfs.car" in ln or "CAR" in ln]
    assert len(car_lines) == 1, lines
    assert car_lines[0].startswith("tce-ipfs: error: ipfs.car=LABEL=TCEUSB:/repo.car: "), lines
    assert any(ln.startswith(f"tce-ipfs: loaded 6 extensions from ipfs:{cid} in ") for ln in lines), lines
    assert outcome.fields["car"] == "failed"
