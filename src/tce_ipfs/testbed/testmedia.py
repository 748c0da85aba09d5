"""TEST ONLY media: a Tiny-Core-layout ISO around a test kernel and initrd, for the remaster tests.

Real ISOs (xorriso, isolinux) laid out like Tiny Core's own, with a serial console so QEMU tests can
read them. Never shipped to users: a real TC ISO is what ``tce-ipfs remaster`` takes.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from tce_ipfs.arch import Arch
from tce_ipfs.errors import UsageError
from tce_ipfs.media.iso import ISOLINUX_BIN, SYSLINUX_BIOS, build_iso

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
