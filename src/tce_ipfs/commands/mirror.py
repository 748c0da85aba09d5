"""`tce-ipfs mirror pull URL DIR`: keep a local copy of a Tiny Core HTTP mirror in sync."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from tce_ipfs.cli import emit
from tce_ipfs.commands import action_group
from tce_ipfs.errors import RepoError
from tce_ipfs.log import human

EPILOG = """\
URL is a mirror's top (http://repo.tinycorelinux.net/: the --release/--arch given, else every
<N>.x/<arch>/tcz/ its directory listings show) or one tcz/ directory (.../16.x/x86_64/tcz/).
DIR gets TC's layout, DIR/16.x/x86_64/tcz/, which `tce-ipfs publish DIR` publishes as one root.

Only what changed is fetched: the mirror's md5.db.gz and sizelist.gz say what it has; an extension
is fetched when the local copy is missing or its md5 differs, verified against md5.db.gz and its
.md5.txt, and put in place with its sidecars (.md5.txt .dep .info .list .tree .zsync). Extensions gone
from the mirror are removed; files the pull did not bring (your own lists) stay. An interrupted pull
resumes where it stopped (DIR/.tce-ipfs/ keeps the partial files and what was verified).

examples:
  tce-ipfs mirror pull http://repo.tinycorelinux.net/ /srv/tc-mirror --release 16.x --arch x86_64
  tce-ipfs mirror pull http://10.0.0.5/16.x/aarch64/tcz/ /srv/tc-mirror
  tce-ipfs mirror pull URL DIR && tce-ipfs publish DIR --seed --name lab-mirror --keep 3
"""


def cmd_pull(args: argparse.Namespace) -> int:
    from tce_ipfs import tcmirror

    results = tcmirror.pull(args.url, Path(args.dir), releases=args.release, arches=args.arch,
                            jobs=args.jobs, progress=True, timeout=args.timeout, delete=not args.keep_removed)
    lines = []
    for r in results:
        lines.append(f"{r.prefix}: {r.extensions} extensions; fetched {len(r.fetched)} ({human(r.bytes)}), "
                     f"removed {len(r.removed)}, failed {len(r.failed)}")
        lines += [f"  failed: {name}: {why}" for name, why in sorted(r.failed.items())]
    data = {"dir": str(args.dir), "url": args.url, "dirs": [r.as_json() for r in results]}
    emit(args, data, "\n".join(lines))
    failed = sum(len(r.failed) for r in results)
    if failed:
        raise RepoError(f"{failed} extension(s) could not be pulled (the local copies are left as they were)",
                        hint="pull again later: a mirror being updated can be inconsistent for a while")
    return 0


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    actions = action_group(sub, common, "mirror", help="follow a Tiny Core HTTP mirror (mirror pull)",
                           description="Keep a local copy of a Tiny Core HTTP mirror in sync.", epilog=EPILOG)
    p = actions.add_parser("pull", parents=[common], help="fetch what changed on an HTTP mirror into DIR",
                           description=__doc__, epilog=EPILOG,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("url", metavar="URL", help="the mirror's top, or one of its tcz/ directories")
    p.add_argument("dir", metavar="DIR", help="local copy (TC layout: DIR/<release>/<arch>/tcz/)")
    p.add_argument("--release", action="append", default=[], metavar="R",
                   help="a release to follow, e.g. 16.x (repeatable; default: all the listing shows)")
    p.add_argument("--arch", action="append", default=[], metavar="A",
                   help="an arch to follow, e.g. x86_64 (repeatable; default: all the listing shows)")
    p.add_argument("--jobs", type=int, default=4, metavar="N", help="downloads at once (default 4)")
    p.add_argument("--timeout", type=float, default=60.0, metavar="S", help="per request (default 60)")
    p.add_argument("--keep-removed", action="store_true",
                   help="keep extensions the mirror no longer has (default: remove them)")
    p.set_defaults(func=cmd_pull)
