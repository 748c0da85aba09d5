"""The simulated internet (``testbed.internet``) and the open-network mode on it, without QEMU.

* it comes up isolated and goes away completely -- also when the test using it fails;
* its NAT routers behave as cone and symmetric NATs do, and the core counts (and drops) every packet
  addressed outside the simulation;
* kubo nodes in two homes find each other through the DHT, connect through a relay and hole-punch a
  direct connection (cone NATs), and cannot (symmetric NATs, no relay);
* the real boot hook (real kubo, real busybox wget; only DHCP faked) in a home, with only
  ``tce=ipfs:<CID>`` and the simulated bootstrap list, fetches from the seed in another home -- and when
  it cannot, its console line names the stage that failed, within its timeout.

Measured numbers go to ``tests/.results/internet-*.json`` (never asserted as timings).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hookfakes.harness import HookEnv, Repo, Result, real_kubo_hook
from support import record, run_failing_inner_test
from tce_ipfs.ipfs import netmode, opennet, rpc
from tce_ipfs.proc import pid_alive
from tce_ipfs.testbed.internet import HomeSeed, Internet, Nat, in_sim, start_home_seed
from tce_ipfs.testbed.lab import namespaces

pytestmark = [pytest.mark.root, pytest.mark.kubo]

HOOK_TIMEOUT = 90  # ipfs.timeout for the hook runs: a bound, not a performance target


def make_repo(path: Path) -> Repo:
    """Two extensions of random bytes (every block unique: what flows is what was asked for)."""
    repo = Repo(path)
    for name, size, deps in (("libnet.tcz", 300_000, []), ("net.tcz", 1_500_000, ["libnet.tcz"])):
        repo.ext(name, deps, data=os.urandom(size))
    repo.lst("net.tcz\n")
    return repo


# ------------------------------------------------------------------------------------------ the sim
def test_up_isolated_counted_and_gone(tmp_path: Path) -> None:
    with Internet(tmp_path / "net", homes={"a": "cone", "b": "symmetric"}) as net:
        names = net.namespaces()
        assert set(names) <= set(namespaces())
        net.check_isolated()
        machine = net.add_machine("a", "probe")
        net.check_isolated()
        # The homes' routers are the way out of a home, and the core is the end of the world: no
        # default route there, so a packet for any address outside the simulation dies in the core --
        # counted per destination. (A documentation address: no host anywhere has it.)
        assert machine.exec(["ip", "route", "get", "198.51.100.1"]).returncode == 0
        assert net.core.exec(["ip", "route", "get", "198.51.100.1"], check=False).returncode != 0
        assert net.strays()["packets"] == 0
        machine.exec(["timeout", "3", "busybox", "nc", "198.51.100.1", "4001"], check=False)
        strays = net.strays()
        assert strays["packets"] >= 1 and strays["destinations"] == ["198.51.100.1"]
        net.reset_strays()
        assert net.strays() == {"packets": 0, "bytes": 0, "destinations": []}
        # IPv6 is off everywhere, DHCP offers no DNS server (no port 53 anywhere).
        for ns in names:
            assert b":53 " not in subprocess.run(["ip", "netns", "exec", ns, "ss", "-H", "-tuln"],
                                                 capture_output=True, check=True).stdout
    assert not set(names) & set(namespaces())


def test_failing_test_still_tears_down(tmp_path: Path) -> None:
    """A test that fails with the simulated internet up (in its own pytest run) leaves no namespace and
    no process behind."""
    rec = tmp_path / "record"
    run_failing_inner_test(tmp_path, f"""
        from pathlib import Path
        import pytest
        from tce_ipfs.testbed.internet import Internet

        @pytest.fixture
        def net(tmp_path):
            with Internet(tmp_path / "net", homes=("a", "b")) as net:
                yield net

        def test_fails_midway(net):
            m = net.add_machine("b", "b1")
            p = m.spawn("sleeper", ["sleep", "300"])
            Path({str(rec)!r}).write_text(" ".join([*net.namespaces(), str(p.pid)]))
            assert False, "deliberate failure with the internet up"
    """, timeout=180)
    *nss, pid = rec.read_text().split()
    assert len(nss) >= 4 and not set(nss) & set(namespaces())
    assert not pid_alive(int(pid))


ECHO_PEER = "import socket; s = socket.create_server(('0.0.0.0', 9000)); " \
            "c, a = s.accept(); c.sendall(f'{a[0]}:{a[1]}'.encode()); c.close()"


def _seen_from(net: Internet, src: str, dst: str, *, port: int) -> str:
    """The source address:port a server on machine ``dst`` sees for a connection from ``src`` that
    leaves from local port ``port``."""
    d = net.machine(dst)
    server = d.spawn(f"echo-{dst}-{port}", [sys.executable, "-c", ECHO_PEER])
    try:
        time.sleep(0.5)
        code = ("import socket, sys; c = socket.socket(); "
                "c.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
                f"c.bind(('0.0.0.0', {port})); c.settimeout(5); c.connect((sys.argv[1], 9000)); "
                "print(c.recv(100).decode())")
        out = net.machine(src).exec([sys.executable, "-c", code, d.ip]).stdout.decode().strip()
    finally:
        server.stop(grace=1)
    return str(out)


def test_nat_kinds(tmp_path: Path) -> None:
    """Cone: one inside port keeps its number outside, whoever it talks to (so a peer's observation
    is good for everyone: hole punching works). Symmetric: a new outside port per destination. Both
    drop what nobody inside asked for."""
    with Internet(tmp_path / "net", homes={"a": "cone", "b": "symmetric"}) as net:
        for name, ip in (("p1", net.server_ips[0]), ("p2", net.server_ips[1])):
            net.attach_public(name, ip)
        a1 = net.add_machine("a", "a1")
        net.add_machine("a", "a2")
        net.add_machine("b", "b1")
        # One home's LAN is a switch: a2 sees a1 as it is (no NAT, no router filter in between; the
        # host's br_netfilter, when loaded, used to drop this in the router's forward chain).
        assert _seen_from(net, "a1", "a2", port=4001) == f"{a1.ip}:4001"
        cone = [_seen_from(net, "a1", p, port=4001) for p in ("p1", "p2")]
        assert cone == [f"{net.home('a').wan_ip}:4001"] * 2
        # ... which is what home a's conntrack table holds (Home.conntrack: the hole-punch diagnosis)
        mapped = [e for e in net.home("a").conntrack() if f"src={a1.ip} " in e]
        assert len(mapped) == 2 and all(f"dst={net.home('a').wan_ip} sport=9000 dport=4001" in e
                                        for e in mapped), mapped
        sym = [_seen_from(net, "b1", p, port=4001) for p in ("p1", "p2")]
        assert all(s.startswith(net.home("b").wan_ip + ":") for s in sym)
        assert len({s.split(":")[1] for s in sym}) == 2 and "4001" not in {s.split(":")[1] for s in sym}
        # Unsolicited from outside: dropped by the router (no RST either: the dial just times out).
        p1 = net.machine("p1")
        probe = p1.exec(["timeout", "3", "busybox", "nc", net.home("a").wan_ip, "4001"], check=False)
        assert probe.returncode != 0
        assert net.strays()["packets"] == 0


# ------------------------------------------------------------------------------ kubo on the sim
@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory, host_kubo: Path) -> Iterator[Internet]:
    """Homes a, b, d (cone NATs), c (symmetric); boot1..4 up (DHT, AutoNAT, relays). The hook gets
    home d to itself: a second machine on port 4001 behind the same NAT, with its own connection to
    the seed (b-node), would hold the very NAT mapping hole punching needs (a real effect, not this
    test's subject)."""
    homes: dict[str, Nat] = {"a": "cone", "b": "cone", "c": "symmetric", "d": "cone"}
    with Internet(tmp_path_factory.mktemp("internet"), homes=homes) as n:
        n.start_servers(host_kubo)
        yield n
        assert n.strays()["packets"] == 0, n.strays()


@pytest.fixture(scope="module")
def seed(net: Internet, host_kubo: Path, tmp_path_factory: pytest.TempPathFactory) -> HomeSeed:
    repo = make_repo(tmp_path_factory.mktemp("net-repo"))
    golog = os.environ.get("TCE_IPFS_TEST_GOLOG")  # e.g. error,p2p-holepunch=debug (the seed's daemon.log)
    return start_home_seed(net, "a", host_kubo, repo.path, env={"GOLOG_LOG_LEVEL": golog} if golog else None)


def test_seed_at_home_is_reachable_through_a_relay(net: Internet, seed: HomeSeed) -> None:
    with seed.node.client() as c:
        seen = opennet.reachability(c)
        assert seen["state"] == "relayed" and seen["autonat"] == "Private", seen
        assert all(r.split("/")[2] in net.server_ips for r in seen["relays"])
        assert c.id()["Addresses"]
        assert rpc.config_value(c, "Bootstrap") == net.bootstrap()
    record("internet-seed", {"reachable_s": round(seed.reachable_s, 1),
                             "announced_s": round(seed.announced_s, 1)})


def test_two_homes_hole_punch(net: Internet, seed: HomeSeed, host_kubo: Path) -> None:
    """A node in home b finds the seed of home a through the DHT, reaches it through a relay, and the
    two punch a direct TCP connection through their NATs: the blocks never go through the relay."""
    machine = net.add_machine("b", "b-node")
    node = net.start_node(machine, "b-node", host_kubo, net.work_dir / "b-node",
                          config=netmode.public_config(net.bootstrap()))
    started = time.monotonic()
    with node.client(timeout=120) as c:
        found = opennet.find_providers(c, seed.cid, timeout=60)
        t_provider = time.monotonic() - started
        assert [p["ID"] for p in found] == [seed.node.peer_id]
        assert all("/p2p-circuit" in a for a in found[0]["Addrs"]), found  # behind NAT: relay addresses
        data = rpc.cat(c, f"/ipfs/{seed.cid}/net.tcz", timeout=120)
        t_data = time.monotonic() - started
    assert len(data) == 1_500_000
    conns = [x for x in net.connections(node) if x["peer"] == seed.node.peer_id]
    assert any(not x["relayed"] for x in conns), f"{conns}\n{net.nat_report()}"
    direct = [x["addr"] for x in conns if not x["relayed"]]
    assert direct == [f"/ip4/{net.home('a').wan_ip}/tcp/4001"]
    with node.client() as c:
        assert rpc.bitswap_stat(c)["DataReceived"] >= 1_500_000  # over bitswap, from the only provider
    assert net.home("a").wan_stats()["tx"]["bytes"] >= 1_500_000  # out of home a's router, not a relay
    record("internet-hole-punch", {"t_provider_s": round(t_provider, 2), "t_data_s": round(t_data, 2),
                                   "connections": conns,
                                   "wan_tx_a": net.home("a").wan_stats()["tx"]["bytes"],
                                   "nat_a_b": [e for h in ("a", "b") for e in net.home(h).conntrack()
                                               if net.home("b" if h == "a" else "a").wan_ip in e]})


def test_symmetric_nat_cannot_hole_punch(net: Internet, seed: HomeSeed, host_kubo: Path) -> None:
    """Home c's symmetric NAT: c finds the seed and reaches it through the relay, but the ports the
    other side learns are useless, so no direct connection comes up and no block flows."""
    machine = net.add_machine("c", "c-node")
    node = net.start_node(machine, "c-node", host_kubo, net.work_dir / "c-node",
                          config=netmode.public_config(net.bootstrap()))
    with node.client(timeout=60) as c:
        assert [p["ID"] for p in opennet.find_providers(c, seed.cid, timeout=60)] == [seed.node.peer_id]
        rpc.swarm_connect(c, f"/p2p/{seed.node.peer_id}", timeout=30)
    time.sleep(15)  # DCUtR tries three times within a few seconds
    conns = [x for x in net.connections(node) if x["peer"] == seed.node.peer_id]
    assert conns and all(x["relayed"] for x in conns), conns
    with node.client(timeout=20) as c, pytest.raises(Exception, match=r"deadline|timed out|timeout"):
        rpc.cat(c, f"/ipfs/{seed.cid}/net.tcz", timeout=15)


def test_cli_publish_at_home_announces_reachable_addrs(net: Internet, seed: HomeSeed, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """``tce-ipfs publish`` to a seed on the open network announces the new root once AutoNAT has said
    how peers reach it, and the record the DHT then holds names the relay, never only the router's
    outside address (which nobody can dial)."""
    from tce_ipfs import cli

    repo = make_repo(tmp_path / "repo")
    assert cli.main(["publish", str(repo.path), "--api", seed.node.api, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["announced"]["how"] and "relay" in out["announced"]["how"], out["announced"]
    with net.servers[0].client(timeout=90) as c:
        found = opennet.find_providers(c, out["root"], timeout=60)
    assert [p["ID"] for p in found] == [seed.node.peer_id], found
    assert found[0]["Addrs"] and all("/p2p-circuit" in a for a in found[0]["Addrs"]), found
    record("internet-cli-publish", {"announced": out["announced"], "provider_addrs": found[0]["Addrs"]})


def test_seed_serve_sighup_announces_the_new_root(net: Internet, seed: HomeSeed) -> None:
    """SIGHUP: ``seed serve --net public`` publishes its changed directory again and announces the new
    root at once (AutoNAT has answered by now): a public node finds the seed as its provider, at relay
    addresses only. Then the directory goes back, and so does the root (the other tests' seed.cid)."""
    from tce_ipfs.ipfs.seed import SeedState

    assert seed.state is not None
    state = SeedState(seed.state)
    source = Path(str((state.record() or {})["source"]))
    before = (source / "onboot.lst").read_text()

    def republish(text: str) -> dict[str, Any]:
        (source / "onboot.lst").write_text(text)
        old = state.record() or {}
        os.kill(seed.node.process.pid, signal.SIGHUP)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            new = state.record() or {}
            announced = new.get("announced") or {}
            if announced.get("at") and announced != old.get("announced") and new["root"] != old.get("root"):
                return new
            time.sleep(0.5)
        raise AssertionError(f"no new root announced after SIGHUP: {state.record()}")

    try:
        changed = republish("libnet.tcz\nnet.tcz\n")
        assert changed["root"] != seed.cid and "relay" in changed["announced"]["how"], changed
        with net.servers[1].client(timeout=90) as c:
            found = opennet.find_providers(c, changed["root"], timeout=60)
        assert [p["ID"] for p in found] == [seed.node.peer_id], found
        assert found[0]["Addrs"] and all("/p2p-circuit" in a for a in found[0]["Addrs"]), found
    finally:
        assert republish(before)["root"] == seed.cid
    record("internet-seed-sighup", {"announced": changed["announced"], "provider_addrs": found[0]["Addrs"]})


# ------------------------------------------------------------------------------ the hook on the sim
def hook_env(machine_netns: str, base: Path, kubo: Path) -> HookEnv:
    # The real `ip` by its path: the hook's PATH holds the fake one.
    real_ip = shutil.which("ip") or "/usr/sbin/ip"
    return real_kubo_hook(base, kubo.parent, launcher=(real_ip, "netns", "exec", machine_netns))


def run_hook(env: HookEnv, cmdline: str) -> Result:
    return env.run(cmdline, timeout=HOOK_TIMEOUT + 60)


def hook_config(env: HookEnv) -> dict[str, object]:
    return dict(json.loads((env.root / "tmp/tce-ipfs/repo/config").read_text()))


def test_hook_boots_from_a_seed_in_another_home(net: Internet, seed: HomeSeed, host_kubo: Path,
                                                tmp_path: Path) -> None:
    machine = net.add_machine("d", "d-hook")
    env = hook_env(machine.netns, tmp_path / "hook", host_kubo)
    boot = ",".join(net.bootstrap())
    result = run_hook(env, f"tce=ipfs:{seed.cid} ipfs.bootstrap={boot} ipfs.timeout={HOOK_TIMEOUT}")
    assert result.final.startswith(f"loaded 2 extensions from ipfs:{seed.cid} in "), \
        result.console + result.log + net.nat_report()
    st = result.status
    assert st["net"] == "public" and st["route"] == "direct" and st["providers"] == seed.node.peer_id
    config: dict[str, Any] = hook_config(env)
    assert config["Bootstrap"] == net.bootstrap()  # never kubo's own list here
    # public mode's keys came in kubo's one start (the daemon's --init-config), real kubo took them
    assert "making the repo with ipfs init" not in result.log
    assert config["AutoConf"]["Enabled"] is False and config["Routing"]["DelegatedRouters"] == []
    assert config["Routing"]["Type"] == "dhtclient" and config["Provide"]["Strategy"] == "roots"
    assert config["Swarm"]["DisableNatPortMap"] is True
    assert config["Swarm"]["ResourceMgr"]["MaxMemory"] == "100MiB"
    assert all(in_sim(a.split("/")[2]) for a in config["Bootstrap"])
    record("internet-hook", {k: st.get(k) for k in ("t_kubo_ready", "t_provider", "t_list", "t_first_byte",
                                                     "t_total", "route", "providers")})


def test_hook_boots_from_a_lan_peer_without_the_internet(net: Internet, host_kubo: Path,
                                                        tmp_path: Path) -> None:
    """Public mode, bootstrap unreachable, but a machine on the same home LAN (mDNS, inside home b's
    own namespace) holds the repo: the routing stage ends as soon as that peer sent the root
    (route=lan), long before ROUTE_BOOT_MAX, and the boot loads from it."""
    from tce_ipfs.ipfs.publish import publish

    neighbour = net.add_machine("b", "b-lan")
    node = net.start_node(neighbour, "b-lan", host_kubo, net.work_dir / "b-lan",
                          config={**netmode.public_config(net.bootstrap()), "Discovery.MDNS.Enabled": True})
    with node.client(timeout=120) as c:
        cid = publish(make_repo(tmp_path / "repo").path, c, progress=False).root_cid
    machine = net.add_machine("b", "b-hook")
    env = hook_env(machine.netns, tmp_path / "hook", host_kubo)
    dead = f"/ip4/192.0.0.250/tcp/4001/p2p/{net.servers[0].peer_id}"  # nobody answers there
    started = time.monotonic()
    result = run_hook(env, f"tce=ipfs:{cid} ipfs.bootstrap={dead} ipfs.timeout={HOOK_TIMEOUT}")
    elapsed = time.monotonic() - started
    assert result.final.startswith(f"loaded 2 extensions from ipfs:{cid} in "), result.console + result.log
    st = result.status
    assert st["net"] == "public" and st["route"] == "lan" and st["providers"] == node.peer_id, st
    with node.client() as c:
        assert rpc.bitswap_stat(c)["DataSent"] >= 1_800_000  # the neighbour served both extensions
    record("internet-lan-route", {"seconds": round(elapsed, 1),
                                  **{k: st.get(k) for k in ("t_kubo_ready", "t_provider", "t_first_byte",
                                                            "t_total")}})


@pytest.fixture(scope="module")
def dark(tmp_path_factory: pytest.TempPathFactory, host_kubo: Path) -> Iterator[tuple[Internet, HomeSeed]]:
    """A second internet where nothing gets through: both homes behind symmetric NATs (hole punching
    cannot work), the seed in home a announced its repo through a relay -- and then every relay
    stopped (the record stays on the DHT, the way to the seed is gone)."""
    with Internet(tmp_path_factory.mktemp("dark"), homes={"a": "symmetric", "b": "symmetric"}) as n:
        n.start_servers(host_kubo)
        seed = start_home_seed(n, "a", host_kubo, make_repo(tmp_path_factory.mktemp("dark-repo")).path)
        n.set_relays(False)
        yield n, seed
        assert n.strays()["packets"] == 0, n.strays()


@pytest.mark.parametrize("case", ["no-bootstrap", "no-providers", "unreachable", "relayed-only"])
def test_hook_names_the_failed_stage(request: pytest.FixtureRequest, case: str, tmp_path: Path,
                                     host_kubo: Path) -> None:
    """Without a way through, the hook gives up within ipfs.timeout with the stage in its last line.
    relayed-only: home c of the first internet (symmetric NAT, relays up) reaches the seed only through
    a relay, which carries no blocks."""
    if case == "relayed-only":
        net, seed = request.getfixturevalue("net"), request.getfixturevalue("seed")
        home = "c"
    else:
        net, seed = request.getfixturevalue("dark")
        home = "b"
    machine = net.add_machine(home, f"{home}-{case}")
    env = hook_env(machine.netns, tmp_path / "hook", host_kubo)
    boot = ",".join(net.bootstrap())
    cid = seed.cid
    if case == "no-bootstrap":  # an address of the core where no machine answers
        boot = f"/ip4/192.0.0.250/tcp/4001/p2p/{net.servers[0].peer_id}"
        stage = "no route to bootstrap"
    elif case == "no-providers":  # a CID nobody has (hashed only, never stored)
        with seed.node.client() as c:
            cid = str(c.add_bytes(os.urandom(64), opts={"only-hash": "true", "cid-version": "1",
                                                          "raw-leaves": "true"}))
        stage = "no providers found"
    elif case == "unreachable":
        stage = "providers unreachable: 1 found, none answered"
    else:  # (the holepunch test's machine in home d, when it ran, is a second provider by now)
        stage = "providers unreachable: "
    timeout = 60
    started = time.monotonic()
    result = run_hook(env, f"tce=ipfs:{cid} ipfs.bootstrap={boot} ipfs.timeout={timeout}")
    elapsed = time.monotonic() - started
    assert result.final.startswith(f"FAILED: ipfs:{cid}: {stage}"), result.console + result.log
    if case == "relayed-only":
        assert re.search(r"providers unreachable: \d+ found, reached only through a relay", result.final)
    assert elapsed < timeout + 15, elapsed
    assert result.rc == 0
    record(f"internet-fail-{case}", {"line": result.final, "seconds": round(elapsed, 1)})


def test_status_shows_reachability_and_provider_records(net: Internet, seed: HomeSeed, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """``tce-ipfs status`` on the home seed (the agent's view; ``seed status`` and ``status --repo``
    render the same part): behind NAT with its relays, and the provider records it announced and when
    (kubo's first announce round of every pin comes a minute after its start: the last test of the
    module, so it rarely waits)."""
    from tce_ipfs import cli
    from tce_ipfs.agent import ops
    from tce_ipfs.agent.machine import Machine

    with seed.node.client() as c:
        prov = wait_for_round(c)
        info = ops.status(machine=Machine(root=tmp_path), client=c, ledgers=False)
    netinfo = info["network"]
    assert netinfo["reachability"]["state"] == "relayed", netinfo
    assert {r.split("/")[2] for r in netinfo["reachability"]["relays"]} <= set(net.server_ips)
    assert netinfo["provide"]["records"] >= 1 and netinfo["provide"]["last_at"], netinfo  # the root
    text = ops.render_status(info)
    assert "network:   behind NAT, reachable through" in text, text
    assert f"provided:  {netinfo['provide']['records']} provider record(s) at {prov['last_at']}" in text, text
    # the publisher's view: `seed status` of the running `seed serve --net public`
    assert seed.state is not None
    assert cli.main(["seed", "status", "--state", str(seed.state), "--json"]) == 0
    sinfo = json.loads(capsys.readouterr().out)
    assert sinfo["running"] and sinfo["net"] == "public" and sinfo["root"] == seed.cid, sinfo
    assert "relay" in sinfo["announced"]["how"], sinfo["announced"]
    assert sinfo["network"]["reachability"]["state"] == "relayed", sinfo["network"]
    assert sinfo["network"]["provide"]["records"] >= 1, sinfo["network"]
    assert cli.main(["seed", "status", "--state", str(seed.state)]) == 0
    seed_text = capsys.readouterr().out
    assert "net:       public" in seed_text and "announced: the root at " in seed_text, seed_text
    assert "network:   behind NAT, reachable through" in seed_text and "provided:  " in seed_text, seed_text
    record("internet-status", {"text": text, "seed_status": seed_text, "network": netinfo})


def wait_for_round(c: Any, timeout: float = 100.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        prov = opennet.provide_stat(c)
        if prov.get("last_at") or time.monotonic() > deadline:
            return prov
        time.sleep(2)


# ------------------------------------------------------------------ delegated routing (issue 15, item 1)
def test_delegated_router_finds_the_seed(net: Internet, seed: HomeSeed, host_kubo: Path) -> None:
    """The sim's delegated router (Routing V1 HTTP API over boot1's DHT, as someguy over the Amino DHT)
    names the seed as provider of its root, in JSON and NDJSON, and nobody for a CID nobody has; a kubo
    whose only content routing is that router (``Routing.Type delegated``, no DHT) finds the seed.
    (Machines of earlier tests that fetched the repo provide it too.)"""
    from tce_ipfs.testbed.bench.routing import mode_config
    from tce_ipfs.testbed.delegated import start_router

    router = start_router(net)
    machine = net.add_machine("c", "c-delegated")  # home c: only finds (no blocks: symmetric NAT)

    def get(path: str, accept: str = "application/json") -> tuple[str, str]:
        out = machine.exec(["curl", "-s", "-H", f"Accept: {accept}", "-w", "\n%{http_code}",
                            f"{router.url}/routing/v1/{path}"]).stdout.decode()
        body, code = out.rsplit("\n", 1)
        return code, body

    code, body = get(f"providers/{seed.cid}")
    assert code == "200", body
    provs = json.loads(body)["Providers"]
    assert all(p["Schema"] == "peer" and p["Protocols"] for p in provs), provs
    (prov,) = [p for p in provs if p["ID"] == seed.node.peer_id]
    assert prov["Addrs"] and all("/p2p-circuit" in a for a in prov["Addrs"]), prov  # behind NAT: relays
    code, body = get(f"providers/{seed.cid}", "application/x-ndjson")
    assert code == "200" and seed.node.peer_id in {json.loads(ln)["ID"] for ln in body.splitlines()}, body
    code, body = get(f"peers/{seed.node.peer_id}")
    assert code == "200" and json.loads(body)["Peers"][0]["ID"] == seed.node.peer_id, body
    with seed.node.client() as c:
        nobody = str(c.add_bytes(os.urandom(64), opts={"only-hash": "true", "cid-version": "1"}))
    assert get(f"providers/{nobody}")[0] == "404"

    node = net.start_node(machine, "c-delegated", host_kubo, net.work_dir / "c-delegated",
                          config={**netmode.public_config(net.bootstrap()),
                                  **mode_config("delegated", router.url)})
    with node.client(timeout=60) as c:
        assert rpc.config_value(c, "Routing.Type") == "delegated"
        found = opennet.find_providers(c, seed.cid, count=20, timeout=30)
    assert seed.node.peer_id in [p["ID"] for p in found], found
    node.stop()
    router.stop()
