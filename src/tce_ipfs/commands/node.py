"""`tce-ipfs node start|stop|status`: the isolated local seed node."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from tce_ipfs.cli import emit
from tce_ipfs.errors import NodeError
from tce_ipfs.ipfs.node import Node, default_repo

EPILOG = """\
The node never talks to the public network: no bootstrap peers, no DHT, no mDNS, no AutoConf,
telemetry off, swarm/API/gateway on 127.0.0.1 (random free ports), and a connection filter that
refuses every non-loopback address. Peers are only ever dialled explicitly.

examples:
  tce-ipfs node start                  start (or reuse) the seed node; returns when its API answers
  tce-ipfs node status --json          pid, peer ID, API and swarm addresses, repo size
  tce-ipfs node stop
"""


def _kubo(args: argparse.Namespace) -> Path:
    if args.kubo:
        return Path(args.kubo)
    try:
        from tce_ipfs.build import kubo
    except ModuleNotFoundError:
        raise NodeError("no kubo binary available", hint="pass --kubo PATH") from None
    from tce_ipfs.arch import Arch

    return kubo.ensure(Arch.host(), variant=kubo.SEED)  # the host seed: the polite origin build


def _repo(args: argparse.Namespace) -> Path:
    return Path(args.repo) if args.repo else default_repo()


def _text(info: dict[str, Any]) -> str:
    lines = [f"repo:    {info['repo']}"]
    if not info["running"]:
        lines.append("running: no")
    else:
        lines += [f"running: yes (pid {info['pid']}, kubo {info.get('version', '?')})",
                  f"api:     {info['api']}"]
        lines += [f"swarm:   {a}" for a in info.get("swarm_addrs", [])]
        lines.append(f"peers:   {info.get('peers', 0)}")
        lines.append(f"stored:  {info.get('repo_size', 0)} bytes in {info.get('num_objects', 0)} blocks")
    if info.get("initialized"):
        lines.append(f"peer id: {info['peer_id']}")
        lines.append("isolated: yes" if info.get("isolated") else
                     f"isolated: NO, differs in {', '.join(info.get('config_drift', []))}")
    return "\n".join(lines)


def cmd_start(args: argparse.Namespace) -> int:
    node = Node(_repo(args), _kubo(args))
    node.start(timeout=args.timeout)
    emit(args, node.status(), _text(node.status()))
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    node = Node(_repo(args))
    stopped = node.stop()
    emit(args, {"repo": str(node.repo), "stopped": stopped},
         "stopped" if stopped else f"not running ({node.repo})")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    node = Node(_repo(args))
    info = node.status()
    emit(args, info, _text(info))
    return 0


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser("node", parents=[common], help="run the isolated local kubo seed node",
                            description=__doc__, epilog=EPILOG,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = parser.add_subparsers(dest="node_action", metavar="ACTION", required=True)
    for name, func, help_text in (
        ("start", cmd_start, "initialise (once) and start the node in the background"),
        ("stop", cmd_stop, "stop the node"),
        ("status", cmd_status, "show whether the node runs, its addresses and peers"),
    ):
        p = actions.add_parser(name, parents=[common], help=help_text, description=help_text)
        p.add_argument("--repo", metavar="DIR",
                       help="kubo repo directory (default: STATE_DIR/seed, see TCE_IPFS_STATE)")
        if name == "start":
            p.add_argument("--kubo", metavar="PATH",
                           help="kubo `ipfs` binary to run (default: the cached build for this host)")
            p.add_argument("--timeout", type=float, default=60.0, metavar="S",
                           help="seconds to wait for the API (default 60)")
        p.set_defaults(func=func)
