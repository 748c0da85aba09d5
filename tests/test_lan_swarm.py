"""A lab that boots at once (issue 10), with the real hook and real kubo, no QEMU: every machine is a
network namespace of its own on one switched LAN (``testbed.lan.SwitchedLan``) and runs the boot hook
against a fake TC root (``testbed.hookrun.HookMachine``); the origin namespace holds the seed.

* the switched LAN is isolated (each namespace: ``lo`` + its one link to the switch; no route out) and
  leaves nothing behind;
* discovery as a lab has it: given only ``ipfs.peers=<seed>``, the machines find each other by mDNS
  (on by default); ``ipfs.mdns=0`` turns that off (then each knows only the seed);
* a private swarm with mDNS: machines with the seed's key find each other, a machine with another key
  is found by nobody and fails with the swarm-key hint;
* the polite origin (the seed role's kubo build): four machines booting at once get the payload from
  the seed about once and the rest from each other; machines that cannot reach each other
  (``ipfs.mdns=0``) still get everything, because a refused block is served on the second ask.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tce_ipfs.arch import Arch
from tce_ipfs.ipfs import publish, rpc, swarmkey
from tce_ipfs.testbed.bench.lab import LabFetch, boot_files
from tce_ipfs.testbed.bench.scenarios import make_repo
from tce_ipfs.testbed.hookrun import HookMachine, applet_dir
from tce_ipfs.testbed.lab import SeedNode, namespaces, start_kubo
from tce_ipfs.testbed.lan import IFNAME, SwitchedLan

pytestmark = [pytest.mark.root, pytest.mark.kubo]

HOOK_TIMEOUT = 120  # a hang guard for the hooks


@pytest.fixture(scope="module")
def seed_kubo() -> Path:
    """The seed role's kubo build (the polite origin)."""
    from tce_ipfs.build import kubo

    return kubo.ensure(Arch.host(), variant=kubo.SEED)


@pytest.fixture(scope="module")
def repo(work: Path) -> Path:
    path = work / "repo"
    make_repo(path, 20, 8 * 2**20)  # onboot.lst: 10 extensions, 4 MiB
    return path


@pytest.fixture
def lan(tmp_path: Path) -> Iterator[SwitchedLan]:
    with SwitchedLan(tmp_path / "lan", machines=4, origin_mbit=100) as lan:
        yield lan
    for ns in (lan.switch, lan.origin, *lan.machines):
        assert ns.netns not in namespaces()


def boot(lan: SwitchedLan, kubo: Path, base: Path, cmdlines: list[str]) -> list[HookMachine]:
    """Start the hook on the first len(cmdlines) machines at the same moment; wait for every hook."""
    applets = applet_dir(base / "applets")
    go = base / "go"
    machines = [HookMachine(base / f"root{i}", Arch.host(), kubo, applets) for i in range(len(cmdlines))]
    for i, (m, cmdline) in enumerate(zip(machines, cmdlines, strict=True)):
        m.prepare(f"nodhcp ipfs.timeout={HOOK_TIMEOUT} {cmdline}")  # codes in cmdline win (last one)
        m.spawn(lan.machines[i], f"hook{i}", go)
    t0 = time.monotonic()
    go.touch()
    for m in machines:
        m.wait(t0, t0 + HOOK_TIMEOUT + 30)
    return machines


def failures(machines: list[HookMachine]) -> list[str]:
    """The consoles and logs of the machines whose hook did not end "ok" (for assertion messages)."""
    return [f"{m.root.name}: {m.console()[-600:]}\n{m.log()[-1500:]}" for m in machines
            if m.status.get("result") != "ok"]


def peer_names(lan: SwitchedLan, kubo: Path, machines: list[HookMachine], seed: SeedNode) -> list[set[str]]:
    """Whom each machine's kubo is connected to: "seed" or "m<i>"."""
    names = {seed.peer_id: "seed", **{m.status["peer_id"]: f"m{i}" for i, m in enumerate(machines)}}
    out = []
    for i, m in enumerate(machines):
        res = lan.machines[i].exec([kubo, "swarm", "peers"], env={"IPFS_PATH": str(m.ipfs_path)})
        out.append({names.get(a.rsplit("/", 1)[-1], "?") for a in res.stdout.decode().split()})
    return out


def wait_peers(lan: SwitchedLan, kubo: Path, machines: list[HookMachine], seed: SeedNode,
               want: int, seconds: float = 30) -> list[set[str]]:
    """Peer sets once every machine has ``want`` peers (or the time is up: the last sets). mDNS finds
    them within a second or two; the bound is for a loaded test host."""
    deadline = time.monotonic() + seconds
    while True:
        peers = peer_names(lan, kubo, machines, seed)
        if all(len(p) >= want for p in peers) or time.monotonic() > deadline:
            return peers
        time.sleep(0.5)


# ------------------------------------------------------------------------------------- the LAN itself
def test_switched_lan_is_isolated_and_torn_down(tmp_path: Path) -> None:
    with SwitchedLan(tmp_path / "lan", machines=3, origin_mbit=20) as lan:
        lan.check_isolated()
        for ns in (lan.origin, *lan.machines):
            assert {link["ifname"] for link in ns.links()} == {"lo", IFNAME}
            assert not [r for r in ns.routes() if r.get("dst") == "default"]
            probe = ns.exec(["ip", "route", "get", "1.1.1.1"], check=False)
            assert probe.returncode != 0 and b"unreachable" in probe.stderr
        ports = {link["ifname"] for link in lan.switch.links()} - {"lo", lan.switch.bridge}
        assert ports == {"origin", "m0", "m1", "m2"}
        (qdisc,) = lan.origin_qdisc()
        assert qdisc["kind"] == "tbf" and qdisc["options"]["rate"] == 20 * 10**6 // 8
        # one address per machine, and they reach each other and the origin over the switch
        assert [lan.machine_ip(i) for i in range(3)] == ["10.80.0.11", "10.80.0.12", "10.80.0.13"]
        lan.machines[2].exec(["busybox", "ping", "-c1", "-W5", lan.machine_ip(0)])
        lan.machines[0].exec(["busybox", "ping", "-c1", "-W5", lan.origin_ip])
        sleepers = [ns.spawn("sleeper", ["sleep", "300"]).pid for ns in (lan.origin, lan.machines[1])]
        names = {ns.netns for ns in (lan.switch, lan.origin, *lan.machines)}
    assert not names & set(namespaces())
    for pid in sleepers:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()


# ------------------------------------------------------------------------------------- discovery
def test_machines_given_only_the_seed_find_each_other_and_mdns_0_turns_it_off(
        lan: SwitchedLan, host_kubo: Path, repo: Path, tmp_path: Path) -> None:
    seed = start_kubo(lan.origin, "seed", host_kubo, tmp_path / "seed", listen_ip=lan.origin_ip)
    with seed.client(timeout=120) as c:
        cid = publish.publish(repo, c, progress=False).root_cid
    cmdline = f"tce=ipfs:{cid} ipfs.peers={seed.multiaddr}"
    machines = boot(lan, host_kubo, tmp_path / "on", [cmdline] * 3)
    assert [m.status["result"] for m in machines] == ["ok"] * 3, failures(machines)
    peers = wait_peers(lan, host_kubo, machines, seed, want=3)
    assert peers == [{"seed", "m1", "m2"}, {"seed", "m0", "m2"}, {"seed", "m0", "m1"}]
    config = json.loads((machines[0].ipfs_path / "config").read_text())
    assert config["Discovery"]["MDNS"]["Enabled"] is True

    lan.kill_machine_processes()
    machines = boot(lan, host_kubo, tmp_path / "off", [f"{cmdline} ipfs.mdns=0"] * 3)
    assert [m.status["result"] for m in machines] == ["ok"] * 3, failures(machines)
    time.sleep(3)  # long enough for mDNS to have found them (about a second when it is on)
    assert peer_names(lan, host_kubo, machines, seed) == [{"seed"}] * 3


def test_daemons_started_together_with_port_reuse_all_connect(lan: SwitchedLan, host_kubo: Path,
                                                              tmp_path: Path) -> None:
    """Four daemons of our kubo build, started at the same moment with mDNS and TCP port reuse (as in
    public mode, where hole punching needs it), all connect to each other. Two that answer the same
    mDNS query dial each other at once; with upstream kubo the two SYNs sometimes met in one
    simultaneous-open connection and that pair never connected (2 of 10 rounds); our build dials one
    way first (kubo-slim/kubo/discovery.go). Three rounds, each in fresh repos."""
    from concurrent.futures import ThreadPoolExecutor

    for round_ in range(3):
        def start(i: int, round_: int = round_) -> SeedNode:
            return start_kubo(lan.machines[i], f"k{round_}-{i}", host_kubo, tmp_path / f"r{round_}" / f"k{i}",
                              listen_ip=lan.machine_ip(i), mdns=True)

        with ThreadPoolExecutor(4) as pool:
            nodes = list(pool.map(start, range(4)))
        index = {n.peer_id: i for i, n in enumerate(nodes)}
        deadline = time.monotonic() + 30
        while True:
            peers = [{index.get(a.rsplit("/", 1)[-1]) for a in lan.machines[i].exec(
                [host_kubo, "swarm", "peers"], env={"IPFS_PATH": str(n.node.repo)}).stdout.decode().split()}
                for i, n in enumerate(nodes)]
            if all(len(p) == 3 for p in peers) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert peers == [{1, 2, 3}, {0, 2, 3}, {0, 1, 3}, {0, 1, 2}], f"round {round_}"
        lan.kill_machine_processes()


def test_private_swarm_with_mdns_finds_only_same_key_machines(
        lan: SwitchedLan, host_kubo: Path, repo: Path, tmp_path: Path) -> None:
    key = swarmkey.generate()
    seed = start_kubo(lan.origin, "seed", host_kubo, tmp_path / "seed", listen_ip=lan.origin_ip,
                      swarm_key=key)
    with seed.client(timeout=120) as c:
        cid = publish.publish(repo, c, progress=False).root_cid
    base = f"tce=ipfs:{cid} ipfs.peers={seed.multiaddr}"
    other = swarmkey.generate()
    machines = boot(lan, host_kubo, tmp_path / "pnet", [f"{base} {swarmkey.boot_value(key)}"] * 3
                    + [f"{base} {swarmkey.boot_value(other)} ipfs.timeout=15"])
    assert [m.status["result"] for m in machines[:3]] == ["ok"] * 3, failures(machines)
    peers = wait_peers(lan, host_kubo, machines[:3], seed, want=3)
    assert peers == [{"seed", "m1", "m2"}, {"seed", "m0", "m2"}, {"seed", "m0", "m1"}]
    wrong = machines[3]
    assert wrong.status["result"] == "failed" and "ipfs.swarmkey" in wrong.status["reason"], wrong.console()


# ------------------------------------------------------------------------------------- polite origin
def test_polite_seed_sends_the_payload_about_once(host_kubo: Path, seed_kubo: Path, repo: Path,
                                                  tmp_path: Path) -> None:
    """Two waves of 4 machines from one seed behind 20 Mbit/s. The slow uplink keeps a holder's copy
    queued at the seed for a second or more: holds that ran from the request (and, with the seed's
    memory of the first wave, the second wave's holds) ended before any holder had the block, and the
    seed sent it again (1.5-1.6x at N=4 in the benchmark, issue 10's regression); 1.00x since."""
    fetch = LabFetch(host_kubo, seed_kubo, None, tmp_path, repo, cap_mbit=20, machines=4,
                     hook_timeout=HOOK_TIMEOUT)
    payload = fetch.payload
    with fetch.up() as origin:
        runs = [fetch.run(origin, "ipfs", 4) for _ in range(2)]
    # A stock kubo seed sends 2.3-3.1x the payload at 100 Mbit/s (docs/bench); a block held back is
    # served once no neighbour delivered after the wait, so some slack stays for a slow machine.
    for run in runs:
        assert payload <= run["origin_app_bytes"] <= 1.3 * payload, [r["egress_ratio"] for r in runs]
        assert sum(c["from_peers"] for c in run["clients"]) >= payload, run["clients"]


def test_polite_seed_serves_machines_that_cannot_trade(lan: SwitchedLan, host_kubo: Path, seed_kubo: Path,
                                                       repo: Path, tmp_path: Path) -> None:
    """No mDNS: nobody can fetch from anybody but the seed. Each machine's first request for a block
    another machine holds is refused, the second is served: all boot, each gets everything from the seed."""
    seed = start_kubo(lan.origin, "seed", seed_kubo, tmp_path / "seed", listen_ip=lan.origin_ip)
    with seed.client(timeout=120) as c:
        cid = publish.publish(repo, c, progress=False).root_cid
        before = int(rpc.bitswap_stat(c)["DataSent"])
    payload = sum((repo / f).stat().st_size for f in boot_files(repo))
    machines = boot(lan, host_kubo, tmp_path / "m",
                    [f"tce=ipfs:{cid} ipfs.peers={seed.multiaddr} ipfs.mdns=0"] * 3)
    assert [m.status["result"] for m in machines] == ["ok"] * 3, failures(machines)
    with seed.client(timeout=30) as c:
        assert int(rpc.bitswap_stat(c)["DataSent"]) - before >= 3 * payload
        for m in machines:
            assert int(rpc.bitswap_ledger(c, m.status["peer_id"])["Sent"]) >= payload
