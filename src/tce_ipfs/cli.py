"""`tce-ipfs` command line. The only place that turns exceptions into messages, hints and exit codes."""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from collections.abc import Sequence
from typing import Any

from tce_ipfs import __version__
from tce_ipfs.errors import TceIpfsError

# Each module in tce_ipfs.commands has `register(subparsers)`; a handler is `func(args) -> int`.
# Commands whose module is missing (e.g. host-only ones inside the agent .tcz) are skipped.
COMMAND_MODULES = (
    "kubo",
    "tcz",
    "node",
    "publish",
    "initrd",
    "guest",
    "demo",
    "bench",
    "remaster",
    "cluster",
    "seed",  # before "agent": on the build host it registers the seed group the agent also knows
    "agent",
)

EPILOG = """\
examples:
  tce-ipfs kubo build --arch aarch64          build (or reuse) kubo for aarch64
  tce-ipfs tcz pack ./tree -o out/hello.tcz   pack a directory as a Tiny Core extension
  tce-ipfs tcz build ipfs --arch x86_64 -o out
  tce-ipfs node start                         start an isolated local seed node
  tce-ipfs publish ./repo --json              publish a TC repo directory, print its root CID
  tce-ipfs seed serve ./repo --listen eth1    serve it to the lab LAN, print the boot line
  tce-ipfs netboot --seed STATE -o /srv/tftp  a PXE tree booting from that seed
  tce-ipfs cluster start --listen eth1        several seeds as one IPFS Cluster (--join the first)
  tce-ipfs demo --arch x86_64                 build, publish and boot a guest with tce=ipfs:<CID>
  tce-ipfs remaster Core.iso --cid CID -o p2p.iso --default
  tce-ipfs install firefox --onboot           (on a booted TC) like tce-load -wi, from the boot CID
"""


class _Formatter(argparse.RawDescriptionHelpFormatter):
    pass


def _common_options(parser: argparse.ArgumentParser, default: object) -> None:
    parser.add_argument("--debug", action="store_true", default=default,
                        help="log every external command and more")
    parser.add_argument("--json", action="store_true", default=default,
                        help="print machine-readable JSON where output is data")


def build_parser() -> argparse.ArgumentParser:
    # The options are accepted before and after the subcommand. The subcommands' copy defaults to
    # SUPPRESS so that `tce-ipfs --json node status` is not reset by the subparser's own default.
    common = argparse.ArgumentParser(add_help=False)
    _common_options(common, argparse.SUPPRESS)

    parser = argparse.ArgumentParser(
        prog="tce-ipfs",
        description="Peer-to-peer, content-addressed delivery of Tiny Core Linux extensions over IPFS.",
        epilog=EPILOG,
        formatter_class=_Formatter,
    )
    _common_options(parser, False)
    parser.add_argument("--version", action="version", version=f"tce-ipfs {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"tce_ipfs.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith("tce_ipfs.commands"):
                continue
            raise
        module.register(sub, common)
    return parser


def emit(args: argparse.Namespace, data: Any, text: str | None = None) -> None:
    """Print ``data`` as JSON under --json, else ``text`` (or a readable rendering of ``data``)."""
    if getattr(args, "json", False):
        json.dump(data, sys.stdout, indent=2, sort_keys=True, default=str)
        sys.stdout.write("\n")
    elif text is not None:
        print(text)
    elif isinstance(data, dict):
        for key, value in data.items():
            print(f"{key}: {value}")
    else:
        print(data)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        format="%(message)s" if not args.debug else "%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except TceIpfsError as exc:
        print(f"tce-ipfs: error: {exc}", file=sys.stderr)
        if exc.hint:
            print(f"tce-ipfs: hint: {exc.hint}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("tce-ipfs: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `tce-ipfs ... | head`: the reader left; not an error worth a traceback.
        sys.stderr.close()
        return 0
