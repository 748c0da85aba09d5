"""Target architectures and everything each one maps to, in one table.

One ``Arch`` member knows its name in Go (GOARCH/GOARM), Debian, QEMU, ELF and Tiny Core's repository
layout, so no other module spells those strings out.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from tce_ipfs.errors import UsageError


@dataclass(frozen=True)
class ArchInfo:
    name: str  # our canonical name, also TC's `getBuild` word for x86/x86_64/aarch64
    goarch: str
    goarm: str | None
    debian: str  # dpkg architecture
    kernel_flavour: str  # Debian linux-image-<ver>-<flavour>
    qemu_binary: str
    qemu_machine: str
    qemu_cpu: str
    console: str  # serial console device for the kernel command line
    tc_repo: str  # directory name in <mirror>/<major>.x/<tc_repo>/tcz
    elf_machine: str  # pyelftools' e_machine name
    elf_class: int  # 32 or 64
    uname: tuple[str, ...]  # `uname -m` values that mean this arch
    ld_so: str  # userland dynamic loader path TC's getBuild looks for


class Arch(enum.Enum):
    X86_64 = ArchInfo("x86_64", "amd64", None, "amd64", "amd64", "qemu-system-x86_64", "pc", "qemu64",
                      "ttyS0", "x86_64", "EM_X86_64", 64, ("x86_64",), "/lib/ld-linux-x86-64.so.2")
    AARCH64 = ArchInfo("aarch64", "arm64", None, "arm64", "arm64", "qemu-system-aarch64", "virt",
                       "cortex-a57", "ttyAMA0", "aarch64", "EM_AARCH64", 64, ("aarch64", "arm64"),
                       "/lib/ld-linux-aarch64.so.1")
    X86 = ArchInfo("x86", "386", None, "i386", "686-pae", "qemu-system-i386", "pc", "qemu32",
                   "ttyS0", "x86", "EM_386", 32, ("i686", "i586", "i486", "i386"), "/lib/ld-linux.so.2")
    ARMV7 = ArchInfo("armv7", "arm", "7", "armhf", "armmp-lpae", "qemu-system-arm", "virt", "cortex-a15",
                     "ttyAMA0", "armhf", "EM_ARM", 32, ("armv7l", "armv7", "armhf"),
                     "/lib/ld-linux-armhf.so.3")

    @property
    def info(self) -> ArchInfo:
        info: ArchInfo = self.value
        return info

    def __str__(self) -> str:
        return self.info.name

    @property
    def go_env(self) -> dict[str, str]:
        env = {"GOOS": "linux", "GOARCH": self.info.goarch, "CGO_ENABLED": "0"}
        if self.info.goarm:
            env["GOARM"] = self.info.goarm
        return env

    @property
    def is_64bit(self) -> bool:
        return self.info.elf_class == 64

    @classmethod
    def parse(cls, text: str) -> Arch:
        """Accept our names plus the usual aliases (amd64, arm64, i686, armhf, ...)."""
        key = text.strip().lower()
        for arch in cls:
            i = arch.info
            if key in (i.name, i.goarch, i.debian, i.tc_repo, *i.uname):
                return arch
        names = ", ".join(a.info.name for a in cls)
        raise UsageError(f"unknown architecture {text!r}", hint=f"use one of: {names}")

    @classmethod
    def names(cls) -> list[str]:
        return [a.info.name for a in cls]

    @classmethod
    def host(cls) -> Arch:
        import platform

        return cls.parse(platform.machine())
