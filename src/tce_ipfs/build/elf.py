"""Check that a binary can run on a Tiny Core machine of a given arch, with pyelftools.

``validate(path, arch)`` reads only the ELF header, the program headers and the dynamic segment (a
few KiB, milliseconds even for a 60 MB kubo) and raises ``ElfMismatch`` naming what was expected and
what was found. A TC system has a small, arch-specific libc (and for x86 on Core64 none that matches),
so every binary we ship must be statically linked: no ``PT_INTERP``, no ``DT_NEEDED``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.elf.dynamic import DynamicSegment
from elftools.elf.elffile import ELFFile

from tce_ipfs.arch import Arch
from tce_ipfs.errors import ElfMismatch, UsageError

# ARM e_flags (ARM ELF ABI, "ELF header" section).
EF_ARM_EABIMASK = 0xFF000000
EF_ARM_EABI_VER5 = 0x05000000
EF_ARM_ABI_FLOAT_SOFT = 0x00000200
EF_ARM_ABI_FLOAT_HARD = 0x00000400

_DT_NULL = 0
_DT_NEEDED = 1

ELF_MAGIC = b"\x7fELF"


@dataclass(frozen=True)
class ElfInfo:
    path: Path
    arch: Arch | None  # the arch this header describes, None when it is none of ours
    machine: str  # pyelftools' e_machine name, e.g. "EM_AARCH64"
    elf_class: int  # 32 or 64
    little_endian: bool
    elf_type: str  # ET_EXEC, or ET_DYN for a static PIE
    static: bool
    interpreter: str | None = None
    needed: tuple[str, ...] = ()
    flags: int = 0  # raw e_flags
    float_abi: str | None = None  # ARM only: "hard", "soft" or "unspecified" (what Go writes)
    size: int = 0

    def describe(self) -> str:
        name = self.arch.info.name if self.arch else self.machine
        endian = "little-endian" if self.little_endian else "big-endian"
        link = "static" if self.static else "dynamic"
        return f"{name}, ELF{self.elf_class} {endian}, {link}, {self.size} bytes"

    def as_dict(self) -> dict[str, object]:
        return {
            "path": str(self.path),
            "arch": self.arch.info.name if self.arch else None,
            "machine": self.machine,
            "elf_class": self.elf_class,
            "little_endian": self.little_endian,
            "elf_type": self.elf_type,
            "static": self.static,
            "interpreter": self.interpreter,
            "needed": list(self.needed),
            "flags": f"0x{self.flags:08x}",
            "float_abi": self.float_abi,
            "size": self.size,
        }


def _detect_arch(machine: str, elf_class: int, little: bool) -> Arch | None:
    for arch in Arch:
        i = arch.info
        if i.elf_machine == machine and i.elf_class == elf_class and little:
            return arch
    return None


def _found_name(machine: str, elf_class: int, little: bool) -> str:
    """How to call what we found in an error: our arch name when the machine is one of ours."""
    for arch in Arch:
        if arch.info.elf_machine == machine:
            name = arch.info.name
            break
    else:
        name = machine.removeprefix("EM_") if machine.startswith("EM_") else machine
    extra = []
    if not little:
        extra.append("big-endian")
    extra.append(f"ELF{elf_class}")
    return f"{name} ({', '.join(extra)})"


def _needed(elf: ELFFile, segment_data: bytes) -> list[str]:
    """DT_NEEDED names of a PT_DYNAMIC segment; offsets when the string table cannot be found."""
    word = 8 if elf.elfclass == 64 else 4
    fmt = ("<" if elf.little_endian else ">") + ("qQ" if word == 8 else "iI")
    offsets: list[int] = []
    for pos in range(0, len(segment_data) - 2 * word + 1, 2 * word):
        tag, val = struct.unpack_from(fmt, segment_data, pos)
        if tag == _DT_NULL:
            break
        if tag == _DT_NEEDED:
            offsets.append(val)
    if not offsets:
        return []
    names: list[str] = []
    try:
        for seg in elf.iter_segments("PT_DYNAMIC"):
            if not isinstance(seg, DynamicSegment):
                continue
            for tag in seg.iter_tags("DT_NEEDED"):
                names.append(str(getattr(tag, "needed", "")))
    except (ELFError, AttributeError, ValueError, KeyError, struct.error):
        names = []
    return names if len(names) == len(offsets) else [f"<string at 0x{o:x}>" for o in offsets]


def inspect(path: Path) -> ElfInfo:
    """Read what a file is, without judging it. Raises ``ElfMismatch`` for a non-ELF or broken file."""
    path = Path(path)
    name = path.name
    try:
        size = path.stat().st_size
        fh = path.open("rb")
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UsageError(f"{path} is a directory, not a binary") from None
    with fh:
        head = fh.read(4)
        if head != ELF_MAGIC:
            shown = "an empty file" if not head else f"starts with {head!r}"
            raise ElfMismatch(f"{name} is not an ELF binary ({shown})",
                              hint=f"check the path {path}; a kubo binary starts with \\x7fELF")
        fh.seek(0)
        try:
            elf = ELFFile(fh)
            machine = str(elf["e_machine"])
            elf_class = int(elf.elfclass)
            little = bool(elf.little_endian)
            elf_type = str(elf["e_type"])
            flags = int(elf["e_flags"])
            interp: str | None = None
            needed: list[str] = []
            for seg in elf.iter_segments():
                ptype = seg["p_type"]
                if ptype == "PT_INTERP":
                    interp = seg.data().rstrip(b"\x00").decode(errors="replace")
                elif ptype == "PT_DYNAMIC":
                    needed.extend(_needed(elf, seg.data()))
        except (ELFError, struct.error, ValueError, KeyError) as exc:
            raise ElfMismatch(f"{name} is a truncated or corrupt ELF file ({exc})",
                              hint=f"re-download or rebuild {path}") from None
    float_abi = None
    if machine == "EM_ARM":
        if flags & EF_ARM_ABI_FLOAT_HARD:
            float_abi = "hard"
        elif flags & EF_ARM_ABI_FLOAT_SOFT:
            float_abi = "soft"
        else:
            float_abi = "unspecified"
    return ElfInfo(
        path=path,
        arch=_detect_arch(machine, elf_class, little),
        machine=machine,
        elf_class=elf_class,
        little_endian=little,
        elf_type=elf_type,
        static=interp is None and not needed,
        interpreter=interp,
        needed=tuple(needed),
        flags=flags,
        float_abi=float_abi,
        size=size,
    )


def validate(path: Path, arch: Arch) -> ElfInfo:
    """Return ``ElfInfo`` when ``path`` is a static executable for ``arch``; else raise ``ElfMismatch``."""
    info = inspect(path)
    name = Path(path).name
    want = arch.info
    if info.elf_type not in ("ET_EXEC", "ET_DYN"):
        raise ElfMismatch(f"{name} is not an executable ({info.elf_type})")
    if info.arch is not arch:
        found = _found_name(info.machine, info.elf_class, info.little_endian)
        if info.arch is not None:
            found = info.arch.info.name
        raise ElfMismatch(f"{name} is {found}, expected {want.name}",
                          hint=f"build or download the {want.name} binary "
                               f"(tce-ipfs kubo build --arch {want.name})")
    if info.interpreter is not None:
        raise ElfMismatch(f"{name} is dynamically linked (PT_INTERP {info.interpreter}); "
                          "TC needs a static binary",
                          hint="build with CGO_ENABLED=0 (tce-ipfs kubo build does)")
    if info.needed:
        raise ElfMismatch(f"{name} is dynamically linked (DT_NEEDED {', '.join(info.needed)}); "
                          "TC needs a static binary",
                          hint="build with CGO_ENABLED=0 (tce-ipfs kubo build does)")
    # armv7: Linux on armhf runs EABI binaries only (OABI compat is off in TC's and Debian's kernels),
    # so EABI version 5 is required. The float-ABI bits are *not* checked: they only matter for calls
    # into shared libraries, a static binary runs either way, and Go never sets them (e_flags
    # 0x05000002 = EABI5 + "has entry point"). They are reported in ``ElfInfo.float_abi``.
    if arch is Arch.ARMV7 and info.flags & EF_ARM_EABIMASK != EF_ARM_EABI_VER5:
        raise ElfMismatch(
            f"{name} is ARM but not EABI version 5 (e_flags 0x{info.flags:08x}); expected armv7 EABI5",
            hint="build with GOARCH=arm GOARM=7")
    return info
