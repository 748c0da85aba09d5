"""`tce-ipfs guest build|boot`: TC-layout test guests from Debian packages, booted under QEMU (TCG)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from tce_ipfs.arch import Arch
from tce_ipfs.commands import action_group

EPILOG = """\
examples:
  tce-ipfs guest build --arch aarch64             kernel + core.gz-style initrd of the test base (cached)
  tce-ipfs guest boot --arch x86_64 --timeout 60  boot it, stream the serial console
  tce-ipfs guest boot --arch aarch64 --initrd extra.gz --append 'quiet tce=ipfs:bafy...'
  tce-ipfs guest boot --arch x86_64 --forward 8080:5001 --append quiet
                                                  private network: the guest reaches only
                                                  10.0.2.100:8080 -> 127.0.0.1:5001 on this host
"""


def _arch_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--arch", metavar="ARCH",
                        help=f"guest arch: {', '.join(Arch.names())} (aliases like amd64, arm64 work); "
                             "default: this machine's")


def _forward(text: str) -> tuple[int, int]:
    try:
        guest_port, host_port = (int(p) for p in text.split(":", 1))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected GUESTPORT:HOSTPORT") from None
    return guest_port, host_port


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    gsub = action_group(sub, common, "guest", help="build and boot TC-layout test guests (QEMU, TCG)",
                        description="TC-layout test guests: a Debian kernel plus a core.gz-style initrd that "
                                    "boots the Tiny Core way (tc-config, tce-setup, tce-load).",
                        epilog=EPILOG)

    b = gsub.add_parser("build", parents=[common], help="build (or reuse) the guest base; print its paths",
                        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _arch_arg(b)
    b.add_argument("--refresh", action="store_true",
                   help="ask apt again which kernel the arch has (a newer one is built alongside)")
    b.set_defaults(func=cmd_build)

    r = gsub.add_parser("boot", parents=[common], help="boot the guest base, streaming its serial console",
                        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _arch_arg(r)
    r.add_argument("--initrd", action="append", type=Path, default=[], metavar="FILE",
                   help="extra initrd after the base's (repeatable; later ones overwrite earlier files)")
    r.add_argument("--append", default="quiet", metavar="CMDLINE",
                   help="kernel command line (console= and panic=-1 are added); default: quiet")
    r.add_argument("--timeout", type=float, default=120.0, metavar="SECONDS",
                   help="kill QEMU after this long (default 120)")
    r.add_argument("--sentinel", default=None, metavar="TEXT",
                   help="stop with success when a console line contains TEXT (default: run until the "
                        "guest powers off or the timeout)")
    r.add_argument("--forward", action="append", type=_forward, default=[], metavar="GUEST:HOST",
                   help="private user networking (restrict=on): guest port on 10.0.2.100 -> host port "
                        "on 127.0.0.1 (repeatable). Without it the guest has no NIC")
    r.add_argument("--net", action="store_true", help="a private NIC even without --forward (DHCP only)")
    r.add_argument("--memory", type=int, metavar="MIB", help="guest RAM (default from qemu/<arch>.toml)")
    r.add_argument("--log", type=Path, metavar="FILE", help="also keep the console log in FILE")
    r.add_argument("--quiet-console", action="store_true", help="do not stream the console")
    r.set_defaults(func=cmd_boot)


def cmd_build(args: argparse.Namespace) -> int:
    from tce_ipfs.cli import emit
    from tce_ipfs.testbed import guest

    arch = Arch.parse(args.arch) if args.arch else Arch.host()
    base = guest.ensure_base(arch, refresh=args.refresh)
    data = base.as_dict()
    text = "\n".join([
        f"arch:    {arch}",
        f"kernel:  {base.kernel}  ({data['kernel_package']}, {data['kernel_bytes']} bytes)",
        f"qemu:    {base.qemu_kernel}",
        f"initrd:  {base.initrd}  ({data['initrd_bytes']} bytes)",
        f"modules: {', '.join(Path(m).stem for m in base.modules)}",
    ])
    emit(args, data, text)
    return 0


def cmd_boot(args: argparse.Namespace) -> int:
    from tce_ipfs.cli import emit
    from tce_ipfs.errors import QemuError
    from tce_ipfs.testbed import guest, qemu

    arch = Arch.parse(args.arch) if args.arch else Arch.host()
    base = guest.ensure_base(arch)
    net = qemu.user_restricted(dict(args.forward)) if (args.forward or args.net) else None

    def stream(line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    result = qemu.boot(arch, base.qemu_kernel, [base.initrd, *args.initrd], args.append,
                       timeout=args.timeout, sentinel=args.sentinel or qemu.SENTINEL, net=net,
                       log_path=args.log, memory=args.memory,
                       stream=None if (args.quiet_console or args.json) else stream,
                       stop_on_sentinel=args.sentinel is not None)
    data = {"arch": str(arch), "ok": result.ok, "sentinel_line": result.sentinel_line,
            "seconds": round(result.seconds, 2), "total_seconds": round(result.total_seconds, 2),
            "exit_code": result.exit_code, "timed_out": result.timed_out,
            "log": str(args.log) if args.log else None}
    if args.sentinel is None:
        # No sentinel asked for: success is the guest ending by itself (poweroff) before the timeout.
        end = "timed out" if result.timed_out else f"QEMU exited {result.exit_code}"
        emit(args, data, f"tce-ipfs: {arch} guest: {end} after {result.total_seconds:.1f} s")
        return 0 if not result.timed_out and result.exit_code == 0 and not result.panicked else 1
    if not result.ok:
        raise QemuError(f"{arch} guest: no line with {args.sentinel!r} "
                        f"({'timed out' if result.timed_out else f'QEMU exited {result.exit_code}'} "
                        f"after {result.total_seconds:.1f} s)")
    emit(args, data, f"tce-ipfs: {arch} guest: {result.sentinel_line!r} after {result.seconds:.1f} s")
    return 0
