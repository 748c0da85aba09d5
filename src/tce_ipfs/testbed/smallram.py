"""Small machines (issue 12): the onboot set a RAM-tight guest loads, and how much RAM its boot takes.

Shared by ``tests/test_small_ram.py`` (256 MiB guests on a lab LAN, seeding to other guests) and the
probe below, which boots one guest per RAM size from a host seed (restricted user networking, no root)
and reports, per size: whether the set loaded, the RAM file system's use after boot per payload byte
(``ram_used_start`` from the hook's status against statfs after the seeding job), and kubo's memory:

    python -m tce_ipfs.testbed.smallram --arch x86_64 --memory 256 192 160 [--set demo|bulk]
        [--onecopy 0] [--kernel small|default] [--out DIR]

Small-RAM guests boot KERNEL_FLAVOUR where the arch has one: Debian's generic amd64 kernel keeps
59.9 MiB of a 256 MiB guest (17.3 MiB of it bss), its cloud flavour 47.6 MiB (5.4 MiB bss); aarch64's
own keeps 32 MiB. Tiny Core keeps its drivers out of the kernel image; what its own kernel keeps was
not measured (no TC image here), see qemu/tc-base/README.md.

The bulk set is BULK_FILES squashfs ``.tcz`` of incompressible bytes (96 MiB together), made once in
the tce-ipfs cache. Test and measuring code only: never shipped.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tce_ipfs import settings
from tce_ipfs.arch import Arch
from tce_ipfs.build import tcz
from tce_ipfs.testbed import e2e, qemu, samplerepo

BULK_FILES = 12
BULK_BYTES = 8 * 1024 * 1024 + 4096  # each: 12 of them are 96 MiB and a little
READY = "LAB-READY"
# The kernel flavour of the small-RAM guests, per arch (the arch's own where absent); see above.
KERNEL_FLAVOUR = {Arch.X86_64: "cloud-amd64"}


@dataclass
class SmallRepo:
    path: Path
    closure: list[str]  # what a boot loads, deps first
    payload: int  # bytes of those .tcz files


def bulk_set() -> list[Path]:
    """BULK_FILES squashfs .tcz of incompressible bytes (+ .md5.txt), made once in the cache."""
    out = settings.cache_dir() / "testdata" / f"small-ram-{BULK_FILES}x{BULK_BYTES}"
    names = [out / f"bulk{i}.tcz" for i in range(BULK_FILES)]
    if all(n.exists() and Path(f"{n}.md5.txt").exists() for n in names):
        return names
    out.mkdir(parents=True, exist_ok=True)
    for i, path in enumerate(names):
        src = out / f"src{i}"
        data_dir = src / "usr/local/share/bulk"
        data_dir.mkdir(parents=True, exist_ok=True)
        data = bytearray()
        counter = 0
        seed = f"bulk{i}".encode()
        while len(data) < BULK_BYTES:
            data += hashlib.sha512(seed + counter.to_bytes(8, "little")).digest()
            counter += 1
        (data_dir / f"bulk{i}").write_bytes(bytes(data[:BULK_BYTES]))
        tcz.pack(src, path, epoch=0)
        for p in sorted(src.rglob("*"), reverse=True):
            p.unlink() if p.is_file() else p.rmdir()
        src.rmdir()
    return names


def build_repo(kver: str, out: Path, *, bulk: bool = True) -> SmallRepo:
    """The demo set (+ the bulk set) in one onboot.lst."""
    sample = samplerepo.build(out, [kver])
    names: list[str] = []
    if bulk:
        for path in bulk_set():
            for src in (path, Path(f"{path}.md5.txt")):
                (out / src.name).write_bytes(src.read_bytes())
            names.append(path.name)
    (out / "onboot.lst").write_text("".join(f"{n}\n" for n in [*sample.onboot, *names]))
    closure = [*sample.closure, *names]
    return SmallRepo(out, closure, sum((out / n).stat().st_size for n in closure))


def origin_script(closure: list[str], *, done_port: int | None = 7777) -> str:
    """/opt/bootsync.sh (test only): everything loaded; once the seeding job is done (``pinned=``
    in the status: the switch to the placed files is done by then) the RAM file system's use
    (``SMALL-RAM``), kubo's identity (``SMALL-ID``); with ``done_port``, LAB-READY and kubo's RSS
    sampled every second until "done" comes on that port (``SMALL-SEED``: the peak since the
    "phase" that may come once on ``done_port + 1``, whose peak before it is ``SMALL-SEED-PHASE``)."""
    names = " ".join(n[: -len(".tcz")] for n in closure)
    wait_done = "" if done_port is None else f"""echo "{READY}"
rm -f /tmp/lab.done /tmp/lab.phase
nc -l -p {done_port} > /tmp/lab.done &
nc -l -p {done_port + 1} > /tmp/lab.phase &
peak=0
low=999999999
majflt() {{ awk '$1 == "pgmajfault" {{ print $2 }}' /proc/vmstat; }}
swapio() {{ awk '$1 == "pswpin" || $1 == "pswpout" {{ n += $2 }} END {{ print n + 0 }}' /proc/vmstat; }}
f0=$(majflt)
w0=$(swapio)
swpeak=0
i=0
while ! grep -q done /tmp/lab.done 2>/dev/null && [ "$i" -lt 3000 ]; do
    r=$(mem VmRSS); [ -n "$r" ] && [ "$r" -gt "$peak" ] && peak=$r
    a=$(awk '/^MemAvailable:/ {{ print $2 }}' /proc/meminfo); [ "$a" -lt "$low" ] && low=$a
    u=$(swapused); [ "$u" -gt "$swpeak" ] && swpeak=$u
    if grep -q phase /tmp/lab.phase 2>/dev/null; then
        echo "SMALL-SEED-PHASE peak_rss_kib=$peak min_memavail_kib=$low majflt=$(($(majflt) - f0))" \\
            "peak_swap_kib=$swpeak swap_pages_io=$(($(swapio) - w0)) $(zram)"
        peak=0; low=999999999; swpeak=0; f0=$(majflt); w0=$(swapio); rm -f /tmp/lab.phase
    fi
    sleep 1; i=$((i + 1))
done
echo "SMALL-SEED peak_rss_kib=$peak hwm_kib=$(mem VmHWM) min_memavail_kib=$low majflt=$(($(majflt) - f0))" \\
    "peak_swap_kib=$swpeak swap_pages_io=$(($(swapio) - w0)) $(zram)"
kill -0 "$pid" || fail "kubo died while seeding"
"""
    return f"""#!/bin/sh
# Test check (not part of the product).
S={qemu.SENTINEL}
ST=/tmp/tce-ipfs/status
fail() {{
    echo "SMALL-DIAG $(dmesg | grep -i -E 'killed|out of memory|oom' | tail -3 | tr '\n' '|')"
    echo "SMALL-DIAG kubo: $(tail -4 /tmp/tce-ipfs/kubo.log | tr '\n' '|')"
    echo "SMALL-DIAG $(grep -E 'MemAvailable|Shmem:|MemFree' /proc/meminfo | tr -s ' ' | tr '\n' '|')"
    echo "SMALL-DIAG $(grep -i -E 'onecopy|error' /var/log/tce-ipfs.log | tail -4 | tr '\n' '|')"
    echo "$S: FAIL $*"; poweroff -f
}}
for name in {names}; do
    grep -q " /tmp/tcloop/$name " /proc/mounts || fail "not mounted: $name $(tr '\\n' ' ' <"$ST")"
done
[ "$(hello)" = "hello from ipfs" ] || fail "hello did not run"
i=0
while ! grep -q '^pinned=' "$ST" && grep -q '^seed=1' "$ST" && [ "$i" -lt 900 ]; do
    sleep 1; i=$((i + 1))
done
pid=$(sed -n 's/^kubo_pid=//p' "$ST")
mem() {{ [ -n "$pid" ] && awk -v k="$1" '$1 == k ":" {{ print $2 }}' "/proc/$pid/status"; }}
# swap in use (KiB): tc-config's zram swap, as on TC (none with nozswap)
swapused() {{
    awk '$1 == "SwapTotal:" {{ t = $2 }} $1 == "SwapFree:" {{ f = $2 }} END {{ print t - f }}' /proc/meminfo
}}
# zram's own figures (KiB): data swapped out, its compressed size, the RAM zram takes for it
zram() {{
    awk '{{ printf "zram_data_kib=%d zram_compr_kib=%d zram_ram_kib=%d", $1/1024, $2/1024, $3/1024 }}' \\
        /sys/block/zram0/mm_stat 2>/dev/null
}}
used=$(stat -f -c '%b %f %S' / | awk '{{ printf "%.0f", ($1 - $2) * $3 / 1024 }}')
avail=$(awk '/^MemAvailable:/ {{ print $2 }}' /proc/meminfo)
swaptotal=$(awk '$1 == "SwapTotal:" {{ print $2 }}' /proc/meminfo)
echo "SMALL-RAM used_kib=$used rss_kib=$(mem VmRSS) hwm_kib=$(mem VmHWM) memavail_kib=$avail waited_s=$i" \\
    "swap_kib=$(swapused) swaptotal_kib=$swaptotal kubo_swap_kib=$(mem VmSwap) $(zram)"
echo "SMALL-LOG $(grep -E 'onecopy|seeding|kubo limits' /var/log/tce-ipfs.log | tail -4 | tr '\n' '|')"
echo "SMALL-MEM $(grep -v -E ' 0 kB|Huge|Hugetlb|Direct' /proc/meminfo | tr -s ' ' | tr '\n' '|')"
echo "SMALL-ID peer_id=$(sed -n 's/^peer_id=//p' "$ST") $(grep '^ram_used_start=' "$ST")"
{wait_done}echo "$S: OK $(tr '\\n' ' ' <"$ST")"
poweroff -f
"""


def line_fields(lines: list[str], prefix: str) -> dict[str, str]:
    """key=value words of the first of ``lines`` that starts with ``prefix`` (empty if none)."""
    line = next((ln for ln in lines if ln.strip().startswith(prefix)), "")
    return dict(w.split("=", 1) for w in line.split() if "=" in w)


def measure(lines: list[str], payload: int) -> dict[str, Any]:
    """The figures of one origin boot's console."""
    ram, ident = line_fields(lines, "SMALL-RAM "), line_fields(lines, "SMALL-ID ")
    out: dict[str, Any] = {"payload_bytes": payload}
    if ram.get("used_kib") and ident.get("ram_used_start"):
        used = (int(ram["used_kib"]) - int(ident["ram_used_start"])) * 1024
        out.update(ram_used_bytes=used, ram_used_per_payload=round(used / payload, 3))
    out.update({f"kubo_{k}": v for k, v in ram.items() if k in ("rss_kib", "hwm_kib")})
    out.update(mem_available_kib=ram.get("memavail_kib"))
    out.update({k: v for k, v in ram.items() if k.startswith(("swap", "kubo_swap", "zram_"))})
    return out


def probe(arch: Arch, memories: list[int], work: Path, *, bulk: bool, onecopy: bool,
          timeout: float = 2400.0, flavour: str | None = None) -> list[dict[str, Any]]:
    """One origin boot per RAM size (MiB), from a host seed; returns what each loaded and used."""
    kit = e2e.prepare_kit(arch, work, flavour=flavour)
    repo = build_repo(kit.base.kver, work / f"repo-{arch}-{'bulk' if bulk else 'demo'}", bulk=bulk)
    check = e2e.check_initrd(work, origin_script(repo.closure, done_port=None), "check-smallram.gz")
    rows = []
    with e2e.Seed(work) as seed:
        cid = seed.publish(repo.path)
        for mem in memories:
            extra = [] if onecopy else ["ipfs.onecopy=0"]
            codes = e2e.boot_codes(cid, seed, timeout=1200, extra=extra)
            out = e2e.boot(kit, codes, check, net=seed.net(), timeout=timeout, memory=mem,
                           log_path=work / f"probe-{arch}-{mem}.log")
            lines = out.result.log_text.splitlines()
            row = {"arch": str(arch), "kernel": kit.base.kver, "memory_mib": mem,
                   "set": "bulk" if bulk else "demo",
                   "onecopy": onecopy, "ok": out.ok, "seconds": round(out.result.seconds, 1),
                   "extensions": len(repo.closure), "loaded": out.fields.get("loaded"),
                   "mem_mib": out.fields.get("mem_mib"), "onecopy_files": out.fields.get("onecopy"),
                   "console": [ln.strip() for ln in lines if ln.strip().startswith("tce-ipfs: ")][-3:],
                   **measure(lines, repo.payload)}
            if not out.ok:
                row["tail"] = out.result.tail(15)
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tce_ipfs.testbed.smallram", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", type=Arch.parse, default=Arch.X86_64)
    p.add_argument("--memory", type=int, nargs="+", required=True, help="guest RAM sizes, MiB")
    p.add_argument("--set", choices=("demo", "bulk"), default="bulk")
    p.add_argument("--onecopy", type=int, choices=(0, 1), default=1)
    p.add_argument("--kernel", choices=("small", "default"), default="small",
                   help="small: the small-RAM guests' kernel flavour (KERNEL_FLAVOUR); default: the arch's")
    p.add_argument("--out", type=Path, default=Path("bench-results/small-ram"))
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    flavour = KERNEL_FLAVOUR.get(args.arch) if args.kernel == "small" else None
    rows = probe(args.arch, args.memory, args.out, bulk=args.set == "bulk", onecopy=bool(args.onecopy),
                 flavour=flavour)
    name = f"small-ram-{args.arch}-{args.set}-onecopy{args.onecopy}.json"
    (args.out / name).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
