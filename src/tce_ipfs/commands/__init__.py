"""CLI command groups. Each module exposes ``register(subparsers, common_parent)``.

Handlers are thin: parse arguments, call library code, print with ``tce_ipfs.cli.emit``.
"""

from __future__ import annotations

import argparse
from typing import Any


def action_group(sub: Any, common: argparse.ArgumentParser, name: str, *, help: str, description: str,
                 epilog: str) -> Any:
    """Register ``tce-ipfs NAME ACTION ...`` and return its ACTION subparsers (dest ``NAME_command``).

    Without an ACTION the group prints its help and exits 2.
    """
    parser = sub.add_parser(name, parents=[common], help=help, description=description, epilog=epilog,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.set_defaults(func=lambda args: _help(parser))
    return parser.add_subparsers(dest=f"{name}_command", metavar="ACTION")


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2
