"""`tce-ipfs initrd ...`: build the tce-ipfs extra initrd; list any initrd's members."""

from __future__ import annotations

import argparse
import stat
import tempfile
from pathlib import Path
from typing import Any

from tce_ipfs.arch import Arch
from tce_ipfs.cli import emit
from tce_ipfs.log import human
from tce_ipfs.media import cpio, initrd


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser(
        "initrd",
        parents=[common],
        help="build or inspect initrd images",
        description="Build the extra initrd that makes tce=ipfs:<CID> work, or list an initrd.",
    )
    cmds = parser.add_subparsers(dest="initrd_command", metavar="ACTION")

    build = cmds.add_parser(
        "build",
        parents=[common],
        help="build the tce-ipfs hook initrd for an arch",
        description="Write the extra initrd: the boot hook (tmp/builtin/tce-ipfs.gz) and "
        "kubo (tmp/builtin/optional/ipfs.tcz). Give it to the kernel after "
        "core.gz, or append it to core.gz.",
    )
    build.add_argument(
        "--arch",
        required=True,
        type=Arch.parse,
        metavar="ARCH",
        help=f"target architecture ({', '.join(Arch.names())})",
    )
    build.add_argument("-o", "--output", required=True, type=Path, metavar="OUT.gz", help="initrd to write")
    build.add_argument(
        "--ipfs-tcz",
        type=Path,
        metavar="PATH",
        help="use this ipfs.tcz instead of building kubo's with the recipe",
    )
    build.add_argument(
        "--compression",
        choices=cpio.COMPRESSIONS,
        default="gzip",
        help="outer compression (the kernel must support it; default gzip)",
    )
    build.set_defaults(func=cmd_build)

    lst = cmds.add_parser(
        "list",
        parents=[common],
        help="list the members of an initrd",
        description="List every member of an initrd (gzip/xz/zstd/plain, concatenated parts too).",
    )
    lst.add_argument("path", type=Path, metavar="INITRD")
    lst.set_defaults(func=cmd_list)

    parser.set_defaults(func=lambda args: parser.print_help() or 2)


def cmd_build(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="tce-ipfs-initrd-") as tmp:
        ipfs_tcz = args.ipfs_tcz
        if ipfs_tcz is None:
            from tce_ipfs.build import recipes

            ipfs_tcz = recipes.build("ipfs", args.arch, Path(tmp)).tcz
        out = initrd.build_hook_initrd(
            args.arch, args.output, ipfs_tcz=ipfs_tcz, compression=args.compression
        )
    size = out.stat().st_size
    emit(
        args,
        {"path": str(out), "size": size, "arch": str(args.arch), "compression": args.compression},
        text=f"{out} ({human(size)}, {args.compression}, {args.arch})",
    )
    return 0


def _kind(entry: cpio.CpioEntry) -> str:
    if entry.is_dir:
        return "d"
    if entry.is_symlink:
        return "l"
    if entry.is_file:
        return "-"
    return "?"


def cmd_list(args: argparse.Namespace) -> int:
    entries = cpio.parse_cpio(cpio.read_initrd(args.path))
    rows = [
        {
            "name": e.name,
            "mode": f"{stat.S_IMODE(e.mode):04o}",
            "type": _kind(e),
            "size": len(e.data),
            **({"target": e.target} if e.is_symlink else {}),
        }
        for e in entries
    ]
    text = "\n".join(
        f"{r['type']}{r['mode']} {r['size']:>10} {r['name']}"
        + (f" -> {r['target']}" if "target" in r else "")
        for r in rows
    )
    emit(args, rows, text=text)
    return 0
