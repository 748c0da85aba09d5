"""`tce-ipfs remaster`: arch detection, ISO and boot-partition remastering, refusals (no QEMU).

ISOs here are real (xorriso, isolinux) around fake kernels/initrds with real headers; the P2P initrd is
a stand-in with a real ipfs.tcz (squashfs) so arch checks run for real. QEMU boots: test_remaster_qemu.py.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from support.media import (
    CID,
    CID2,
    PEER,
    cpio_gz,
    elf_header,
    fake_core,
    fake_iso,
    fake_kernel,
    fake_p2p_initrd,
    fake_tcz,
    fat_image,
    fat_read,
)
from tce_ipfs import cli
from tce_ipfs.arch import Arch
from tce_ipfs.errors import CidError, RemasterError, TceIpfsError, UsageError
from tce_ipfs.media import bootcfg, detect, iso, picore
from tce_ipfs.media.p2p import P2PBoot, check_tcz_arch

P2P = "boot/tce-ipfs.gz"
# Files whose bytes legitimately change: the boot catalog and isolinux.bin (boot-info-table is
# patched with LBAs), and the config we edit.
REWRITTEN = {"boot/isolinux/boot.cat", "boot/isolinux/isolinux.bin", "boot/isolinux/isolinux.cfg"}


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("remaster")


@pytest.fixture(scope="module")
def iso64(work: Path) -> Path:
    return fake_iso(Arch.X86_64, work / "x86_64")


@pytest.fixture(scope="module")
def p2p64(work: Path) -> Path:
    return fake_p2p_initrd(Arch.X86_64, work / "p2p-x86_64.gz")


def _cfg(image: Path) -> str:
    return iso.read_iso_file(image, "boot/isolinux/isolinux.cfg").decode()


def _iso(src: Path, out: Path, cid: str, *, arch: Arch | None = None, make_default: bool = False,
         append_initrd: bool = False, **boot: Any) -> iso.RemasterResult:
    """``iso.remaster_iso`` with the P2P request built from ``cid`` and ``boot`` (its checks run too)."""
    return iso.remaster_iso(src, out, P2PBoot(cid, **boot), arch=arch, make_default=make_default,
                            append_initrd=append_initrd)


def _bootdir(src: Path, cid: str, *, out: Path | None = None, arch: Arch | None = None,
             **boot: Any) -> picore.BootDirResult:
    return picore.remaster_bootdir(src, P2PBoot(cid, **boot), out=out, arch=arch)


def _bootimage(src: Path, cid: str, *, out: Path | None = None, arch: Arch | None = None,
               **boot: Any) -> picore.BootDirResult:
    return picore.remaster_bootimage(src, P2PBoot(cid, **boot), out=out, arch=arch)


# ----------------------------------------------------------------------------------------- detection

@pytest.mark.parametrize("arch", list(Arch))
def test_kernel_arch_from_header(arch: Arch) -> None:
    assert detect.kernel_arch(fake_kernel(arch)) is arch
    assert detect.elf_arch(elf_header(arch)) is arch


def test_kernel_arch_unknown_and_old_protocol() -> None:
    assert detect.kernel_arch(b"\x00" * 0x1000) is None
    old = bytearray(fake_kernel(Arch.X86_64))
    old[0x206:0x208] = b"\x0a\x02"  # boot protocol 2.10: no xloadflags, cannot tell 32 from 64 bit
    assert detect.kernel_arch(bytes(old)) is None
    assert detect.kernel_arch(b"\x1f\x8bnot really gzip") is None


def test_kernel_arch_ignores_file_names(tmp_path: Path) -> None:
    # An x86 kernel named like CorePure64's: the header decides.
    k = tmp_path / "vmlinuz64"
    k.write_bytes(fake_kernel(Arch.X86))
    core = tmp_path / "corepure64.gz"
    core.write_bytes(fake_core(Arch.X86, tmp_path))
    assert detect.detect_arch([k], core).target is Arch.X86


def test_userland_decides_on_a_64_bit_kernel(tmp_path: Path) -> None:
    # Core64: x86_64 kernel, x86 userland -> x86 (what TC's getBuild says)
    k = tmp_path / "vmlinuz64"
    k.write_bytes(fake_kernel(Arch.X86_64))
    core = tmp_path / "core.gz"
    core.write_bytes(fake_core(Arch.X86, tmp_path, loader=False))
    report = detect.detect_arch([k], core)
    assert (report.kernel, report.userland, report.target) == (Arch.X86_64, Arch.X86, Arch.X86)


def test_kernel_userland_mismatch(tmp_path: Path) -> None:
    k = tmp_path / "vmlinuz"
    k.write_bytes(fake_kernel(Arch.X86))
    core = tmp_path / "core.gz"
    core.write_bytes(fake_core(Arch.X86_64, tmp_path))
    with pytest.raises(RemasterError, match="kernel vmlinuz is x86, its initrd's userland is x86_64"):
        detect.detect_arch([k], core)


def test_tcz_arch(tmp_path: Path) -> None:
    assert detect.tcz_ipfs_arch(fake_tcz(Arch.AARCH64, tmp_path / "ipfs.tcz")) is Arch.AARCH64
    with pytest.raises(RemasterError, match=r"arch mismatch: ipfs\.tcz holds a aarch64 ipfs binary"):
        check_tcz_arch(tmp_path / "ipfs.tcz", Arch.X86_64)


# --------------------------------------------------------------------------------------------- ISO

def test_remaster_iso(work: Path, iso64: Path, p2p64: Path) -> None:
    out = work / "out.iso"
    res = _iso(iso64, out, CID, codes={"ipfs.peers": PEER},
                                make_default=True, p2p_initrd=p2p64)
    assert res.arch is Arch.X86_64 and res.layout == "CorePure64" and not res.efi
    assert res.initrds == ["/boot/corepure64.gz", "/boot/tce-ipfs.gz"]
    cfg = _cfg(out)
    entry = bootcfg.p2p_entry(cfg)
    assert entry is not None and entry.kernel == "/boot/vmlinuz64"
    assert entry.append == ("loglevel=3 console=ttyS0,115200 panic=-1 "
                            f"tce=ipfs:{CID} ipfs.peers={PEER}")
    assert bootcfg.parse_syslinux(cfg, ours=True).default_entry().label == "tce-ipfs"
    assert bootcfg.strip_ours(cfg) == _cfg(iso64)
    assert iso.read_iso_file(out, P2P) == p2p64.read_bytes()
    # still a TC ISO, bootable by BIOS and hybrid (MBR partition table signature)
    torito = iso.el_torito(out)
    assert torito.bios_image == "boot/isolinux/isolinux.bin"
    assert iso.volume_id(out) == "CorePure64"
    assert out.read_bytes()[510:512] == b"\x55\xaa"


def test_round_trip_twice_one_entry_originals_intact(work: Path, iso64: Path, p2p64: Path) -> None:
    first = _iso(iso64, work / "rt1.iso", CID, make_default=True, p2p_initrd=p2p64).output
    second = _iso(first, work / "rt2.iso", CID2, p2p_initrd=p2p64).output
    cfg = _cfg(second)
    assert cfg.count("LABEL tce-ipfs") == 1 and cfg.count(bootcfg.BEGIN) == 1
    assert CID not in cfg and f"tce=ipfs:{CID2}" in cfg
    # second run without --default: the original default is back
    assert bootcfg.parse_syslinux(cfg, ours=True).default == "corepure64"
    assert bootcfg.strip_ours(cfg) == _cfg(iso64)
    before = iso.iso_manifest(iso64)
    after = iso.iso_manifest(second)
    assert sorted(after) == sorted([*before, P2P])
    for name, digest in before.items():
        if name not in REWRITTEN:
            assert after[name] == digest, name
    # and the same input remastered again gives the same tree
    again = _iso(second, work / "rt3.iso", CID2, p2p_initrd=p2p64).output
    assert iso.iso_manifest(again) == iso.iso_manifest(second)


def test_append_initrd(work: Path, iso64: Path, p2p64: Path) -> None:
    res = _iso(iso64, work / "app.iso", CID, append_initrd=True, p2p_initrd=p2p64)
    assert res.initrds == ["/boot/tce-ipfs.gz"]
    core = iso.read_iso_file(iso64, "boot/corepure64.gz")
    assert iso.read_iso_file(res.output, P2P) == core + p2p64.read_bytes()
    assert iso.read_iso_file(res.output, "boot/corepure64.gz") == core  # never changed
    entry = bootcfg.p2p_entry(_cfg(res.output))
    assert entry is not None and entry.initrds == ["/boot/tce-ipfs.gz"]


@pytest.mark.parametrize("efi", ["file", "appended"])
def test_efi_is_kept(work: Path, p2p64: Path, efi: str) -> None:
    src = fake_iso(Arch.X86_64, work / f"efi-{efi}", efi=efi)
    assert iso.el_torito(src).efi
    res = _iso(src, work / f"efi-{efi}.iso", CID, p2p_initrd=p2p64)
    assert res.efi
    torito = iso.el_torito(res.output)
    assert torito.efi and torito.bios_image == "boot/isolinux/isolinux.bin"


def test_x86_core_layout_and_cde(work: Path) -> None:
    src = fake_iso(Arch.X86, work / "x86", cde=True)
    p2p = fake_p2p_initrd(Arch.X86, work / "p2p-x86.gz")
    res = _iso(src, work / "x86.iso", CID, p2p_initrd=p2p)
    assert (res.arch, res.layout, res.initrds) == (Arch.X86, "Core", ["/boot/core.gz", "/boot/tce-ipfs.gz"])
    assert "cde/onboot.lst" in iso.iso_manifest(res.output)


# ---------------------------------------------------------------------------------------- refusals

def _refused(target: Path, exc: type[Exception], match: str, fn: object, *args: object, **kw: object) -> None:
    with pytest.raises(exc, match=match):
        fn(*args, **kw)  # type: ignore[operator]
    assert not target.exists(), "a refusal must not leave an output behind"


def test_refuse_non_iso(work: Path, p2p64: Path) -> None:
    bogus = work / "notes.iso"
    bogus.write_text("not an iso\n" * 5000)
    out = work / "r-noniso.iso"
    _refused(out, RemasterError, "notes.iso is not an ISO 9660 image",
             _iso, bogus, out, CID, p2p_initrd=p2p64)


def test_refuse_iso_without_tc_layout(work: Path, p2p64: Path) -> None:
    tree = work / "plain"
    (tree / "docs").mkdir(parents=True)
    (tree / "docs/readme.txt").write_text("hi\n")
    plain = work / "plain.iso"
    from tce_ipfs import proc

    proc.run(["xorriso", "-as", "mkisofs", "-o", plain, "-V", "PLAIN", tree])
    out = work / "r-plain.iso"
    with pytest.raises(RemasterError) as info:
        _iso(plain, out, CID, p2p_initrd=p2p64)
    msg = str(info.value)
    assert msg.startswith("not a Tiny Core ISO layout; missing:")
    for part in ("boot/isolinux/isolinux.cfg", "isolinux.bin", "boot/vmlinuz + boot/core.gz",
                 "boot/vmlinuz64 + boot/corepure64.gz"):
        assert part in msg
    assert not out.exists()


def test_refuse_invalid_cid(work: Path, iso64: Path, p2p64: Path) -> None:
    out = work / "r-cid.iso"
    _refused(out, CidError, "invalid CID", _iso, iso64, out, "QmNotACid", p2p_initrd=p2p64)


def test_refuse_arch_mismatch(work: Path, iso64: Path) -> None:
    out = work / "r-arch.iso"
    _refused(out, RemasterError, r"--arch aarch64 but in-x86_64.iso is x86_64",
             _iso, iso64, out, CID, arch=Arch.AARCH64)
    tcz = fake_tcz(Arch.AARCH64, work / "ipfs-arm.tcz")
    _refused(out, RemasterError, "ipfs-arm.tcz holds a aarch64 ipfs binary, the boot media is x86_64",
             _iso, iso64, out, CID, ipfs_tcz=tcz)
    p2p = fake_p2p_initrd(Arch.AARCH64, work / "p2p-arm.gz")
    _refused(out, RemasterError, "aarch64 ipfs binary", _iso, iso64, out, CID,
             p2p_initrd=p2p)


def test_refuse_input_as_output(iso64: Path, p2p64: Path) -> None:
    with pytest.raises(UsageError, match="is the input"):
        _iso(iso64, iso64, CID, p2p_initrd=p2p64)


def test_cli(work: Path, iso64: Path, p2p64: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = work / "cli.iso"
    rc = cli.main(["remaster", str(iso64), "--cid", CID, "-o", str(out), "--default", "--p2p-initrd",
                   str(p2p64), "--boot-code", "ipfs.timeout=90", "--json"])
    assert rc == 0 and out.is_file()
    assert '"default": true' in capsys.readouterr().out
    bad = work / "cli-bad.iso"
    assert cli.main(["remaster", str(iso64), "--cid", "nope", "-o", str(bad)]) == CidError.exit_code
    assert "invalid CID" in capsys.readouterr().err and not bad.exists()
    assert cli.main(["remaster", str(iso64), "--cid", CID, "-o", str(bad), "--arch", "aarch64",
                     "--p2p-initrd", str(p2p64)]) == RemasterError.exit_code
    assert "arch mismatch" in capsys.readouterr().err and not bad.exists()


# ---------------------------------------------------------------------------------- piCore boot dir

PI_CONFIG = """\
[pi4]
kernel kernel8.img
initramfs rootfs-piCore64-16.0.gz,modules-piCore-v8.gz followkernel
[pi3]
kernel kernel8.img
initramfs rootfs-piCore64-16.0.gz,modules-piCore-v8.gz followkernel
[ALL]
cmdline cmdline.txt
"""
PI_CMDLINE = "console=ttyAMA0 root=/dev/ram0 rootwait quiet nortc loglevel=3 noembed\n"


def fake_bootdir(root: Path, arch: Arch = Arch.AARCH64) -> Path:
    root.mkdir(parents=True)
    kernel = bytearray(0x1000)
    kernel[0x38:0x3C] = b"ARM\x64"  # the Pi's kernel8.img is a raw arm64 Image
    (root / "kernel8.img").write_bytes(bytes(kernel))
    (root / "rootfs-piCore64-16.0.gz").write_bytes(fake_core(arch, root.parent))
    (root / "modules-piCore-v8.gz").write_bytes(cpio_gz({"lib/modules/x/m.ko": b"ko"}, root.parent))
    (root / "config.txt").write_text(PI_CONFIG)
    (root / "cmdline.txt").write_text(PI_CMDLINE)
    (root / "start4.elf").write_bytes(b"firmware")
    return root


def test_bootdir_in_place_idempotent(tmp_path: Path) -> None:
    boot = fake_bootdir(tmp_path / "boot")
    p2p = fake_p2p_initrd(Arch.AARCH64, tmp_path / "p2p.gz")
    before = iso.tree_manifest(boot)
    res = _bootdir(boot, CID, arch=Arch.AARCH64, codes={"ipfs.timeout": "60"},
                                    p2p_initrd=p2p)
    assert res.arch is Arch.AARCH64
    assert res.initramfs == [["rootfs-piCore64-16.0.gz", "modules-piCore-v8.gz", "tce-ipfs.gz"]] * 2
    assert (boot / "cmdline.txt").read_text() == PI_CMDLINE.strip() + f" tce=ipfs:{CID} ipfs.timeout=60\n"
    assert (boot / "tce-ipfs.gz").read_bytes() == p2p.read_bytes()
    _bootdir(boot, CID2, p2p_initrd=p2p)  # again, new CID, no codes
    assert (boot / "cmdline.txt").read_text() == PI_CMDLINE.strip() + f" tce=ipfs:{CID2}\n"
    assert bootcfg.parse_config_txt((boot / "config.txt").read_text()).initramfs == res.initramfs
    after = iso.tree_manifest(boot)
    assert sorted(after) == sorted([*before, "tce-ipfs.gz"])
    for name in before:
        if name not in ("config.txt", "cmdline.txt"):
            assert after[name] == before[name]


def test_bootdir_copy_and_refusals(tmp_path: Path) -> None:
    boot = fake_bootdir(tmp_path / "boot")
    before = iso.tree_manifest(boot)
    p2p = fake_p2p_initrd(Arch.AARCH64, tmp_path / "p2p.gz")
    out = tmp_path / "copy"
    _bootdir(boot, CID, out=out, p2p_initrd=p2p)
    assert iso.tree_manifest(boot) == before  # source untouched
    assert (out / "tce-ipfs.gz").is_file()
    out2 = tmp_path / "copy2"
    _refused(out2, RemasterError, "--arch x86_64 but boot is aarch64",
             _bootdir, boot, CID, out=out2, arch=Arch.X86_64)
    wrong = fake_p2p_initrd(Arch.ARMV7, tmp_path / "p2p-armv7.gz")
    _refused(out2, RemasterError, "armv7 ipfs binary", _bootdir, boot, CID, out=out2,
             p2p_initrd=wrong)
    _refused(out2, CidError, "invalid CID", _bootdir, boot, "x", out=out2, p2p_initrd=p2p)
    assert iso.tree_manifest(boot) == before
    (boot / "cmdline.txt").unlink()
    _refused(out2, RemasterError, r"missing: cmdline.txt", _bootdir, boot, CID, out=out2,
             p2p_initrd=p2p)
    empty = tmp_path / "empty"
    empty.mkdir()
    _refused(out2, RemasterError, "neither an ISO nor a piCore boot partition", _bootdir,
             empty, CID, out=out2, p2p_initrd=p2p)


# --------------------------------------------------------------------------- piCore boot image (FAT)

def _pi_files(work: Path, arch: Arch = Arch.AARCH64) -> dict[str, bytes]:
    src = fake_bootdir(work / "src")
    return {p.name: p.read_bytes() for p in sorted(src.iterdir())}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("kind", ["fat16", "fat32", "mbr"])
def test_bootimage_in_place_idempotent(tmp_path: Path, kind: str) -> None:
    files = _pi_files(tmp_path)
    img = fat_image(tmp_path / "piCore-boot.img", files, fat32=kind == "fat32",
                    size_mib=40 if kind == "fat32" else 16, partitioned=kind == "mbr")
    offset = 1024 * 1024 if kind == "mbr" else 0
    assert picore.fat_image_offset(img) == offset
    p2p = fake_p2p_initrd(Arch.AARCH64, tmp_path / "p2p.gz")
    res = _bootimage(img, CID, codes={"ipfs.timeout": "60"}, p2p_initrd=p2p)
    assert res.arch is Arch.AARCH64 and res.output == img
    want = [["rootfs-piCore64-16.0.gz", "modules-piCore-v8.gz", "tce-ipfs.gz"]] * 2
    assert res.initramfs == want
    config = fat_read(img, "config.txt", offset).decode()
    assert bootcfg.parse_config_txt(config).initramfs == want
    cmdline = PI_CMDLINE.strip() + f" tce=ipfs:{CID} ipfs.timeout=60\n"
    assert fat_read(img, "cmdline.txt", offset).decode() == cmdline
    assert fat_read(img, "tce-ipfs.gz", offset) == p2p.read_bytes()
    for name, data in files.items():  # untouched files
        if name not in ("config.txt", "cmdline.txt"):
            assert fat_read(img, name, offset) == data
    # Idempotent: the same CID again changes nothing; a new CID replaces the code (never two).
    digest = _sha(img)
    _bootimage(img, CID, codes={"ipfs.timeout": "60"}, p2p_initrd=p2p)
    assert fat_read(img, "config.txt", offset).decode() == config
    assert fat_read(img, "cmdline.txt", offset).decode() == cmdline
    assert _sha(img) == digest
    _bootimage(img, CID2, p2p_initrd=p2p)
    assert fat_read(img, "cmdline.txt", offset).decode() == PI_CMDLINE.strip() + f" tce=ipfs:{CID2}\n"
    assert bootcfg.parse_config_txt(fat_read(img, "config.txt", offset).decode()).initramfs == want


def test_bootimage_copy_and_refusals(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    img = fat_image(tmp_path / "piCore-boot.img", _pi_files(tmp_path))
    digest = _sha(img)
    p2p = fake_p2p_initrd(Arch.AARCH64, tmp_path / "p2p.gz")
    out = tmp_path / "p2p.img"
    assert cli.main(["remaster", str(img), "--cid", CID, "-o", str(out), "--p2p-initrd", str(p2p)]) == 0
    assert _sha(img) == digest  # source untouched
    assert f"tce=ipfs:{CID}" in fat_read(out, "cmdline.txt").decode()
    out2 = tmp_path / "p2p2.img"
    for target in (out2, None):  # to a copy, and in place: refusals leave the image byte-identical
        kw = {"out": target}
        _refused(out2, CidError, "invalid CID", _bootimage, img, "x", p2p_initrd=p2p, **kw)
        _refused(out2, RemasterError, "--arch x86_64 but piCore-boot.img is aarch64",
                 _bootimage, img, CID, arch=Arch.X86_64, p2p_initrd=p2p, **kw)
        wrong = fake_p2p_initrd(Arch.ARMV7, tmp_path / "p2p-armv7.gz")
        _refused(out2, RemasterError, "armv7 ipfs binary", _bootimage, img, CID,
                 p2p_initrd=wrong, **kw)
        assert _sha(img) == digest
    assert cli.main(["remaster", str(img), "--cid", "nope", "--p2p-initrd", str(p2p)]) != 0
    assert "invalid CID" in capsys.readouterr().err and _sha(img) == digest
    # no cmdline.txt; no config.txt at all
    partial = fat_image(tmp_path / "nocmd.img", {k: v for k, v in _pi_files(tmp_path / "b").items()
                                                 if k != "cmdline.txt"})
    _refused(out2, RemasterError, "missing: cmdline.txt", _bootimage, partial, CID,
             p2p_initrd=p2p)
    bare = fat_image(tmp_path / "bare.img", {"readme.txt": b"hi\n"})
    _refused(out2, RemasterError, "bare.img: a FAT image but not a piCore boot partition; missing: config",
             _bootimage, bare, CID, p2p_initrd=p2p)


def test_bootimage_full_fat_leaves_image_intact(tmp_path: Path) -> None:
    files = _pi_files(tmp_path)
    img = fat_image(tmp_path / "tiny.img", files, size_mib=1)
    big = tmp_path / "p2p-big.gz"  # a valid P2P initrd too big for the image: mcopy fails mid-way
    fake_p2p_initrd(Arch.AARCH64, big)
    big.write_bytes(big.read_bytes() + bytes(2 * 1024 * 1024))
    digest = _sha(img)
    with pytest.raises(TceIpfsError):
        _bootimage(img, CID, p2p_initrd=big)
    assert _sha(img) == digest
    assert [p.name for p in tmp_path.iterdir() if "tce-ipfs-tmp" in p.name] == []


def test_image_detection(tmp_path: Path, iso64: Path) -> None:
    assert picore.fat_image_offset(iso64) is None  # a hybrid ISO has an MBR, but it is an ISO
    junk = tmp_path / "junk.img"
    junk.write_bytes(bytes(4096))
    assert picore.fat_image_offset(junk) is None
    gpt = bytearray(4096)
    gpt[446 + 4] = 0xEE
    gpt[446 + 8:446 + 16] = (1).to_bytes(4, "little") + (7).to_bytes(4, "little")
    gpt[510:512] = b"\x55\xaa"
    (tmp_path / "gpt.img").write_bytes(bytes(gpt))
    with pytest.raises(RemasterError, match="GPT disk image"):
        picore.fat_image_offset(tmp_path / "gpt.img")
    linux = bytearray(gpt)
    linux[446 + 4] = 0x83
    (tmp_path / "linux.img").write_bytes(bytes(linux))
    with pytest.raises(RemasterError, match=r"first partition \(type 0x83, sector 1\) is not a FAT"):
        picore.fat_image_offset(tmp_path / "linux.img")
