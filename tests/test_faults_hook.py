"""Fault suite, host side (issue 11): the real boot hook and real kubo on a lab LAN, faults injected.

Each case runs the hook (busybox sh) in a namespace of its own wired by a veth to a lab bridge
(``support.faultnet``): seeds are real kubo daemons in the lab, the mirror is a real HTTP server there,
and the faults are real (SIGKILL, ``tc`` tbf, a downed link, a full tmpfs). What every case checks,
whatever the outcome (``check_clean``):

* the hook exits 0 and its last console line is one ``loaded ...`` or ``FAILED: ...`` line;
* ``optional/`` holds no ``*.part`` and every ``.tcz`` in it has the md5 the repo says;
* ``/tmp/builtin/onboot.lst`` names only files that are in ``optional/`` with the right md5;
* the hook returned within its own ``ipfs.timeout`` (plus start-up slack): the bound is the promise.

The figures (cases, faults injected, completed boots, partial files found) go to
``tests/.results/faults-*.json`` for docs/RELIABILITY.md. The cheap cases here run by default; the
QEMU cases are in ``test_faults_qemu.py`` behind ``-m faults``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hookfakes.harness import Repo, Result
from support import record
from support.faultnet import Client, FaultNet, faultnet, kill_when, part_bytes, stop_capture
from tce_ipfs.ipfs.publish import publish
from tce_ipfs.testbed.lab import SeedNode

pytestmark = [pytest.mark.faults, pytest.mark.kubo, pytest.mark.root]

BIG = 8 * 1024 * 1024  # in flight long enough (shaped) to be hit mid-transfer
SLACK = 15.0  # kubo's start and the shells' own start on a shared 2-core machine, over ipfs.timeout
KEY = "7a" * 32


@pytest.fixture
def net(tmp_path: Path, host_kubo: Path) -> Iterator[FaultNet]:
    with faultnet(tmp_path, host_kubo) as n:
        yield n


def random_ext(repo: Repo, name: str, size: int) -> None:
    """``name`` with random bytes: every 256-KiB block distinct, so kubo has to move all of them (the
    harness's repeating pattern dedups to a few blocks)."""
    repo.ext(name, size=size)
    data = os.urandom(size)
    repo.data[name] = data
    (repo.path / name).write_bytes(data)
    (repo.path / f"{name}.md5.txt").write_text(f"{hashlib.md5(data).hexdigest()}  {name}\n")


def make_repo(path: Path, big: int = BIG) -> Repo:
    repo = Repo(path)
    repo.ext("libhello.tcz")
    repo.ext("hello.tcz", ["libhello.tcz"])
    random_ext(repo, "big.tcz", big)
    random_ext(repo, "after.tcz", 4096)
    repo.lst("hello.tcz\nbig.tcz\nafter.tcz\n")
    return repo


def serve(node: SeedNode, repo: Repo) -> str:
    return publish(repo.path, node.client(timeout=120), check=False, progress=False).root_cid


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def check_clean(client: Client, result: Result, repo: Repo, timeout: int) -> dict[str, object]:
    """The guarantees every fault case keeps (module docstring); returns the figures for the record."""
    opt = client.optional()
    partial = sorted(p.name for p in opt.glob("*.part"))
    bad = sorted(p.name for p in opt.glob("*.tcz")
                 if p.name in repo.data and md5(p) != hashlib.md5(repo.data[p.name]).hexdigest())
    listed = client.hook.builtin_list()
    unplaced = [n for n in listed if n not in repo.data or not (opt / n).is_file()
                or md5(opt / n) != hashlib.md5(repo.data[n]).hexdigest()]
    finals = [ln for ln in result.lines if ln.startswith(("loaded ", "FAILED"))]
    assert result.rc == 0, result.stderr
    assert partial == [] and bad == [] and unplaced == [], (partial, bad, unplaced, result.console)
    assert len(finals) == 1 and result.final == finals[0], result.console
    assert result.seconds < timeout + SLACK, f"{result.seconds:.1f} s for ipfs.timeout={timeout}"
    return {"seconds": round(result.seconds, 1), "final": result.final, "listed": listed,
            "partial_files": len(partial) + len(bad) + len(unplaced), "status": result.status}


def part_over(client: Client, n: int) -> bool:
    return part_bytes(client.optional()) > n


def cmdline(cid: str, *peers: SeedNode, timeout: int, extra: str = "") -> str:
    peer_codes = f" ipfs.peers={','.join(p.multiaddr for p in peers)}" if peers else ""
    return f"tce=ipfs:{cid}{peer_codes} ipfs.timeout={timeout}{' ' + extra if extra else ''}"


def sigkill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)


# ------------------------------------------------------------------ a seed or our own kubo dies mid-file
@dataclass
class MidFetch:
    """One boot whose fetch lost a source after its first MiB (``boot_and_kill``)."""

    cid: str
    url: str | None  # the mirror, when the boot had one
    client: Client
    result: Result
    fig: dict[str, object]


def boot_and_kill(net: FaultNet, tmp_path: Path, kill: Callable[[Client, SeedNode], None], *, timeout: int,
                  others: int = 0, mirror: bool = False) -> MidFetch:
    """A repo on a seed (and ``others`` more peers, and an HTTP mirror), a client on a 16 Mbit/s link;
    once a MiB of a file is in, ``kill(client, seed)``; the boot must stay clean (``check_clean``)."""
    repo = make_repo(tmp_path / "repo")
    peers = [net.peer("seed"), *(net.peer(f"other{i}") for i in range(others))]
    cid = serve(peers[0], repo)
    for other in peers[1:]:
        assert serve(other, repo) == cid
    url = net.mirror(repo.path) if mirror else None
    client = net.client(tmp_path / "c0")
    net.shape(client, "16mbit")
    fault = kill_when(lambda: part_over(client, 1 << 20), lambda: kill(client, peers[0]))
    result = client.run(cmdline(cid, *peers, timeout=timeout, extra=f"ipfs.mirror={url}/" if url else ""))
    assert getattr(fault, "fired", False), "the fault was never injected: " + result.console
    return MidFetch(cid, url, client, result, check_clean(client, result, repo, timeout))


def seed_killer(client: Client, seed: SeedNode) -> None:
    sigkill(seed.process.pid)


def own_kubo_killer(client: Client, seed: SeedNode) -> None:
    pid = client.kubo_pid()
    assert pid is not None
    sigkill(pid)


def test_seed_killed_mid_transfer_other_peer_completes(net: FaultNet, tmp_path: Path) -> None:
    """Two peers have the repo; the one serving is SIGKILLed mid-file: the other one finishes it."""
    run = boot_and_kill(net, tmp_path, seed_killer, timeout=60, others=1)
    assert run.result.final.startswith(f"loaded 4 extensions from ipfs:{run.cid}"), \
        run.result.console + run.result.log
    record("faults-seed-killed-other-peer", {**run.fig, "faults": 1, "completed": True})


def test_seed_killed_mid_transfer_mirror_completes(net: FaultNet, tmp_path: Path) -> None:
    """The only peer is SIGKILLed mid-file: the rest comes from ipfs.mirror=, both sources reported."""
    run = boot_and_kill(net, tmp_path, seed_killer, timeout=45, mirror=True)
    want = f"loaded 4 extensions from ipfs:{run.cid} and mirror {run.url} in "
    assert run.result.final.startswith(want), run.result.console
    assert int(run.result.status["bytes_mirror"]) >= BIG, run.result.status
    record("faults-seed-killed-mirror", {**run.fig, "faults": 1, "completed": True})


def test_seed_killed_mid_transfer_alone_fails_bounded(net: FaultNet, tmp_path: Path) -> None:
    """No other source: one FAILED line within ipfs.timeout; what was placed before stays consistent."""
    run = boot_and_kill(net, tmp_path, seed_killer, timeout=20)
    assert run.result.final.startswith("FAILED: "), run.result.console
    assert "big.tcz" in run.result.final and "big.tcz" not in run.client.hook.builtin_list()
    record("faults-seed-killed-alone", {**run.fig, "faults": 1, "completed": False})


def test_own_kubo_killed_mid_fetch_mirror_completes(net: FaultNet, tmp_path: Path) -> None:
    run = boot_and_kill(net, tmp_path, own_kubo_killer, timeout=45, mirror=True)
    want = f"loaded 4 extensions from ipfs:{run.cid} and mirror {run.url} in "
    assert run.result.final.startswith(want), run.result.console
    record("faults-own-kubo-killed-mirror", {**run.fig, "faults": 1, "completed": True})


def test_own_kubo_killed_mid_fetch_alone_fails_bounded(net: FaultNet, tmp_path: Path) -> None:
    run = boot_and_kill(net, tmp_path, own_kubo_killer, timeout=30)
    assert run.result.final.startswith("FAILED: ") and "kubo has stopped" in run.result.final, \
        run.result.console
    record("faults-own-kubo-killed-alone", {**run.fig, "faults": 1, "completed": False})


# ------------------------------------------------------------------------------- a slow peer, a fast one
def test_slow_peer_next_to_fast_one(net: FaultNet, tmp_path: Path) -> None:
    """One peer behind 256 kbit/s, one unshaped: the boot completes well inside a timeout the slow peer
    alone could never meet (BIG at 256 kbit/s is ~260 s). Bitswap asks every connected peer that has a
    block and takes the first answer, so the slow one costs at most its in-flight blocks."""
    repo = make_repo(tmp_path / "repo")
    slow, fast = net.peer("slow"), net.peer("fast")
    cid = serve(slow, repo)
    assert serve(fast, repo) == cid
    client = net.client(tmp_path / "c0")
    net.shape(client, "256kbit", src=slow.swarm.split("/")[2])
    timeout = 90
    result = client.run(cmdline(cid, slow, fast, timeout=timeout))
    fig = check_clean(client, result, repo, timeout)
    assert result.final.startswith(f"loaded 4 extensions from ipfs:{cid}"), result.console + result.log
    sent = {name: int(node.client().bitswap.stat()["DataSent"]) for name, node in (("slow", slow),
                                                                                  ("fast", fast))}
    record("faults-slow-peer", {**fig, "faults": 1, "completed": True, "bytes_sent": sent})


# --------------------------------------------------------------------------------- a lying mirror
def test_mirror_serving_wrong_bytes(net: FaultNet, tmp_path: Path) -> None:
    """tce=http:// primary serves wrong bytes for one file (its .md5.txt is right): refused by md5,
    taken from ipfs.mirror=, and the console says so."""
    repo = make_repo(tmp_path / "www/good", big=64 * 1024)
    bad = tmp_path / "www/bad"
    shutil.copytree(repo.path, bad)
    wrong = bytearray(repo.data["big.tcz"])
    wrong[1000] ^= 0xFF
    (bad / "big.tcz").write_bytes(bytes(wrong))
    url = net.mirror(tmp_path / "www")
    client = net.client(tmp_path / "c0")
    result = client.run(f"tce={url}/bad ipfs.mirror={url}/good ipfs.timeout=30")
    fig = check_clean(client, result, repo, 30)
    want = f"loaded 4 extensions from {url}/bad and mirror {url}/good in "
    assert result.final.startswith(want), result.console
    refused = [ln for ln in result.lines if ln.startswith("warning: big.tcz: refused md5 mismatch")]
    assert refused, result.console
    assert (client.optional() / "big.tcz").read_bytes() == repo.data["big.tcz"]
    record("faults-wrong-bytes", {**fig, "faults": 1, "completed": True, "reported": refused})


# ------------------------------------------------------------------------------ RAM for extensions
def test_ram_too_small_for_the_closure(net: FaultNet, tmp_path: Path) -> None:
    """/tmp (kubo's RAM repo, optional/, the list) is a real tmpfs too small for the closure: one clear
    line, no partial file, and the hook exits 0 so the base system boots."""
    repo = make_repo(tmp_path / "repo")
    seed = net.peer("seed")
    cid = serve(seed, repo)
    client = net.client(tmp_path / "c0")
    tmp = client.hook.root / "tmp"
    shutil.rmtree(tmp)
    tmp.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=10m", "tmpfs", str(tmp)], check=True)
    try:
        for d in ("tce/optional", "tcloop", "builtin/optional"):
            (tmp / d).mkdir(parents=True)
        result = client.run(cmdline(cid, seed, timeout=40))
        fig = check_clean(client, result, repo, 40)
        assert result.final.startswith("FAILED: "), result.console
        assert "no space left in /tmp/" in result.final, result.console
        record("faults-ram-full", {**fig, "faults": 1, "completed": False})
    finally:
        for pid in client.pids():
            with contextlib.suppress(ProcessLookupError):  # the pin job may just have ended
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.5)
        subprocess.run(["umount", "-l", str(tmp)], check=False)


# ------------------------------------------------------------------------------------- link down
def test_link_down_after_the_list(net: FaultNet, tmp_path: Path) -> None:
    """The cable is pulled once the list is in and a .tcz is in flight: bounded, clean failure."""
    repo = make_repo(tmp_path / "repo")
    seed = net.peer("seed")
    cid = serve(seed, repo)
    url = net.mirror(repo.path)
    client = net.client(tmp_path / "c0")
    net.shape(client, "16mbit")
    listed = client.hook.root / "tmp/tce-ipfs/list"
    fault = kill_when(lambda: listed.exists() and part_over(client, 1 << 20), lambda: client.link(False))
    result = client.run(cmdline(cid, seed, timeout=30, extra=f"ipfs.mirror={url}/"))
    assert getattr(fault, "fired", False), "the fault was never injected: " + result.console
    fig = check_clean(client, result, repo, 30)
    assert result.final.startswith("FAILED: "), result.console
    record("faults-link-down", {**fig, "faults": 1, "completed": False})


# ------------------------------------------------------------------------------------- exposure
def test_exposure_only_the_swarm_port(net: FaultNet, tmp_path: Path) -> None:
    """From the LAN, a booted machine's kubo API and gateway are closed; only the swarm port answers."""
    repo = make_repo(tmp_path / "repo", big=4096)
    seed = net.peer("seed")
    cid = serve(seed, repo)
    client = net.client(tmp_path / "c0")
    result = client.run(cmdline(cid, seed, timeout=30))
    check_clean(client, result, repo, 30)
    assert result.final.startswith("loaded 4 extensions"), result.console
    st = result.status
    api_port = int(st["api"].split("/tcp/")[1].split("/")[0])
    gw_port = int(st["gateway"].rsplit(":", 1)[1].split("/")[0])
    listening = client.listening()
    assert sorted(a for a in listening if not a.startswith("127.0.0.1:")) == ["0.0.0.0:4001"], listening
    probe = ("import socket,sys\n"
             "for port in sys.argv[2:]:\n"
             "    s = socket.socket(); s.settimeout(3)\n"
             "    print(port, s.connect_ex((sys.argv[1], int(port))))\n")
    out = net.lab.exec(["python3", "-c", probe, client.ip, "4001", str(api_port), str(gw_port)]).stdout
    codes = dict(line.split() for line in out.decode().splitlines())
    assert codes["4001"] == "0", codes  # the swarm: open to the LAN, that is how it seeds
    assert codes[str(api_port)] != "0" and codes[str(gw_port)] != "0", codes
    record("faults-exposure", {"listening": listening, "connect": codes, "api": st["api"],
                               "gateway": st["gateway"]})


def test_no_swarm_key_cannot_fetch_from_a_private_swarm(net: FaultNet, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", big=4096)
    private = net.peer("private", swarm_key=KEY)
    cid = serve(private, repo)
    client = net.client(tmp_path / "c0")
    result = client.run(cmdline(cid, private, timeout=10))
    check_clean(client, result, repo, 10)
    assert result.final.startswith("FAILED: ") and "no peer reachable" in result.final, result.console
    assert client.hook.builtin_list() == [] and list(client.optional().glob("*.tcz")) == []
    assert int(private.client().bitswap.stat()["DataSent"]) == 0


# ------------------------------------------------------------------------- nothing leaves the lab
LAB_LOCAL = ("10.77.0.", "0.0.0.0", "255.255.255.255", "224.0.0.")  # the LAN, DHCP, link-local multicast


def test_no_traffic_outside_the_lab(net: FaultNet, tmp_path: Path) -> None:
    """A capture on every lab interface while one machine boots from the seed, the seed goes away, and
    a second machine boots from the first (seeding): every frame is addressed inside the lab."""
    repo = make_repo(tmp_path / "repo", big=1 << 20)
    seed = net.peer("seed")
    cid = serve(seed, repo)
    first, second = net.client(tmp_path / "c0"), net.client(tmp_path / "c1")
    out = tmp_path / "capture.json"
    capture = net.capture(out)
    r1 = first.run(cmdline(cid, seed, timeout=60))
    check_clean(first, r1, repo, 60)
    assert r1.final.startswith("loaded 4 extensions"), r1.console
    seed.stop()
    peer_id = r1.status["peer_id"]
    r2 = second.run(f"tce=ipfs:{cid} ipfs.peers=/ip4/{first.ip}/tcp/4001/p2p/{peer_id} ipfs.timeout=60")
    check_clean(second, r2, repo, 60)
    assert r2.final.startswith("loaded 4 extensions"), r2.console
    summary = stop_capture(capture, out)
    flows = summary["flows"]
    assert isinstance(flows, list)
    outside = [f for f in flows
               if f["kind"].startswith(("ipv4", "arp")) and not f["dst"].startswith(LAB_LOCAL)]
    other = [f for f in flows if not f["kind"].startswith(("ipv4", "arp"))]
    assert outside == [] and other == [], (outside, other)
    assert any(f["src"] == first.ip and f["dst"] == second.ip for f in flows)  # the seeding was seen
    multicast = sorted({f"{f['src']} -> {f['dst']} {f['kind']}" for f in flows
                        if f["dst"].startswith("224.")})  # mDNS (on by default, lab-local), IGMP
    record("faults-capture-namespace", {"frames": summary["frames"], "flows": len(flows),
                                        "destinations": sorted({f["dst"] for f in flows}),
                                        "multicast": multicast})
