"""What P2P boot adds to any boot medium -- ISO, piCore boot partition, netboot tree -- checked once.

``P2PBoot`` is the one request every remastering entry point takes (``iso.remaster_iso``,
``picore.remaster_bootdir`` / ``remaster_bootimage``, ``netboot.netboot``): the repo CID, the extra boot
codes, the P2P initrd's compression and where its ``ipfs.tcz`` comes from. Constructing it validates
all of that, so a typo is refused before any medium is read or written.

``P2PBoot.write_initrd(arch, out)`` produces the P2P initrd (``tce-ipfs.gz``) for the medium's arch: a
given one, or ``initrd.build_hook_initrd`` around the given ``ipfs.tcz`` or one built with the ``ipfs``
recipe. Either way the ``ipfs`` binary inside is checked to be for ``arch``.

``scratch()`` and ``check_output()`` are the write-safety rules every medium shares: work in a scratch
directory, never write the output over an input.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tce_ipfs import cidtext
from tce_ipfs.arch import Arch
from tce_ipfs.build import recipes
from tce_ipfs.errors import RemasterError, UsageError
from tce_ipfs.media import bootcfg, cpio, initrd
from tce_ipfs.media.detect import cpio_files, tcz_ipfs_arch

log = logging.getLogger(__name__)

P2P_NAME = "tce-ipfs.gz"  # the P2P initrd's file name on every medium
COMPRESSIONS = ("gzip", "zstd")


@dataclass(frozen=True)
class P2PBoot:
    """A validated P2P boot request.

    ``cid``: the repo's root CID, optionally ``CID/sub/path`` (``/ipfs/`` and ``ipfs://`` are dropped);
    ``codes``: extra boot codes, ``{"ipfs.peers": "/ip4/...", "base": None}`` (see ``bootcfg.check_codes``);
    ``compression``: of the P2P initrd -- gzip (what Tiny Core's kernels take) or zstd;
    ``ipfs_tcz``: the ``ipfs.tcz`` to embed (default: built with the ``ipfs`` recipe for the medium's arch);
    ``p2p_initrd``: a prebuilt P2P initrd (``tce-ipfs initrd build``) to use as it is.
    """

    cid: str
    codes: Mapping[str, str | None] = field(default_factory=dict)
    compression: str = "gzip"
    ipfs_tcz: Path | None = None
    p2p_initrd: Path | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "cid", cidtext.validate(self.cid, allow_path=True))
        object.__setattr__(self, "codes", bootcfg.check_codes(self.codes))
        if self.compression not in COMPRESSIONS:
            raise UsageError(f"unknown compression {self.compression!r}",
                             hint=f"use one of: {', '.join(COMPRESSIONS)}")
        for given in (self.ipfs_tcz, self.p2p_initrd):
            if given is not None and not given.is_file():
                raise UsageError(f"{given}: no such file")

    def cmdline(self, base: str) -> str:
        """``base`` (a kernel command line) with ``tce=ipfs:<CID>`` and the codes (replacing older ones)."""
        return bootcfg.edit_cmdline(base, self.cid, self.codes)

    def boot_codes(self) -> list[str]:
        """``tce=ipfs:<CID>`` and the codes, as they go on the command line."""
        return bootcfg.p2p_codes(self.cid, self.codes)

    def write_initrd(self, arch: Arch, out: Path) -> Path:
        """The P2P initrd for ``arch`` at ``out`` (see the module doc); its ipfs.tcz must be ``arch``'s."""
        if self.compression == "zstd" and self.p2p_initrd is None:
            log.warning("zstd initrd: needs a kernel with CONFIG_RD_ZSTD; Tiny Core's own kernels take gzip "
                        "only")
        if self.p2p_initrd is not None:
            shutil.copyfile(self.p2p_initrd, out)
        elif self.ipfs_tcz is not None:
            check_tcz_arch(self.ipfs_tcz, arch)
            initrd.build_hook_initrd(arch, out, ipfs_tcz=self.ipfs_tcz, compression=self.compression)
        else:
            with tempfile.TemporaryDirectory(prefix="tce-ipfs-tcz-") as tmp:
                built = recipes.build("ipfs", arch, Path(tmp)).tcz
                initrd.build_hook_initrd(arch, out, ipfs_tcz=built, compression=self.compression)
        check_p2p_initrd_arch(out, arch)
        return out


def check_tcz_arch(tcz: Path, target: Arch) -> None:
    found = tcz_ipfs_arch(tcz)
    if found is not target:
        raise RemasterError(f"arch mismatch: {tcz.name} holds a {found or 'non-Linux/unknown'} ipfs binary, "
                            f"the boot media is {target}",
                            hint=f"build it for {target}: tce-ipfs tcz build ipfs --arch {target}")


def check_p2p_initrd_arch(path: Path, target: Arch) -> None:
    """The P2P initrd's ``ipfs.tcz`` must match ``target`` (checked whether we built it or not)."""
    files = cpio_files(cpio.read_initrd(path))
    tczs = [n for n in files if n.endswith("/ipfs.tcz")]
    if not tczs:
        raise RemasterError(f"{path.name} is not a P2P boot initrd (no ipfs.tcz inside)")
    with tempfile.TemporaryDirectory(prefix="tce-ipfs-p2p-") as tmp:
        tcz = Path(tmp) / "ipfs.tcz"
        tcz.write_bytes(files[tczs[0]])
        check_tcz_arch(tcz, target)


@contextlib.contextmanager
def scratch() -> Iterator[Path]:
    """A scratch directory for one remastering run (removed afterwards, whatever happens)."""
    with tempfile.TemporaryDirectory(prefix="tce-ipfs-remaster-") as tmp:
        yield Path(tmp)


def check_output(out: Path, inputs: Sequence[Path]) -> None:
    """``out`` must be in an existing directory and must not be one of ``inputs``."""
    if not out.parent.is_dir():
        raise UsageError(f"output directory {out.parent} does not exist")
    for src in inputs:
        if out.resolve() == src.resolve():
            raise UsageError(f"output {out} is the input; write the remastered media elsewhere")
