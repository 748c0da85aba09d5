"""Several seeds as one IPFS Cluster on the private lab LAN, with QEMU guests (issue 14 acceptance).

Inside a lab namespace (``Lab``: no link out), each seed on its own bridge address, each started with
the admin's one command (``tce-ipfs cluster start --listen ADDR [--join FIRST --secret FILE]``):

1. three seeds; ``tce-ipfs publish --cluster`` through one: pinned and complete on all three;
2. a guest with all three in ``ipfs.peers=`` boots its onboot set; one seed is killed (SIGKILL: cluster
   peer and kubo, a machine that died); a second guest with the same boot line still boots it (both
   boot times recorded for the report, not asserted);
3. a fourth seed joins later and ends up holding the current root, nobody pins it by hand;
4. a republish with ``--keep 1`` leaves one root pinned on every seed (the dead one, restarted,
   converges too);
5. isolation: every socket of every kubo and cluster peer, sampled throughout, is loopback or on the
   lab LAN; nothing listens on a wildcard address; no UDP (no mDNS); and the cluster peer's gater
   refuses to dial a public address it is handed.

Measured numbers go to ``tests/.results/cluster-lab.json``.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from support.cluster import holds_only, kill_seed, kubo_roots, peer_count, stopped_at_exit, wait_for
from tce_ipfs import cli, settings
from tce_ipfs.arch import Arch
from tce_ipfs.build.cluster import ClusterBinaries
from tce_ipfs.ipfs import clusterpins
from tce_ipfs.ipfs.cluster import ClusterSeed
from tce_ipfs.ipfs.clusterconfig import ClusterState
from tce_ipfs.testbed import e2e, samplerepo
from tce_ipfs.testbed.lab import Lab
from test_isolation import Sampler, Sock, ip
from test_seed_lab import SRC, tce_ipfs_cli

pytestmark = [pytest.mark.qemu, pytest.mark.kubo, pytest.mark.root]

ARCH = Arch.X86_64
RESULTS = Path(__file__).resolve().parent / ".results"
GUEST_TIMEOUT = 900.0  # TCG on 2 shared cores: a hang guard, not a performance bound


def lab_check(network: ipaddress.IPv4Network) -> Callable[[Sock], str | None]:
    """A socket is fine when both ends are loopback or on the lab LAN; a listener never on a wildcard."""
    def on_lab(text: str) -> bool:
        addr = ip(text)
        return addr.is_loopback or (addr.version == 4 and addr in network)

    def check(s: Sock) -> str | None:
        if not on_lab(s.local[0]):
            return f"{s.proto} socket bound to {s.local} ({s.state}), outside the lab"
        if s.state == "LISTEN" or (s.proto.startswith("udp") and s.remote[1] == 0):
            return None
        if not on_lab(s.remote[0]):
            return f"{s.proto} connection {s.local} -> {s.remote} ({s.state}) leaves the lab"
        return None
    return check


def add_extension(repo: Path, name: str) -> None:
    data = os.urandom(300_000)
    (repo / f"{name}.tcz").write_bytes(data)
    (repo / f"{name}.tcz.md5.txt").write_text(f"{hashlib.md5(data).hexdigest()}  {name}.tcz\n")


def test_cluster_seeds_on_the_lab_lan(work: Path, host_kubo: Path, host_cluster: ClusterBinaries,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    kit = e2e.prepare_kit(ARCH, work)
    sample = samplerepo.build(work / "repo", [kit.base.kver])
    check = e2e.check_initrd(work, samplerepo.check_script(sample))
    states = [ClusterState(work / f"seed{i}") for i in range(1, 5)]
    results: dict[str, Any] = {"binaries": {p.name: p.stat().st_size
                                            for p in (host_cluster.service, host_cluster.ctl)}}
    env = {"PYTHONPATH": str(SRC)}
    with Lab(work / "lab") as lab, stopped_at_exit(*states):
        addrs = [lab.add_address() for _ in states]

        def start(i: int, *extra: str | Path, again: bool = False) -> dict[str, Any]:
            """The admin's one command, run on seed i's machine (here: inside the lab namespace);
            ``again``: a restart, everything from the state."""
            options: list[str | Path] = [] if again else [
                "--listen", addrs[i], "--api-port", "0", "--rest-port", "0", "--name", f"seed{i + 1}"]
            res = lab.exec([*tce_ipfs_cli(), "cluster", "start", "--state", states[i].path, *options,
                            "--kubo", host_kubo, "--service", host_cluster.service, "--json", *extra],
                           env=env, timeout=300)
            info: dict[str, Any] = json.loads(res.stdout)
            return info

        watched = [p for s in states for p in (s.repo, s.service_dir)]
        with Sampler(watched, check=lab_check(lab.network)) as sampler:
            # 1. three seeds, each one command; a publish through one is pinned and complete on all
            first = start(0)
            join = ["--join", first["cluster_addrs"][0], "--secret", states[0].secret_path]
            assert first["cluster_addrs"][0].startswith(f"/ip4/{addrs[0]}/tcp/9096/p2p/")
            for i in (1, 2):
                start(i, *join)
            api = ClusterSeed(states[0]).api()
            assert peer_count(api) == 3
            started = time.monotonic()
            assert cli.main(["publish", str(sample.path), "--cluster", str(states[1].path), "--json"]) == 0
            out = json.loads(capsys.readouterr().out)
            results["publish_to_3_of_3_s"] = round(time.monotonic() - started, 2)
            root1 = out["root"]
            assert sorted(out["cluster"]["pinned_on"]) == ["seed1", "seed2", "seed3"]
            for s in states[:3]:
                assert root1 in kubo_roots(s)
            assert cli.main(["cluster", "status", "--state", str(states[0].path), "--json"]) == 0
            status = json.loads(capsys.readouterr().out)
            (row,) = status["roots"]
            assert row["complete"] and row["pinned"] == 3
            results["cluster_peer_rss"] = {s.path.name: ClusterSeed(s).status()["rss"] for s in states[:3]}
            results["kubo_rss"] = {s.path.name: ClusterSeed(s).status()["kubo_rss"] for s in states[:3]}

            # 2. the boot line from the cluster names all three; a guest boots with all up, and
            #    another with one seed dead
            info = clusterpins.boot_info(api)
            assert info.cid == root1 and len(info.peers) == 3
            assert all(p.startswith(f"/ip4/{a}/tcp/4001/p2p/") for p, a in zip(sorted(info.peers), addrs[:3],
                                                                               strict=True))
            codes = " ".join([f"tce=ipfs:{info.cid}", f"ipfs.peers={','.join(info.peers)}",
                              "ipfs.timeout=600"])
            up = e2e.boot(kit, codes, check, net=lab.tap(), timeout=GUEST_TIMEOUT,
                          log_path=work / "guest-all-up.log")
            assert up.ok, up.result.tail()
            kill_seed(states[2])
            wait_for("seed3 out of the peerset", lambda: peer_count(api) == 2, timeout=60)
            down = e2e.boot(kit, codes, check, net=lab.tap(), timeout=GUEST_TIMEOUT,
                            log_path=work / "guest-one-down.log")
            assert down.ok, down.result.tail()
            results["boot_all_up_s"] = round(up.result.seconds, 1)
            results["boot_one_down_s"] = round(down.result.seconds, 1)

            # 3. a fourth seed joins later: it holds the current root, nobody pinned it there
            start(3, *join)
            wait_for("seed4 holds the current root", lambda: root1 in kubo_roots(states[3]), timeout=300)

            # 4. republish with --keep 1: one root on every seed, the dead one too once it is back
            add_extension(sample.path, "later")
            assert cli.main(["publish", str(sample.path), "--cluster", str(states[0].path), "--keep", "1",
                             "--json"]) == 0
            out = json.loads(capsys.readouterr().out)
            root2 = out["root"]
            assert out["cluster"]["unpinned"] == [root1]
            assert sorted(out["cluster"]["pinned_on"]) == ["seed1", "seed2", "seed4"]
            # the cluster's state says "unpinned" as soon as the pin left it; each seed's kubo drops the
            # pin a moment later (ipfs-cluster's tracker unpins asynchronously), so give it that moment
            for s in (states[0], states[1], states[3]):
                wait_for(f"{s.path.name} dropped the old root",
                         partial(holds_only, s, root2, among={root1, root2}), timeout=120)
            start(2, again=True)  # the dead machine comes back: same state, its options from there
            wait_for("seed3 converged", partial(holds_only, states[2], root2, among={root1, root2}),
                     timeout=300)
            wait_for("root complete on 4/4",
                     lambda: clusterpins.cluster_status(api)["roots"][0]["pinned"] == 4, timeout=120)

            listening = lab.exec(["ss", "-H", "-tlnp"]).stdout.decode()
        # 5. isolation, sampled all along
        assert sampler.violations == [], sampler.violations[:20]
        assert len(sampler.pids) >= 9, sampler.pids  # 4 kubos, 4 cluster peers, seed3's second life
        assert [s for s in sampler.seen if s.proto.startswith("udp")] == []
        for line in listening.splitlines():
            local = line.split()[3]
            assert not local.startswith(("0.0.0.0:", "*:", "[::]:")), line
        for a in addrs:
            assert f"{a}:9096" in listening and f"{a}:4001" in listening
        # the cluster peer's gater: handed a public address, it never dials it
        ClusterSeed(states[3]).stop()
        # a real peer ID nobody is connected to (a kubo's), at a public address (TEST-NET-1)
        other = states[0].record()["kubo_peer_id"]
        gated = lab.spawn("gated", [host_cluster.service, "--config", states[3].service_dir, "daemon",
                                    "--bootstrap", f"/ip4/192.0.2.1/tcp/9096/p2p/{other}"])
        log = wait_for("the public bootstrap refused", lambda: "gater disallows" in gated.log_path.read_text()
                       and gated.log_path.read_text(), timeout=60)
        assert "bootstrap to /ip4/192.0.2.1" in log and "network is unreachable" not in log
        gated.stop()
    results["binaries_human"] = {k: f"{v / 2**20:.1f} MiB" for k, v in results["binaries"].items()}
    results["cluster_version"] = settings.CLUSTER_VERSION
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "cluster-lab.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


def test_cluster_bench_writes_numbers(work: Path, host_kubo: Path, host_cluster: ClusterBinaries,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    """`tce-ipfs cluster bench`, tiny: the numbers are there and sane (never asserted as performance)."""
    from tce_ipfs.testbed.bench import cluster as bench

    out = work / "bench"
    res = bench.run(host_kubo, host_cluster.service, work / "bench-work", out, seeds=2, total_mib=4,
                    extensions=8)
    saved = json.loads((out / "cluster-results.json").read_text())
    assert saved == json.loads(json.dumps(res))
    assert res["payload_bytes"] >= 4 * 2**20 and sorted(res["first"]["pinned_at_s"]) == ["seed1", "seed2"]
    assert res["first"]["to_all_s"] > 0 and res["update"]["to_all_s"] > 0 and res["http"]["seconds"] > 0
    assert all(b >= 4 * 2**20 for b in res["http"]["bytes_each"])
    assert all(v["cluster"] and v["kubo"] for v in res["rss"].values())
    assert not list((work / "bench-work").glob("seed*/service/tce-ipfs.pid"))  # stopped afterwards
