"""`tce-ipfs demo`: the whole path on one machine, with nothing leaving it.

Builds what is missing (cached), starts an isolated seed, publishes a sample repo, boots a QEMU guest
with tce=ipfs:<CID>, streams its console, and prints a summary.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tce_ipfs.arch import Arch


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("demo", parents=[common], help="publish a sample repo and boot a guest from it",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", type=Arch.parse, default=Arch.X86_64, help="guest arch (default x86_64)")
    p.add_argument("--memory", type=int, default=512, help="guest RAM in MiB (default 512)")
    p.add_argument("--timeout", type=float, default=300, help="seconds before the guest is given up on")
    p.add_argument("--quiet-console", action="store_true", help="do not stream the guest console")
    p.add_argument("--work", type=Path, help="keep build products here (default: a temp dir)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tce_ipfs.cli import emit
    from tce_ipfs.errors import QemuError
    from tce_ipfs.log import human
    from tce_ipfs.testbed import e2e, samplerepo

    work = args.work or Path(tempfile.mkdtemp(prefix="tce-ipfs-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    say = (lambda msg: print(msg, file=sys.stderr)) if args.json else print
    try:
        t0 = time.monotonic()
        say(f"[demo] preparing {args.arch} guest, kubo and the P2P initrd (cached after the first run)")
        kit = e2e.prepare_kit(args.arch, work)
        repo = samplerepo.build(work / "repo", [kit.base.kver])
        with e2e.Seed(work) as seed:
            cid = seed.publish(repo.path)
            say(f"[demo] seed {seed.node.peer_id} on 127.0.0.1:{seed.swarm_port} published {cid}")
            say(f"[demo] prepared in {time.monotonic() - t0:.0f} s; booting guest with tce=ipfs:{cid}")
            codes = e2e.boot_codes(cid, seed)
            check = e2e.check_initrd(work, samplerepo.check_script(repo))
            stream = None if args.quiet_console else (lambda line: say(f"  | {line}"))
            outcome = e2e.boot(kit, codes, check, net=seed.net(), timeout=args.timeout, memory=args.memory,
                               log_path=work / "console.log", stream=stream, seed=seed)
        if not outcome.ok:
            lines = outcome.console_lines()
            raise QemuError(
                "the guest did not load its extensions" + (f": {lines[-1]}" if lines else ""),
                hint=f"full console log: {work / 'console.log'}",
            )
        f = outcome.fields
        summary = {
            "arch": str(args.arch),
            "cid": cid,
            "extensions_loaded": int(f.get("loaded", "0")),
            "onboot_ready_s": round(outcome.result.seconds, 1),
            "hook_s": f.get("t_total"),
            "kubo_start_to_first_byte_s": f.get("t_first_byte"),
            "kubo_peak_rss_kib": f.get("kubo_hwm_kb"),
            "seed_bytes_sent": outcome.seed_bytes_sent,
            "payload_bytes": repo.payload_bytes,
            "guest_memory_mib": args.memory,
            "console_log": str(work / "console.log"),
        }
        text = "\n".join([
            "",
            "demo summary",
            f"  arch                      {summary['arch']} ({args.memory} MiB RAM)",
            f"  repo CID                  {cid}",
            f"  extensions loaded         {summary['extensions_loaded']} (onboot.lst + .dep closure)",
            f"  QEMU start -> onboot ready {summary['onboot_ready_s']} s",
            f"  kubo start -> first byte  {summary['kubo_start_to_first_byte_s']} s",
            f"  kubo peak RSS in guest    {summary['kubo_peak_rss_kib']} KiB",
            f"  bytes served by the seed  {human(outcome.seed_bytes_sent)} "
            f"(payload {human(repo.payload_bytes)})",
        ])
        emit(args, summary, text)
        return 0
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
