"""The boot hook against a real kubo: an isolated seed on 127.0.0.1 serves a repo; the hook's own kubo
(real config, real gateway, real busybox wget) fetches it. Only DHCP, `ip`, `uname` and `modprobe`
are faked. Both kubo nodes stay off the public network (no bootstrap, AutoConf off, routing none;
for `ipns:` a DHT made of just the two loopback nodes: the seed a `dhtserver`, the hook a `dhtclient`).
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hookfakes.harness import KREL, HookEnv, Repo, Result, real_kubo_hook
from support import record
from support.gateway import CorruptingGateway
from tce_ipfs.ipfs import isolation, node

pytestmark = pytest.mark.kubo

KEY = "5e" * 32


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Seed:
    kubo: Path
    repo: Path
    env: dict[str, str]
    proc: subprocess.Popen[bytes]
    peer: str

    def ipfs(self, *args: str) -> str:
        out = subprocess.run(
            [str(self.kubo), *args], env=self.env, capture_output=True, text=True, timeout=60, check=True
        )
        return out.stdout.strip()

    def add(self, path: Path) -> str:
        return self.ipfs("add", "-r", "-Q", str(path))


def start_seed(kubo: Path, base: Path, swarm_key: str | None = None, gateway_port: int | None = None) -> Seed:
    """``gateway_port``: the seed's gateway is a trustless one there (as ``seed serve --gateway-port``)."""
    base.mkdir(parents=True, exist_ok=True)
    repo = base / "seed"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(base), "IPFS_PATH": str(repo), "IPFS_TELEMETRY": "off"}
    subprocess.run(
        [str(kubo), "init", "--empty-repo", "--profile=test"], env=env, check=True, capture_output=True
    )
    port = free_port()
    config = [("Routing.Type", '"none"'), ("Addresses.Swarm", f'["/ip4/127.0.0.1/tcp/{port}"]')]
    if gateway_port is not None:
        trustless = isolation.trustless_gateway_config(port=gateway_port)
        config += [(k, json.dumps(v)) for k, v in trustless.items()]
    for key, value in config:
        subprocess.run([str(kubo), "config", "--json", key, value], env=env, check=True, capture_output=True)
    if swarm_key:
        (repo / "swarm.key").write_text(f"/key/swarm/psk/1.0.0/\n/base16/\n{swarm_key}\n")
        env["LIBP2P_FORCE_PNET"] = "1"
    log = (base / "seed.log").open("wb")
    proc = subprocess.Popen([str(kubo), "daemon"], env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while b"Daemon is ready" not in (base / "seed.log").read_bytes():
        assert proc.poll() is None, (base / "seed.log").read_text()
        assert time.monotonic() < deadline, "seed did not start"
        time.sleep(0.1)
    peer_id = subprocess.run(
        [str(kubo), "id", "-f", "<id>"], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()
    return Seed(kubo, repo, env, proc, f"/ip4/127.0.0.1/tcp/{port}/p2p/{peer_id}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture
def seed(host_kubo: Path, tmp_path: Path) -> Iterator[Seed]:
    s = start_seed(host_kubo, tmp_path)
    yield s
    stop(s.proc)


@pytest.fixture
def hook(host_kubo: Path, tmp_path: Path) -> Iterator[HookEnv]:
    env = real_kubo_hook(tmp_path / "hook", host_kubo.parent)
    yield env
    env.stop_kubo()


def make_repo(path: Path) -> Repo:
    repo = Repo(path)
    repo.ext("libhello.tcz")
    repo.ext("hello-core.tcz", ["libhello.tcz"])
    repo.ext(f"hello-mod-{KREL}.tcz")
    repo.ext("hello.tcz", ["hello-core.tcz", "hello-mod-KERNEL.tcz"])
    repo.ext("bigdata.tcz", size=3 * 1024 * 1024)
    repo.lst("hello.tcz\nbigdata.tcz\n")
    return repo


def run(hook: HookEnv, cmdline: str) -> Result:
    """Run the hook in the host's own network namespace: always with ``ipfs.mdns=0`` (the hook's
    default is LAN discovery, which is only allowed inside a private namespace or guest LAN)."""
    return hook.run(f"{cmdline} ipfs.mdns=0", timeout=120)


def test_fetch_from_real_seed(seed: Seed, hook: HookEnv, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    cid = seed.add(repo.path)
    port = free_port()
    result = run(hook, f"tce=ipfs:{cid} ipfs.peers={seed.peer} ipfs.port={port} ipfs.timeout=60")
    st = check_fetched(result, hook, repo, cid, seed.peer, port, routing="none", kubo=seed.kubo)
    assert st["scheme"] == "ipfs"
    # The same hook at native speed (the QEMU guests run under TCG): for the report, not asserted.
    record("hook-native", {k: st.get(k) for k in ("t_kubo_ready", "t_list", "t_first_byte", "t_total")})
    check_seeding(result, hook, cid, seed.ipfs, seed.kubo, tmp_path)


def test_kubo_without_settings_only_init_config(seed: Seed, host_kubo: Path, tmp_path: Path) -> None:
    """A kubo that refuses `daemon --init` with a settings-only --init-config (upstream's answer, here
    from a wrapper in front of the real binary): the hook makes the repo with the real `ipfs init`,
    edits real kubo's config layout with its awk pass, starts the daemon again and fetches the same."""
    wrapper = tmp_path / "old-kubo"
    wrapper.mkdir()
    (wrapper / "ipfs").write_text(
        "#!/bin/sh\n"
        'if [ "$1" = daemon ] && [ "$2" = --init ]; then\n'
        "    echo \"Error: config file has no Identity.PrivKey. Pass a copy of a repo's 'config' file\" >&2\n"
        "    exit 1\n"
        "fi\n"
        f'exec {host_kubo} "$@"\n'
    )
    (wrapper / "ipfs").chmod(0o755)
    hook = real_kubo_hook(tmp_path / "hook", wrapper)
    try:
        repo = make_repo(tmp_path / "repo")
        cid = seed.add(repo.path)
        port = free_port()
        result = run(hook, f"tce=ipfs:{cid} ipfs.peers={seed.peer} ipfs.port={port} ipfs.timeout=60")
        check_fetched(result, hook, repo, cid, seed.peer, port, routing="none", kubo=seed.kubo,
                      one_start=False)
    finally:
        hook.stop_kubo()


def test_blocks_in_this_machines_order_from_two_real_seeds(
    host_kubo: Path, hook: HookEnv, tmp_path: Path
) -> None:
    """Two real peers hold the repo (a seed and a lab machine that has it already), so blocks can be
    traded: the big file's block list comes from the real `ls`, its blocks from real `refs` calls in
    this machine's order, then the file from the hook's own store; everything verified as before."""
    first = start_seed(host_kubo, tmp_path / "a")
    second = start_seed(host_kubo, tmp_path / "b")
    try:
        repo = make_repo(tmp_path / "repo")
        cid = first.add(repo.path)
        assert second.add(repo.path) == cid
        result = run(hook, f"tce=ipfs:{cid} ipfs.peers={first.peer},{second.peer} ipfs.port={free_port()} "
                     "ipfs.timeout=60 ipfs.debug")
        assert result.final.startswith(f"loaded 5 extensions from ipfs:{cid} in "), result.console
        for name, data in repo.data.items():
            assert (hook.optional() / name).read_bytes() == data
        assert "block lists:" not in result.log  # the real ls answered, and blocks.awk read it
        blocks = (hook.root / "tmp/tce-ipfs/blocks/bigdata.tcz").read_text().split()
        assert len(blocks) == 12  # 3 MiB in kubo's 256 KiB chunks
        env = {"PATH": "/usr/bin:/bin", "IPFS_PATH": str(hook.root / "tmp/tce-ipfs/repo")}
        for block in blocks:  # every one in the hook's store (asking offline: nothing is fetched now)
            subprocess.run([str(host_kubo), "block", "stat", "--offline", block], env=env,
                           capture_output=True, timeout=30, check=True)
        sent = [json.loads(s.ipfs("bitswap", "stat", "--enc=json"))["DataSent"] for s in (first, second)]
        assert sum(sent) > 0, sent  # (the test file repeats one chunk: kubo stores it once)
    finally:
        stop(first.proc)
        stop(second.proc)


def check_fetched(
    result: Result, hook: HookEnv, repo: Repo, cid: str, peer: str, port: int, *, routing: str, kubo: Path,
    one_start: bool = True,
) -> dict[str, str]:
    """What a good fetch of make_repo() from one real seed leaves behind; returns the status."""
    assert result.rc == 0
    assert result.final.startswith(f"loaded 5 extensions from ipfs:{cid} in "), result.console + result.log
    assert hook.builtin_list() == [
        "libhello.tcz",
        "hello-core.tcz",
        f"hello-mod-{KREL}.tcz",
        "hello.tcz",
        "bigdata.tcz",
    ]
    for name, data in repo.data.items():
        assert (hook.optional() / name).read_bytes() == data
    st = result.status
    assert st["result"] == "ok" and st["peers_connected"] == "1" and "t_first_byte" in st
    assert st["cid"] == cid
    # the hook's node: private by construction
    config = json.loads((hook.root / "tmp/tce-ipfs/repo/config").read_text())
    assert config["Bootstrap"] == [] and config["Routing"]["Type"] == routing
    assert config["AutoConf"]["Enabled"] is False and config["Discovery"]["MDNS"]["Enabled"] is False
    assert config["Swarm"]["Transports"]["Security"] == {"TLS": False}  # Noise only
    assert config["Addresses"]["Swarm"] == [f"/ip4/0.0.0.0/tcp/{port}"]
    seed_id = peer.rsplit("/", 1)[1]
    assert config["Peering"]["Peers"] == [{"ID": seed_id, "Addrs": [peer.rsplit("/p2p/", 1)[0]]}]
    if one_start:  # the daemon made its repo from the hook's settings-only --init-config
        assert "kubo config edited in place" not in result.log
    else:
        assert "kubo config edited in place" in result.log  # the awk fast path matched real kubo's layout
    assert config["Identity"]["PeerID"] == st["peer_id"] and config["Identity"]["PrivKey"]
    assert st["api"].startswith("/ip4/127.0.0.1/tcp/") and st["gateway"].startswith("http://127.0.0.1:")
    for key in ("API", "Gateway"):
        addrs = config["Addresses"][key]
        assert all(a.startswith("/ip4/127.0.0.1/") for a in ([addrs] if isinstance(addrs, str) else addrs))
    # still running and holding the blocks it fetched: it can serve them on
    env = {"PATH": "/usr/bin:/bin", "IPFS_PATH": str(hook.root / "tmp/tce-ipfs/repo")}
    out = subprocess.run(
        [str(kubo), "cat", "--offline", f"/ipfs/{cid}/hello.tcz"],
        env=env,
        capture_output=True,
        timeout=30,
        check=True,
    ).stdout
    assert out == repo.data["hello.tcz"]
    return st


def check_seeding(
    result: Result, hook: HookEnv, cid: str, seed_ipfs: Callable[..., str], kubo: Path, tmp_path: Path
) -> None:
    """The pin job pinned every fetched file (recursive) and the root node (direct) through the real
    RPC API, and peer_id is the node's real identity."""
    st = result.wait_status("pinned", timeout=60)
    assert "pin_failed" not in st, result.env_log()
    names = {ln.split()[-1]: ln.split()[0] for ln in seed_ipfs("ls", cid).splitlines()}
    fetched = [n for n in names if n != "onboot.lst" and not n.endswith(".dep")] + [
        "hello-core.tcz.dep",
        "hello.tcz.dep",
        "onboot.lst",
    ]
    assert int(st["pinned"]) == 1 + len(fetched)
    cli = {"PATH": "/usr/bin:/bin", "IPFS_PATH": str(hook.root / "tmp/tce-ipfs/repo"), "HOME": str(tmp_path)}

    def hook_ipfs(*args: str) -> set[str]:
        out = subprocess.run(
            [str(kubo), *args], env=cli, capture_output=True, text=True, timeout=30, check=True
        ).stdout
        return set(out.split())

    empty_dir = "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn"  # kubo's init pins it
    assert hook_ipfs("pin", "ls", "--type=recursive", "-q") - {empty_dir} == {names[n] for n in fetched}
    assert hook_ipfs("pin", "ls", "--type=direct", "-q") == {cid}
    assert hook_ipfs("id", "-f", "<id>") == {st["peer_id"]}


def test_ipns_from_real_seed(host_kubo: Path, hook: HookEnv, tmp_path: Path) -> None:
    """tce=ipns:<k51...>: a real IPNS record, resolved over a DHT of just two loopback nodes.

    The seed is a node.Node (isolation_config: loopback only, connection gater, no bootstrap, no
    delegated routing, pubsub off) with Routing.Type=dhtserver, so it stores its own record and answers
    GET_VALUE for it; the hook's kubo (dhtclient) learns the seed as its only DHT peer once connected.
    """
    seed = node.Node(tmp_path / "ipns-seed", host_kubo, extra_config={"Routing.Type": "dhtserver"})
    seed.start()
    try:
        repo = make_repo(tmp_path / "repo")
        cid = seed.kubo_cmd("add", "-r", "-Q", str(repo.path)).strip()
        # Put into the seed's own DHT record store (nobody else to send it to yet; kubo still succeeds).
        published = seed.kubo_cmd("name", "publish", "--key=self", "--ipns-base=base36", f"/ipfs/{cid}")
        name = published.split()[2].rstrip(":")
        assert name.startswith("k51") and published.strip().endswith(f"/ipfs/{cid}"), published
        (peer,) = seed.swarm_addrs
        assert peer.startswith("/ip4/127.0.0.1/")
        port = free_port()
        result = run(hook, f"tce=ipns:{name} ipfs.peers={peer} ipfs.port={port} ipfs.timeout=60")
        st = check_fetched(result, hook, repo, cid, peer, port, routing="dhtclient", kubo=host_kubo)
        assert st["scheme"] == "ipns" and st["ipns"] == name
        assert f"ipns:{name} -> /ipfs/{cid}" in result.log

        def seed_ipfs(*args: str) -> str:
            return seed.kubo_cmd(*args).strip()

        check_seeding(result, hook, cid, seed_ipfs, host_kubo, tmp_path)
    finally:
        seed.stop()


def test_cid_nobody_has_times_out(seed: Seed, hook: HookEnv, tmp_path: Path) -> None:
    (tmp_path / "other").mkdir()
    (tmp_path / "other/onboot.lst").write_text("nothing-here.tcz\n")
    missing = seed.ipfs("add", "-r", "-Q", "--only-hash", str(tmp_path / "other"))
    start = time.monotonic()
    result = run(hook, f"tce=ipfs:{missing} ipfs.peers={seed.peer} ipfs.port={free_port()} ipfs.timeout=8")
    assert result.final.startswith(f"FAILED: onboot.lst from ipfs:{missing}: timed out"), result.console
    assert time.monotonic() - start < 20


def test_private_swarm(host_kubo: Path, hook: HookEnv, tmp_path: Path) -> None:
    private = start_seed(host_kubo, tmp_path / "p", swarm_key=KEY)
    try:
        repo = make_repo(tmp_path / "repo")
        cid = private.add(repo.path)
        wrong = run(
            hook,
            f"tce=ipfs:{cid} ipfs.peers={private.peer} ipfs.port={free_port()} "
            f"ipfs.swarmkey={'1' * 64} ipfs.timeout=6",
        )
        assert "no peer reachable" in wrong.final and "ipfs.swarmkey" in wrong.final, wrong.console
        right = run(
            hook, f"tce=ipfs:{cid} ipfs.peers={private.peer} ipfs.port={free_port()} ipfs.swarmkey={KEY}"
        )
        assert right.final.startswith("loaded 5 extensions"), right.console + right.log
    finally:
        stop(private.proc)


def test_seed_0_shuts_kubo_down(seed: Seed, hook: HookEnv, tmp_path: Path) -> None:
    cid = seed.add(make_repo(tmp_path / "repo").path)
    result = run(hook, f"tce=ipfs:{cid} ipfs.peers={seed.peer} ipfs.port={free_port()} ipfs.seed=0")
    assert result.final.startswith("loaded 5 extensions"), result.console
    assert result.status["kubo_pid"] == ""
    assert not (hook.root / "tmp/tce-ipfs/repo/api").exists()  # kubo removes it on a clean shutdown


# ------------------------------------------------------------------ ipfs.gateway= (trustless CARs)
def bitswap_sent(s: Seed) -> int:
    return int(json.loads(s.ipfs("bitswap", "stat", "--enc=json"))["DataSent"])


@pytest.fixture
def gw_seed(host_kubo: Path, tmp_path: Path) -> Iterator[tuple[Seed, str]]:
    port = free_port()
    s = start_seed(host_kubo, tmp_path / "gw", gateway_port=port)
    yield s, f"http://127.0.0.1:{port}"
    stop(s.proc)


def test_gateway_cars_from_real_seed(gw_seed: tuple[Seed, str], hook: HookEnv, tmp_path: Path) -> None:
    """ipfs.gateway= a real seed's trustless gateway: the list's and every .tcz's blocks come as CARs
    over HTTP, imported (checked) by the hook's real kubo and read out through it."""
    seed, gw = gw_seed
    repo = make_repo(tmp_path / "repo")
    cid = seed.add(repo.path)
    # a trustless gateway: no plain files, and nothing fetched for others
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"{gw}/ipfs/{cid}/hello.tcz", timeout=10)
    assert e.value.code == 406
    port = free_port()
    result = run(hook, f"tce=ipfs:{cid} ipfs.peers={seed.peer} ipfs.port={port} ipfs.timeout=60 "
                 f"ipfs.gateway={gw}")
    st = check_fetched(result, hook, repo, cid, seed.peer, port, routing="none", kubo=seed.kubo)
    assert st["ipfs_gateway"] == "ok", result.console
    # the list and each .tcz (the small .dep and .md5.txt files come over bitswap)
    assert int(st["ipfs_gateway_cars"]) == 1 + 5
    # (bigdata.tcz repeats one 256 KiB chunk: its CAR holds that block once)
    assert int(st["bytes_ipfs_gateway"]) > 256 * 1024
    assert "gateway" in st["marks"] and "peers:" not in st["marks"]  # the list did not wait for peers
    assert bitswap_sent(seed) < 16 * 1024  # only the sidecars came over bitswap
    assert "warning" not in result.console


def test_gateway_corrupt_car_refused_then_bitswap(
    gw_seed: tuple[Seed, str], hook: HookEnv, tmp_path: Path
) -> None:
    """A CAR with one flipped byte: kubo's import refuses it (the block does not hash to its CID),
    one warning line, and the file -- and the rest -- comes over bitswap with the right md5."""
    seed, gw = gw_seed
    repo = make_repo(tmp_path / "repo")
    cid = seed.add(repo.path)
    liar = CorruptingGateway(gw, "bigdata.tcz")
    try:
        port = free_port()
        result = run(hook, f"tce=ipfs:{cid} ipfs.peers={seed.peer} ipfs.port={port} ipfs.timeout=60 "
                     f"ipfs.gateway={liar.url}")
    finally:
        liar.close()
    assert liar.corrupted == 1
    st = check_fetched(result, hook, repo, cid, seed.peer, port, routing="none", kubo=seed.kubo)
    assert st["ipfs_gateway"] == "failed"
    warned = [ln for ln in result.lines if "ipfs.gateway=" in ln]
    assert len(warned) == 1 and "bigdata.tcz: refused by kubo's import" in warned[0], result.console
    assert "integrity" in warned[0] or "mismatch" in warned[0], warned
    assert bitswap_sent(seed) > 0


def test_gateway_unreachable_falls_back_to_peers(seed: Seed, hook: HookEnv, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    cid = seed.add(repo.path)
    port = free_port()
    result = run(hook, f"tce=ipfs:{cid} ipfs.peers={seed.peer} ipfs.port={port} ipfs.timeout=60 "
                 f"ipfs.gateway=http://127.0.0.1:{free_port()}")
    st = check_fetched(result, hook, repo, cid, seed.peer, port, routing="none", kubo=seed.kubo)
    assert st["ipfs_gateway"] == "failed" and st["ipfs_gateway_cars"] == "0"
    assert any("ipfs.gateway=" in ln and "fetching over bitswap" in ln for ln in result.lines)
