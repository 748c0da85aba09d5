"""elf.validate: right arch + static accepted; wrong arch, dynamic, non-ELF refused with clear messages.

Foreign-arch binaries are crafted here with struct (no cross compilers needed); host binaries are
compiled with gcc (static and dynamic) when it is installed, and /bin/ls stands in for a real dynamic one.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from support.elfs import ET_REL, GO_ARM_FLAGS, compile_c, make_elf
from tce_ipfs.arch import Arch
from tce_ipfs.build import elf
from tce_ipfs.cli import main
from tce_ipfs.errors import ElfMismatch, UsageError


@pytest.mark.parametrize("arch", list(Arch), ids=str)
def test_static_binary_of_each_arch_is_accepted(tmp_path: Path, arch: Arch) -> None:
    info = elf.validate(make_elf(tmp_path / "ipfs", arch), arch)
    assert info.arch is arch
    assert info.static and info.interpreter is None and info.needed == ()
    assert info.elf_class == arch.info.elf_class and info.little_endian


@pytest.mark.parametrize(("found", "expected"),
                         [(f, e) for f in Arch for e in Arch if f is not e], ids=str)
def test_wrong_arch_is_refused_naming_both(tmp_path: Path, found: Arch, expected: Arch) -> None:
    path = make_elf(tmp_path / "ipfs", found)
    with pytest.raises(ElfMismatch) as exc:
        elf.validate(path, expected)
    assert str(exc.value) == f"ipfs is {found}, expected {expected}"
    assert exc.value.hint and f"--arch {expected}" in exc.value.hint


def test_class_and_endianness_mismatch(tmp_path: Path) -> None:
    x32 = make_elf(tmp_path / "ipfs", machine=62, bits=32)  # x86_64 machine in ELF32: the x32 ABI
    with pytest.raises(ElfMismatch, match=r"^ipfs is x86_64 \(ELF32\), expected x86_64$"):
        elf.validate(x32, Arch.X86_64)
    be = make_elf(tmp_path / "be", machine=183, bits=64, little=False)
    with pytest.raises(ElfMismatch, match=r"^be is aarch64 \(big-endian, ELF64\), expected aarch64$"):
        elf.validate(be, Arch.AARCH64)
    mips = make_elf(tmp_path / "mips", machine=8, bits=32, little=False)
    with pytest.raises(ElfMismatch, match=r"^mips is MIPS \(big-endian, ELF32\), expected x86$"):
        elf.validate(mips, Arch.X86)


def test_dynamic_interp_is_refused(tmp_path: Path) -> None:
    path = make_elf(tmp_path / "ipfs", Arch.AARCH64, interp="/lib/ld-linux-aarch64.so.1",
                    needed=("libc.so.6",))
    with pytest.raises(ElfMismatch) as exc:
        elf.validate(path, Arch.AARCH64)
    assert str(exc.value) == ("ipfs is dynamically linked (PT_INTERP /lib/ld-linux-aarch64.so.1); "
                              "TC needs a static binary")
    info = elf.inspect(path)
    assert not info.static and info.arch is Arch.AARCH64
    assert len(info.needed) == 1


def test_dt_needed_without_interp_is_refused(tmp_path: Path) -> None:
    path = make_elf(tmp_path / "ipfs", Arch.ARMV7, needed=("libpthread.so.0", "libc.so.6"))
    with pytest.raises(ElfMismatch, match=r"ipfs is dynamically linked \(DT_NEEDED .+\); TC needs a static"):
        elf.validate(path, Arch.ARMV7)
    assert len(elf.inspect(path).needed) == 2


def test_armv7_flags(tmp_path: Path) -> None:
    hard = elf.validate(make_elf(tmp_path / "hard", Arch.ARMV7, flags=0x05000402), Arch.ARMV7)
    assert hard.float_abi == "hard"
    go = elf.validate(make_elf(tmp_path / "go", Arch.ARMV7), Arch.ARMV7)
    assert go.float_abi == "unspecified" and go.flags == GO_ARM_FLAGS
    oabi = make_elf(tmp_path / "oabi", Arch.ARMV7, flags=0x00000002)
    with pytest.raises(ElfMismatch, match="not EABI version 5"):
        elf.validate(oabi, Arch.ARMV7)


def test_not_an_executable(tmp_path: Path) -> None:
    obj = make_elf(tmp_path / "ipfs.o", Arch.X86_64, etype=ET_REL)
    with pytest.raises(ElfMismatch, match=r"ipfs.o is not an executable \(ET_REL\)"):
        elf.validate(obj, Arch.X86_64)


def test_not_elf_empty_truncated_missing(tmp_path: Path) -> None:
    script = tmp_path / "ipfs"
    script.write_text("#!/bin/sh\necho hi\n")
    with pytest.raises(ElfMismatch, match=r"^ipfs is not an ELF binary \(starts with b'#!/b'\)$"):
        elf.validate(script, Arch.X86_64)
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    with pytest.raises(ElfMismatch, match=r"not an ELF binary \(an empty file\)"):
        elf.validate(empty, Arch.X86_64)
    cut = tmp_path / "cut"
    cut.write_bytes(make_elf(tmp_path / "whole", Arch.X86_64).read_bytes()[:30])
    with pytest.raises(ElfMismatch, match="cut is a truncated or corrupt ELF file"):
        elf.validate(cut, Arch.X86_64)
    with pytest.raises(UsageError, match="no such file"):
        elf.validate(tmp_path / "nope", Arch.X86_64)
    with pytest.raises(UsageError, match="is a directory"):
        elf.validate(tmp_path, Arch.X86_64)


# --- real host binaries ----------------------------------------------------------------------------


def test_host_static_c_binary_is_accepted(tmp_path: Path) -> None:
    host = Arch.host()
    info = elf.validate(compile_c(tmp_path / "ipfs", static=True), host)
    assert info.static and info.arch is host


def test_host_dynamic_c_binary_is_refused(tmp_path: Path) -> None:
    host = Arch.host()
    path = compile_c(tmp_path / "ipfs", static=False)
    with pytest.raises(ElfMismatch) as exc:
        elf.validate(path, host)
    msg = str(exc.value)
    assert msg.startswith("ipfs is dynamically linked (PT_INTERP /")
    assert msg.endswith("); TC needs a static binary")
    if host is Arch.X86_64:
        assert "(PT_INTERP /lib64/ld-linux-x86-64.so.2)" in msg
    assert "libc.so.6" in elf.inspect(path).needed


def test_system_binaries() -> None:
    host = Arch.host()
    with pytest.raises(ElfMismatch, match=r"^ls is dynamically linked \(PT_INTERP "):
        elf.validate(Path("/bin/ls"), host)
    busybox = Path("/bin/busybox")
    if busybox.exists() and elf.inspect(busybox).static:  # busybox-static, from bootstrap/packages.txt
        assert elf.validate(busybox, host).static


def test_cli_validate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = make_elf(tmp_path / "ipfs", Arch.AARCH64)
    assert main(["kubo", "validate", str(good), "--arch", "arm64"]) == 0
    assert "ok (aarch64, ELF64 little-endian, static" in capsys.readouterr().out
    assert main(["kubo", "validate", str(good), "--arch", "x86_64"]) == ElfMismatch.exit_code
    err = capsys.readouterr().err
    assert "tce-ipfs: error: ipfs is aarch64, expected x86_64" in err
    assert main(["kubo", "validate", "--json", str(good), "--arch", "aarch64"]) == 0
    assert '"static": true' in capsys.readouterr().out
