"""`tce-ipfs seed ...` on the build host: the seed group of ``commands.agent`` (serve, status, pin), with
this host's kubo build as serve's default, and ``seed install-unit`` (a systemd service for it).

Not shipped in ``tce-ipfs-agent.tcz`` (it reaches ``build.kubo``); on Tiny Core ``commands.agent``
registers the same group itself.
"""

from __future__ import annotations

import argparse
import getpass
import logging
import os
import pwd
import shutil
import sys
from pathlib import Path
from typing import Any

from tce_ipfs import proc
from tce_ipfs.cli import emit
from tce_ipfs.commands import agent
from tce_ipfs.errors import CommandFailed, UsageError

log = logging.getLogger(__name__)

EPILOG_UNIT = """\
Writes a systemd unit that runs `tce-ipfs seed serve SOURCE ...` with the same options (checked now,
so the service does not fail later on a refused address) and checks it with `systemd-analyze verify`.
The unit runs the seed in the foreground as --user, restarts it on failure, stops it with SIGTERM
(clean kubo shutdown) and reloads it with SIGHUP (publish the directory again). It names the kubo
binary by its absolute path (this host's build unless --kubo), so the service never builds anything.

examples:
  sudo tce-ipfs seed install-unit /srv/tce --listen eth1
  sudo systemctl daemon-reload && sudo systemctl enable --now tce-ipfs-seed
  journalctl -u tce-ipfs-seed | grep tce=ipfs:       the boot line
  tce-ipfs seed install-unit /srv/tce --listen 192.168.1.10 -o ./tce-ipfs-seed.service
"""


def host_kubo() -> Path:
    """This host's seed build of kubo (``tce-ipfs kubo build --seed``: the polite origin; built and
    cached once)."""
    from tce_ipfs.arch import Arch
    from tce_ipfs.build import kubo

    return kubo.ensure(Arch.host(), variant=kubo.SEED)


def tce_ipfs_argv() -> list[str]:
    """How a service starts this tce-ipfs: the ``tce-ipfs`` script next to this Python, else ``-m``."""
    script = Path(sys.executable).parent / "tce-ipfs"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "tce_ipfs"]


def _serve_argv(args: argparse.Namespace, state: Path, kubo: Path) -> list[str]:
    from tce_ipfs.ipfs import seed

    source_dir, cid = seed.check_source(args.source)
    argv = [*tce_ipfs_argv(), "seed", "serve", str(source_dir or cid)]
    for value in args.listen:  # as given: an interface is resolved when the service starts
        argv += ["--listen", value]
    argv += ["--port", str(args.port), "--api-port", str(args.api_port), "--state", str(state),
             "--kubo", str(kubo), "--timeout", f"{args.timeout:g}"]
    for flag in ("public", "private", "mdns"):
        if getattr(args, flag):
            argv.append(f"--{flag}")
    if args.swarm_key:
        if not Path(args.swarm_key).is_file():
            raise UsageError("a unit takes the swarm key as a file (--swarm-key /path/swarm.key), never on "
                             "its command line", hint="or use --private: the seed makes and keeps one")
        argv += ["--swarm-key", str(Path(args.swarm_key).resolve())]
    if args.net != "lan":
        argv += ["--net", args.net]
    for addr in args.bootstrap:
        argv += ["--bootstrap", addr]
    for peer in args.peer:
        argv += ["--peer", peer]
    if args.name:
        argv += ["--name", args.name, "--lifetime", args.lifetime]
        if args.ttl:
            argv += ["--ttl", args.ttl]
    if args.keep:
        argv += ["--keep", str(args.keep)]
    if args.gateway_port is not None:
        argv += ["--gateway-port", str(args.gateway_port)]
    return argv


def verify(unit: Path) -> None:
    """``systemd-analyze verify``: anything it says about our unit is an error."""
    res = proc.run(["systemd-analyze", "verify", str(unit)], check=False, timeout=120,
                   what="systemd-analyze verify")
    said = ((res.stdout or b"") + (res.stderr or b"")).decode(errors="replace").strip()
    if res.returncode != 0 or said:
        raise CommandFailed(f"systemd-analyze verify {unit} failed:\n{said}", returncode=res.returncode)


def cmd_install_unit(args: argparse.Namespace) -> int:
    from tce_ipfs.ipfs import seedunit

    agent.seed_options(args)  # every serve option checked now (a refused address fails here)
    user = args.user or getpass.getuser()
    try:
        pwd.getpwnam(user)
    except KeyError:
        raise UsageError(f"no user {user!r} on this machine", hint="create it, or pick --user") from None
    state = (args.state or agent.default_state()).absolute()
    kubo = (args.kubo or host_kubo()).absolute()
    if not kubo.is_file():
        raise UsageError(f"kubo binary {kubo} not found")
    text = seedunit.unit_text(_serve_argv(args, state, kubo), user=user, state=state,
                              description=f"tce-ipfs lab seed ({args.source})")
    out = Path(args.output)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        state.mkdir(parents=True, exist_ok=True)  # ReadWritePaths= must exist when the unit starts
        if os.geteuid() == 0 and user != "root":
            shutil.chown(state, user)  # the service writes its repo there as that user
        tmp = out.with_name(f".{out.name}.tmp")
        tmp.write_text(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    except PermissionError as exc:
        raise UsageError(f"cannot write {exc.filename}: permission denied",
                         hint="run it with sudo, or write the unit elsewhere with -o FILE") from None
    if not args.no_verify:
        verify(out)
    name = out.name
    emit(args, {"unit": str(out), "state": str(state), "user": user, "verified": not args.no_verify},
         f"wrote {out}" + (" (systemd-analyze verify: OK)" if not args.no_verify else "") + "\n"
         f"next: systemctl daemon-reload && systemctl enable --now {name}\n"
         f"then: journalctl -u {name} (the boot line), tce-ipfs seed status --state {state}")
    return 0


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    from tce_ipfs.ipfs import seedunit

    actions = agent.add_seed_group(sub, common)
    actions.choices["serve"].set_defaults(find_kubo=host_kubo)
    unit = actions.add_parser("install-unit", parents=[common], epilog=EPILOG_UNIT,
                              formatter_class=argparse.RawDescriptionHelpFormatter,
                              help="write a systemd unit that runs `seed serve` as a service",
                              description="Write (and verify) a systemd unit for the lab seed.")
    agent.serve_options(unit)
    unit.add_argument("--user", metavar="NAME", help="user the service runs as (default: you)")
    unit.add_argument("-o", "--output", default=str(seedunit.UNIT_DIR / seedunit.UNIT_NAME), metavar="FILE",
                      help=f"unit file to write (default {seedunit.UNIT_DIR / seedunit.UNIT_NAME})")
    unit.add_argument("--no-verify", action="store_true", help="do not run systemd-analyze verify")
    unit.set_defaults(func=cmd_install_unit, find_kubo=host_kubo)
