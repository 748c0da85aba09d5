"""Issue 12 acceptance: small machines, with QEMU guests on a private lab LAN (see test_seeding).

Per arch (x86_64, aarch64): a guest with 256 MiB of RAM boots ``tce=ipfs:`` and loads an onboot set of
the demo extensions plus 96 MiB of incompressible ones (made once, cached in the tce-ipfs cache). It
serves every extension from its placed file (lib/onecopy.sh); the test reads its RAM file-system use
after boot and fails above 1.25 x the payload (the target, 1.1, is recorded, not asserted). Then the
seed stops and second guests, also with 256 MiB, boot from the same CID with only the first guest to
ask: it serves every byte after the switch. On x86_64 three such guests fetch from it at once and the
first guest's kubo RSS is sampled meanwhile (a figure for the report, not asserted).

Numbers go to ``tests/.results/small-ram-<arch>.json``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tce_ipfs import settings
from tce_ipfs.arch import Arch
from tce_ipfs.build import tcz
from tce_ipfs.testbed import e2e, qemu, samplerepo
from tce_ipfs.testbed.lab import Lab
from test_seeding import (
    Guest,
    kit_kubo,
    ledger_script,
    publish_to,
    record,
    tell_done,
    wait,
)

pytestmark = [pytest.mark.qemu, pytest.mark.kubo, pytest.mark.root]

SENTINEL = qemu.SENTINEL
MEMORY = 256  # MiB
BIG_FILES = 12
BIG_BYTES = 8 * 1024 * 1024 + 4096  # each; 12 of them: 96 MiB + the demo set
HOOK_TIMEOUT = 900
GUEST_TIMEOUT = {Arch.X86_64: 1500.0, Arch.AARCH64: 2700.0}  # TCG, shared cores: hang guards only
SECOND_GUESTS = {Arch.X86_64: 3, Arch.AARCH64: 1}
DONE_PORT = 7777
RATIO_LIMIT = 1.25


def big_set() -> list[Path]:
    """BIG_FILES squashfs .tcz of incompressible bytes (+ .md5.txt), made once in the cache."""
    out = settings.cache_dir() / "testdata" / f"small-ram-{BIG_FILES}x{BIG_BYTES}"
    names = [out / f"bulk{i}.tcz" for i in range(BIG_FILES)]
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
        while len(data) < BIG_BYTES:
            data += hashlib.sha512(seed + counter.to_bytes(8, "little")).digest()
            counter += 1
        (data_dir / f"bulk{i}").write_bytes(bytes(data[:BIG_BYTES]))
        tcz.pack(src, path, epoch=0)
        for p in sorted(src.rglob("*"), reverse=True):
            p.unlink() if p.is_file() else p.rmdir()
        src.rmdir()
    return names


def small_repo(kit: e2e.GuestKit, out: Path) -> tuple[Path, list[str], int]:
    """The demo set + the bulk set in one onboot.lst: (repo, closure, payload bytes)."""
    sample = samplerepo.build(out, [kit.base.kver])
    bulk = big_set()
    for path in bulk:
        for src in (path, Path(f"{path}.md5.txt")):
            (out / src.name).write_bytes(src.read_bytes())
    names = [p.name for p in bulk]
    (out / "onboot.lst").write_text("".join(f"{n}\n" for n in [*sample.onboot, *names]))
    closure = [*sample.closure, *names]
    payload = sum((out / n).stat().st_size for n in closure)
    return out, closure, payload


def origin_script(closure: list[str]) -> str:
    """/opt/bootsync.sh of the first guest (test only): everything loaded; once the seeding job is
    done (pinned= in the status: the switch to the placed files is done by then), the RAM file
    system's use and kubo's memory; LAB-READY; kubo's memory sampled every second until "done"."""
    names = " ".join(n[: -len(".tcz")] for n in closure)
    return f"""#!/bin/sh
# Test check (not part of the product).
S={SENTINEL}
ST=/tmp/tce-ipfs/status
fail() {{ echo "$S: FAIL $*"; poweroff -f; }}
for name in {names}; do
    grep -q " /tmp/tcloop/$name " /proc/mounts || fail "not mounted: $name $(tr '\\n' ' ' <"$ST")"
done
[ "$(hello)" = "hello from ipfs" ] || fail "hello did not run"
i=0
while ! grep -q '^pinned=' "$ST" && [ "$i" -lt 900 ]; do sleep 1; i=$((i + 1)); done
pid=$(sed -n 's/^kubo_pid=//p' "$ST")
mem() {{ awk -v k="$1" '$1 == k ":" {{ print $2 }}' "/proc/$pid/status"; }}
used=$(stat -f -c '%b %f %S' / | awk '{{ printf "%.0f", ($1 - $2) * $3 / 1024 }}')
avail=$(awk '/^MemAvailable:/ {{ print $2 }}' /proc/meminfo)
echo "SMALL-RAM used_kib=$used rss_kib=$(mem VmRSS) hwm_kib=$(mem VmHWM) memavail_kib=$avail waited_s=$i"
echo "SMALL-ID peer_id=$(sed -n 's/^peer_id=//p' "$ST") $(grep '^ram_used_start=' "$ST")"
echo "LAB-READY"
rm -f /tmp/lab.done
nc -l -p {DONE_PORT} > /tmp/lab.done &
peak=0
i=0
while ! grep -q done /tmp/lab.done 2>/dev/null && [ "$i" -lt 3000 ]; do
    r=$(mem VmRSS); [ -n "$r" ] && [ "$r" -gt "$peak" ] && peak=$r
    sleep 1; i=$((i + 1))
done
echo "SMALL-SEED peak_rss_kib=$peak hwm_kib=$(mem VmHWM)"
kill -0 "$pid" || fail "kubo died while seeding"
echo "$S: OK $(tr '\\n' ' ' <"$ST")"
poweroff -f
"""


def start(pool: ThreadPoolExecutor, kit: e2e.GuestKit, lab: Lab, check: Path, codes: list[str], name: str,
          *, watch: tuple[str, ...] = ()) -> Guest:
    g = Guest(name=name, tap=lab.tap())
    for key in watch:
        g.wait_for(key)
    initrds = [kit.base.initrd, kit.hook_initrd, check]
    g.future = pool.submit(qemu.boot, kit.arch, kit.base.qemu_kernel, initrds, " ".join(["quiet", *codes]),
                           timeout=GUEST_TIMEOUT[kit.arch], net=g.tap,
                           memory=MEMORY, log_path=lab.work_dir / f"{name}.log", stream=g.on_line)
    return g


@contextlib.contextmanager
def guest_pool(lab: Lab, workers: int) -> Iterator[ThreadPoolExecutor]:
    """test_seeding.guest_pool with room for ``workers`` guests at once."""
    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        yield pool
    except BaseException:
        lab.kill_processes()
        raise
    finally:
        pool.shutdown(wait=True)


def line_fields(g: Guest, prefix: str) -> dict[str, str]:
    """key=value words of the first console line of ``g`` that starts with ``prefix``."""
    line = next((ln for ln in g.lines if ln.startswith(prefix)), None)
    assert line is not None, f"{g.name}: no {prefix!r} line:\n" + "\n".join(g.lines[-40:])
    return dict(w.split("=", 1) for w in line.split() if "=" in w)


@pytest.mark.parametrize("arch", [Arch.X86_64, Arch.AARCH64], ids=str)
def test_256_mib_loads_96_mib_and_seeds_it(arch: Arch, lab: Lab, work: Path) -> None:
    kit = e2e.prepare_kit(arch, work)
    repo, closure, payload = small_repo(kit, work / f"small-repo-{arch}")
    assert payload >= 96 * 1024 * 1024
    seed = lab.start_seed(kit_kubo())
    cid = publish_to(seed, repo)
    origin = e2e.check_initrd(work, origin_script(closure), f"check-small-origin-{arch}.gz")
    ledger = e2e.check_initrd(work, ledger_script(), f"check-small-ledger-{arch}.gz")
    base = [f"tce=ipfs:{cid}", f"ipfs.timeout={HOOK_TIMEOUT}"]
    t0 = time.monotonic()
    n_second = SECOND_GUESTS[arch]
    with guest_pool(lab, 1 + n_second) as pool:
        g1 = start(pool, kit, lab, origin, [*base, f"ipfs.peers={seed.multiaddr}"], "small-origin",
                   watch=("LAB-READY",))
        try:
            wait(g1.wait_for("LAB-READY"), g1, "LAB-READY", timeout=GUEST_TIMEOUT[arch])
            t_ready = time.monotonic() - t0
            seed.stop()  # from here on, only the first guest has the repo
            ram = line_fields(g1, "SMALL-RAM ")
            peer_id = line_fields(g1, "SMALL-ID ")["peer_id"]
            peers = f"ipfs.peers={g1.multiaddr_prefix}{peer_id}"
            seconds = [start(pool, kit, lab, ledger, [*base, peers], f"small-peer{i}")
                       for i in range(1, n_second + 1)]
            results = [g.ok() for g in seconds]
        finally:
            tell_done(lab, g1)
        r1 = g1.ok()
    st1 = e2e.parse_fields(r1.sentinel_line)
    seed_line = line_fields(g1, "SMALL-SEED ")
    used_after = int(ram["used_kib"]) * 1024
    used_start = int(line_fields(g1, "SMALL-ID ")["ram_used_start"]) * 1024
    ratio = (used_after - used_start) / payload
    received: dict[str, int] = {}
    for g in seconds:
        ledgers = [json.loads(ln[len("LAB-LEDGER "):]) for ln in g.lines if ln.startswith("LAB-LEDGER ")]
        received[g.name] = sum(int(e["Recv"]) for e in ledgers if e["Peer"] == peer_id)
    record(f"small-ram-{arch}", {
        "arch": str(arch), "memory_mib": MEMORY, "payload_bytes": payload, "extensions": len(closure),
        "ram_used_start_bytes": used_start, "ram_used_after_bytes": used_after,
        "ram_used_per_payload": round(ratio, 3), "target": 1.1, "mem_mib": st1.get("mem_mib"),
        "onecopy": st1.get("onecopy"), "onecopy_bytes": st1.get("onecopy_bytes"),
        "kubo_after_boot": {"rss_kib": ram.get("rss_kib"), "hwm_kib": ram.get("hwm_kib")},
        "kubo_seeding": {"peers": n_second, **seed_line}, "mem_available_kib": ram.get("memavail_kib"),
        "received_from_first": received,
        "sentinel_s": {"first": round(r1.seconds, 1), "ready_s": round(t_ready, 1),
                       **{g.name: round(r.seconds, 1) for g, r in zip(seconds, results, strict=True)}},
    })
    assert st1["result"] == "ok" and int(st1["loaded"]) == len(closure), st1
    assert int(st1["onecopy"]) >= BIG_FILES, st1
    assert ratio <= RATIO_LIMIT, (ratio, ram, st1)
    for g in seconds:  # every byte came from the first guest, after its switch to the placed files
        assert received[g.name] >= payload * 0.9, (g.name, received)
        assert "result=ok" in (g.result().sentinel_line or "")
