"""Issue 12 acceptance: small machines, with QEMU guests on a private lab LAN (see test_seeding).

Per arch (x86_64, aarch64): a guest with 256 MiB of RAM boots ``tce=ipfs:`` and loads an onboot set of
the demo extensions plus 96 MiB of incompressible ones (made once, cached in the tce-ipfs cache). It
serves every extension from its placed file (lib/onecopy.sh); the test reads its RAM file-system use
after boot and fails above 1.25 x the payload (the target, 1.1, is recorded, not asserted). Then the
seed stops and a second guest, also with 256 MiB, boots from the same CID with only the first guest
to ask: it serves every byte after the switch. Then three lab peers (host kubo daemons in the lab's
namespace, dialling only the first guest) fetch the whole set from it at once, and the first guest's
kubo RSS is sampled meanwhile: the figure "kubo RSS while seeding to 3 peers" (recorded, not
asserted). Three more 256 MiB TCG guests next to the two on a shared 2-core host ran out of their
hook timeout before their first file (the machine, not the seed, was the limit), hence lab peers.

Numbers go to ``tests/.results/small-ram-<arch>.json``.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tce_ipfs.arch import Arch
from tce_ipfs.testbed import e2e, qemu, smallram
from tce_ipfs.testbed.lab import Lab, SeedNode, start_kubo
from test_seeding import (
    Guest,
    kit_kubo,
    ledger_script,
    publish_to,
    record,
    tell_done,
    wait,
)

pytestmark = [pytest.mark.qemu, pytest.mark.kubo, pytest.mark.root, pytest.mark.smallram]

MEMORY = 256  # MiB
HOOK_TIMEOUT = 900
GUEST_TIMEOUT = {Arch.X86_64: 1500.0, Arch.AARCH64: 2700.0}  # TCG, shared cores: hang guards only
LAB_PEERS = 3
LAB_PEER_TIMEOUT = 1200.0  # s for all of them to fetch the set from the first guest (TCG seed)
DONE_PORT = 7777  # +1: the "phase" port (smallram.origin_script)
RATIO_LIMIT = 1.25
# The later guest's own paging since its boot (it is a 256 MiB machine loading the same set)
PEER_FIGURES = """vm=$(awk '$1 ~ /^(pgmajfault|pswpin|pswpout)$/ { printf "%s=%s ", $1, $2 }' /proc/vmstat)
echo "SMALL-PEER ${vm}memavail_kib=$(awk '/^MemAvailable:/ { print $2 }' /proc/meminfo)"
"""


def start(pool: ThreadPoolExecutor, kit: e2e.GuestKit, lab: Lab, check: Path, codes: list[str], name: str,
          *, watch: tuple[str, ...] = (), timeout: float | None = None) -> Guest:
    g = Guest(name=name, tap=lab.tap())
    for key in watch:
        g.wait_for(key)
    initrds = [kit.base.initrd, kit.hook_initrd, check]
    append = " ".join(["quiet", "loglevel=4", *codes])  # loglevel 4: the kernel's OOM lines show
    g.future = pool.submit(qemu.boot, kit.arch, kit.base.qemu_kernel, initrds, append,
                           timeout=timeout or GUEST_TIMEOUT[kit.arch], net=g.tap,
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


def tell(lab: Lab, g: Guest, port: int, word: bytes) -> None:
    lab.exec(["timeout", "10", "busybox", "nc", g.tap.ip, str(port)], input=word, check=False)


def fetch_from_lab_peers(lab: Lab, origin: str, cid: str, closure: list[str],
                         work: Path) -> dict[str, float]:
    """LAB_PEERS isolated host kubos in the lab's namespace (no mDNS, ``origin`` their only peer) each
    fetch every block of the ``closure`` files under ``cid`` at once (what the origin holds: not the
    whole repo, whose other files it never fetched); seconds each took."""
    paths = [f"/ipfs/{cid}/{name}" for name in closure]
    peers = [start_kubo(lab, f"small-lab{i}", kit_kubo(), work / f"small-lab{i}", listen_ip=lab.bridge_ip,
                        port=4011 + i, peers=[origin]) for i in range(LAB_PEERS)]

    def fetch(node: SeedNode) -> float:
        t = time.monotonic()
        node.node.kubo_cmd("refs", "-r", "--unique", *paths, timeout=LAB_PEER_TIMEOUT)
        return round(time.monotonic() - t, 1)

    try:
        with ThreadPoolExecutor(max_workers=LAB_PEERS) as pool:
            took = list(pool.map(fetch, peers))
    finally:
        for node in peers:
            node.stop()
    return {f"small-lab{i}": t for i, t in enumerate(took)}


@pytest.mark.parametrize("arch", [Arch.X86_64, Arch.AARCH64], ids=str)
def test_256_mib_loads_96_mib_and_seeds_it(arch: Arch, lab: Lab, work: Path) -> None:
    kit = e2e.prepare_kit(arch, work, flavour=smallram.KERNEL_FLAVOUR.get(arch))
    small = smallram.build_repo(kit.base.kver, work / f"small-repo-{arch}")
    repo, closure, payload = small.path, small.closure, small.payload
    assert payload >= 96 * 1024 * 1024
    seed = lab.start_seed(kit_kubo())
    cid = publish_to(seed, repo)
    script = smallram.origin_script(closure, done_port=DONE_PORT)
    origin = e2e.check_initrd(work, script, f"check-small-origin-{arch}.gz")
    ledger = e2e.check_initrd(work, ledger_script(PEER_FIGURES), f"check-small-ledger-{arch}.gz")
    base = [f"tce=ipfs:{cid}", f"ipfs.timeout={HOOK_TIMEOUT}"]
    t0 = time.monotonic()
    lab_fetch: dict[str, float] = {}
    with guest_pool(lab, 2) as pool:
        # the first guest outlives the later ones: twice the hang guard
        g1 = start(pool, kit, lab, origin, [*base, f"ipfs.peers={seed.multiaddr}"], "small-origin",
                   watch=("LAB-READY", "SMALL-SEED "), timeout=2 * GUEST_TIMEOUT[arch])
        try:
            wait(g1.wait_for("LAB-READY"), g1, "LAB-READY", timeout=GUEST_TIMEOUT[arch])
            t_ready = time.monotonic() - t0
            seed.stop()  # from here on, only the first guest has the repo
            ram = line_fields(g1, "SMALL-RAM ")
            peer_id = line_fields(g1, "SMALL-ID ")["peer_id"]
            peers = f"ipfs.peers={g1.multiaddr_prefix}{peer_id}"
            seconds = [start(pool, kit, lab, ledger, [*base, peers], "small-peer1")]
            results = [g.ok() for g in seconds]
            tell(lab, g1, DONE_PORT + 1, b"phase\n")  # the origin's RSS peak so far: one guest
            lab_fetch = fetch_from_lab_peers(lab, f"{g1.multiaddr_prefix}{peer_id}", cid, closure, work)
        finally:
            tell_done(lab, g1)
            g1.wait_for("SMALL-SEED ").wait(60)  # its seeding figures, also when a later guest failed
        r1 = g1.ok()
    st1 = e2e.parse_fields(r1.sentinel_line)
    seed_line = line_fields(g1, "SMALL-SEED ")
    used_after = int(ram["used_kib"]) * 1024
    used_start = int(line_fields(g1, "SMALL-ID ")["ram_used_start"]) * 1024
    ratio = (used_after - used_start) / payload
    # What each later guest got over bitswap. The seed was stopped before they started and they
    # started empty, so every byte comes from the first guest (directly, or through another later
    # guest that got it from there). The per-peer ledgers need a live connection at the end; they are
    # recorded, not asserted.
    received: dict[str, int] = {}
    from_first: dict[str, int] = {}
    for g in seconds:
        stats = [json.loads(ln[len("LAB-BITSWAP "):]) for ln in g.lines if ln.startswith("LAB-BITSWAP ")]
        stat = stats[0] if stats else {}
        received[g.name] = int(stat.get("DataReceived", 0))
        ledgers = [json.loads(ln[len("LAB-LEDGER "):]) for ln in g.lines if ln.startswith("LAB-LEDGER ")]
        from_first[g.name] = sum(int(e["Recv"]) for e in ledgers if e["Peer"] == peer_id)
    record(f"small-ram-{arch}", {
        "arch": str(arch), "kernel": kit.base.kver, "memory_mib": MEMORY, "payload_bytes": payload,
        "extensions": len(closure),
        "ram_used_start_bytes": used_start, "ram_used_after_bytes": used_after,
        "ram_used_per_payload": round(ratio, 3), "target": 1.1, "mem_mib": st1.get("mem_mib"),
        "onecopy": st1.get("onecopy"), "onecopy_bytes": st1.get("onecopy_bytes"),
        "kubo_after_boot": {"rss_kib": ram.get("rss_kib"), "hwm_kib": ram.get("hwm_kib")},
        "seeding_job": [ln for ln in g1.lines if ln.startswith("SMALL-LOG ")][:1],
        "kubo_seeding_1_guest": line_fields(g1, "SMALL-SEED-PHASE "),
        "kubo_seeding_lab_peers": {"peers": LAB_PEERS, **seed_line, "fetch_s": lab_fetch},
        "mem_available_kib": ram.get("memavail_kib"),
        "swap_after_boot_kib": {k: v for k, v in ram.items() if k.startswith(("swap", "kubo_swap", "zram_"))},
        "received": received, "received_from_first_ledger": from_first,
        "later_guests": {g.name: {**smallram.line_fields(g.lines, "SMALL-PEER "),
                                  **smallram.line_fields(g.lines, f"{qemu.SENTINEL}: ")} for g in seconds},
        "sentinel_s": {"first": round(r1.seconds, 1), "ready_s": round(t_ready, 1),
                       **{g.name: round(r.seconds, 1) for g, r in zip(seconds, results, strict=True)}},
    })
    assert st1["result"] == "ok" and int(st1["loaded"]) == len(closure), st1
    # the seeding job fits: no "not enough RAM to seed" line (lib/onecopy.sh) on the first guest
    short = [ln for ln in g1.lines if "not enough RAM to seed" in ln]
    assert not short, (short, [ln for ln in g1.lines if ln.startswith("SMALL-MEM ")])
    assert int(st1["onecopy"]) >= smallram.BULK_FILES, st1
    assert ratio <= RATIO_LIMIT, (ratio, ram, st1)
    for g in seconds:  # every byte came from the first guest, after its switch to the placed files
        assert received[g.name] >= payload * 0.9, (g.name, received, from_first)
        assert "result=ok" in (g.result().sentinel_line or "")
