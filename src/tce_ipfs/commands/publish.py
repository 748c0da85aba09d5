"""`tce-ipfs publish REPO_DIR`: add a Tiny Core repository to kubo, print its root CID."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from tce_ipfs.cli import emit
from tce_ipfs.errors import UsageError
from tce_ipfs.ipfs import rpc
from tce_ipfs.ipfs.node import default_repo, read_api_file
from tce_ipfs.ipfs.publish import publish

log = logging.getLogger(__name__)

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
  tce-ipfs publish ./repo --cluster STATE --keep 2
                     through the seeds' cluster (`tce-ipfs cluster`): pinned on every seed, waits
                     until it is ("pinned on 2/3 ..."), then unpins all but the newest 2 roots
"""


def default_api() -> str:
    """The seed node's API when `tce-ipfs node start` runs one, else kubo's usual 5001."""
    return read_api_file(default_repo()) or rpc.DEFAULT_API


def cmd_publish(args: argparse.Namespace) -> int:
    if args.cluster:
        return _publish_to_cluster(args)
    if args.replication is not None or args.keep is not None:
        raise UsageError("--replication and --keep go with --cluster")
    api = args.api or default_api()
    with rpc.client(api, timeout=args.timeout) as client:
        result = publish(Path(args.repo_dir), client, check=not args.no_check, progress=True,
                         kernel=args.kernel)
    emit(args, result.as_json(), result.root_cid)
    return 0


def _publish_to_cluster(args: argparse.Namespace) -> int:
    """Publish to a cluster seed's kubo, pin on the cluster, wait for the seeds, drop old roots."""
    from tce_ipfs.commands.cluster import default_state
    from tce_ipfs.ipfs import clusterpins

    api, state = clusterpins.api_for(args.cluster, default_state())
    kubo_api = args.api or (clusterpins.kubo_api_of(state) if state else None)
    if kubo_api is None:
        raise UsageError(f"--cluster {args.cluster} is not a seed on this machine: which kubo gets the "
                         "files?",
                         hint="give --api (that seed's kubo RPC API), or --cluster as its state directory")

    def say(line: str) -> None:
        log.info("%s", line)

    with rpc.client(kubo_api, timeout=args.timeout) as client:
        replication = -1 if args.replication is None else args.replication
        res = clusterpins.publish_to_cluster(
            api, client, Path(args.repo_dir), replication=replication, keep=args.keep,
            timeout=args.wait_timeout, check=not args.no_check, kernel=args.kernel, progress=say, bar=True)
    log.info("%s pinned on %d/%d seeds in %.1f s%s", res.root, len(res.pinned_on), res.required,
             res.seconds_to_pinned, f"; unpinned {len(res.unpinned)} older root(s)" if res.unpinned else "")
    emit(args, res.as_json(), res.root)
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
    p.add_argument("--cluster", metavar="STATE|API",
                   help="publish through the seeds' cluster: a cluster seed's state directory or its REST "
                        "API (/unix/STATE/rest.sock, /ip4/127.0.0.1/tcp/9094); the files go to that seed's "
                        "kubo (or --api)")
    p.add_argument("--replication", type=int, metavar="N",
                   help="with --cluster: pin on N seeds (default: every seed)")
    p.add_argument("--keep", type=int, metavar="K",
                   help="with --cluster: afterwards unpin roots older than the newest K (this one counts)")
    p.add_argument("--wait-timeout", type=float, default=1800.0, metavar="S",
                   help="with --cluster: seconds to wait for the seeds to pin it (default 1800)")
    p.set_defaults(func=cmd_publish)
