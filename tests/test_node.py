"""node + rpc: isolated kubo lifecycle, every API call we use against a real kubo, two-node bitswap."""

from __future__ import annotations

import http.server
import ipaddress
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tce_ipfs import cli, proc
from tce_ipfs.errors import IsolationError, NodeError, UsageError
from tce_ipfs.ipfs import isolation, node, rpc
from tce_ipfs.ipfs.node import Node

# rpc filters this urllib3 noise at import, but pytest restores filters after collection
pytestmark = pytest.mark.filterwarnings("ignore:The 'strict' parameter:FutureWarning")

# --- isolation_config (no kubo) ------------------------------------------------------------------


def test_isolation_config_loopback_defaults() -> None:
    cfg = isolation.isolation_config()
    assert cfg["Bootstrap"] == [] and cfg["AutoConf.Enabled"] is False
    assert cfg["Routing.Type"] == "none" and cfg["Discovery.MDNS.Enabled"] is False
    assert cfg["Addresses.Swarm"] == ["/ip4/127.0.0.1/tcp/0"]
    assert cfg["Addresses.API"].startswith("/ip4/127.0.0.1/") and cfg["Addresses.Gateway"].startswith(
        "/ip4/127.0.0.1/")
    assert cfg["DNS.Resolvers"] == {".": isolation.DNS_SINKHOLE}
    assert cfg["Peering.Peers"] == []
    # the filter covers all of IPv4 but 127/8, and all of IPv6
    filters = cfg["Swarm.AddrFilters"]
    assert "/ip6/::/ipcidr/0" in filters
    nets = [ipaddress.ip_network(f.split("/")[2] + "/" + f.split("/")[4]) for f in filters
            if f.startswith("/ip4/")]
    assert sum(n.num_addresses for n in nets) == 2**32 - 2**24
    for probe in ("127.0.0.1", "127.255.255.254"):
        assert not any(ipaddress.ip_address(probe) in n for n in nets)
    for probe in ("8.8.8.8", "192.168.1.1", "10.0.0.1", "0.0.0.0", "255.255.255.255", "126.255.255.255",
                  "128.0.0.0"):
        assert any(ipaddress.ip_address(probe) in n for n in nets), probe
    assert cfg["Addresses.NoAnnounce"] == filters


def test_isolation_config_lan_and_peers() -> None:
    peer = "/ip4/10.0.2.2/tcp/4001/p2p/12D3KooWEdrtNWEYSamzohat64bu93E9Dxrfx7WTSWRpakQaLSYW"
    cfg = isolation.isolation_config("10.0.2.15", swarm_port=4001, peers=[peer])
    assert cfg["Addresses.Swarm"] == ["/ip4/10.0.2.15/tcp/4001"]
    assert cfg["Addresses.API"] == "/ip4/127.0.0.1/tcp/0"  # API never leaves loopback
    assert cfg["Peering.Peers"] == [{"ID": peer.rsplit("/", 1)[1], "Addrs": ["/ip4/10.0.2.2/tcp/4001"]}]
    nets = [ipaddress.ip_network(f.split("/")[2] + "/" + f.split("/")[4])
            for f in cfg["Swarm.AddrFilters"] if f.startswith("/ip4/")]
    for private in ("10.0.2.2", "192.168.0.10", "172.16.5.5", "127.0.0.1", "169.254.1.1"):
        assert not any(ipaddress.ip_address(private) in n for n in nets), private
    for public in ("8.8.8.8", "100.64.0.1", "172.32.0.1", "1.1.1.1"):
        assert any(ipaddress.ip_address(public) in n for n in nets), public
    with pytest.raises(UsageError):
        isolation.isolation_config(peers=["/ip4/1.2.3.4/tcp/1"])
    with pytest.raises(UsageError):
        isolation.isolation_config("::1")
    with pytest.raises(IsolationError):
        isolation.isolation_config("8.8.8.8")


def test_set_get_dotted_and_drift() -> None:
    cfg: dict[str, object] = {"A": {"B": None}}
    isolation.set_dotted(cfg, "A.B.C", 1)
    isolation.set_dotted(cfg, "X", [])
    assert cfg == {"A": {"B": {"C": 1}}, "X": []}
    assert isolation.get_dotted(cfg, "A.B.C") == 1
    assert isolation.config_drift(cfg, {"A.B.C": 1, "X": [], "Y.Z": 2}) == ["Y.Z"]


# --- rpc version policy (no kubo) ------------------------------------------------------------


def test_parse_and_check_version() -> None:
    assert rpc.parse_version("0.43.1") == (0, 43, 1)
    assert rpc.parse_version("v0.30.0-rc1") == (0, 30, 0)
    for ok in ("0.20.0", "0.43.1", "0.49.9"):
        rpc.check_version(ok)
    for bad in ("0.8.0", "0.19.2", "0.50.0", "1.0.0"):
        with pytest.raises(NodeError, match="supports kubo"):
            rpc.check_version(bad)
    with pytest.raises(NodeError):
        rpc.parse_version("banana")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_client_unreachable() -> None:
    api = f"/ip4/127.0.0.1/tcp/{_free_port()}/http"
    with pytest.raises(NodeError) as info:
        rpc.client(api, timeout=2)
    assert f"no IPFS API at {api}" in info.value.message
    assert info.value.hint and "tce-ipfs node start" in info.value.hint
    with pytest.raises(NodeError, match="not an API multiaddr"):
        rpc.client("http://127.0.0.1:5001")


@pytest.fixture
def fake_api() -> Iterator[str]:
    """A loopback HTTP server answering /api/v0/version like an old go-ipfs 0.8.0."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.dumps({"Version": "0.8.0", "Commit": "", "Repo": "11"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"/ip4/127.0.0.1/tcp/{server.server_address[1]}/http"
    server.shutdown()
    server.server_close()


def test_client_unsupported_version(fake_api: str) -> None:
    with pytest.raises(NodeError, match=r"version 0\.8\.0; tce-ipfs supports kubo >= 0\.20\.0"):
        rpc.client(fake_api)


def test_client_ignores_proxy_env(fake_api: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A proxy in the environment must never see our (loopback) API traffic."""
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    with pytest.raises(NodeError, match=r"version 0\.8\.0"):  # reached the server, not the proxy
        rpc.client(fake_api)


# --- a real node ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def started(host_kubo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    with Node(tmp_path_factory.mktemp("node") / "repo", host_kubo) as n:
        yield n


@pytest.mark.kubo
def test_node_lifecycle(host_kubo: Path, tmp_path: Path) -> None:
    n = Node(tmp_path / "repo", host_kubo)
    assert n.status() == {"repo": str(n.repo), "initialized": False, "running": False,
                          "log": str(n.log_path)}
    n.init()
    peer = n.peer_id
    n.init()  # idempotent: same identity, no drift
    assert n.peer_id == peer and n.status()["isolated"] is True
    assert not n.running and n.stop() is False
    with pytest.raises(NodeError, match="not running"):
        _ = n.api
    n.start(timeout=60)
    try:
        pid = n.pid()
        assert pid and n.running and (n.repo / node.PID_FILE).read_text().strip() == str(pid)
        assert n.start() is n and n.pid() == pid  # already running: no second daemon
        st = n.status()
        assert st["running"] and st["peer_id"] == peer and st["isolated"]
        assert st["api"] == n.api and n.api.startswith("/ip4/127.0.0.1/tcp/")
        assert st["swarm_addrs"] == n.swarm_addrs
        assert all(a.startswith("/ip4/127.0.0.1/tcp/") and a.endswith(f"/p2p/{peer}")
                   for a in n.swarm_addrs)
        assert st["peers"] == 0 and st["version"].startswith("0.")
        # a second Node object on the same repo (another process in real life) sees and stops it
        other = Node(tmp_path / "repo")
        assert other.pid() == pid
        # config cannot be changed under a running daemon
        with pytest.raises(IsolationError):
            Node(tmp_path / "repo", host_kubo, swarm_port=1).init()
        assert other.stop() is True
    finally:
        n.stop()
    assert not n.running and not (n.repo / node.PID_FILE).exists()
    assert not os.path.exists(f"/proc/{pid}") or not proc.pid_alive(pid)
    assert "Daemon is ready" in n.log_path.read_text()
    # a stale pid file (pid of a process that is not our daemon) is ignored and removed
    (n.repo / node.PID_FILE).write_text(f"{os.getpid()}\n")
    assert n.pid() is None and not (n.repo / node.PID_FILE).exists()
    # restart works, same identity
    with Node(tmp_path / "repo", host_kubo) as again:
        assert again.peer_id == peer and again.running


@pytest.mark.kubo
def test_node_refuses_foreign_dir(host_kubo: Path, tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "something").write_text("mine")
    with pytest.raises(NodeError, match="not empty"):
        Node(tmp_path / "x", host_kubo).init()


@pytest.mark.kubo
def test_start_failure_reports_log(host_kubo: Path, tmp_path: Path) -> None:
    n = Node(tmp_path / "repo", host_kubo).init()
    cfg = json.loads(n.config_path.read_text())
    cfg["Datastore"]["Spec"] = {"type": "nonsense"}
    n.config_path.write_text(json.dumps(cfg))
    with pytest.raises(NodeError, match="kubo exited") as info:
        n.start(timeout=30)
    assert info.value.hint and "daemon.log" in info.value.hint
    assert not n.running


@pytest.mark.kubo
def test_every_client_call_we_use(started: Node, tmp_path: Path) -> None:
    c = started.client()
    assert rpc.parse_version(rpc.version(c)) >= (0, 20, 0)
    ident = rpc.identity(c)
    assert ident["ID"] == started.peer_id == rpc.peer_id(c)
    # add: files wrapped in one directory, CIDv1 raw leaves, with progress events
    (tmp_path / "big.tcz").write_bytes(os.urandom(700_000))
    (tmp_path / "big.tcz.md5.txt").write_text("x\n")
    events = list(rpc.add_files(c, [tmp_path / "big.tcz", tmp_path / "big.tcz.md5.txt"],
                                    progress=True))
    assert any("Bytes" in e for e in events)
    done = {e["Name"]: e["Hash"] for e in events if "Hash" in e}
    root = done[""]
    assert root.startswith("bafy") and done["big.tcz.md5.txt"].startswith("bafkrei")  # raw leaf
    # ls, cat, files stat
    links = rpc.ls(c, root)
    assert [(e["Name"], int(e["Size"])) for e in links] == [("big.tcz", 700_000), ("big.tcz.md5.txt", 2)]
    assert rpc.cat(c, f"/ipfs/{root}/big.tcz") == (tmp_path / "big.tcz").read_bytes()
    assert rpc.cat(c, f"/ipfs/{root}/big.tcz.md5.txt") == b"x\n"
    st = rpc.files_stat(c, f"/ipfs/{root}")
    assert st["Type"] == "directory" and st["Hash"] == root
    # pins
    assert rpc.pin_ls(c, root) == {root: "recursive"}
    blob = rpc.add_bytes(c, b"hello", pin=False)
    assert blob.startswith("bafkrei") and rpc.pin_ls(c, blob) == {}
    rpc.pin_add(c, blob)
    assert rpc.pin_ls(c, blob) == {blob: "recursive"} and blob in rpc.pin_ls(c)
    rpc.pin_rm(c, blob)
    assert rpc.pin_ls(c, blob) == {}
    # stats
    assert set(rpc.stats_bw(c)) >= {"TotalIn", "TotalOut", "RateIn", "RateOut"}
    assert set(rpc.bitswap_stat(c)) >= {"BlocksReceived", "DataReceived", "BlocksSent", "DataSent"}
    rs = rpc.repo_stat(c)
    assert rs["RepoSize"] > 700_000 and rs["NumObjects"] >= 4
    assert rpc.swarm_peers(c) == []
    # errors become NodeError naming the call
    with pytest.raises(NodeError, match="IPFS cat /ipfs/bafyinvalid"):
        rpc.cat(c, "/ipfs/bafyinvalid")


@pytest.mark.kubo
def test_ipfshttpclient_swarm_connect_is_broken(started: Node) -> None:
    """Why rpc.swarm_connect does its own request: the binding mangles its argument."""
    c = started.client()
    with pytest.raises(rpc.ClientError, match="multiaddr"):
        c.swarm.connect(started.swarm_addrs[0])


def _own_non_loopback_ipv4() -> str | None:
    """An IPv4 address of this machine's own interfaces (dialling it never leaves the machine)."""
    import socket

    try:
        infos = socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)
    except OSError:
        infos = []
    for info in infos:
        addr = str(info[4][0])
        if not ipaddress.ip_address(addr).is_loopback:
            return addr
    try:
        text = Path("/proc/net/fib_trie").read_text()
    except OSError:
        return None
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if "/32 host LOCAL" in line and i > 0:
            addr = lines[i - 1].split()[-1]
            if not ipaddress.ip_address(addr).is_loopback:
                return addr
    return None


@pytest.mark.kubo
def test_two_isolated_nodes_bitswap(host_kubo: Path, tmp_path: Path) -> None:
    """B dials A explicitly and fetches what A added: bitswap works under isolation_config()."""
    with Node(tmp_path / "a", host_kubo) as a, Node(tmp_path / "b", host_kubo) as b:
        ca, cb = a.client(), b.client()
        payload = os.urandom(3 * 1024 * 1024 + 17)
        (tmp_path / "x.tcz").write_bytes(payload)
        events = list(rpc.add_files(ca, [tmp_path / "x.tcz"]))
        root = events[-1]["Hash"]
        assert rpc.swarm_peers(cb) == []  # nobody finds anybody on their own

        # the connection gater refuses anything but loopback, before any packet is sent
        port = a.swarm_addrs[0].split("/")[4]
        refused = [f"/ip6/::1/tcp/{port}/p2p/{a.peer_id}"]
        own = _own_non_loopback_ipv4()
        if own:
            refused.append(f"/ip4/{own}/tcp/{port}/p2p/{a.peer_id}")
        for addr in refused:
            with pytest.raises(NodeError, match="gater disallows"):
                rpc.swarm_connect(cb, addr, timeout=10)

        rpc.swarm_connect(cb, a.swarm_addrs[0], timeout=10)
        assert [p["Peer"] for p in rpc.swarm_peers(cb)] == [a.peer_id]
        assert rpc.cat(cb, f"/ipfs/{root}/x.tcz", timeout=60) == payload
        assert rpc.bitswap_stat(cb)["DataReceived"] >= len(payload)
        assert rpc.bitswap_ledger(ca, b.peer_id)["Sent"] >= len(payload)
        # B can pin (keep) what it fetched and serve it on
        rpc.pin_add(cb, root)
        assert rpc.pin_ls(cb, root) == {root: "recursive"}


@pytest.mark.kubo
def test_dns_is_sinkholed(started: Node) -> None:
    with pytest.raises(NodeError, match=r"127\.0\.0\.1:1\b"):
        rpc.cat(started.client(), "/ipns/example.com/x", timeout=20)


@pytest.mark.kubo
def test_cli_node_start_status_stop(host_kubo: Path, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    repo = str(tmp_path / "seed")
    try:
        assert cli.main(["node", "start", "--repo", repo, "--kubo", str(host_kubo), "--json"]) == 0
        started = json.loads(capsys.readouterr().out)
        assert started["running"] and started["isolated"] and started["api"].startswith("/ip4/127.0.0.1/")
        assert cli.main(["node", "status", "--repo", repo]) == 0
        text = capsys.readouterr().out
        assert "running: yes" in text and "isolated: yes" in text and started["peer_id"] in text
        assert cli.main(["node", "stop", "--repo", repo, "--json"]) == 0
        assert json.loads(capsys.readouterr().out) == {"repo": str(Path(repo).resolve()), "stopped": True}
        assert cli.main(["node", "status", "--repo", repo, "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["running"] is False
        assert cli.main(["node", "stop", "--repo", repo]) == 0
        assert "not running" in capsys.readouterr().out
    finally:
        Node(Path(repo)).stop()
