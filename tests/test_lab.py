"""The lab LAN: a private network namespace with a bridge, taps, DHCP and kubo nodes inside.

Proves the lab's two promises: it is isolated (only lo + bridge + taps, no default route, no DNS), and
it leaves nothing behind (no namespace, no process), also when the code using it fails half-way.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from support import run_failing_inner_test
from tce_ipfs.errors import NodeError
from tce_ipfs.ipfs import rpc, swarmkey
from tce_ipfs.proc import pid_alive
from tce_ipfs.testbed.lab import PREFIX, Lab, namespaces, start_kubo
from tce_ipfs.testbed.link import ShapedLink

pytestmark = pytest.mark.root


def test_lab_is_isolated(lab: Lab) -> None:
    taps = [lab.tap(), lab.tap()]
    lab.check_isolated()
    names = {link["ifname"] for link in lab.links()}
    assert names == {"lo", lab.bridge, *(t.ifname for t in taps)}
    for link in lab.links():
        assert "link_netnsid" not in link, f"{link['ifname']} has a peer in another namespace"
    # No default route, no route via anything but the bridge and lo.
    assert not [r for r in lab.routes() if r.get("dst") == "default"]
    assert {r.get("dev") for r in lab.routes()} <= {"lo", lab.bridge}
    # IPv6 is off, and nothing outside the lab subnet is reachable.
    assert lab.exec(["sysctl", "-n", "net.ipv6.conf.all.disable_ipv6"]).stdout.strip() == b"1"
    probe = lab.exec(["ip", "route", "get", "1.1.1.1"], check=False)
    assert probe.returncode != 0 and b"unreachable" in probe.stderr
    # DHCP only: dnsmasq listens on udp/67 on the bridge, there is no DNS server (port 53).
    sockets = lab.exec(["ss", "-H", "-tuln"]).stdout.decode()
    assert f"%{lab.bridge}:67" in sockets
    assert ":53 " not in sockets
    # The taps are bridge ports with fixed MACs and fixed leases.
    assert [t.mac for t in taps] == ["52:54:00:77:00:00", "52:54:00:77:00:01"]
    assert [t.ip for t in taps] == ["10.77.0.101", "10.77.0.102"]
    args = taps[0].netdev_args()
    assert args[1] == f"tap,id=n0,ifname={taps[0].ifname},script=no,downscript=no"
    assert taps[0].wrap(["qemu"]) == ["ip", "netns", "exec", lab.netns, "qemu"]
    # Names carry the project prefix and fit IFNAMSIZ.
    assert lab.netns.startswith(PREFIX)
    assert all(len(n) <= 15 for n in names)


def test_processes_run_inside_the_namespace(lab: Lab) -> None:
    p = lab.spawn("sleeper", ["sleep", "300"])
    assert p.pid in lab.pids()
    own = os.readlink(f"/proc/{p.pid}/ns/net")
    assert own != os.readlink("/proc/self/ns/net")


def test_teardown_kills_everything_and_deletes_namespace(tmp_path: Path) -> None:
    with Lab(tmp_path / "lab") as lab:
        lab.tap()
        p = lab.spawn("sleeper", ["sleep", "300"])
        # A grandchild in its own session escapes the process group: the namespace sweep gets it.
        lab.spawn("escaper", ["sh", "-c", "setsid sleep 301 & echo $! > escaper.pid; wait"],
                  cwd=tmp_path)
        deadline = time.monotonic() + 5
        while not (tmp_path / "escaper.pid").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        escaper = int((tmp_path / "escaper.pid").read_text())
        pids = lab.pids()
        assert p.pid in pids and escaper in pids
        netns = lab.netns
    assert netns not in namespaces()
    for pid in (*pids, escaper):
        assert not pid_alive(pid), f"pid {pid} survived the lab"


def test_teardown_on_exception(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="boom"), Lab(tmp_path / "lab") as lab:
        p = lab.spawn("sleeper", ["sleep", "300"])
        netns = lab.netns
        raise RuntimeError("boom")
    assert netns not in namespaces()
    assert not pid_alive(p.pid)


def test_failing_test_still_tears_down(tmp_path: Path) -> None:
    """A test that fails mid-way (in its own pytest run) leaves no namespace and no process."""
    record = tmp_path / "record"
    run_failing_inner_test(tmp_path, f"""
        from pathlib import Path
        import pytest
        from tce_ipfs.testbed.lab import Lab

        @pytest.fixture
        def lab(tmp_path):
            lab = Lab(tmp_path / "lab")
            lab.open()
            yield lab
            lab.close()

        def test_fails_midway(lab):
            lab.tap()
            p = lab.spawn("sleeper", ["sleep", "300"])
            Path({str(record)!r}).write_text(f"{{lab.netns}} {{p.pid}}")
            assert False, "deliberate failure with the lab up"
    """, timeout=120)
    netns, pid = record.read_text().split()
    assert netns not in namespaces()
    assert not pid_alive(int(pid))


def test_lab_refuses_use_after_close(tmp_path: Path) -> None:
    lab = Lab(tmp_path / "lab")
    with lab:
        pass
    with pytest.raises(NodeError, match="not running"):
        lab.tap()
    lab.close()  # idempotent


@pytest.mark.kubo
def test_two_nodes_in_the_lab_fetch_from_each_other(lab: Lab, host_kubo: Path, tmp_path: Path) -> None:
    a = lab.start_seed(host_kubo)
    b = start_kubo(lab, "peer-b", host_kubo, tmp_path / "b", listen_ip=lab.bridge_ip, port=4002)
    assert a.node.running and a.process.pid in lab.pids() and b.process.pid in lab.pids()
    blob_a = os.urandom(300_000)
    blob_b = os.urandom(5_000)
    with a.client() as ca, b.client() as cb:
        cid_a = rpc.add_bytes(ca, blob_a)
        cid_b = rpc.add_bytes(cb, blob_b)
        rpc.swarm_connect(cb, a.multiaddr, timeout=20)
        assert rpc.cat(cb, cid_a, timeout=30) == blob_a
        assert rpc.cat(ca, cid_b, timeout=30) == blob_b
        assert rpc.bitswap_stat(ca)["DataSent"] >= len(blob_a)
        # Everything went over the bridge address: the daemons' sockets are all 10.77.0.x / unix.
        for peer in rpc.swarm_peers(ca):
            assert peer["Addr"].startswith("/ip4/10.77.0.")
    listening = lab.exec(["ss", "-H", "-tln"]).stdout.decode()
    ports = {line.split()[3] for line in listening.splitlines()}
    assert {"10.77.0.1:4001", "10.77.0.1:4002"} <= ports
    assert not [p for p in ports if p.startswith(("0.0.0.0:", "*:"))], ports


@pytest.mark.kubo
def test_wrong_swarm_key_cannot_fetch(lab: Lab, host_kubo: Path, tmp_path: Path) -> None:
    key = swarmkey.generate()
    seed = lab.start_seed(host_kubo, swarm_key=key)
    same = start_kubo(lab, "same-key", host_kubo, tmp_path / "same", listen_ip=lab.bridge_ip, port=4002,
                      swarm_key=key)
    other = start_kubo(lab, "other-key", host_kubo, tmp_path / "other", listen_ip=lab.bridge_ip,
                       port=4003, swarm_key=swarmkey.generate())
    open_node = start_kubo(lab, "no-key", host_kubo, tmp_path / "open", listen_ip=lab.bridge_ip, port=4004)
    assert swarmkey.read(seed.repo) == key
    blob = os.urandom(50_000)
    with seed.client() as cs:
        cid = rpc.add_bytes(cs, blob)
    with same.client() as c:
        rpc.swarm_connect(c, seed.multiaddr, timeout=20)
        assert rpc.cat(c, cid, timeout=30) == blob
    for node in (other, open_node):
        with node.client(timeout=8) as c:
            with pytest.raises(NodeError, match="swarm connect"):
                rpc.swarm_connect(c, seed.multiaddr, timeout=8)
            with pytest.raises(NodeError):
                rpc.cat(c, cid, timeout=5)
            assert rpc.swarm_peers(c) == []


# ---------------------------------------------------------------------- two labs joined by a shaped link
_SERVE = ("import socket, sys\n"
          "s = socket.create_server((sys.argv[1], 9000))\n"
          "c, _ = s.accept()\n"
          "c.sendall(b'x' * 200_000)\n"
          "c.close()\n")
_RECEIVE = ("import socket, sys, time\n"
            "for _ in range(100):\n"
            "    try:\n"
            "        c = socket.create_connection((sys.argv[1], 9000), timeout=10)\n"
            "        break\n"
            "    except OSError:\n"
            "        time.sleep(0.05)\n"
            "n = 0\n"
            "while chunk := c.recv(65536):\n"
            "    n += len(chunk)\n"
            "print(n)\n")


def test_shaped_link_is_isolated_capped_and_torn_down(tmp_path: Path) -> None:
    with ShapedLink(tmp_path / "link", rate_mbit=10) as link:
        link.check_isolated()
        sides = ((link.origin, link.origin_if, link.clients), (link.clients, link.clients_if, link.origin))
        for side, ifname, _ in sides:
            assert side.netns.startswith(PREFIX) and len(ifname) <= 15
            names = {link_["ifname"] for link_ in side.links()}
            assert names == {"lo", side.bridge, ifname}
            # The veth is the only link with a peer elsewhere, and that peer is the other lab.
            assert [x["ifname"] for x in side.links() if "link_netnsid" in x] == [ifname]
            assert not [r for r in side.routes() if r.get("dst") == "default"]
            probe = side.exec(["ip", "route", "get", "1.1.1.1"], check=False)
            assert probe.returncode != 0 and b"unreachable" in probe.stderr
        for name in ("origin", "clients"):
            (qdisc,) = link.qdiscs(name)
            assert qdisc["kind"] == "tbf" and qdisc["options"]["rate"] == 10 * 10**6 // 8
        assert (link.origin_ip, link.clients_ip) == ("10.78.0.1", "10.78.0.2")
        # Traffic flows origin -> clients over the veth, and the counters see it.
        before = link.tx_bytes("origin")
        link.origin.spawn("server", [sys.executable, "-c", _SERVE, link.origin_ip])
        got = link.clients.exec([sys.executable, "-c", _RECEIVE, link.origin_ip], timeout=60)
        assert int(got.stdout) == 200_000
        assert link.tx_bytes("origin") - before >= 200_000
        sleepers = [lab_.spawn("sleeper", ["sleep", "300"]).pid for lab_ in (link.origin, link.clients)]
        netns = {link.origin.netns, link.clients.netns}
    assert not netns & set(namespaces())
    assert not [pid for pid in sleepers if pid_alive(pid)]


def test_shaped_link_teardown_on_exception(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="boom"), ShapedLink(tmp_path / "link", rate_mbit=5) as link:
        pids = [lab_.spawn("sleeper", ["sleep", "300"]).pid for lab_ in (link.origin, link.clients)]
        netns = {link.origin.netns, link.clients.netns}
        raise RuntimeError("boom")
    assert not netns & set(namespaces())
    assert not [pid for pid in pids if pid_alive(pid)]
    with pytest.raises(NodeError, match="positive"):
        ShapedLink(tmp_path / "bad", rate_mbit=0)
