"""Beyond the LAN, with QEMU guests on the simulated internet (issue 15 acceptance).

* A guest in home b boots with ``tce=ipfs:<CID>`` and the simulated bootstrap list only (no
  ``ipfs.peers=``): it finds the seed of home a through the DHT, reaches it through a relay, hole-punches
  a direct connection through both NATs and loads its onboot set. The seed then stops; a machine in
  home c finds the guest as a provider and gets the blocks from it (directly, not through a relay).
* Nothing gets through (both homes behind symmetric NATs, every relay stopped): the hook names the
  failed stage within its timeout, and the base system boots.
* Nothing leaves: the core counts every packet addressed outside the simulation (``strays``), the
  guests' only way out is their home router.

The simulated internet lives inside each test's ``with`` block: torn down whatever happens. Figures
(kubo start to first provider / first byte, relayed vs direct bytes, RSS per mode) go to
``tests/.results/internet-qemu-*.json``; none is asserted as a timing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from support import record
from tce_ipfs.arch import Arch
from tce_ipfs.errors import NodeError
from tce_ipfs.ipfs import netmode, opennet, rpc
from tce_ipfs.testbed import e2e, qemu, samplerepo
from tce_ipfs.testbed.internet import Internet, Machine, SimNode, start_home_seed, wait_reachable
from tce_ipfs.testbed.lab import TapNet, run_ip

pytestmark = [pytest.mark.qemu, pytest.mark.kubo, pytest.mark.root]

ARCH = Arch.X86_64
SENTINEL = qemu.SENTINEL
GUEST_TIMEOUT = 900.0  # TCG on 2 shared cores; a hang guard, not a performance bound
HOOK_TIMEOUT = 300  # ipfs.timeout= for a boot that should work
FAIL_TIMEOUT = 120  # ipfs.timeout= for the boot that cannot work: it must give up within it
MEMORY = 512  # MiB, as the LAN end-to-end test
DONE_PORT = 7777  # the serving guest waits for "done" here before its final report
# TCE_IPFS_TEST_GOLOG=error,p2p-holepunch=debug: kubo's log levels for the home seed and the node of
# home c (their daemon.log)
_GOLOG = os.environ.get("TCE_IPFS_TEST_GOLOG")
DEBUG_ENV = {"GOLOG_LOG_LEVEL": _GOLOG} if _GOLOG else None


# ------------------------------------------------------------------------------------- guest side
def guest_script(closure: list[str]) -> str:
    """/opt/bootsync.sh (test only). Checks the closure loaded, reports kubo's peers (relayed or
    direct), RSS and the hook's status; with ``net.role=serve`` on the command line it then keeps
    serving until the host sends "done" on port 7777, and reports what it served."""
    names = " ".join(n[: -len(".tcz")] for n in closure)
    return f"""#!/bin/sh
# Test check (not part of the product).
S={SENTINEL}
export IPFS_PATH=/tmp/tce-ipfs/repo
fail() {{
    tail -n 40 /var/log/tce-ipfs.log | sed 's/^/NET-LOG /'
    tail -n 20 /tmp/tce-ipfs/kubo.log 2>/dev/null | sed 's/^/NET-KUBO /'
    echo "$S: FAIL $*"
    poweroff -f
}}
for name in {names}; do
    grep -q " /tmp/tcloop/$name " /proc/mounts || fail "not mounted: $name"
    [ -e "/usr/local/tce.installed/$name" ] || fail "no marker: $name"
done
[ "$(hello)" = "hello from ipfs" ] || fail "hello did not run"
pid=$(sed -n 's/^kubo_pid=//p' /tmp/tce-ipfs/status)
[ -n "$pid" ] && [ -d "/proc/$pid" ] || fail "kubo is not running after the boot"
report() {{
    echo "NET-RSS $1 $(awk '/^VmRSS|^VmHWM/ {{printf "%s%s ", $1, $2}}' "/proc/$pid/status")"
    echo "NET-PEERS $1 $(ipfs swarm peers 2>&1 | tr '\\n' ' ')"
    echo "NET-BITSWAP $1 $(ipfs --enc=json bitswap stat 2>&1 | tr -d '\\n')"
    echo "NET-ADDRS $1 $(ipfs id -f '<addrs>' 2>&1 | tr '\\n' ' ')"
    echo "NET-AUTONAT $1 $(ipfs --enc=json swarm addrs autonat 2>&1 | tr -d '\\n')"
}}
echo "NET-ID $(ipfs id -f '<id>')"
report boot
if grep -q 'net.role=serve' /proc/cmdline; then
    rm -f /tmp/net.done
    nc -l -p {DONE_PORT} > /tmp/net.done &
    echo "NET-READY"
    i=0
    while ! grep -q done /tmp/net.done 2>/dev/null && [ "$i" -lt 1500 ]; do sleep 1; i=$((i + 1)); done
    for p in $(ipfs swarm peers | sed 's|.*/p2p/||' | sort -u); do
        echo "NET-LEDGER $(ipfs --enc=json bitswap ledger "$p" | tr -d '\\n')"
    done
    report final
fi
echo "$S: OK $(tr '\\n' ' ' < /tmp/tce-ipfs/status)"
poweroff -f
"""


@dataclass
class Guest:
    name: str
    tap: TapNet
    lines: list[str] = field(default_factory=list)
    ready: threading.Event = field(default_factory=threading.Event)
    future: Future[qemu.BootResult] | None = None

    def on_line(self, line: str) -> None:
        self.lines.append(line)
        if line.startswith("NET-READY"):
            self.ready.set()

    def field(self, prefix: str) -> str:
        for line in reversed(self.lines):
            if line.startswith(prefix):
                return line[len(prefix):].strip()
        tail = "\n".join(self.lines[-60:])
        raise AssertionError(f"{self.name}: no {prefix!r} line; console tail:\n{tail}")

    def status(self) -> dict[str, str]:
        return e2e.parse_fields(self.field(f"{SENTINEL}: OK"))

    def wait_ready(self, timeout: float) -> None:
        """Until the guest says NET-READY; fail early if it ends first."""
        assert self.future is not None
        deadline = time.monotonic() + timeout
        while not self.ready.wait(2):
            if self.future.done():
                res = self.future.result()
                raise AssertionError(f"{self.name} ended before it was ready:\n{res.tail(80)}")
            assert time.monotonic() < deadline, f"{self.name}: not ready in {timeout:g} s"

    def ok(self) -> qemu.BootResult:
        assert self.future is not None
        res = self.future.result()
        assert res.ok and ": OK" in (res.sentinel_line or ""), f"{self.name}:\n{res.tail(80)}"
        return res


def boot_guest(pool: ThreadPoolExecutor, kit: e2e.GuestKit, tap: TapNet, check: Path, codes: str,
               name: str, log_dir: Path) -> Guest:
    g = Guest(name=name, tap=tap)
    g.future = pool.submit(qemu.boot, kit.arch, kit.base.qemu_kernel,
                           [kit.base.initrd, kit.hook_initrd, check], f"quiet {codes}",
                           timeout=GUEST_TIMEOUT, net=tap, memory=MEMORY, log_path=log_dir / f"{name}.log",
                           stream=g.on_line)
    return g


def send_done(netns: str, ip: str) -> None:
    """Tell the serving guest to report and power off (from its home router: same LAN)."""
    code = ("import socket, sys; s = socket.create_connection((sys.argv[1], int(sys.argv[2])), 10); "
            "s.sendall(b'done\\n'); s.close()")
    subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-c", code, ip, str(DONE_PORT)],
                   check=True, timeout=30)


# ------------------------------------------------------------------------------------- host side
def port_bytes(net: Internet, machines: list[Machine]) -> int:
    """Bytes in and out of these core machines' bridge ports (the public nodes: DHT, AutoNAT, relay)."""
    total = 0
    for m in machines:
        out = run_ip(net.core.netns, "-j", "-s", "link", "show", "dev", m.port_name).stdout or b"[]"
        stats = json.loads(out)[0]["stats64"]
        total += int(stats["rx"]["bytes"]) + int(stats["tx"]["bytes"])
    return total


def wait_for(what: str, check: Callable[[], Any], timeout: float, every: float = 2.0) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"{what}: not within {timeout:g} s (last: {last})")


def diagnose(net: Internet, node: SimNode, peer: str) -> str:
    """For a failed fetch: ``node``'s connections to ``peer`` (relayed or direct), its peer count, the
    home routers' conntrack entries and the tail of its daemon log."""
    conns = net.connections(node)
    log_tail = node.node.log_path.read_text(errors="replace").splitlines()[-40:]
    return "\n".join([f"connections to {peer}: {[x for x in conns if x['peer'] == peer]}",
                      f"{len(conns)} connections in all", net.nat_report(), *log_tail])


@pytest.fixture(scope="module")
def kit(work: Path) -> e2e.GuestKit:
    return e2e.prepare_kit(ARCH, work)


@pytest.fixture(scope="module")
def repo(kit: e2e.GuestKit, work: Path) -> samplerepo.SampleRepo:
    return samplerepo.build(work / "net-repo", [kit.base.kver])


@pytest.mark.holepunch
def test_guest_boots_across_the_internet_and_serves_another_home(kit: e2e.GuestKit,
                                                                 repo: samplerepo.SampleRepo,
                                                                 host_kubo: Path, work: Path,
                                                                 tmp_path: Path) -> None:
    check = e2e.check_initrd(work, guest_script(repo.closure), "check-net.gz")
    big = (repo.path / "bigdata.tcz").read_bytes()
    # The pool outlives the internet: on a failure the internet's teardown kills the guests, and only
    # then does the pool wait for their threads.
    with ThreadPoolExecutor(2) as pool, \
            Internet(tmp_path / "net", homes={"a": "cone", "b": "cone", "c": "cone"}) as net:
        servers = [net.machine(s.name) for s in net.start_servers(host_kubo)]
        seed = start_home_seed(net, "a", host_kubo, repo.path, env=DEBUG_ENV)
        boot = ",".join(net.bootstrap())
        via_public0, a_tx0 = port_bytes(net, servers), net.home("a").wan_stats()["tx"]["bytes"]

        # 1. home b: only tce=ipfs:<CID> and the (simulated) bootstrap list
        codes = f"tce=ipfs:{seed.cid} ipfs.bootstrap={boot} ipfs.timeout={HOOK_TIMEOUT} net.role=serve"
        g = boot_guest(pool, kit, net.home("b").tap(), check, codes, "guest-b", tmp_path)
        g.wait_ready(GUEST_TIMEOUT)
        guest_id = g.field("NET-ID")
        console = "\n".join(g.lines)
        loaded = f"tce-ipfs: loaded {len(repo.closure)} extensions from ipfs:{seed.cid}"
        assert loaded in console, console[-4000:]
        boot_peers = g.field("NET-PEERS boot").split()
        seed_conns = [a for a in boot_peers if a.endswith(seed.node.peer_id)]
        assert any("/p2p-circuit" not in a for a in seed_conns), \
            f"{boot_peers}\n{net.nat_report()}"  # a direct connection
        via_public1, a_tx1 = port_bytes(net, servers), net.home("a").wan_stats()["tx"]["bytes"]
        assert a_tx1 - a_tx0 >= repo.payload_bytes  # the blocks left home a's router...
        bitswap_boot = json.loads(g.field("NET-BITSWAP boot"))
        assert bitswap_boot["DataReceived"] >= repo.payload_bytes  # ...and came in over bitswap

        # 2. the seed goes away; a machine in home c finds the guest and gets the blocks from it
        seed.node.stop()
        c_node = net.start_node(net.add_machine("c", "c-node"), "c-node", host_kubo, net.work_dir / "c-node",
                                config=netmode.public_config(net.bootstrap()), env=DEBUG_ENV)
        # Before it asks, home c's node knows how others reach it (AutoNAT: behind NAT, a relay). Until
        # then its addresses name its router's outside address, and the guest, when home c comes in
        # through the relay, first dials that for 5 s from its own swarm port: its router keeps that
        # half-open entry, and the hole punch that follows on the same ports fails on it (3 times,
        # then bitswap has no connection it may use). The home seed and the hook's announcements
        # wait for the same thing.
        wait_reachable(c_node)
        b_tx0 = net.home("b").wan_stats()["tx"]["bytes"]
        started = time.monotonic()
        with c_node.client(timeout=300) as c:
            provs = wait_for("home c finds the guest as a provider",
                             lambda: [p for p in opennet.find_providers(c, seed.cid, count=4, timeout=30)
                                      if p["ID"] == guest_id], 240)
            t_provider = time.monotonic() - started
            try:
                data = rpc.cat(c, f"/ipfs/{seed.cid}/bigdata.tcz", timeout=300)
            except NodeError as e:
                raise AssertionError(f"{e} after {time.monotonic() - started - t_provider:.1f} s\n"
                                     f"the provider as home c found it: {provs}\n"
                                     f"the guest at boot: {g.field('NET-ADDRS boot')}\n"
                                     f"{diagnose(net, c_node, guest_id)}") from e
            t_data = time.monotonic() - started
            ledger = rpc.bitswap_ledger(c, guest_id)
        assert data == big
        assert int(ledger.get("Recv", 0)) >= len(big), ledger  # from the guest, the only one left
        conns = [x for x in net.connections(c_node) if x["peer"] == guest_id]
        assert any(not x["relayed"] for x in conns), f"{conns}\n{net.nat_report()}"
        via_public2, b_tx1 = port_bytes(net, servers), net.home("b").wan_stats()["tx"]["bytes"]
        assert b_tx1 - b_tx0 >= len(big)  # out of home b's router

        send_done(net.home("b").netns, g.tap.ip)
        g.ok()
        assert net.strays()["packets"] == 0, net.strays()
    st = g.status()
    assert st["net"] == "public" and st["route"] == "direct" and seed.node.peer_id in st["providers"]
    served = json.loads(g.field("NET-BITSWAP final"))
    assert served["DataSent"] >= len(big)
    rss_boot = dict(w.split(":", 1) for w in g.field("NET-RSS boot").replace(" kB", "").split() if ":" in w)
    record("internet-qemu-boot", {
        "guest": {k: st.get(k) for k in ("t_kubo_ready", "t_provider", "t_list", "t_first_byte", "t_total",
                                         "route", "providers", "bytes")},
        "kubo_start_to_first_provider_s": st.get("t_provider"),
        "kubo_start_to_first_byte_s": st.get("t_first_byte"),
        "guest_boot_bytes": {"direct_out_of_home_a": a_tx1 - a_tx0,
                             "via_public_nodes": via_public1 - via_public0, "payload": repo.payload_bytes},
        "home_c_fetch": {"t_provider_s": round(t_provider, 1), "t_data_s": round(t_data, 1),
                         "direct_out_of_home_b": b_tx1 - b_tx0, "via_public_nodes": via_public2 - via_public1,
                         "payload": len(big), "connections": conns, "providers": provs},
        # (LAN mode, same sample repo: kubo_peak_rss_kib of tests/.results/e2e-x86_64.json)
        "kubo_rss_kib": {"public": rss_boot, "public_after_serving": g.field("NET-RSS final")},
        "guest_served_bytes": served.get("DataSent"),
    })


def test_no_way_through_names_the_stage_and_the_base_system_boots(kit: e2e.GuestKit,
                                                                  repo: samplerepo.SampleRepo,
                                                                  host_kubo: Path, work: Path,
                                                                  tmp_path: Path) -> None:
    """Both homes behind symmetric NATs (hole punching cannot work) and every relay stopped: the seed's
    provider record is still on the DHT, but nothing reaches it."""
    check = e2e.check_initrd(work, e2e.failure_check_script(), "check-fail.gz")
    with Internet(tmp_path / "dark", homes={"a": "symmetric", "b": "symmetric"}) as net:
        net.start_servers(host_kubo)
        seed = start_home_seed(net, "a", host_kubo, repo.path)
        net.set_relays(False)
        boot = ",".join(net.bootstrap())
        res = qemu.boot(kit.arch, kit.base.qemu_kernel, [kit.base.initrd, kit.hook_initrd, check],
                        f"quiet tce=ipfs:{seed.cid} ipfs.bootstrap={boot} ipfs.timeout={FAIL_TIMEOUT}",
                        timeout=GUEST_TIMEOUT, net=net.home("b").tap(), memory=MEMORY,
                        log_path=tmp_path / "guest-dark.log")
        assert net.strays()["packets"] == 0, net.strays()
    assert res.ok and "BASE-UP" in (res.sentinel_line or ""), res.tail(60)
    lines = [ln.strip() for ln in res.log_text.splitlines() if "tce-ipfs: FAILED:" in ln]
    stage = f"tce-ipfs: FAILED: ipfs:{seed.cid}: providers unreachable: 1 found"
    assert lines and lines[-1].startswith(stage), res.tail(60)
    st = e2e.parse_fields(res.sentinel_line)
    assert st["result"] != "ok" and st["net"] == "public"
    assert float(st["t_total"]) <= FAIL_TIMEOUT, st  # the hook's own bound (not a performance figure)
    record("internet-qemu-fail", {"line": lines[-1], "hook_t_total_s": st.get("t_total"),
                                  "qemu_to_base_system_s": round(res.seconds, 1)})
