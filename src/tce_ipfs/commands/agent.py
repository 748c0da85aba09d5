"""`tce-ipfs install|status|seed|unseed`: the agent on a booted Tiny Core machine.

Imports only ``tce_ipfs.agent`` (and the CLI's ``emit``), so it works inside ``tce-ipfs-agent.tcz``
where the build-host modules are absent.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from tce_ipfs.cli import emit

EPILOG_INSTALL = """\
Like `tce-load -wi NAME`, but from the IPFS repository this machine booted with (tce=ipfs:<CID>) or
--cid, through the local kubo: dependency closure from the repo's .dep files, md5 check of every
file, loaded with tce-load -i as the tc user. The fetched files stay pinned, so this machine serves
them to its peers.

examples:
  tce-ipfs install extra                    fetch extra.tcz + its deps into <tcedir>/optional, load
  tce-ipfs install extra --onboot           ... and add it to onboot.lst
  tce-ipfs install nano --cid bafy...       from another repository
"""

EPILOG_STATUS = """\
examples:
  tce-ipfs status            repo CID, peers (bytes sent/received each), totals, pinned extensions
  tce-ipfs status --json
"""

EPILOG_SEED = """\
Adds <tcedir>/optional/*.tcz and /tmp/builtin/optional/*.tcz (what the boot hook fetched), with their
.md5.txt/.dep, to the local kubo with the publisher's parameters (CIDv1, raw leaves), so they get the
repository's CIDs, and pins them: peers can fetch them from here.
`unseed` unpins the same files (--gc also frees their blocks at once).

examples:
  tce-ipfs seed               seed every extension in the tce dir
  tce-ipfs seed nano          just nano.tcz
  tce-ipfs unseed --gc
"""


def _api(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--api", metavar="MULTIADDR",
                        help="kubo RPC API (default $TCE_IPFS_API or /ip4/127.0.0.1/tcp/5001)")


def cmd_install(args: argparse.Namespace) -> int:
    from tce_ipfs.agent import ops

    def say(msg: str) -> None:
        if not args.json:
            print(f"tce-ipfs: {msg}", file=sys.stderr)

    res = ops.install(args.name, cid=args.cid, onboot=args.onboot, api=args.api, progress=say)
    fetched = sum(res.fetched.values())
    text = (f"{res.name}: OK ({len(res.closure)} extension(s); fetched {len(res.fetched)} "
            f"({fetched} bytes), reused {len(res.reused)}, loaded {len(res.loaded)}"
            + (", added to onboot list" if res.onboot else "") + ")")
    emit(args, res.as_json(), text)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from tce_ipfs.agent import ops

    info = ops.status(api=args.api)
    emit(args, info, ops.render_status(info))
    return 0


def _rows(rows: list[dict[str, Any]], key: str, yes: str, no: str) -> str:
    if not rows:
        return "no extensions in the tce dir's optional/"
    return "\n".join(f"{r['name']}: {r['cid']} ({yes if r.get(key) else no})" for r in rows)


def cmd_seed(args: argparse.Namespace) -> int:
    from tce_ipfs.agent import ops

    rows = ops.seed(args.names, api=args.api)
    emit(args, rows, _rows(rows, "in_repo", "same CID as the booted repo", "pinned"))
    return 0


def cmd_unseed(args: argparse.Namespace) -> int:
    from tce_ipfs.agent import ops

    rows = ops.unseed(args.names, api=args.api, gc=args.gc)
    emit(args, rows, _rows(rows, "unpinned", "unpinned", "was not pinned"))
    return 0


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser("install", parents=[common], formatter_class=fmt, epilog=EPILOG_INSTALL,
                       help="(on TC) install an extension from the booted IPFS repo, with its deps")
    p.add_argument("name", help="extension name (with or without .tcz)")
    p.add_argument("--cid", help="repository root CID (default: the one this machine booted with)")
    p.add_argument("--onboot", action="store_true", help="also append it to the onboot list")
    _api(p)
    p.set_defaults(func=cmd_install)

    p = sub.add_parser("status", parents=[common], formatter_class=fmt, epilog=EPILOG_STATUS,
                       help="(on TC) repo CID, peers, bytes served/received, pinned extensions")
    _api(p)
    p.set_defaults(func=cmd_status)

    for name, func, helptext in (("seed", cmd_seed, "(on TC) pin the tce dir's extensions for peers"),
                                 ("unseed", cmd_unseed, "(on TC) release them again")):
        p = sub.add_parser(name, parents=[common], formatter_class=fmt, epilog=EPILOG_SEED, help=helptext)
        p.add_argument("names", nargs="*", metavar="NAME", help="extensions (default: all of them)")
        _api(p)
        if name == "unseed":
            p.add_argument("--gc", action="store_true", help="run `ipfs repo gc` afterwards")
        p.set_defaults(func=func)
