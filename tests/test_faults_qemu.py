"""Fault suite, QEMU part (issue 11; behind ``-m faults``): real guests on the lab LAN.

One run, three proofs, with a packet capture on every interface of the lab namespace (the bridge and
each guest's tap) from the first DHCP request to the last guest's poweroff:

* guest 1 boots from the lab seed (``tce=ipfs:`` + ``ipfs.peers=``) and stays up seeding;
* exposure: from the lab LAN, guest 1's swarm port answers, its kubo API and gateway ports do not;
* the seed goes away and guest 2 boots from guest 1 alone (seeding);
* no traffic to the outside: every IPv4/ARP frame of the run is addressed to the lab network (or
  DHCP's broadcast / link-local multicast), every IPv6 frame is link-local; nothing else.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from support import record
from support.faultnet import FaultNet, faultnet, stop_capture
from tce_ipfs.arch import Arch
from tce_ipfs.build import tcz
from tce_ipfs.ipfs.publish import publish
from tce_ipfs.testbed import e2e, qemu, samplerepo

pytestmark = [pytest.mark.faults, pytest.mark.qemu, pytest.mark.kubo, pytest.mark.root]

ARCH = Arch.X86_64
SENTINEL = qemu.SENTINEL
GUEST_TIMEOUT = 900.0  # TCG on 2 shared cores: a hang guard, not a performance bound
HOOK_TIMEOUT = 400
DONE_PORT = 7777
LAB_V4 = ("10.77.0.", "0.0.0.0", "255.255.255.255", "224.0.0.")  # the LAN, DHCP, link-local multicast

GUEST_SCRIPT = f"""#!/bin/sh
# Test check (not part of the product). Role from fault.role= on the command line.
S={SENTINEL}
role=$(sed -n 's/.*fault\\.role=\\([a-z]*\\).*/\\1/p' /proc/cmdline)
st=$(tr '\\n' ' ' < /tmp/tce-ipfs/status 2>/dev/null)
case "$st" in *result=ok*) ;; *) echo "$S: FAIL $st"; poweroff -f ;; esac
[ "$(hello)" = "hello from ipfs" ] || {{ echo "$S: FAIL hello did not run"; poweroff -f; }}
if [ "$role" = first ]; then
    rm -f /tmp/fault.done
    nc -l -p {DONE_PORT} > /tmp/fault.done &
    echo "FAULT-READY $st"
    i=0
    while ! grep -q done /tmp/fault.done 2>/dev/null && [ "$i" -lt 1800 ]; do sleep 1; i=$((i + 1)); done
fi
echo "$S: OK role=$role $st"
poweroff -f
"""


@pytest.fixture
def net(tmp_path: Path, host_kubo: Path) -> Iterator[FaultNet]:
    with faultnet(tmp_path, host_kubo, dhcp=True) as n:
        yield n


def status_fields(line: str) -> dict[str, str]:
    return dict(w.split("=", 1) for w in line.split() if "=" in w)


def test_boot_seed_exposure_and_no_outside_traffic(net: FaultNet, tmp_path: Path) -> None:
    kit = e2e.prepare_kit(ARCH, tmp_path)
    sample = samplerepo.build(tmp_path / "repo", [kit.base.kver])
    seed = net.peer("seed")
    with seed.client(timeout=300) as c:
        cid = publish(sample.path, c, progress=False).root_cid
    check = e2e.check_initrd(tmp_path, GUEST_SCRIPT, "check-faults.gz")
    out = tmp_path / "capture.json"
    capture = net.capture(out)
    lab = net.lab
    ready = threading.Event()
    lines1: list[str] = []

    def on_line(line: str) -> None:
        lines1.append(line)
        if line.startswith("FAULT-READY"):
            ready.set()

    def boot(name: str, codes: list[str],
             stream: Callable[[str], None] | None = None) -> Future[qemu.BootResult]:
        tap = lab.tap()
        append = " ".join(["quiet", f"tce=ipfs:{cid}", f"ipfs.timeout={HOOK_TIMEOUT}", *codes])
        return pool.submit(qemu.boot, ARCH, kit.base.qemu_kernel, [kit.base.initrd, kit.hook_initrd, check],
                           append, timeout=GUEST_TIMEOUT, net=tap, log_path=tmp_path / f"{name}.log",
                           stream=stream)

    with ThreadPoolExecutor(max_workers=2) as pool:
        g1 = boot("guest1", [f"ipfs.peers={seed.multiaddr}", "fault.role=first"], on_line)
        g1_ip = lab.guest_ip(0)
        try:
            while not ready.wait(1):
                assert not g1.done(), g1.result().tail(60)
            st1 = status_fields(next(ln for ln in lines1 if ln.startswith("FAULT-READY")))
            # Exposure, from the LAN: swarm open, API and gateway closed.
            api_port = st1["api"].split("/tcp/")[1].split("/")[0]
            gw_port = st1["gateway"].rsplit(":", 1)[1].split("/")[0]
            probe = ("import socket,sys\n"
                     "for port in sys.argv[2:]:\n"
                     "    s = socket.socket(); s.settimeout(5)\n"
                     "    print(port, s.connect_ex((sys.argv[1], int(port))))\n")
            probed = lab.exec(["python3", "-c", probe, g1_ip, "4001", api_port, gw_port]).stdout.decode()
            codes = dict(line.split() for line in probed.splitlines())
            # The seed goes away; guest 2 has only guest 1.
            seed.stop()
            g1_addr = f"/ip4/{g1_ip}/tcp/4001/p2p/{st1['peer_id']}"
            g2 = boot("guest2", [f"ipfs.peers={g1_addr}", "fault.role=second"])
            r2 = g2.result()
        finally:
            lab.exec(["timeout", "10", "busybox", "nc", g1_ip, str(DONE_PORT)], input=b"done\n", check=False)
        r1 = g1.result()
    summary = stop_capture(capture, out)
    assert r1.ok and ": OK" in (r1.sentinel_line or ""), r1.tail(60)
    assert r2.ok and ": OK" in (r2.sentinel_line or ""), r2.tail(60)
    assert codes["4001"] == "0" and codes[api_port] != "0" and codes[gw_port] != "0", codes
    st2 = status_fields(r2.sentinel_line or "")
    assert st2["cid"] == cid and st2["result"] == "ok"
    flows = summary["flows"]
    assert isinstance(flows, list)
    v4 = [f for f in flows if f["kind"].startswith(("ipv4", "arp"))]
    outside = [f for f in v4 if not f["dst"].startswith(LAB_V4)]
    v6 = [f for f in flows if f["kind"] == "ipv6"]
    v6_outside = [f for f in v6 if not f["dst"].startswith(("ff02:", "fe80:"))]
    other = [f for f in flows if not f["kind"].startswith(("ipv4", "arp", "ipv6"))]
    assert outside == [] and v6_outside == [] and other == [], (outside, v6_outside, other)
    assert any(f["src"] == g1_ip and f["dst"] == lab.guest_ip(1) for f in flows)  # guest 1 served guest 2
    record("faults-qemu", {
        "boots_completed": 2, "faults": 1, "connect": codes, "frames": summary["frames"],
        "flows": len(flows), "destinations": sorted({f["dst"] for f in flows}),
        "sentinel_s": [round(r1.seconds, 1), round(r2.seconds, 1)], "partial_files": 0,
    })


# ------------------------------------------------------------------------ RAM too small for the closure
RAM_MIB = 320  # the guest's memory; TC's root is a tmpfs of 90% of it (qemu/tc-base/rootfs/init)
RAM_EXTS = 3
RAM_EXT_MIB = 70  # three of these, with kubo's copy of their blocks, cannot fit

RAM_SCRIPT = f"""#!/bin/sh
# Test check (not part of the product): the base system came up; what the hook left in optional/.
S={SENTINEL}
st=$(tr '\\n' ' ' < /tmp/tce-ipfs/status 2>/dev/null)
cd /tmp/builtin/optional || {{ echo "$S: FAIL no optional/"; poweroff -f; }}
parts=$(ls | grep -c '\\.part$')
bad=0
listed=0
for n in $(cat /tmp/builtin/onboot.lst 2>/dev/null); do
    [ "$n" = ipfs.tcz ] && continue
    listed=$((listed + 1))
    want=$(cut -d' ' -f1 "$n.md5.txt" 2>/dev/null)
    got=$(md5sum < "$n" 2>/dev/null | cut -d' ' -f1)
    [ -n "$want" ] && [ "$want" = "$got" ] || bad=$((bad + 1))
done
dmesg | grep -i -E 'out of memory|killed process' | sed 's/^/FAULT-KERNEL /'
stat -f -c 'avail=%a bsize=%S blocks=%b type=%T' /tmp/builtin/optional 2>&1 | sed 's/^/FAULT-STATFS /'
grep -E ' / |/tmp' /proc/mounts | sed 's/^/FAULT-MOUNT /'
ls -la /tmp/builtin/optional | sed 's/^/FAULT-LS /'
du -sk /tmp/tce-ipfs/repo 2>&1 | sed 's/^/FAULT-DU /'
grep -E '^Mem' /proc/meminfo | sed 's/^/FAULT-MEM /'
tail -n 15 /tmp/tce-ipfs/kubo.log | sed 's/^/FAULT-KUBO /'
grep -i ram1 /var/log/tce-ipfs.log | tail -n 5 | sed 's/^/FAULT-HOOK /'
echo "$S: BASE-UP parts=$parts badlisted=$bad listed=$listed $st"
poweroff -f
"""


def test_ram_too_small_in_the_guest(net: FaultNet, tmp_path: Path) -> None:
    """The guest's own RAM root (a tmpfs of 90% of its memory, as TC's /init makes it) cannot hold the
    closure: one FAILED line, no partial file, only verified files listed, the base system up."""
    kit = e2e.prepare_kit(ARCH, tmp_path)
    repo = tmp_path / "ram-repo"
    repo.mkdir()
    for i in range(RAM_EXTS):
        tree = tmp_path / f"ram-src{i}"
        (tree / "usr/local/share/ram").mkdir(parents=True)
        (tree / f"usr/local/share/ram/data{i}").write_bytes(os.urandom(RAM_EXT_MIB << 20))
        tcz.pack(tree, repo / f"ram{i}.tcz")
    (repo / "onboot.lst").write_text("".join(f"ram{i}.tcz\n" for i in range(RAM_EXTS)))
    seed = net.peer("seed")
    with seed.client(timeout=600) as c:
        cid = publish(repo, c, progress=False).root_cid
    check = e2e.check_initrd(tmp_path, RAM_SCRIPT, "check-ram.gz")
    append = f"quiet tce=ipfs:{cid} ipfs.timeout={HOOK_TIMEOUT} ipfs.peers={seed.multiaddr}"
    result = qemu.boot(ARCH, kit.base.qemu_kernel, [kit.base.initrd, kit.hook_initrd, check], append,
                       timeout=GUEST_TIMEOUT, net=net.lab.tap(), memory=RAM_MIB,
                       log_path=tmp_path / "ram-guest.log")
    line = result.sentinel_line or ""
    assert result.ok and "BASE-UP" in line, result.tail(80)
    fields = status_fields(line)
    console = [ln.strip() for ln in result.log_text.splitlines() if ln.strip().startswith("tce-ipfs:")]
    finals = [ln for ln in console if ln.startswith(("tce-ipfs: loaded ", "tce-ipfs: FAILED"))]
    assert fields["parts"] == "0" and fields["badlisted"] == "0", line
    diag = [ln.strip() for ln in result.log_text.splitlines() if ln.strip().startswith("FAULT-")]
    assert len(finals) == 1 and finals[0].startswith("tce-ipfs: FAILED"), "\n".join([*console, *diag])
    # Not asserted (a known gap, docs/RELIABILITY.md): in the guest kubo's gateway drops the download
    # ("connection closed prematurely") while the root tmpfs still has room and kubo is alive, so the
    # line cannot name RAM yet; "no space left" (tmpfs full) and "out of memory" (OOM killer) can.
    kernel = [ln for ln in diag if ln.startswith("FAULT-KERNEL")]
    assert int(fields["listed"]) < RAM_EXTS, line
    record("faults-qemu-ram", {"boots_completed": 1, "faults": 1, "final": finals[0], "console": console,
                               "listed": int(fields["listed"]), "partial_files": 0, "kernel": kernel,
                               "diag": diag,
                               "sentinel_s": round(result.seconds, 1)})
