"""ELF files for tests: crafted headers for any arch (no cross compilers), host-compiled C programs."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import pytest

from tce_ipfs.arch import Arch

E_MACHINE = {Arch.X86_64: 62, Arch.AARCH64: 183, Arch.X86: 3, Arch.ARMV7: 40}
GO_ARM_FLAGS = 0x05000002  # what Go's linker writes: EABI5, has entry point
PT_LOAD, PT_DYNAMIC, PT_INTERP = 1, 2, 3
DT_NULL, DT_NEEDED, DT_STRTAB, DT_STRSZ = 0, 1, 5, 10
ET_EXEC, ET_REL = 2, 1


def make_elf(path: Path, arch: Arch | None = None, *, machine: int | None = None, bits: int | None = None,
             little: bool = True, flags: int | None = None, etype: int = ET_EXEC,
             interp: str | None = None, needed: tuple[str, ...] = ()) -> Path:
    """Write a minimal but well-formed ELF executable header set: one PT_LOAD covering the file, and
    optionally PT_INTERP and a PT_DYNAMIC with DT_NEEDED entries (string table inside the load)."""
    if arch is not None:
        machine = E_MACHINE[arch] if machine is None else machine
        bits = arch.info.elf_class if bits is None else bits
        if flags is None:
            flags = GO_ARM_FLAGS if arch is Arch.ARMV7 else 0
    assert machine is not None and bits is not None
    flags = flags or 0
    e = "<" if little else ">"
    w = "Q" if bits == 64 else "I"
    ehsize, phentsize = (64, 56) if bits == 64 else (52, 32)
    base = 0x400000

    phdrs: list[tuple[int, int, int, int]] = []  # (type, offset, size, flags)
    nph = 1 + (interp is not None) + bool(needed)
    data_off = ehsize + nph * phentsize
    blob = b""
    if interp is not None:
        raw = interp.encode() + b"\0"
        phdrs.append((PT_INTERP, data_off + len(blob), len(raw), 4))
        blob += raw
    if needed:
        strtab = b"\0" + b"".join(n.encode() + b"\0" for n in needed)
        str_off = data_off + len(blob)
        blob += strtab
        blob += b"\0" * (-len(blob) % 8)
        entries: list[tuple[int, int]] = []
        pos = 1
        for n in needed:
            entries.append((DT_NEEDED, pos))
            pos += len(n) + 1
        entries += [(DT_STRTAB, base + str_off), (DT_STRSZ, len(strtab)), (DT_NULL, 0)]
        dyn = b"".join(struct.pack(e + ("qQ" if bits == 64 else "iI"), t, v) for t, v in entries)
        phdrs.append((PT_DYNAMIC, data_off + len(blob), len(dyn), 6))
        blob += dyn
    total = data_off + len(blob)
    phdrs.insert(0, (PT_LOAD, 0, total, 5))

    ident = b"\x7fELF" + bytes([2 if bits == 64 else 1, 1 if little else 2, 1, 0]) + b"\0" * 8
    ehdr = ident + struct.pack(e + "HHI" + w + w + w + "IHHHHHH", etype, machine, 1, base + data_off,
                               ehsize, 0, flags, ehsize, phentsize, len(phdrs), 0, 0, 0)
    out = b""
    for ptype, off, size, pflags in phdrs:
        if bits == 64:
            out += struct.pack(e + "IIQQQQQQ", ptype, pflags, off, base + off, base + off, size, size, 0x1000)
        else:
            out += struct.pack(e + "IIIIIIII", ptype, off, base + off, base + off, size, size, pflags, 0x1000)
    path.write_bytes(ehdr + out + blob)
    path.chmod(0o755)
    return path


C_PROGRAM = r"""
#include <stdio.h>
#include <string.h>
int main(int argc, char **argv) {
    if (argc > 2 && strcmp(argv[1], "version") == 0 && strcmp(argv[2], "--number") == 0) {
        puts(VERSION);
        return 0;
    }
    puts("hello from a tiny C program");
    return 0;
}
"""


def compile_c(out: Path, *, static: bool, version: str = "0.43.1") -> Path:
    """A host binary (static or dynamic) that answers `version --number` like kubo does."""
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc not installed: host-compiled ELF cases skipped (crafted ones still run)")
    from tce_ipfs import proc

    src = out.with_suffix(".c")
    src.write_text(C_PROGRAM)
    args = [gcc, "-O1", f'-DVERSION="{version}"', "-o", str(out), str(src)]
    if static:
        args.insert(1, "-static")
    try:
        proc.run(args, what="compiling a test program")
    except Exception as exc:  # e.g. no static libc (libc6-dev) installed
        pytest.skip(f"cannot compile a {'static' if static else 'dynamic'} test program: {exc}")
    return out
