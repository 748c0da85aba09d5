"""`tce-ipfs publish REPO_DIR`: add a Tiny Core repository to kubo, print its root CID."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from tce_ipfs.cli import emit
from tce_ipfs.ipfs import rpc
from tce_ipfs.ipfs.node import default_repo, read_api_file
from tce_ipfs.ipfs.publish import publish

EPILOG = """\
REPO_DIR is either flat (NAME.tcz + NAME.tcz.md5.txt/.dep/.info/... + *.lst, like a mirror's tcz/)
or a tce dir (optional/* + onboot.lst). Either way it is published as ONE flat directory:
/ipfs/<root>/onboot.lst, /ipfs/<root>/NAME.tcz, /ipfs/<root>/NAME.tcz.md5.txt, ...
Names, .dep and .lst entries are checked before anything is added; every .tcz is hashed against
its .md5.txt while kubo adds (a mismatch refuses the publish and takes the pin back).

examples:
  tce-ipfs publish ./repo                  print the root CID (node: `tce-ipfs node start`)
  tce-ipfs publish ./repo --json           root, per-file CIDs and sizes, total bytes
  tce-ipfs publish /mnt/sda1/tce --kernel 6.6.8-tinycore64
"""


def default_api() -> str:
    """The seed node's API when `tce-ipfs node start` runs one, else kubo's usual 5001."""
    return read_api_file(default_repo()) or rpc.DEFAULT_API


def cmd_publish(args: argparse.Namespace) -> int:
    api = args.api or default_api()
    with rpc.client(api, timeout=args.timeout) as client:
        result = publish(Path(args.repo_dir), client, check=not args.no_check, progress=True,
                         kernel=args.kernel)
    emit(args, result.as_json(), result.root_cid)
    return 0


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("publish", parents=[common], help="publish a TC repo directory, print its root CID",
                       description=__doc__, epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("repo_dir", metavar="REPO_DIR", help="directory of .tcz files (flat or tce-dir layout)")
    p.add_argument("--api", metavar="MULTIADDR",
                   help="kubo RPC API (default: the `tce-ipfs node start` node, else "
                        f"{rpc.DEFAULT_API})")
    p.add_argument("--no-check", action="store_true",
                   help="skip the md5/dependency checks (unsafe names are still refused)")
    p.add_argument("--kernel", metavar="RELEASE",
                   help="resolve -KERNEL dependencies for this kernel release only")
    p.add_argument("--timeout", type=float, default=600.0, metavar="S",
                   help="seconds to wait for any single API read (default 600)")
    p.set_defaults(func=cmd_publish)
