"""Seeds as an IPFS Cluster (issue 14), without QEMU: the build, the config, and real seeds on loopback.

The build tests fake the Go build (cache, recipe key, refusals); ``kubo``-marked ones use the real
binaries (``tce-ipfs cluster build``, cached like kubo). The seeds here listen on 127.0.0.1 only (each
on its own ports): three join, a publish through one is pinned on all, one dies, a republish with
``--keep 1`` leaves one root, a fourth joins and pins the current root by itself, the dead one comes
back and converges. The lab-LAN version with a QEMU guest is tests/test_cluster_lab.py.
"""

from __future__ import annotations

import json
import os
import stat
import sys
import threading
import time
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from support.cluster import kill_seed, kubo_roots, peer_count, stopped_at_exit, wait_for
from support.elfs import make_elf
from support.media import fake_core, fake_kernel, fake_p2p_initrd
from tce_ipfs import cli, settings
from tce_ipfs.arch import Arch
from tce_ipfs.build import cluster as build_cluster
from tce_ipfs.build import elf, gomodule
from tce_ipfs.build.cluster import ClusterBinaries
from tce_ipfs.errors import BuildError, NodeError, UsageError
from tce_ipfs.ipfs import clusterpins, isolation
from tce_ipfs.ipfs.cluster import ClusterSeed
from tce_ipfs.ipfs.clusterapi import ClusterAPI, parse_stream
from tce_ipfs.ipfs.clusterconfig import ClusterOptions, ClusterState, service_config
from tce_ipfs.ipfs.node import Node
from tce_ipfs.settings import CLUSTER_VERSION

PEER_ID = "12D3KooWGzxzKZYveHXtpG6AsrUJBcWxHBFS2HsEoGTxrMLvKXtf"


# ------------------------------------------------------------------------------------ the build
class FakeBuild:
    """Stands in for build.cluster._build: crafted static ELFs for both programs, counts calls."""

    def __init__(self) -> None:
        self.calls = 0
        self.lock = threading.Lock()

    def __call__(self, arch: Arch, version: str, dest: Path) -> dict[str, Any]:
        with self.lock:
            self.calls += 1
        for name in build_cluster.PROGRAMS:
            make_elf(dest / name, arch)
        return {"seconds": 0.0, "build": build_cluster.recipe(version)}


@pytest.fixture
def fake_build(monkeypatch: pytest.MonkeyPatch) -> FakeBuild:
    fake = FakeBuild()
    monkeypatch.setattr(build_cluster, "_build", fake)
    return fake


def test_build_once_then_cache_keyed_by_version_and_recipe(cache: Path, fake_build: FakeBuild,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    built = build_cluster.ensure(Arch.AARCH64)
    rid = build_cluster.recipe_id()
    assert built.service == cache / "ipfs-cluster" / CLUSTER_VERSION / rid / "aarch64" / build_cluster.SERVICE
    assert built.ctl.parent == built.service.parent
    manifest = json.loads((built.service.parent / "cluster.json").read_text())
    assert manifest["version"] == CLUSTER_VERSION and manifest["recipe"] == rid
    for name in build_cluster.PROGRAMS:
        assert manifest["programs"][name]["sha256"] == gomodule.sha256_file(built.service.parent / name)
    assert build_cluster.ensure(Arch.AARCH64, CLUSTER_VERSION.removeprefix("v")) == built
    assert fake_build.calls == 1
    # tampering with a binary (same size) rebuilds it
    data = bytearray(built.ctl.read_bytes())
    data[-1] ^= 0xFF
    built.ctl.write_bytes(bytes(data))
    build_cluster.ensure(Arch.AARCH64)
    assert fake_build.calls == 2
    # another recipe is another cache directory (the old build stays for checkouts that use it)
    monkeypatch.setattr(build_cluster, "LDFLAGS", "-s")
    assert build_cluster.recipe_id() != rid
    other = build_cluster.ensure(Arch.AARCH64)
    assert fake_build.calls == 3 and other.service.parent != built.service.parent
    assert built.service.exists()


def test_recipe_covers_flags_programs_and_patches(monkeypatch: pytest.MonkeyPatch) -> None:
    rid = build_cluster.recipe_id()
    recipe = build_cluster.recipe(CLUSTER_VERSION)
    assert recipe["cgo"] is False and recipe["trimpath"] and recipe["ldflags"] == "-s -w"
    assert recipe["programs"] == ["ipfs-cluster-service", "ipfs-cluster-ctl"]
    assert any("ConnectionGater" in step[3] for step in recipe["patches"])
    monkeypatch.setitem(build_cluster.PATCHES, CLUSTER_VERSION,
                        build_cluster.PATCHES[CLUSTER_VERSION][:-1])
    assert build_cluster.recipe_id() != rid


def test_a_version_without_isolation_patches_is_refused(cache: Path) -> None:
    with pytest.raises(BuildError, match=r"no isolation patches for ipfs-cluster v1\.0\.7"):
        build_cluster.ensure(Arch.X86_64, "v1.0.7")
    assert not (cache / "ipfs-cluster" / "v1.0.7" / "tmp").exists()  # refused before any download
    with pytest.raises(UsageError):
        build_cluster.normalize_version("latest")


def test_cli_build(cache: Path, fake_build: FakeBuild, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["cluster", "build", "--arch", "armv7", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["arch"] == "armv7" and Path(out["service"]).name == "ipfs-cluster-service"
    elf.validate(Path(out["ctl"]), Arch.ARMV7)
    assert cli.main(["cluster", "build", "--version", "v9"]) == UsageError.exit_code


def test_source_edit_must_match_exactly(tmp_path: Path) -> None:
    (tmp_path / "a.go").write_text("x := foo()\n")
    gomodule.edit_file(tmp_path, "a.go", "foo()", "bar()", owner="t v1", table="T")
    assert (tmp_path / "a.go").read_text() == "x := bar()\n"
    with pytest.raises(BuildError, match=r"patching t v1 a\.go: expected 1 occurrence\(s\) of 'foo\(\)'"):
        gomodule.edit_file(tmp_path, "a.go", "foo()", "baz()", owner="t v1", table="T")


@pytest.mark.kubo
@pytest.mark.parametrize("version", sorted(build_cluster.PATCHES))
def test_isolation_patches_fit_the_served_versions(version: str, tmp_path: Path) -> None:
    """Both versions the module proxy serves take every isolation patch (v1.1.0 is also built)."""
    moddir = gomodule.fetch_module(settings.CLUSTER_MODULE, version, tmp_path / "dl",
                                   name="ipfs-cluster", releases=build_cluster.RELEASES)
    gomodule.writable_copy(moddir, tmp_path / "src")
    for edit in build_cluster.PATCHES[version]:
        gomodule.edit_file(tmp_path / "src", edit.path, edit.old, edit.new, count=edit.count, owner=version,
                           table="T")
    host = (tmp_path / "src" / "clusterhost.go").read_text()
    for gone in ("NATPortMap", "EnableNATService", "EnableAutoRelay", "EnableHolePunching"):
        assert f"libp2p.{gone}(" not in host
    assert "libp2p.ConnectionGater(privateOnly{})" in host and "libp2p.DisableRelay()" in host


@pytest.mark.kubo
def test_real_binaries_are_static_and_cached(host_cluster: ClusterBinaries) -> None:
    for path in (host_cluster.service, host_cluster.ctl):
        info = elf.validate(path, Arch.host())
        assert info.static and info.interpreter is None
        assert build_cluster.program_version(path) == CLUSTER_VERSION.removeprefix("v")
        print(f"{path.name}: {path.stat().st_size} bytes")
    assert host_cluster.recipe == build_cluster.recipe_id()
    started = time.monotonic()
    assert build_cluster.ensure() == host_cluster
    assert time.monotonic() - started < 2.0


# ----------------------------------------------------------------------------------- the config
def test_service_config_is_isolated(tmp_path: Path) -> None:
    state = ClusterState(tmp_path / "s")
    opts = ClusterOptions(listen=("192.168.5.2",), join=(f"/ip4/192.168.5.1/tcp/9096/p2p/{PEER_ID}",))
    cfg = service_config(state, opts, "ab" * 32, opts.join)
    assert cfg["cluster.listen_multiaddress"] == ["/ip4/192.168.5.2/tcp/9096"]  # TCP, named address only
    assert cfg["cluster.no_announce_multiaddress"] == isolation.blocked_networks(isolation.PRIVATE_NETS)
    assert cfg["cluster.mdns_interval"] == "0s" and cfg["cluster.enable_relay_hop"] is False
    assert cfg["cluster.peer_addresses"] == list(opts.join)
    assert cfg["api.restapi.http_listen_multiaddress"] == [f"/unix{state.rest_socket}",
                                                           "/ip4/127.0.0.1/tcp/9094"]
    assert cfg["api.ipfsproxy.listen_multiaddress"] == [f"/unix{state.proxy_socket}"]
    assert cfg["ipfs_connector.ipfshttp.node_multiaddress"] == f"/unix{state.api_socket}"
    assert cfg["observations.tracing.jaeger_agent_endpoint"].startswith("/ip4/127.0.0.1/")
    assert cfg["observations.metrics.enable_stats"] is False
    assert cfg["observations.tracing.enable_tracing"] is False
    assert service_config(state, ClusterOptions(listen=("127.0.0.1",), rest_port=0, mdns=True), "ab" * 32)[
        "api.restapi.http_listen_multiaddress"] == [f"/unix{state.rest_socket}"]
    # the mDNS interval only with --mdns
    assert service_config(state, ClusterOptions(listen=("10.0.0.2",), mdns=True), "ab" * 32)[
        "cluster.mdns_interval"] == "10s"


@pytest.mark.parametrize("bad", ["8.8.8.8", "0.0.0.0", "100.64.0.1"])
def test_public_addresses_are_refused(bad: str) -> None:
    with pytest.raises(UsageError, match="without --public"):
        ClusterOptions(listen=(bad,))
    with pytest.raises(UsageError, match="without --public"):
        ClusterOptions(listen=("10.0.0.2",), join=(f"/ip4/{bad}/tcp/9096/p2p/{PEER_ID}",))
    with pytest.raises(UsageError, match="expected /ip4/"):
        ClusterOptions(listen=("10.0.0.2",), join=("/dns4/seed.example/tcp/9096",))


def test_rest_stream_parsing() -> None:
    assert parse_stream(b"") == []
    assert parse_stream(b'{"a": 1}\n{"b": [2]}\n') == [{"a": 1}, {"b": [2]}]
    assert parse_stream(b'[1, 2]') == [[1, 2]]


def test_cli_refusals(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLUSTER_SECRET", raising=False)
    state = tmp_path / "st"
    fake = tmp_path / "bin"
    fake.write_text("")
    base = ["--state", str(state), "--service", str(fake), "--kubo", str(fake)]
    assert cli.main(["cluster", "start", *base]) == UsageError.exit_code
    assert "give --listen" in capsys.readouterr().err
    assert cli.main(["cluster", "init", *base, "--listen", "127.0.0.1",
                     "--join", f"/ip4/127.0.0.1/tcp/9096/p2p/{PEER_ID}"]) == UsageError.exit_code
    err = capsys.readouterr().err
    assert "needs the cluster's secret" in err and "--secret FILE" in err
    assert cli.main(["cluster", "init", *base, "--listen", "127.0.0.1", "--secret", str(tmp_path / "nope")]) \
        == UsageError.exit_code
    assert "no such file" in capsys.readouterr().err
    (tmp_path / "bad").write_text("xyz\n")
    assert cli.main(["cluster", "init", *base, "--listen", "127.0.0.1", "--secret", str(tmp_path / "bad")]) \
        == UsageError.exit_code
    assert not (state / "secret").exists()
    repo = tmp_path / "repo"
    repo.mkdir()
    # (--keep alone is a plain publish's option too since the mirror work: no refusal to test here)
    rc = cli.main(["netboot", "--seed", "--from-cluster", "-o", str(tmp_path / "t")])
    assert rc == UsageError.exit_code
    assert "give one of them" in capsys.readouterr().err


# ------------------------------------------------------------------------ real seeds on loopback
def seeds_seen_by(state: ClusterState, count: int) -> bool:
    """Whether the seed at ``state`` counts ``count`` seeds in its cluster."""
    return peer_count(ClusterSeed(state).api()) == count


def start_seed(tmp: Path, name: str, port: int, *, join: str | None = None, secret: Path | None = None,
               kubo_bin: Path, service: Path, extra: list[str] | None = None) -> ClusterState:
    """`tce-ipfs cluster start` on loopback (kubo and API on any free port, REST on the socket only)."""
    state = tmp / name
    argv = ["cluster", "start", "--state", str(state), "--listen", "127.0.0.1", "--port", str(port),
            "--ipfs-port", "0", "--api-port", "0", "--rest-port", "0", "--name", name,
            "--kubo", str(kubo_bin), "--service", str(service), "--json"]
    if join:
        argv += ["--join", join, "--secret", str(secret)]
    assert cli.main([*argv, *(extra or [])]) == 0
    return ClusterState(state)


def make_repo(path: Path, names: list[str]) -> Path:
    import hashlib

    path.mkdir(parents=True, exist_ok=True)
    for name in names:
        data = os.urandom(200_000) + name.encode()
        (path / f"{name}.tcz").write_bytes(data)
        (path / f"{name}.tcz.md5.txt").write_text(f"{hashlib.md5(data).hexdigest()}  {name}.tcz\n")
    (path / "onboot.lst").write_text(f"{names[0]}.tcz\n")
    return path


@pytest.mark.kubo
def test_three_seeds_publish_keep_join_and_recover(host_kubo: Path, host_cluster: ClusterBinaries,
                                                  tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TCE_IPFS_STATE", str(tmp_path / "default-state"))
    bins: dict[str, Any] = {"kubo_bin": host_kubo, "service": host_cluster.service}
    states = [ClusterState(tmp_path / f"s{i}") for i in range(1, 5)]
    started = time.monotonic()

    def lap(what: str) -> None:
        print(f"{time.monotonic() - started:6.1f} s  {what}", file=sys.__stderr__)
    with stopped_at_exit(*states):
        s1 = start_seed(tmp_path, "s1", 19196, **bins)
        first = json.loads(capsys.readouterr().out)
        assert first["running"] and first["cluster_addrs"][0].startswith("/ip4/127.0.0.1/tcp/19196/p2p/")
        secret = s1.secret_path
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600
        assert stat.S_IMODE(s1.path.stat().st_mode) == 0o700
        for f in ("service.json", "identity.json"):
            assert stat.S_IMODE((s1.service_dir / f).stat().st_mode) == 0o600
        assert json.loads((s1.service_dir / "service.json").read_text())["cluster"]["secret"] == \
            secret.read_text().strip()
        for i, port in ((2, 19197), (3, 19198)):  # one command each, with the first one's address
            start_seed(tmp_path, f"s{i}", port, join=first["cluster_addrs"][0], secret=secret, **bins)
        api = ClusterSeed(s1).api()
        for s in states[:3]:  # each seed learns of the others from their pings (every 5 s)
            wait_for(f"{s.path.name} sees three seeds", partial(seeds_seen_by, s, 3),
                     timeout=60)

        lap("three seeds up")
        # 1. a publish through one seed is pinned and complete on all three
        repo = make_repo(tmp_path / "repo", ["a", "b", "c"])
        capsys.readouterr()
        assert cli.main(["publish", str(repo), "--cluster", str(states[1].path), "--json"]) == 0
        out = json.loads(capsys.readouterr().out)
        root1 = out["root"]
        assert out["cluster"]["required"] == 3 and sorted(out["cluster"]["pinned_on"]) == ["s1", "s2", "s3"]
        for s in states[:3]:
            assert root1 in kubo_roots(s)
        assert cli.main(["cluster", "status", "--state", str(s1.path), "--json"]) == 0
        status = json.loads(capsys.readouterr().out)
        assert status["rss"] > 0 and len(status["seeds"]) == 3
        (row,) = status["roots"]
        assert row["cid"] == root1 and row["complete"] and row["current"] and row["pinned"] == 3
        assert cli.main(["cluster", "status", "--cluster", f"/unix{states[2].rest_socket}"]) == 0
        assert f"root {root1} (current" in capsys.readouterr().out

        lap("published, 3/3")
        # 2. the boot line names every seed (netboot --from-cluster: the --seed code path)
        kernel, core = tmp_path / "bzImage", tmp_path / "core.gz"
        kernel.write_bytes(fake_kernel(Arch.X86_64))
        core.write_bytes(fake_core(Arch.X86_64, tmp_path))
        media = ["--kernel", str(kernel), "--initrd", str(core), "--p2p-initrd",
                 str(fake_p2p_initrd(Arch.X86_64, tmp_path / "p2p.gz")), "--json"]
        rc = cli.main(["netboot", "--from-cluster", str(s1.path), "-o", str(tmp_path / "tftp"), *media])
        assert rc == 0
        cmdline = json.loads(capsys.readouterr().out)["cmdline"]
        peers = next(w for w in cmdline.split() if w.startswith("ipfs.peers=")).split("=", 1)[1].split(",")
        assert f"tce=ipfs:{root1}" in cmdline
        assert sorted(p.rsplit("/", 1)[1] for p in peers) == sorted(
            s.record()["kubo_peer_id"] for s in states[:3])

        lap("netboot")
        # 3. one seed dies; a republish with --keep 1 is pinned on the others, the old root dropped
        kill_seed(states[2])
        wait_for("s3 gone from the peerset", lambda: peer_count(api) == 2, timeout=60)
        make_repo(repo, ["d"])
        assert cli.main(["publish", str(repo), "--cluster", f"/unix{s1.rest_socket}", "--keep", "1",
                         "--json"]) == 0
        out = json.loads(capsys.readouterr().out)
        root2 = out["root"]
        assert root2 != root1 and out["cluster"]["unpinned"] == [root1]
        assert sorted(out["cluster"]["pinned_on"]) == ["s1", "s2"]
        for s in states[:2]:
            assert root2 in kubo_roots(s) and root1 not in kubo_roots(s)
        assert [cid for _t, cid in clusterpins.our_roots(api)] == [root2]

        lap("republished --keep 1")
        # 4. a fourth seed joins later and ends up holding the current root, nobody pins it by hand
        start_seed(tmp_path, "s4", 19199, join=first["cluster_addrs"][0], secret=secret, **bins)
        wait_for("s4 pinned the current root", lambda: root2 in kubo_roots(states[3]), timeout=180)
        assert root1 not in kubo_roots(states[3])

        lap("s4 holds the root")
        # 5. the dead seed comes back (same state, no options) and converges: one root, the current one
        assert cli.main(["cluster", "start", "--state", str(states[2].path), "--kubo", str(host_kubo),
                         "--service", str(host_cluster.service)]) == 0
        capsys.readouterr()
        wait_for("s3 converged", lambda: kubo_roots(states[2]) & {root1, root2} == {root2}, timeout=240)
        info = clusterpins.cluster_status(api)
        (row,) = info["roots"]
        assert row["complete"] and row["pinned"] == 4, row

        lap("s3 converged")
        # stop: nothing left running, the sockets gone
        assert cli.main(["cluster", "stop", "--state", str(states[3].path)]) == 0
        assert "stopped" in capsys.readouterr().out
        assert ClusterSeed(states[3]).pid() is None and not states[3].rest_socket.exists()


@pytest.mark.kubo
def test_replication_factor_and_refusals(host_kubo: Path, host_cluster: ClusterBinaries, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    bins: dict[str, Any] = {"kubo_bin": host_kubo, "service": host_cluster.service}
    states = [ClusterState(tmp_path / f"r{i}") for i in (1, 2)]
    with stopped_at_exit(*states):
        s1 = start_seed(tmp_path, "r1", 19296, **bins)
        addr = s1.record()["cluster_addrs"][0]
        start_seed(tmp_path, "r2", 19297, join=addr, secret=s1.secret_path, **bins)
        api = ClusterAPI(f"/unix{s1.rest_socket}")
        for s in states:
            wait_for("two seeds", partial(seeds_seen_by, s, 2), timeout=60)
        capsys.readouterr()
        repo = make_repo(tmp_path / "repo", ["x"])
        assert cli.main(["publish", str(repo), "--cluster", str(s1.path), "--replication", "3"]) == \
            UsageError.exit_code
        assert "the cluster has 2 seed(s) up" in capsys.readouterr().err
        rc = cli.main(["publish", str(repo), "--cluster", str(s1.path), "--keep", "0"])
        assert rc == UsageError.exit_code
        # a REST API that is not a local seed needs --api (which kubo gets the files?)
        assert cli.main(["publish", str(repo), "--cluster", "/ip4/127.0.0.1/tcp/1"]) == UsageError.exit_code
        assert "which kubo gets the files" in capsys.readouterr().err
        rc = cli.main(["publish", str(repo), "--cluster", str(s1.path), "--replication", "1", "--json"])
        assert rc == 0
        out = json.loads(capsys.readouterr().out)
        assert out["cluster"]["required"] == 1 and len(out["cluster"]["pinned_on"]) >= 1
        (pin,) = api.allocations()
        assert pin["replication_factor_min"] == 1 and len(pin["allocations"]) == 1
        # a second seed init on a running state is refused; a stopped seed restarts with its peer ID
        with pytest.raises(NodeError, match="is running"):
            ClusterSeed(s1, service=host_cluster.service, kubo=host_kubo).init(s1.options())
        peer = s1.record()["cluster_peer_id"]
        ClusterSeed(s1).stop()
        seed = ClusterSeed(s1, service=host_cluster.service, kubo=host_kubo)
        assert seed.start()["cluster_peer_id"] == peer
        # a changed service.json (someone turned mDNS on) is repaired at the next start
        seed.stop()
        config = json.loads((s1.service_dir / "service.json").read_text())
        config["cluster"]["mdns_interval"] = "10s"
        (s1.service_dir / "service.json").write_text(json.dumps(config))
        assert seed.config_drift() == ["cluster.mdns_interval"]
        seed.start()
        assert seed.config_drift() == []


def test_status_of_a_state_that_is_no_seed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["cluster", "status", "--state", str(tmp_path)]) == NodeError.exit_code
    assert "is not a cluster seed's state" in capsys.readouterr().err



@pytest.mark.kubo
def test_private_lab_swarm(host_kubo: Path, host_cluster: ClusterBinaries, tmp_path: Path,
                           capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    """--private on the first seed, --swarm-key (its key file) on the next: the kubos share a private
    swarm (0600 key, forced), roots replicate, and the boot line carries ipfs.swarmkey=."""
    bins: dict[str, Any] = {"kubo_bin": host_kubo, "service": host_cluster.service}
    states = [ClusterState(tmp_path / f"p{i}") for i in (1, 2, 3)]
    with stopped_at_exit(*states):
        p1 = start_seed(tmp_path, "p1", 19496, **bins, extra=["--private"])
        key_file = p1.repo / "swarm.key"
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        addr = p1.record()["cluster_addrs"][0]
        p2 = start_seed(tmp_path, "p2", 19497, join=addr, secret=p1.secret_path, **bins,
                        extra=["--swarm-key", str(key_file)])
        assert (p2.repo / "swarm.key").read_text() == key_file.read_text()
        for s in (p1, p2):
            pid = Node(s.repo).pid()
            assert pid and b"LIBP2P_FORCE_PNET=1" in Path(f"/proc/{pid}/environ").read_bytes()
            assert ClusterSeed(s).status()["private"]
        capsys.readouterr()
        repo = make_repo(tmp_path / "repo", ["p"])
        assert cli.main(["publish", str(repo), "--cluster", str(p1.path), "--json"]) == 0
        out = json.loads(capsys.readouterr().out)
        assert sorted(out["cluster"]["pinned_on"]) == ["p1", "p2"]
        assert out["root"] in kubo_roots(p2)
        info = clusterpins.boot_info(ClusterSeed(p1).api(), swarm_key=p1.swarm_key())
        assert info.codes()["ipfs.swarmkey"] == p1.swarm_key() and len(info.peers) == 2
        # a seed that joins without the key: its kubo is outside the swarm, and start says so
        start_seed(tmp_path, "p3", 19498, join=addr, secret=p1.secret_path, **bins)
        assert "cannot connect to the kubo of" in caplog.text and "--swarm-key" in caplog.text
