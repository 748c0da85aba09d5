"""Isolation: a node started the `tce-ipfs node start` way never touches a non-loopback address; nor do
cluster seeds (their kubo and their ipfs-cluster-service peer).

Three independent checks:
* the config kubo itself reports (`ipfs config show`) carries every isolation_config() key;
* the kernel's socket tables, sampled every 50 ms for the kubo processes from their first moment
  through start, publish, an explicit `swarm connect` between two nodes and a bitswap fetch:
  every local and remote address is loopback (listening sockets included);
* when strace is installed: every connect/bind/sendto/sendmsg syscall kubo makes during the same
  workload names only loopback addresses (catches sockets too short-lived for sampling, e.g. DNS).
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from support.cluster import stopped_at_exit
from tce_ipfs import proc
from tce_ipfs.build.cluster import ClusterBinaries
from tce_ipfs.ipfs import clusterpins, isolation, node, publish, rpc
from tce_ipfs.ipfs.cluster import ClusterSeed
from tce_ipfs.ipfs.clusterconfig import ClusterOptions, ClusterState
from tce_ipfs.ipfs.node import Node

pytestmark = [pytest.mark.kubo, pytest.mark.filterwarnings("ignore:The 'strict' parameter:FutureWarning")]


def make_repo(d: Path, count: int = 20, size: int = 400_000) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        name = f"ext{i:03d}.tcz"
        data = os.urandom(size)
        (d / name).write_bytes(data)
        (d / f"{name}.md5.txt").write_text(f"{hashlib.md5(data).hexdigest()}  {name}\n")
        if i:
            (d / f"{name}.dep").write_text(f"ext{i - 1:03d}.tcz\n")
    (d / "onboot.lst").write_text(f"ext{count - 1:03d}.tcz\n")
    return d


# --- config read back from kubo ------------------------------------------------------------------


def test_config_applied_as_kubo_reads_it(host_kubo: Path, tmp_path: Path) -> None:
    n = Node(tmp_path / "repo", host_kubo).init()
    shown = json.loads(n.kubo_cmd("config", "show"))
    wanted = isolation.isolation_config()
    for key, value in wanted.items():
        assert isolation.get_dotted(shown, key) == value, key
    # `config show` prints the file as it is, unknown keys included, so a misspelt key would pass
    # the check above while the daemon ignores it. `config replace` decodes into kubo's Config
    # struct, which drops unknown keys: every key must survive that round trip.
    scratch = Node(tmp_path / "scratch", host_kubo)
    scratch.kubo_cmd("init", "--profile", "test", "--empty-repo")
    probe = json.loads(json.dumps(shown))
    probe["Swarm"]["NoSuchKeyForTheTest"] = True
    scratch.kubo_cmd("config", "replace", "-", input=json.dumps(probe).encode())
    decoded = json.loads(scratch.kubo_cmd("config", "show"))
    assert "NoSuchKeyForTheTest" not in decoded["Swarm"]  # the round trip does drop unknown keys
    for key, value in wanted.items():
        assert isolation.get_dotted(decoded, key) == value, f"{key}: not a kubo config key?"
    # and single keys through `ipfs config KEY`, the way an operator would check
    assert n.kubo_cmd("config", "Routing.Type").strip() == "none"
    assert json.loads(n.kubo_cmd("config", "--json", "Bootstrap")) == []
    assert n.kubo_cmd("config", "AutoConf.Enabled").strip() == "false"
    assert n.kubo_cmd("config", "Discovery.MDNS.Enabled").strip() == "false"
    # re-init of an existing repo repairs drift (e.g. someone re-enabled mDNS and bootstrap)
    n.kubo_cmd("config", "--json", "Discovery.MDNS.Enabled", "true")
    # Any non-empty Bootstrap list is drift; a loopback entry proves it without naming a public host.
    n.kubo_cmd("config", "--json", "Bootstrap", json.dumps([f"/ip4/127.0.0.1/tcp/9/p2p/{n.peer_id}"]))
    assert set(isolation.config_drift(n.read_config(), wanted)) == {"Discovery.MDNS.Enabled", "Bootstrap"}
    n.init()
    assert isolation.config_drift(json.loads(n.kubo_cmd("config", "show")), wanted) == []


# --- socket table sampling -----------------------------------------------------------------------


@dataclass(frozen=True)
class Sock:
    proto: str
    local: tuple[str, int]
    remote: tuple[str, int]
    state: str


TCP_STATES = {"01": "ESTABLISHED", "02": "SYN_SENT", "03": "SYN_RECV", "04": "FIN_WAIT1",
              "05": "FIN_WAIT2", "06": "TIME_WAIT", "07": "CLOSE", "08": "CLOSE_WAIT",
              "09": "LAST_ACK", "0A": "LISTEN", "0B": "CLOSING"}


def _addr(hexaddr: str) -> tuple[str, int]:
    host, port = hexaddr.split(":")
    raw = bytes.fromhex(host)
    # /proc/net stores each 32-bit word in host (little-endian) order
    fixed = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.ip_address(fixed)), int(port, 16)


def sockets_of(pid: int) -> list[Sock]:
    """The TCP/UDP/raw sockets process ``pid`` holds (its fds' inodes joined with /proc/net)."""
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    found = []
    for table in ("tcp", "tcp6", "udp", "udp6", "raw", "raw6"):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if f[9] in inodes:
                state = TCP_STATES.get(f[3], f[3]) if table.startswith("tcp") else f[3]
                found.append(Sock(table, _addr(f[1]), _addr(f[2]), state))
    return found


def ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """An address, IPv4-mapped IPv6 (``::ffff:127.0.0.1``) unwrapped to IPv4."""
    addr = ipaddress.ip_address(text)
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def violation(s: Sock) -> str | None:
    local = ip(s.local[0])
    remote = ip(s.remote[0])
    if not local.is_loopback:
        return f"{s.proto} socket bound to non-loopback {s.local} ({s.state})"
    if s.state == "LISTEN" or (s.proto.startswith("udp") and s.remote[1] == 0):
        if not remote.is_unspecified:
            return f"listening {s.proto} socket with remote {s.remote}"
        return None
    if not remote.is_loopback:
        return f"{s.proto} connection {s.local} -> {s.remote} ({s.state})"
    return None


def _runs_on(pid: int, where: Path) -> bool:
    """Is ``pid`` a daemon on ``where`` (kubo: IPFS_PATH in its environment; cluster: on its command line)?"""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return f"IPFS_PATH={where}".encode() in environ or str(where).encode() in cmdline


class Sampler:
    """Samples the sockets of the daemons whose pid is in ``<dir>/tce-ipfs.pid`` for each of ``repos``
    (kubo repos, cluster service dirs) every ``interval`` s in a thread."""

    def __init__(self, repos: list[Path], interval: float = 0.05,
                 check: Callable[[Sock], str | None] | None = None) -> None:
        self.repos = repos
        self.interval = interval
        self.check = check or violation  # what makes a socket a violation (default: not loopback)
        self.samples = 0
        self.busy = 0.0  # seconds spent sampling
        self.seen: set[Sock] = set()
        self.violations: list[str] = []
        self.pids: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            began = time.monotonic()
            for repo in self.repos:
                try:
                    pid = int((repo / node.PID_FILE).read_text())
                except (OSError, ValueError):
                    continue
                if not _runs_on(pid, repo):  # a stale pid file (a killed daemon), the pid since reused
                    continue
                self.pids.add(pid)
                for s in sockets_of(pid):
                    self.seen.add(s)
                    v = self.check(s)
                    if v:
                        self.violations.append(f"pid {pid}: {v}")
            self.samples += 1
            self.busy += time.monotonic() - began
            time.sleep(max(0.0, self.interval - (time.monotonic() - began)))

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def workload(a: Node, b: Node, repo_dir: Path) -> str:
    """Publish on A, B dials A explicitly and fetches everything over bitswap. Returns the root CID."""
    with a.client() as ca, b.client() as cb:
        res = publish.publish(repo_dir, ca)
        rpc.swarm_connect(cb, a.swarm_addrs[0], timeout=10)
        for name in res.files:
            data = rpc.cat(cb, f"/ipfs/{res.root_cid}/{name}", timeout=60)
            assert data == (repo_dir / name).read_bytes()
        assert rpc.bitswap_stat(cb)["DataReceived"] >= res.total_size
        return res.root_cid


def test_no_connection_leaves_loopback_sampled(host_kubo: Path, tmp_path: Path) -> None:
    repo_dir = make_repo(tmp_path / "tcz")
    a_repo, b_repo = tmp_path / "a", tmp_path / "b"
    Node(a_repo, host_kubo).init()
    Node(b_repo, host_kubo).init()
    started = time.monotonic()
    with Sampler([a_repo, b_repo]) as sampler, Node(a_repo, host_kubo) as a, Node(b_repo, host_kubo) as b:
        workload(a, b, repo_dir)
        while time.monotonic() - started < 6.0:  # keep both idling under observation
            time.sleep(0.1)
    assert len(sampler.pids) == 2
    elapsed = time.monotonic() - started
    print(f"{sampler.samples} samples in {elapsed:.1f} s ({sampler.busy / sampler.samples * 1000:.1f} ms "
          f"each), {len(sampler.seen)} distinct sockets")
    assert sampler.samples >= 0.5 * elapsed / sampler.interval, sampler.samples
    assert sampler.violations == []
    # the sampler really saw the daemons' sockets: listeners and the A<->B swarm connection
    listening = {s for s in sampler.seen if s.state == "LISTEN"}
    established = {s for s in sampler.seen if s.state == "ESTABLISHED"}
    assert len(listening) >= 6, listening  # swarm + API + gateway, for each node
    assert established, "no established connection seen"
    udp = [s for s in sampler.seen if s.proto.startswith("udp")]
    assert udp == [], udp  # TCP only: no QUIC, no mDNS, no DNS


# --- syscall audit with strace -------------------------------------------------------------------

_INET = re.compile(r'sin_addr=inet_addr\("([^"]+)"\)|inet_pton\(AF_INET6, "([^"]+)"')
_CALL = re.compile(r"^\d+\s+(\w+)\(")


@contextlib.contextmanager
def traced_daemon(host_kubo: Path, repo: Path, log_path: Path) -> Iterator[Node]:
    """Run the node's daemon under `strace -f` from its first instruction."""
    n = Node(repo, host_kubo).init()
    strace = shutil.which("strace")
    assert strace
    (repo / "api").unlink(missing_ok=True)
    with open(n.log_path, "ab") as out:
        tracer = subprocess.Popen(
            [strace, "-f", "-qq", "-e", "trace=connect,bind,sendto,sendmsg,sendmmsg", "-o", str(log_path),
             str(host_kubo), "daemon", "--migrate=false"],
            env=proc.clean_env(n.env), cwd=repo, stdin=subprocess.DEVNULL,
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        kubo_pid = None
        while time.monotonic() < deadline and tracer.poll() is None:
            children = Path(f"/proc/{tracer.pid}/task/{tracer.pid}/children")
            with contextlib.suppress(OSError):
                kids = children.read_text().split()
                if kids:
                    kubo_pid = int(kids[0])
            if kubo_pid and node.read_api_file(repo):
                try:
                    rpc.client(node.read_api_file(repo) or "", timeout=5).id()
                    break
                except Exception:
                    pass
            time.sleep(0.1)
        else:
            pytest.fail(f"traced kubo did not start: {n.log_path.read_text()[-800:]}")
        assert kubo_pid
        (repo / node.PID_FILE).write_text(f"{kubo_pid}\n")
        yield n
    finally:
        n.stop()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(tracer.pid, signal.SIGTERM)
        tracer.wait(timeout=30)


def test_no_syscall_names_a_non_loopback_address(host_kubo: Path, tmp_path: Path) -> None:
    if shutil.which("strace") is None:
        pytest.skip("strace not installed (apt-get install strace) -- socket sampling still ran")
    probe = subprocess.run(["strace", "-qq", "-e", "trace=none", "true"], capture_output=True, check=False)
    if probe.returncode != 0:
        pytest.skip(f"strace cannot trace here: {probe.stderr.decode().strip()[:200]}")
    repo_dir = make_repo(tmp_path / "tcz", count=8)
    logs = [tmp_path / "a.strace", tmp_path / "b.strace"]
    with traced_daemon(host_kubo, tmp_path / "a", logs[0]) as a, \
            traced_daemon(host_kubo, tmp_path / "b", logs[1]) as b:
        workload(a, b, repo_dir)
        time.sleep(2)
    addrs: dict[str, int] = {}
    calls: dict[str, int] = {}
    for log in logs:
        for line in log.read_text().splitlines():
            m = _CALL.match(line)
            if m:
                calls[m[1]] = calls.get(m[1], 0) + 1
            for v4, v6 in _INET.findall(line):
                addrs[v4 or v6] = addrs.get(v4 or v6, 0) + 1
    print(f"syscalls: {calls}; addresses: {addrs}")
    bad = {a: n for a, n in addrs.items() if not ip(a).is_loopback}
    assert bad == {}, f"non-loopback addresses in kubo syscalls: {bad}"
    # the audit saw real traffic: both daemons bound and the swarm dial happened
    assert calls.get("bind", 0) >= 6 and calls.get("connect", 0) >= 1, calls
    assert "127.0.0.1" in addrs


# --- cluster seeds (issue 14): the cluster peer and its kubo ---------------------------------------


def test_cluster_seeds_stay_on_loopback_sampled(host_kubo: Path, host_cluster: ClusterBinaries,
                                                tmp_path: Path) -> None:
    """Two cluster seeds on loopback, sampled from their first moment through the join, a publish
    through one and the pin on the other: every socket of both kubos and both cluster peers is
    loopback, none is UDP (no mDNS, no QUIC, no DNS), and the cluster peers listen on their one
    address; REST API and IPFS proxy are unix sockets."""
    states = [ClusterState(tmp_path / "c1"), ClusterState(tmp_path / "c2")]
    seeds = [ClusterSeed(s, service=host_cluster.service, kubo=host_kubo) for s in states]
    ports = (19396, 19397)
    repo_dir = make_repo(tmp_path / "tcz", count=6)
    started = time.monotonic()
    watched = [p for s in states for p in (s.repo, s.service_dir)]
    with stopped_at_exit(*states), Sampler(watched) as sampler:
        seeds[0].init(ClusterOptions(listen=("127.0.0.1",), port=ports[0], ipfs_port=0, api_port=0,
                                     rest_port=0, name="c1"))
        first = seeds[0].start()
        seeds[1].init(ClusterOptions(listen=("127.0.0.1",), port=ports[1], ipfs_port=0, api_port=0,
                                     rest_port=0, name="c2", join=(first["cluster_addrs"][0],)),
                      secret=states[0].secret())
        seeds[1].start()
        with rpc.client(clusterpins.kubo_api_of(states[0])) as client:
            res = clusterpins.publish_to_cluster(seeds[0].api(), client, repo_dir, timeout=120)
        assert sorted(res.pinned_on) == ["c1", "c2"]
        while time.monotonic() - started < 15.0:  # pings, rebroadcasts, connect_swarms: idle under watch
            time.sleep(0.1)
    assert len(sampler.pids) == 4, sampler.pids
    print(f"{sampler.samples} samples, {len(sampler.seen)} distinct sockets")
    assert sampler.violations == []
    udp = [s for s in sampler.seen if s.proto.startswith("udp")]
    assert udp == [], udp
    listening = {s.local for s in sampler.seen if s.state == "LISTEN"}
    for port in ports:
        assert ("127.0.0.1", port) in listening
    cluster_pids = {int((s.service_dir / node.PID_FILE).read_text()) for s in states
                    if (s.service_dir / node.PID_FILE).exists()}
    assert not cluster_pids  # stopped at the end
    for s in states:
        assert not s.rest_socket.exists()  # the unix sockets go with the daemon
