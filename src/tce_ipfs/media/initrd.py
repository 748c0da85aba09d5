"""The P2P initrd: the extra initrd that makes ``tce=ipfs:<CID>`` work (see ``initrd-hooks/README.md``).

``build_hook_initrd(arch, out, ipfs_tcz=...)`` packs the boot hook and the ``ipfs.tcz`` its caller
hands in (built with ``recipes.build("ipfs", arch, dir).tcz``, or one the user has)::

    tmp/                                  1777 (same as TC's; the kernel applies our mode)
    tmp/builtin/tce-ipfs.gz               gzip'd cpio; tce-setup unpacks it into / and runs
                                          usr/local/tce.installed/tce-ipfs (the hook entry point)
                                          with usr/local/lib/tce-ipfs/* (the hook library)
    tmp/builtin/optional/ipfs.tcz         kubo for the arch (+ ipfs.tcz.md5.txt)
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from tce_ipfs import __version__, settings
from tce_ipfs.arch import Arch
from tce_ipfs.errors import BuildError, UsageError
from tce_ipfs.media.cpio import COMPRESSIONS, CpioWriter, compress

log = logging.getLogger(__name__)

SQUASHFS_MAGIC = b"hsqs"

# Where the hook lives inside tce-ipfs.gz (unpacked into / by tce-setup).
HOOK_ENTRY = "usr/local/tce.installed/tce-ipfs"
HOOK_LIB = "usr/local/lib/tce-ipfs"
HOOK_GZ = "tmp/builtin/tce-ipfs.gz"
IPFS_TCZ = "tmp/builtin/optional/ipfs.tcz"


def hook_cpio(arch: Arch | str, hooks_dir: Path | None = None) -> bytes:
    """The inner archive (uncompressed): the hook entry point, its library and build.conf.

    No entries for ``usr``, ``usr/local`` or ``usr/local/tce.installed``: those exist on TC with their
    own owners and modes, and ``cpio -idmu`` would otherwise reset them.
    """
    the_arch = arch if isinstance(arch, Arch) else Arch.parse(arch)
    src = hooks_dir or settings.hooks_dir()
    entry = src / "tce-ipfs"
    lib = src / "lib"
    if not entry.is_file() or not lib.is_dir():
        raise BuildError(f"hook sources missing in {src}", hint="expected tce-ipfs and lib/ there")
    w = CpioWriter()
    w.add_file(HOOK_ENTRY, entry.read_bytes(), 0o755)
    w.add_dir(HOOK_LIB)
    w.add_tree(lib, HOOK_LIB, exec_names=("udhcpc.script",))
    conf = f"HOOK_VERSION={__version__}\nHOOK_ARCH={the_arch.info.name}\n"
    w.add_file(f"{HOOK_LIB}/build.conf", conf.encode(), 0o644)
    return w.finish()


def build_hook_initrd(
    arch: Arch | str,
    out: Path,
    *,
    ipfs_tcz: Path,
    compression: str = "gzip",
    hooks_dir: Path | None = None,
) -> Path:
    """Write the P2P initrd for ``arch`` with ``ipfs_tcz`` to ``out`` (deterministic for the same inputs).

    ``ipfs_tcz`` is the caller's: this module builds nothing (``recipes.build("ipfs", arch, dir).tcz``
    makes one). Its arch is not checked here; ``media.p2p`` checks it for remastered media.
    """
    the_arch = arch if isinstance(arch, Arch) else Arch.parse(arch)
    if compression not in COMPRESSIONS:
        raise UsageError(
            f"unknown compression {compression!r}", hint=f"use one of: {', '.join(COMPRESSIONS)}"
        )
    inner = compress(hook_cpio(the_arch, hooks_dir), "gzip")  # tce-setup runs zcat on it
    try:
        tcz = ipfs_tcz.read_bytes()
    except OSError as exc:
        raise BuildError(f"cannot read {ipfs_tcz}: {exc.strerror}") from exc
    if not tcz.startswith(SQUASHFS_MAGIC):
        raise BuildError(f"{ipfs_tcz} is not a squashfs image (a .tcz must be one)")
    md5 = hashlib.md5(tcz).hexdigest()

    w = CpioWriter()
    w.add_dir("tmp", 0o1777)
    w.add_dir("tmp/builtin")
    w.add_dir("tmp/builtin/optional")
    w.add_file(HOOK_GZ, inner)
    w.add_file(IPFS_TCZ, tcz)
    w.add_file(IPFS_TCZ + ".md5.txt", f"{md5}  ipfs.tcz\n".encode())
    data = compress(w.finish(), compression)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out.with_name(out.name + ".part")
    tmp_out.write_bytes(data)
    tmp_out.replace(out)
    log.debug("wrote %s (%d bytes, %s, ipfs.tcz md5 %s)", out, len(data), compression, md5)
    return out
