"""`tce-ipfs remaster` (ISO or piCore boot partition) and `tce-ipfs netboot` (PXE/iPXE tree)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tce_ipfs.arch import Arch
from tce_ipfs.cli import emit
from tce_ipfs.errors import UsageError
from tce_ipfs.media import bootcfg

if TYPE_CHECKING:
    from tce_ipfs.ipfs.seed import BootInfo
    from tce_ipfs.media.p2p import P2PBoot

log = logging.getLogger(__name__)

REMASTER_EPILOG = """\
INPUT is a Tiny Core ISO (boot/vmlinuz + boot/core.gz, or boot/vmlinuz64 + boot/corepure64.gz, with
boot/isolinux/isolinux.cfg) or a piCore boot partition (config.txt + cmdline.txt): a directory, a FAT
image of it, or a whole-disk image (MBR) whose first partition it is.

ISO: adds boot/tce-ipfs.gz (hook + ipfs.tcz for the ISO's arch, detected from kernel and userland) and a
`LABEL tce-ipfs` entry booting `initrd=<core>,/boot/tce-ipfs.gz tce=ipfs:<CID> <codes>`; the original
entries and files stay as they are. Remastering a remastered ISO replaces that entry (never two).
Boot partition: copies tce-ipfs.gz in, appends it to every `initramfs` list of config.txt and puts
`tce=ipfs:<CID>` + codes into cmdline.txt (in place, or into a copy with -o). An image is edited with
mtools (no mount, no root), all or nothing: it changes only once every check has passed.

Initrds are gzip (what Tiny Core's kernels take); zstd needs a kernel with CONFIG_RD_ZSTD.

examples:
  tce-ipfs remaster CorePure64-16.0.iso --cid bafy... -o p2p.iso --default \\
      --boot-code ipfs.peers=/ip4/192.168.1.10/tcp/4001/p2p/12D3KooW...
  tce-ipfs remaster CorePure64-16.0.iso --seed -o p2p.iso --default     (the seed's boot line)
  tce-ipfs remaster CorePure64-16.0.iso --from-cluster -o p2p.iso       (every seed of the cluster)
  tce-ipfs remaster /mnt/sdb1 --cid bafy... --arch aarch64
  tce-ipfs remaster piCore64-16.0.img --cid bafy... -o piCore64-p2p.img
"""

NETBOOT_EPILOG = """\
Writes kernel, base initrd, tce-ipfs.gz, pxelinux.0 + ldlinux.c32 + pxelinux.cfg/default, boot.ipxe and
a README.txt (how to serve it: TFTP root for PXE, HTTP for iPXE, a dnsmasq example) into DIR.
Kernel and base initrd come from --kernel/--initrd, from an ISO's default entry (--from-iso), or by
default from the test base (`tce-ipfs guest build`).

examples:
  tce-ipfs netboot --seed -o /srv/tftp --from-iso CorePure64-16.0.iso   (the seed's boot line)
  tce-ipfs netboot --from-cluster -o /srv/tftp --from-iso CorePure64-16.0.iso   (all the seeds)
  tce-ipfs netboot --cid bafy... -o /srv/tftp --from-iso CorePure64-16.0.iso
  tce-ipfs netboot --cid bafy... -o tftp --arch x86_64 --serial --boot-code console=ttyS0
"""


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cid", help="root CID of the published TC repo (tce=ipfs:<CID>)")
    p.add_argument("--seed", nargs="?", const="", metavar="STATE|API",
                   help="take tce=ipfs:<CID>, ipfs.peers= (and ipfs.swarmkey= when private) from a "
                        "`tce-ipfs seed serve` seed: its --state directory (default: the default seed's) "
                        "or its RPC API multiaddr; --cid and --boot-code override")
    p.add_argument("--from-cluster", nargs="?", const="", metavar="STATE|API",
                   help="take tce=ipfs:<CID> (the newest root published through the cluster) and "
                        "ipfs.peers= (every seed that answers) from a `tce-ipfs cluster` seed: its state "
                        "directory (default: this machine's) or its REST API")
    p.add_argument("--arch", choices=Arch.names(), help="expected arch (default: detected)")
    p.add_argument("--boot-code", action="append", default=[], metavar="K=V",
                   help="extra boot code (repeatable): ipfs.peers=..., ipfs.timeout=..., lst=..., base")
    p.add_argument("--compression", choices=("gzip", "zstd"), default="gzip",
                   help="P2P initrd compression (default gzip: Tiny Core's kernels take only gzip)")
    p.add_argument("--ipfs-tcz", type=Path, metavar="PATH", help="ipfs.tcz to embed (default: build it)")
    p.add_argument("--p2p-initrd", type=Path, metavar="PATH",
                   help="a prebuilt P2P initrd (`tce-ipfs initrd build`) instead of building one")


def _request(args: argparse.Namespace) -> P2PBoot:
    """The P2P boot request of both commands (every option checked before any medium is touched)."""
    from tce_ipfs.media.p2p import P2PBoot

    cid = args.cid
    codes: dict[str, str | None] = {}
    info = _seeds(args)
    if info is not None:
        cid = cid or info.cid
        codes.update(info.codes())
    if not cid:
        raise UsageError("give the repo: --cid CID, --seed STATE|API (a `tce-ipfs seed serve` seed) or "
                         "--from-cluster STATE|API (the seeds' cluster)")
    codes.update(bootcfg.parse_codes(args.boot_code))  # the user's codes win over the seed's
    return P2PBoot(cid, codes, compression=args.compression, ipfs_tcz=args.ipfs_tcz,
                   p2p_initrd=args.p2p_initrd)


def _seeds(args: argparse.Namespace) -> BootInfo | None:
    """The boot line ``--seed`` (one seed) or ``--from-cluster`` (every seed of a cluster) gives."""
    if args.seed is not None and args.from_cluster is not None:
        raise UsageError("--seed and --from-cluster: give one of them")
    if args.seed is not None:
        from tce_ipfs.commands.agent import default_state
        from tce_ipfs.ipfs import seed

        return seed.resolve(args.seed or str(default_state()))
    if args.from_cluster is not None:
        from tce_ipfs.commands.cluster import default_state as cluster_state
        from tce_ipfs.ipfs import clusterpins

        api, state = clusterpins.api_for(args.from_cluster or str(cluster_state()), cluster_state())
        key = state.swarm_key() if state is not None else None
        if state is None:
            log.warning("the cluster's seeds are not on this machine: if their swarm is private, add "
                        "--boot-code ipfs.swarmkey=<its key>")
        return clusterpins.boot_info(api, swarm_key=key)
    return None


def cmd_remaster(args: argparse.Namespace) -> int:
    from tce_ipfs.media import iso, picore

    boot = _request(args)
    src = Path(args.input)
    arch = Arch.parse(args.arch) if args.arch else None
    # A FAT image (bare or MBR disk; never an ISO), a directory, else the ISO path (which refuses a
    # non-ISO with its own message).
    fat = not src.is_dir() and picore.fat_image_offset(src) is not None
    if src.is_dir() or fat:
        if args.default or args.append_initrd:
            raise UsageError("--default and --append-initrd apply to ISOs, not to a boot partition")
        fn = picore.remaster_bootimage if fat else picore.remaster_bootdir
        res = fn(src, boot, out=Path(args.output) if args.output else None, arch=arch)
        emit(args, res.as_dict(), f"{res.output}: {res.arch}, cmdline: {res.cmdline}")
        return 0
    if not args.output:
        raise UsageError("remastering an ISO needs -o OUT.iso")
    res_iso = iso.remaster_iso(src, Path(args.output), boot, arch=arch, make_default=args.default,
                               append_initrd=args.append_initrd)
    emit(args, res_iso.as_dict(),
         f"{res_iso.output}: {res_iso.layout} {res_iso.arch}{' +EFI' if res_iso.efi else ''}, entry tce-ipfs"
         f"{' (default)' if res_iso.default else ''}: initrd={','.join(res_iso.initrds)} {res_iso.cmdline}")
    return 0


def cmd_netboot(args: argparse.Namespace) -> int:
    from tce_ipfs.media import netboot

    boot = _request(args)
    arch = Arch.parse(args.arch) if args.arch else None
    kernel, initrd = args.kernel, args.initrd
    if kernel is None and initrd is None and args.from_iso is None:
        from tce_ipfs.testbed import guest  # neither given: the test base's kernel and initrd

        base = guest.ensure_base(arch or Arch.X86_64)
        kernel, initrd = Path(base.kernel), Path(base.initrd)
    res = netboot.netboot(Path(args.output), boot, arch=arch, kernel=kernel, initrd=initrd,
                          from_iso=args.from_iso, cmdline=args.cmdline, serial=args.serial)
    emit(args, res.as_dict(), f"{res.output}: {res.arch} netboot tree ({', '.join(res.files)})\n"
                              f"cmdline: {res.cmdline}\nsee {res.output / 'README.txt'}")
    return 0


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("remaster", parents=[common], help="add tce=ipfs: boot to a TC ISO or piCore boot dir",
                       description="Add P2P boot (tce=ipfs:<CID>) to a Tiny Core ISO or a piCore boot "
                                   "partition.", epilog=REMASTER_EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", metavar="INPUT",
                   help="Tiny Core ISO, or piCore boot partition (directory or image)")
    p.add_argument("-o", "--output", metavar="OUT", help="output ISO (required for ISOs), directory or image")
    _common(p)
    p.add_argument("--default", action="store_true", help="make the P2P entry the default boot entry")
    p.add_argument("--append-initrd", action="store_true",
                   help="one initrd (base + P2P concatenated) instead of a second initrd")
    p.set_defaults(func=cmd_remaster)

    n = sub.add_parser("netboot", parents=[common], help="write a PXE/iPXE netboot tree with tce=ipfs:",
                       description="Write a PXE (pxelinux) / iPXE netboot tree that boots Tiny Core with "
                                   "tce=ipfs:<CID>.", epilog=NETBOOT_EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    n.add_argument("-o", "--output", required=True, metavar="DIR", help="TFTP/HTTP root to write")
    _common(n)
    n.add_argument("--kernel", type=Path, metavar="PATH", help="kernel image")
    n.add_argument("--initrd", type=Path, metavar="PATH", help="base initrd (core.gz)")
    n.add_argument("--from-iso", type=Path, metavar="ISO", help="take kernel + initrd from a TC ISO")
    n.add_argument("--cmdline", metavar="TEXT", help="base kernel command line (default: loglevel=3, "
                                                      "or the ISO entry's)")
    n.add_argument("--serial", action="store_true", help="pxelinux on the serial port (SERIAL 0 115200)")
    n.set_defaults(func=cmd_netboot)
