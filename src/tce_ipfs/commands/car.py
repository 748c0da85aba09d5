"""`tce-ipfs car export|import`: a published root as one CAR file, and back into a node."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from tce_ipfs.cli import emit
from tce_ipfs.commands import action_group
from tce_ipfs.commands.publish import node_for

EPILOG = """\
A CAR file holds a root's whole DAG (every block of every file and directory), in the order a walk
meets them: exporting the same root twice gives the same file. Carry it where there is no network
(a USB stick: the boot code ipfs.car= imports it at boot) and import it into a seed there.

examples:
  tce-ipfs car export bafy... -o repo.car                     a root the node holds
  tce-ipfs car export /ipfs/bafy.../16.x/x86_64/tcz -o x86_64.car
  tce-ipfs car export ./lab-repo -o lab.car                   publish the directory, export its root
  tce-ipfs car import repo.car --seed                         into the running lab seed, pinned
"""


def _client(args: argparse.Namespace) -> Any:
    from tce_ipfs.ipfs import rpc

    api, _state, _cache = node_for(args)
    return rpc.client(api, timeout=args.timeout)


def cmd_export(args: argparse.Namespace) -> int:
    from tce_ipfs.ipfs import car
    from tce_ipfs.ipfs.publish import publish
    from tce_ipfs.ipfs.roots import pin_name

    target = args.target
    if not Path(target).is_dir():
        car.check_target(target)  # before looking for a node
    with _client(args) as client:
        if Path(target).is_dir():
            source = Path(target).resolve()
            target = publish(source, client, progress=True, pin_name=pin_name(str(source))).root_cid
        res = car.export(client, target, Path(args.output), progress=True)
    emit(args, res.as_json(), f"{res.root} -> {res.path} ({res.bytes} bytes, {res.blocks} blocks)")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from tce_ipfs.ipfs import car

    with _client(args) as client:
        res = car.import_car(client, Path(args.car), expect=args.root)
    emit(args, res.as_json(), "\n".join(f"{r}: complete, pinned" for r in res.roots))
    return 0


def _node_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--api", metavar="MULTIADDR", help="kubo RPC API (default: `tce-ipfs node start`'s)")
    p.add_argument("--seed", nargs="?", const="", metavar="STATE|API", help="the running lab seed's node")
    p.add_argument("--timeout", type=float, default=600.0, metavar="S", help="per API read (default 600)")


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    actions = action_group(sub, common, "car", help="export a root as a CAR file, import one",
                           description="CAR files: a published root's whole DAG in one file.", epilog=EPILOG)
    fmt = argparse.RawDescriptionHelpFormatter
    p = actions.add_parser("export", parents=[common], formatter_class=fmt, epilog=EPILOG,
                           help="write the CAR of a root (CID, /ipfs/ or /ipns/ path, or a repo directory)")
    p.add_argument("target", metavar="CID|PATH", help="a CID, /ipfs/<cid>[/sub/path], /ipns/<name>, or a "
                                                      "directory to publish first")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="the CAR file to write")
    _node_options(p)
    p.set_defaults(func=cmd_export)
    p = actions.add_parser("import", parents=[common], formatter_class=fmt, epilog=EPILOG,
                           help="load a CAR into the node; its roots are pinned once complete")
    p.add_argument("car", metavar="FILE", help="the CAR file")
    p.add_argument("--root", metavar="CID", help="refuse the file unless it holds this root")
    _node_options(p)
    p.set_defaults(func=cmd_import)
