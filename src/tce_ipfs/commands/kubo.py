"""`tce-ipfs kubo build|validate`: the kubo `ipfs` binary per arch."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from tce_ipfs.arch import Arch
from tce_ipfs.commands import action_group
from tce_ipfs.settings import KUBO_VERSION

EPILOG = f"""\
examples:
  tce-ipfs kubo build --arch aarch64              build kubo {KUBO_VERSION} for aarch64 (cached)
  tce-ipfs kubo build --arch x86_64 --from ./ipfs use a binary you already have instead
  tce-ipfs kubo build --arch armv7 --rebuild      build again even if cached
  tce-ipfs kubo build --seed                      the seed role's build (polite origin) for this host
  tce-ipfs kubo validate ./ipfs --arch x86       check a binary suits a TC arch (static, right ELF)
"""


def _arch_arg(parser: argparse.ArgumentParser, *, required: bool) -> None:
    parser.add_argument("--arch", required=required, metavar="ARCH",
                        help=f"target arch: {', '.join(Arch.names())} (aliases like amd64, arm64, armhf "
                             "work)" + ("" if required else "; default: this machine's"))


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    ksub = action_group(sub, common, "kubo", help="build or check the kubo `ipfs` binary per arch",
                        description="The kubo `ipfs` binary: built from source per arch, cached, validated.",
                        epilog=EPILOG)

    b = ksub.add_parser("build", parents=[common],
                        help="build (or reuse) kubo for an arch; print path, size, sha256",
                        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _arch_arg(b, required=False)
    b.add_argument("--version", dest="kubo_version", default=KUBO_VERSION, metavar="vX.Y.Z",
                   help=f"kubo release (default {KUBO_VERSION})")
    b.add_argument("--from", dest="from_path", type=Path, metavar="PATH",
                   help="take this existing binary (validated, copied into the cache) instead of building")
    b.add_argument("--rebuild", action="store_true", help="build even if a cached binary exists")
    b.add_argument("--seed", action="store_true",
                   help="the seed role's build (super-seeding patch; what `tce-ipfs node` runs), "
                        "not the guests' plain build")
    b.set_defaults(func=cmd_build)

    v = ksub.add_parser("validate", parents=[common], help="check that a binary is a static ELF for an arch")
    v.add_argument("path", type=Path, metavar="PATH")
    _arch_arg(v, required=True)
    v.set_defaults(func=cmd_validate)


def cmd_build(args: argparse.Namespace) -> int:
    from tce_ipfs.build import kubo
    from tce_ipfs.cli import emit
    from tce_ipfs.log import human

    arch = Arch.parse(args.arch) if args.arch else Arch.host()
    if args.from_path is not None and args.rebuild:
        from tce_ipfs.errors import UsageError

        raise UsageError("--from and --rebuild do not go together",
                         hint="--from replaces the cached binary anyway")
    variant = kubo.SEED if args.seed else kubo.PLAIN
    path = kubo.ensure(arch, args.kubo_version, from_path=args.from_path, rebuild=args.rebuild,
                       variant=variant)
    m = kubo.load(arch, args.kubo_version, variant)
    if m is None:  # pragma: no cover - ensure() always writes one
        emit(args, {"path": str(path)}, str(path))
        return 0
    data = m.as_dict()
    origin = "built" if m.source == "built" else f"from {m.raw.get('from')}"
    text = (f"{path}\n"
            f"  kubo {m.version}{' seed build' if variant else ''} for {arch} ({origin})\n"
            f"  size: {human(m.size)} ({m.size} bytes)\n"
            f"  sha256: {m.sha256}")
    emit(args, data, text)
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from tce_ipfs.build import elf
    from tce_ipfs.cli import emit

    info = elf.validate(args.path, Arch.parse(args.arch))
    emit(args, info.as_dict(), f"{args.path}: ok ({info.describe()})")
    return 0
