"""The lab's seed (`tce-ipfs seed serve|status|install-unit`, `netboot|remaster --seed`), without QEMU.

Every seed here listens on loopback only (the lab-LAN seed and a PXE boot from it are in
tests/test_seed_lab.py). A non-private listen address is only ever *refused*: nothing here binds or
sends to one.
"""

from __future__ import annotations

import getpass
import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from support.media import CID, CID2, fake_core, fake_iso, fake_kernel, fake_p2p_initrd
from tce_ipfs import bootcodes, cli, proc
from tce_ipfs.arch import Arch
from tce_ipfs.errors import IsolationError, NodeError, UsageError
from tce_ipfs.ipfs import isolation, netmode, rpc, seed, seedline, seedstatus, seedunit, swarmkey
from tce_ipfs.ipfs.node import Node
from tce_ipfs.testbed import samplerepo
from test_isolation import sockets_of, violation

PEER_ID = "12D3KooWGzxzKZYveHXtpG6AsrUJBcWxHBFS2HsEoGTxrMLvKXtf"
SRC = Path(__file__).resolve().parents[1] / "src"


# ------------------------------------------------------------------------------ refusing addresses
@pytest.mark.parametrize("addr", ["8.8.8.8", "0.0.0.0", "100.64.0.1", "172.32.0.1", "192.0.2.2"])
def test_non_private_listen_is_refused_with_a_reason(addr: str, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    repo = samplerepo.build(tmp_path / "repo", ["6.1.0-seedtest"]).path
    state = tmp_path / "state"
    rc = cli.main(["seed", "serve", str(repo), "--listen", addr, "--state", str(state),
                   "--kubo", "/nonexistent/ipfs"])
    err = capsys.readouterr().err
    assert rc == UsageError.exit_code, err
    assert f"refusing to listen on {addr} without --public" in err
    assert "every interface" in err if addr == "0.0.0.0" else "not a private address" in err
    assert "hint:" in err and "--listen" in err
    assert not state.exists()  # refused before anything was made (nor started, nor bound)
    # the unit writer refuses it the same way, before writing anything
    unit = tmp_path / "seed.service"
    rc = cli.main(["seed", "install-unit", str(repo), "--listen", addr, "-o", str(unit),
                   "--kubo", "/bin/true"])
    assert rc == UsageError.exit_code and not unit.exists()
    assert "without --public" in capsys.readouterr().err


def test_listen_rules() -> None:
    for ok in ("10.1.2.3", "172.16.0.1", "172.31.255.254", "192.168.1.10", "169.254.3.4", "127.0.0.1"):
        assert seedline.check_listen(ok) == ok
    # --public lets an address through the check (the tests never start a seed with it)
    assert seedline.check_listen("8.8.8.8", public=True) == "8.8.8.8"
    assert seedline.allowed_networks(["127.0.0.1"], public=False) == ("127.0.0.0/8",)
    assert "192.168.0.0/16" in seedline.allowed_networks(["192.168.1.10"], public=False)
    assert seedline.allowed_networks(["8.8.8.8"], public=True) == ("0.0.0.0/0",)
    # an interface name: its IPv4 addresses; anything else is refused by name
    assert seedline.resolve_listen(["lo"]) == ("127.0.0.1",)
    assert seedline.resolve_listen(["lo", "127.0.0.1", "10.9.8.7"]) == ("127.0.0.1", "10.9.8.7")
    with pytest.raises(UsageError, match="no such network interface"):
        seedline.resolve_listen(["nosuchif0"])
    with pytest.raises(UsageError, match="neither an IPv4 address nor an interface"):
        seedline.resolve_listen(["10.0.0.300/24"])
    with pytest.raises(UsageError, match="--listen"):
        seedline.resolve_listen([])
    with pytest.raises(UsageError, match="not a TCP port"):
        seed.SeedOptions(listen=("127.0.0.1",), port=70000)
    with pytest.raises(UsageError, match="swarm key"):
        seed.SeedOptions(listen=("127.0.0.1",), swarm_key="abc")
    with pytest.raises(UsageError, match="private lab LAN only"):
        seed.SeedOptions(listen=("8.8.8.8",), public=True, mdns=True)


def test_boot_line_and_pin_names() -> None:
    key = swarmkey.generate()
    info = seedline.BootInfo(CID, (f"/ip4/10.77.0.1/tcp/4001/p2p/{PEER_ID}",), swarm_key=key)
    assert info.line() == (f"tce=ipfs:{CID} ipfs.peers=/ip4/10.77.0.1/tcp/4001/p2p/{PEER_ID} "
                           f"ipfs.swarmkey={key}")
    assert info.codes() == {"ipfs.peers": f"/ip4/10.77.0.1/tcp/4001/p2p/{PEER_ID}", "ipfs.swarmkey": key}
    name = seed.pin_name("/srv/tce", "2026-01-02T03:04:05Z")
    assert seed.parse_pin_name(name) == ("2026-01-02T03:04:05Z", "/srv/tce")
    assert seed.parse_pin_name("something else") is None
    assert seed.metrics_url("/ip4/127.0.0.1/tcp/5001") == "http://127.0.0.1:5001/debug/metrics/prometheus"
    assert seed.check_source(CID) == (None, CID)
    # the boot line names the seed's LAN addresses; loopback only when it has nothing else
    lo, lan = f"/ip4/127.0.0.1/tcp/4001/p2p/{PEER_ID}", f"/ip4/10.0.0.1/tcp/4001/p2p/{PEER_ID}"
    assert seedline.own_peers([lo, lan], ["127.0.0.1", "10.0.0.1"]) == (lan,)
    assert seedline.own_peers([lo, lan], ["127.0.0.1"]) == (lo,)
    with pytest.raises(UsageError, match="no such directory"):
        seed.check_source("/no/such/repo")


def test_gateway_port_option() -> None:
    """--gateway-port: checked, named on the boot line (a LAN address before loopback), and the
    gateway is a trustless one on every listen address."""
    with pytest.raises(UsageError, match="not a TCP port"):
        seed.SeedOptions(listen=("127.0.0.1",), gateway_port=0)
    with pytest.raises(UsageError, match="already the swarm or API port"):
        seed.SeedOptions(listen=("127.0.0.1",), port=4001, gateway_port=4001)
    opts = seed.SeedOptions(listen=("127.0.0.1", "10.0.0.1"), gateway_port=8081)
    assert seed.gateway_url(opts) == "http://10.0.0.1:8081"
    assert seed.gateway_url(seed.SeedOptions(listen=("127.0.0.1",))) is None
    info = seedline.BootInfo(CID, (f"/ip4/10.0.0.1/tcp/4001/p2p/{PEER_ID}",), gateway="http://10.0.0.1:8081")
    assert info.line().endswith(" ipfs.gateway=http://10.0.0.1:8081")
    bootcodes.check("ipfs.gateway", "http://10.0.0.1:8081")
    node = seed.seed_node(Path("/nonexistent/repo"), None, opts, Path("/nonexistent/api.sock"))
    cfg = node.wanted_config
    assert cfg["Addresses.Gateway"] == ["/ip4/127.0.0.1/tcp/8081", "/ip4/10.0.0.1/tcp/8081"]
    assert cfg["Gateway.DeserializedResponses"] is False and cfg["Gateway.NoFetch"] is True
    plain = seed.seed_node(Path("/nonexistent/repo"), None, seed.SeedOptions(listen=("10.0.0.1",)),
                           Path("/nonexistent/api.sock")).wanted_config
    assert plain["Addresses.Gateway"] == "/ip4/127.0.0.1/tcp/0" and "Gateway.NoFetch" not in plain


# ------------------------------------------------------------------------- --net public (no daemon)
BOOT_PEER = f"/ip4/192.0.0.200/tcp/4001/p2p/{PEER_ID}"


@pytest.mark.parametrize(("extra", "said"), [
    (["--net", "public", "--private"], "private swarm (swarm key) cannot join the public network"),
    (["--net", "public", "--swarm-key", "ab" * 32], "cannot join the public network"),
    (["--net", "public", "--mdns"], "not with --net public"),
    (["--net", "public", "--bootstrap", "/ip4/192.0.0.200/tcp/4001"], "must be a multiaddr ending in /p2p/"),
    (["--net", "public", "--bootstrap", "192.0.0.200:4001"], "is not a multiaddr"),
    (["--net", "public", "--bootstrap", "auto"], "is not a multiaddr"),
    (["--bootstrap", BOOT_PEER], "--bootstrap is for --net public"),
])
def test_net_public_refusals(extra: list[str], said: str, tmp_path: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    """Every --net public rule is checked before anything is made or started (typed, with a hint where
    there is one): a private swarm stays private, mDNS stays on a lab LAN, bootstrap peers are full
    multiaddrs, and --bootstrap alone (a LAN seed) is a mistake, not silently ignored."""
    state = tmp_path / "state"
    rc = cli.main(["seed", "serve", str(tmp_path), "--listen", "10.0.0.1", "--state", str(state),
                   "--kubo", "/nonexistent/ipfs", *extra])
    err = capsys.readouterr().err
    assert rc == UsageError.exit_code, err
    assert said in err, err
    assert not state.exists()
    with pytest.raises(SystemExit):  # argparse's own: not a network mode
        cli.main(["seed", "serve", str(tmp_path), "--listen", "10.0.0.1", "--net", "private"])


def test_a_private_seed_state_cannot_go_public(tmp_path: Path) -> None:
    """A state whose repo holds a swarm key (an earlier --private seed) is refused with --net public
    before kubo starts; the lock is released."""
    state, _key = fake_state(tmp_path / "priv", private=True)
    fake_kubo = tmp_path / "ipfs"
    fake_kubo.write_text("#!/bin/sh\nexit 1\n")
    opts = seed.SeedOptions(listen=("127.0.0.1",), net="public", bootstrap=(BOOT_PEER,))
    server = seed.SeedServer(seed.SeedState(state), fake_kubo, opts, CID)
    with pytest.raises(UsageError, match="is a private swarm"):
        server.run(lambda info: None)
    assert seed.SeedState(state).serving_pid() is None and not (state / seed.PID).exists()


def test_net_public_config_keys() -> None:
    """What the seed's kubo gets: lan is today's isolated seed (nothing of the open network); public
    puts netmode's client keys on top, lets any IPv4 peer through the gater, and takes kubo's own
    bootstrap list ("auto") only when none is given -- which only a real machine may start."""
    def config(**kw: Any) -> tuple[dict[str, Any], Any]:
        node = seed.seed_node(Path("/nonexistent/repo"), None, seed.SeedOptions(listen=("10.61.1.10",), **kw),
                              Path("/nonexistent/api.sock"))
        return node.wanted_config, node
    lan, lan_node = config()
    assert lan["Bootstrap"] == [] and lan["Routing.Type"] == "none" and lan["Provide.Enabled"] is False
    assert lan["AutoNAT.ServiceMode"] == "disabled" and lan["Swarm.RelayClient.Enabled"] is False
    assert lan_node.allowed_networks == isolation.PRIVATE_NETS and not lan_node.open_network
    pub, pub_node = config(net="public", bootstrap=(BOOT_PEER,))
    want = netmode.public_config([BOOT_PEER])
    assert {k: pub[k] for k in want} == want
    assert pub["Bootstrap"] == [BOOT_PEER] and pub["AutoConf.Enabled"] is False
    assert pub["Routing.Type"] == "dhtclient" and pub["Provide.Strategy"] == "roots"
    assert pub["Swarm.RelayClient.Enabled"] and pub["Swarm.EnableHolePunching"]
    assert pub["Discovery.MDNS.Enabled"] is False and pub["Swarm.Transports.Network.QUIC"] is False
    assert pub_node.allowed_networks == seedline.ANY_IPV4 and not pub_node.open_network
    assert not [f for f in pub["Swarm.AddrFilters"] if f.startswith("/ip4/")]  # the gater: any IPv4 peer
    auto, auto_node = config(net="public")
    assert auto["Bootstrap"] == ["auto"] and auto["AutoConf.Enabled"] is True
    assert auto_node.open_network  # "auto" passes the start check only for this node
    with pytest.raises(IsolationError):  # ... and never for any other
        isolation.check_bootstrap(["auto"], seedline.ANY_IPV4)


# ----------------------------------------------------------------------- boot media from a seed state
def fake_state(path: Path, *, private: bool) -> tuple[Path, str | None]:
    """A seed state as `seed serve` leaves it (record, repo config, key), with no seed running."""
    (path / "repo").mkdir(parents=True)
    (path / "repo/config").write_text(json.dumps({"Identity": {"PeerID": PEER_ID}}))
    key = swarmkey.generate() if private else None
    if key:
        swarmkey.install(path / "repo", key)
    seed.SeedState(path).write_record({"root": CID, "peers": [f"/ip4/192.168.7.1/tcp/4001/p2p/{PEER_ID}"],
                                       "private": private, "source": "/srv/tce", "pid": None})
    return path, key


def test_boot_info_of_a_public_seed(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A public seed's boot line is its LAN line, as for any seed (a lab machine next to it boots in lan
    mode); the admin is told that machines elsewhere need only tce=ipfs:<root>."""
    state, _ = fake_state(tmp_path / "pub", private=False)
    rec = seed.SeedState(state).record() or {}
    rec.pop("format")
    seed.SeedState(state).write_record({**rec, "net": "public"})
    with caplog.at_level("INFO"):
        info = seedstatus.boot_info(seed.SeedState(state))
    assert info.line() == f"tce=ipfs:{CID} ipfs.peers=/ip4/192.168.7.1/tcp/4001/p2p/{PEER_ID}"
    assert f"machines elsewhere boot with just tce=ipfs:{CID}" in caplog.text


def test_netboot_and_remaster_take_the_boot_line_from_the_seed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("TCE_IPFS_STATE", str(tmp_path))
    state, key = fake_state(tmp_path / "lab-seed", private=True)  # the default state
    kernel = tmp_path / "bzImage"
    kernel.write_bytes(fake_kernel(Arch.X86_64))
    core = tmp_path / "core.gz"
    core.write_bytes(fake_core(Arch.X86_64, tmp_path))
    p2p = fake_p2p_initrd(Arch.X86_64, tmp_path / "p2p.gz")
    base = ["--kernel", str(kernel), "--initrd", str(core), "--p2p-initrd", str(p2p), "--json"]
    peer = f"/ip4/192.168.7.1/tcp/4001/p2p/{PEER_ID}"

    assert cli.main(["netboot", "--seed", str(state), "-o", str(tmp_path / "tftp"), *base]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["cmdline"] == f"loglevel=3 tce=ipfs:{CID} ipfs.peers={peer} ipfs.swarmkey={key}"
    assert out["cmdline"] in (tmp_path / "tftp/pxelinux.cfg/default").read_text()
    # --cid and --boot-code override what the seed says
    other = f"/ip4/192.168.7.2/tcp/4001/p2p/{PEER_ID}"
    assert cli.main(["netboot", "--seed", str(state), "--cid", CID2, "--boot-code", f"ipfs.peers={other}",
                     "-o", str(tmp_path / "tftp2"), *base]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["cmdline"] == f"loglevel=3 tce=ipfs:{CID2} ipfs.peers={other} ipfs.swarmkey={key}"
    # the ISO remaster takes it the same way (--seed alone: the default seed)
    iso = fake_iso(Arch.X86_64, tmp_path / "iso")
    assert cli.main(["remaster", str(iso), "--seed", "-o", str(tmp_path / "p2p.iso"),
                     "--p2p-initrd", str(p2p), "--json"]) == 0
    assert f"tce=ipfs:{CID} ipfs.peers={peer} ipfs.swarmkey={key}" in capsys.readouterr().out
    # neither --cid nor --seed; a --seed that is no seed
    assert cli.main(["netboot", "-o", str(tmp_path / "t3"), *base]) == UsageError.exit_code
    assert "--cid CID, --seed STATE|API" in capsys.readouterr().err
    assert cli.main(["netboot", "--seed", str(tmp_path), "-o", str(tmp_path / "t3"), *base]) == \
        NodeError.exit_code
    assert "no seed has served from" in capsys.readouterr().err
    assert not (tmp_path / "t3").exists()


# ------------------------------------------------------------------------ a real seed on loopback
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Serving:
    popen: subprocess.Popen[bytes]
    line: str
    out: Path
    err: Path

    def lines(self, count: int, timeout: float = 120) -> list[str]:
        """The boot lines printed so far, once there are ``count`` of them."""
        deadline = time.monotonic() + timeout
        while True:
            found = [ln for ln in self.out.read_text().splitlines() if ln.startswith("tce=ipfs:")]
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.2)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        self.popen.send_signal(sig)
        return self.popen.wait(timeout=timeout)


def serve(tmp: Path, source: Path | str, state: Path, kubo: Path, port: int, *extra: str,
          name: str = "serve") -> Serving:
    """`tce-ipfs seed serve` as its own process (as a service manager runs it); returns once the boot
    line is printed."""
    out, err = tmp / f"{name}.out", tmp / f"{name}.err"
    argv = [sys.executable, "-m", "tce_ipfs", "seed", "serve", str(source), "--listen", "127.0.0.1",
            "--port", str(port), "--api-port", "0", "--state", str(state), "--kubo", str(kubo), *extra]
    with out.open("wb") as fo, err.open("wb") as fe:
        popen = subprocess.Popen(argv, stdout=fo, stderr=fe, stdin=subprocess.DEVNULL,
                                 env={**proc.clean_env(), "PYTHONPATH": str(SRC)})
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        text = out.read_text()
        if "tce=ipfs:" in text:
            return Serving(popen, text.strip().splitlines()[-1], out, err)
        if popen.poll() is not None:
            break
        time.sleep(0.2)
    popen.kill()
    raise AssertionError(f"no boot line; exit {popen.poll()}:\n{err.read_text()[-3000:]}")


@pytest.fixture
def killer() -> Iterator[list[Serving]]:
    """Seeds a failing test leaves running are killed (their kubo is stopped by the next start)."""
    started: list[Serving] = []
    yield started
    for s in started:
        if s.popen.poll() is None:
            s.stop(signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


@pytest.mark.kubo
def test_seed_serves_restarts_with_the_same_peer_id_and_stops_cleanly(
        host_kubo: Path, tmp_path: Path, killer: list[Serving], capsys: pytest.CaptureFixture[str]) -> None:
    sample = samplerepo.build(tmp_path / "repo", ["6.1.0-seedtest"])
    state = tmp_path / "state"
    port = free_port()
    first = serve(tmp_path, sample.path, state, host_kubo, port)
    killer.append(first)
    words = dict(w.split("=", 1) for w in first.line.split())
    cid = words["tce"].removeprefix("ipfs:")
    peer_id = words["ipfs.peers"].rsplit("/p2p/", 1)[1]
    assert words["ipfs.peers"] == f"/ip4/127.0.0.1/tcp/{port}/p2p/{peer_id}"
    assert "ipfs.swarmkey" not in words
    config = json.loads((state / "repo/config").read_text())
    assert config["Addresses"]["Swarm"] == [f"/ip4/127.0.0.1/tcp/{port}"]
    assert config["Bootstrap"] == [] and config["Routing"]["Type"] == "none"
    assert config["Discovery"]["MDNS"]["Enabled"] is False and config["AutoConf"]["Enabled"] is False
    # a loopback seed's gater lets loopback peers in, no one else
    assert config["Swarm"]["AddrFilters"] == isolation.blocked_networks(isolation.LOOPBACK_NETS)

    # It serves: another isolated node dials the boot line's peer and fetches the onboot list.
    with Node(tmp_path / "client", host_kubo) as client_node, client_node.client() as c:
        rpc.swarm_connect(c, words["ipfs.peers"], timeout=30)
        assert rpc.cat(c, f"/ipfs/{cid}/onboot.lst", timeout=60) == (sample.path / "onboot.lst").read_bytes()
        ext = sample.closure[-1]
        assert rpc.cat(c, f"/ipfs/{cid}/{ext}", timeout=60) == (sample.path / ext).read_bytes()

        # status: running, the peer with the bytes it got, the root pinned with its age, disk use
        # (the seed's ledger counts a block once its write is done: allow it a moment to catch up)
        fetched = (sample.path / ext).stat().st_size
        for _ in range(50):
            assert cli.main(["seed", "status", "--state", str(state), "--json"]) == 0
            st = json.loads(capsys.readouterr().out)
            if st["peers"] and st["peers"][0].get("sent", 0) >= fetched:
                break
            time.sleep(0.2)
        assert st["running"] and st["peer_id"] == peer_id and st["root"] == cid
        assert [r["cid"] for r in st["roots"] if r["current"]] == [cid]
        assert st["roots"][0]["age_s"] is not None and st["roots"][0]["source"] == str(sample.path)
        (peer,) = st["peers"]
        assert peer["peer"] == client_node.peer_id and peer["sent"] >= fetched
        assert st["bytes_sent"] >= peer["sent"] and st["repo_bytes"] > sample.payload_bytes
        assert st["metrics"].startswith("http://127.0.0.1:") and st["metrics"].endswith("/prometheus")
        assert st["network"]["reachability"]["state"] == "lan" and st["network"]["provide"] is None
        assert cli.main(["seed", "status", "--state", str(state)]) == 0
        out = capsys.readouterr().out
        assert "served:" in out and "network:   LAN only" in out  # a lab seed announces nothing
        # Isolation: with a peer connected, every socket the seed's kubo holds is on loopback.
        socks = sockets_of(json.loads((state / "seed.json").read_text())["kubo_pid"])
        assert any(s.state == "ESTABLISHED" for s in socks), socks
        assert not [v for s in socks if (v := violation(s))], socks
    # SIGHUP (systemctl reload): the directory is published again; a changed repo, a new boot line.
    lst = sample.path / "onboot.lst"
    lst.write_text("".join(lst.read_text().splitlines(keepends=True)[:-1]))
    first.popen.send_signal(signal.SIGHUP)
    lines = first.lines(2)
    assert len(lines) == 2, first.err.read_text()[-2000:]
    reloaded = lines[1]
    new_cid = reloaded.split()[0].removeprefix("tce=ipfs:")
    assert new_cid != cid and reloaded.split()[1:] == first.line.split()[1:]  # same peer, same address
    assert cli.main(["seed", "status", "--state", str(state), "--json"]) == 0
    roots = json.loads(capsys.readouterr().out)["roots"]
    assert [(r["cid"], r["current"]) for r in roots] == [(new_cid, True), (cid, False)]  # both pinned
    # A reload that finds the repo broken says why and serves on what it had.
    md5 = sample.path / "hello.tcz.md5.txt"
    good = md5.read_text()
    md5.write_text("0" * 32 + "  hello.tcz\n")
    first.popen.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 60
    while "republishing" not in first.err.read_text() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert f"still serving {new_cid}" in first.err.read_text() and "md5" in first.err.read_text()
    assert first.popen.poll() is None and len(first.lines(2)) == 2
    md5.write_text(good)
    # kubo's Prometheus metrics answer where status says (documented for monitoring)
    import urllib.request

    metrics = urllib.request.urlopen(st["metrics"], timeout=30).read().decode()
    assert "ipfs_bitswap_sent_all_blocks_bytes_sum" in metrics

    # One seed per state: a second one is refused (and leaves the first alone).
    rc = cli.main(["seed", "serve", str(sample.path), "--listen", "127.0.0.1", "--port", str(free_port()),
                   "--state", str(state), "--kubo", str(host_kubo)])
    assert rc == NodeError.exit_code and "already serves" in capsys.readouterr().err
    # netboot --seed also works with the seed's API address (its repo is on this machine)
    assert seedstatus.resolve(f"/unix{state / 'api.sock'}") == seedstatus.resolve(str(state))

    # SIGTERM: exits 0, its kubo is gone, no lock or pid file left
    record = json.loads((state / "seed.json").read_text())
    kubo_pid = record["kubo_pid"]
    assert _alive(kubo_pid)
    assert first.stop() == 0, first.err.read_text()[-2000:]
    assert "seed stopped (SIGTERM)" in first.err.read_text()
    assert not _alive(kubo_pid)
    assert not (state / "serve.pid").exists() and not (state / "repo/repo.lock").exists()
    assert not (state / "repo/api").exists()
    assert cli.main(["seed", "status", "--state", str(state), "--json"]) == 0
    st = json.loads(capsys.readouterr().out)
    assert not st["running"] and st["stopped_at"] and st["repo_bytes"] > sample.payload_bytes

    # The next start works: same peer ID, same (reloaded) CID.
    second = serve(tmp_path, sample.path, state, host_kubo, port, name="serve2")
    killer.append(second)
    assert second.line == reloaded
    assert second.stop(signal.SIGINT) == 0  # Ctrl-C stops it as cleanly


@pytest.mark.kubo
def test_seed_serve_with_a_trustless_gateway(host_kubo: Path, tmp_path: Path, killer: list[Serving],
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """`seed serve --gateway-port N`: the boot line says ipfs.gateway=; the gateway hands out CARs
    (verifiable) but never a plain file, and never fetches what the seed does not hold."""
    sample = samplerepo.build(tmp_path / "repo", ["6.1.0-seedtest"])
    state = tmp_path / "state"
    gw_port = free_port()
    serving = serve(tmp_path, sample.path, state, host_kubo, free_port(), "--gateway-port", str(gw_port))
    killer.append(serving)
    words = dict(w.split("=", 1) for w in serving.line.split())
    cid = words["tce"].removeprefix("ipfs:")
    assert words["ipfs.gateway"] == f"http://127.0.0.1:{gw_port}"
    base = words["ipfs.gateway"]
    with urllib.request.urlopen(f"{base}/ipfs/{cid}/onboot.lst?format=car", timeout=30) as r:
        assert r.status == 200 and r.headers["Content-Type"].startswith("application/vnd.ipld.car")
        assert r.read()
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"{base}/ipfs/{cid}/onboot.lst", timeout=30)
    assert e.value.code == 406
    # a CID it does not hold: answered from what is here, at once (no wait for a network fetch)
    t0 = time.monotonic()
    try:
        with urllib.request.urlopen(f"{base}/ipfs/bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
                                    "?format=raw", timeout=30) as r:
            assert not r.read()
    except urllib.error.HTTPError:
        pass
    assert time.monotonic() - t0 < 10
    assert cli.main(["seed", "status", "--state", str(state), "--json"]) == 0
    assert f"ipfs.gateway={base}" in json.loads(capsys.readouterr().out)["boot_line"]
    assert serving.stop() == 0


@pytest.mark.kubo
def test_private_seed_keeps_its_key_and_pins_a_cid(host_kubo: Path, tmp_path: Path,
                                                   killer: list[Serving]) -> None:
    sample = samplerepo.build(tmp_path / "repo", ["6.1.0-seedtest"])
    state = tmp_path / "state"
    first = serve(tmp_path, sample.path, state, host_kubo, free_port(), "--private")
    killer.append(first)
    key = swarmkey.read(state / "repo")
    assert key is not None and first.line.endswith(f" ipfs.swarmkey={key}")
    assert oct((state / "repo/swarm.key").stat().st_mode & 0o777) == "0o600"
    cid = first.line.split()[0].removeprefix("tce=ipfs:")
    assert first.stop() == 0
    # Without --private the state's key stays in force; serving the CID (already in the repo) works.
    second = serve(tmp_path, cid, state, host_kubo, free_port(), name="serve2")
    killer.append(second)
    assert second.line.split()[0] == f"tce=ipfs:{cid}" and second.line.endswith(f" ipfs.swarmkey={key}")
    info = seedstatus.resolve(str(state))
    assert info.swarm_key == key and info.cid == cid
    assert second.stop() == 0
    # A CID nobody has (no --peer): refused after the timeout, with the reason, and nothing left running.
    missing = CID  # a valid CID that nobody here has
    rc = subprocess.run([sys.executable, "-m", "tce_ipfs", "seed", "serve", missing, "--listen", "127.0.0.1",
                         "--port", str(free_port()), "--api-port", "0", "--state", str(state), "--kubo",
                         str(host_kubo), "--timeout", "5"], capture_output=True, text=True, timeout=180,
                        env={**proc.clean_env(), "PYTHONPATH": str(SRC)})
    assert rc.returncode == NodeError.exit_code, rc.stderr
    assert f"cannot pin {missing}" in rc.stderr and "--peer" in rc.stderr
    assert not (state / "serve.pid").exists() and not Node(state / "repo").running


# ------------------------------------------------------------------------------------ systemd unit
def test_install_unit_passes_systemd_analyze_verify(host_kubo: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    repo = samplerepo.build(tmp_path / "repo", ["6.1.0-seedtest"]).path
    unit = tmp_path / "units" / seedunit.UNIT_NAME
    keyfile = tmp_path / "swarm key"  # a space: the unit must quote it
    keyfile.write_text(swarmkey.format_key(swarmkey.generate()))
    state = tmp_path / "seed 100%"
    rc = cli.main(["seed", "install-unit", str(repo), "--listen", "192.168.77.10", "--listen", "lo",
                   "--swarm-key", str(keyfile), "--state", str(state), "--kubo", str(host_kubo),
                   "-o", str(unit), "--json"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert json.loads(out.out)["verified"] is True
    text = unit.read_text()
    assert "KillMode=mixed" in text and "ExecReload=/bin/kill -HUP $MAINPID" in text
    assert f"User={getpass.getuser()}" in text
    exec_start = next(line for line in text.splitlines() if line.startswith("ExecStart="))
    assert " seed serve " in exec_start and "--listen 192.168.77.10 --listen lo" in exec_start
    assert f'"{keyfile}"' in exec_start and '"' + str(state).replace("%", "%%") + '"' in exec_start
    # Checked by systemd itself (the command did too): silent and successful.
    res = proc.run(["systemd-analyze", "verify", str(unit)], check=False, timeout=120)
    assert res.returncode == 0 and not (res.stdout + res.stderr).strip(), res.stderr
    # A key on the unit's command line is refused (it would be world-readable in the unit and ps).
    rc = cli.main(["seed", "install-unit", str(repo), "--listen", "192.168.77.10", "--swarm-key",
                   swarmkey.generate(), "--kubo", str(host_kubo), "-o", str(tmp_path / "x.service")])
    assert rc == UsageError.exit_code and "as a file" in capsys.readouterr().err
    # A public seed's unit carries --net and --bootstrap (a LAN seed's says nothing of them).
    assert "--net" not in exec_start and "--bootstrap" not in exec_start
    pub = tmp_path / "pub.service"
    assert cli.main(["seed", "install-unit", str(repo), "--listen", "192.168.77.10", "--net", "public",
                     "--bootstrap", BOOT_PEER, "--kubo", str(host_kubo), "-o", str(pub), "--no-verify"]) == 0
    pub_start = next(line for line in pub.read_text().splitlines() if line.startswith("ExecStart="))
    assert f"--net public --bootstrap {BOOT_PEER}" in pub_start, pub_start


def test_unit_text() -> None:
    argv = ["/usr/bin/tce-ipfs", "seed", "serve", "/srv/tce", "--listen", "eth1"]
    text = seedunit.unit_text(argv, user="tceipfs", state=Path("/var/lib/tce-ipfs/lab-seed"), description="d")
    assert "PrivateTmp=yes" in text and "ReadWritePaths=/var/lib/tce-ipfs/lab-seed" in text
    assert "ExecStart=/usr/bin/tce-ipfs seed serve /srv/tce --listen eth1\n" in text
    # a repo in /tmp: a private /tmp would hide it from the service
    tmp_argv = [*argv[:3], "/tmp/repo", *argv[4:]]
    assert "PrivateTmp" not in seedunit.unit_text(tmp_argv, user="root", state=Path("/var/lib/x"),
                                                  description="d")
    with pytest.raises(UsageError, match="absolute"):
        seedunit.unit_text(["tce-ipfs"], user="root", state=Path("/x"), description="d")
    with pytest.raises(UsageError, match="user name"):
        seedunit.unit_text(argv, user="bad user", state=Path("/x"), description="d")
    assert seedunit.quote("/usr/bin/tce-ipfs") == "/usr/bin/tce-ipfs"
    assert seedunit.quote("a b") == '"a b"'
    assert seedunit.quote('say "hi" 5%$') == '"say \\"hi\\" 5%%$$"'
    with pytest.raises(UsageError):
        seedunit.quote("a\nb")
