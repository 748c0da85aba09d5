"""A private lab LAN for guests: one network namespace, a bridge, a tap per guest, DHCP, a seed node.

::

    with Lab(work_dir) as lab:
        seed = lab.start_seed(kubo)              # kubo inside the namespace, swarm on 10.77.0.1:4001
        net = lab.tap()                          # a tap on the bridge; pass it to qemu.boot(net=...)
        lab.spawn("probe", ["busybox", "nc", ...])   # any long-running process inside the namespace

Isolation (the lab's contract, checked by ``check_isolated()`` and the tests):

* the namespace is new and holds only ``lo``, the bridge and the lab's taps -- no veth or any other
  link to the host's interfaces, so nothing can be routed out of it;
* no default route, no IPv6 (disabled in the namespace), no DNS: dnsmasq runs with ``--port=0``
  (DHCP only), ``--no-resolv``, only on the bridge, and hands out leases with *empty* router and
  DNS-server options;
* every kubo inside is isolated by ``isolation.isolation_config()`` (no bootstrap, no public DHT,
  AutoConf and telemetry off) and listens on the bridge address only.

Two labs joined by a rate-capped link are ``link.ShapedLink``; a LAN of machines that each have a
namespace (and address) of their own is ``lan.SwitchedLan``.

Teardown (``close()``, run by ``__exit__``, an ``atexit`` hook and the pytest fixture finalizers)
stops every process the lab started (its process group, then anything still inside the namespace),
deletes the taps and the bridge, deletes the namespace and checks that it is gone. It never touches
a namespace it did not create: all names are ``tceipfs-<random>`` and the lab only deletes its own.

This is one module (over 500 lines) on purpose: the namespace, the processes it runs, DHCP, the taps
and the seed share one lifecycle, and the teardown order above is only right when it sees all of them.
"""

from __future__ import annotations

import atexit
import contextlib
import ipaddress
import json
import logging
import os
import secrets
import signal
import subprocess
import time
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from tce_ipfs import proc
from tce_ipfs.arch import Arch
from tce_ipfs.errors import IsolationError, NodeError

if TYPE_CHECKING:
    from tce_ipfs.ipfs.node import Node

log = logging.getLogger(__name__)

PREFIX = "tceipfs-"
DEFAULT_SUBNET = "10.77.0.0/24"  # every lab has its own namespace, so concurrent labs may share it
SEED_SWARM_PORT = 4001
GUEST_HOST_OFFSET = 100  # guest N (0-based) gets <net>.101+N by MAC reservation
MAX_GUESTS = 64
MAC_PREFIX = "52:54:00:77"  # QEMU's OUI + "77"; the last two octets are lab-local


LINK_LATENCY_MS = 50  # how long tbf may queue a packet before dropping it (not added delay)


def tbf_burst_bytes(rate_mbit: float) -> int:
    """tbf's bucket: 10 ms worth of the rate, never below a few MTU-sized packets."""
    return max(int(rate_mbit * 1e6 / 8 / 100), 4 * 1514)


def run_ip(ns: str | None, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    argv = ["ip", *(("-n", ns) if ns else ()), *args]
    return proc.run(argv, check=check, timeout=30, what="ip " + " ".join(args[:3]))


@dataclass(frozen=True)
class TapNet:
    """A guest NIC on the lab bridge; fits ``qemu.NetSpec`` (``qemu.boot(..., net=tap)``).

    QEMU is started through ``wrap()`` (``ip netns exec NS ...``) so the tap it opens is the one in the
    namespace. ``qemu_args`` gives the ``-netdev tap``/``-device`` pair (fixed MAC => fixed DHCP lease).
    """

    netns: str
    ifname: str
    mac: str
    ip: str
    index: int

    def netdev_args(self, device: str = "virtio-net-pci", netdev_id: str = "n0") -> list[str]:
        return [
            "-netdev", f"tap,id={netdev_id},ifname={self.ifname},script=no,downscript=no",
            "-device", f"{device},netdev={netdev_id},mac={self.mac}",
        ]

    def qemu_args(self, arch: Arch) -> list[str]:
        """``qemu.NetSpec``: the arch profile's NIC model on this tap."""
        from tce_ipfs.testbed import qemu

        return self.netdev_args(qemu.profile(arch).nic)

    def wrap(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside the lab namespace."""
        return ["ip", "netns", "exec", self.netns, *argv]


@dataclass
class LabProcess:
    """A long-running process the lab started inside its namespace."""

    name: str
    argv: list[str]
    popen: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, grace: float = 5.0) -> int | None:
        """SIGTERM the process group, SIGKILL after ``grace`` seconds; return the exit code."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout=10)
        # Children that left the group die with the namespace sweep in Lab.close().
        return self.popen.returncode


@dataclass
class SeedNode:
    """The lab's host seed: an isolated kubo inside the namespace, API on a unix socket."""

    node: Node
    api: str  # /unix/... multiaddr (reachable from the host: unix sockets ignore network namespaces)
    swarm: str  # /ip4/<bridge ip>/tcp/4001
    peer_id: str
    process: LabProcess
    swarm_key: str | None

    @property
    def multiaddr(self) -> str:
        """What guests put in ``ipfs.peers=``."""
        return f"{self.swarm}/p2p/{self.peer_id}"

    @property
    def repo(self) -> Path:
        return self.node.repo

    def client(self, timeout: float = 30.0) -> Any:
        from tce_ipfs.ipfs import rpc

        return rpc.client(self.api, timeout=timeout)

    def stop(self) -> None:
        """Stop serving (the origin going away); the lab's teardown would do it anyway."""
        self.process.stop()


_LIVE_LABS: weakref.WeakSet[Lab] = weakref.WeakSet()


@atexit.register
def _close_all_labs() -> None:
    for lab in list(_LIVE_LABS):
        with contextlib.suppress(Exception):
            lab.close()


class Managed:
    """``with X(...) as x:`` opens on entry and always closes on exit (teardown even on failure)."""

    def open(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class Lab(Managed):
    """A private LAN in a fresh network namespace. Use as a context manager.

    ``bridge=False`` (implies no DHCP): a bare namespace holding only ``lo``, for a machine whose one
    link is added from outside (``lan.SwitchedLan``).
    """

    def __init__(self, work_dir: Path, *, subnet: str = DEFAULT_SUBNET, dhcp: bool = True,
                 tftp_root: Path | None = None, bootfile: str = "pxelinux.0", bridge: bool = True) -> None:
        """``tftp_root``: PXE on the lab LAN -- dnsmasq also serves this directory over TFTP (on the
        bridge only) and offers ``bootfile`` in its DHCP replies (a ``tce-ipfs netboot`` tree)."""
        self.work_dir = Path(work_dir)
        self._tftp = (Path(tftp_root).absolute(), bootfile) if tftp_root is not None else None
        self.suffix = secrets.token_hex(3)  # 6 hex: tap names stay within IFNAMSIZ (15)
        self.netns = f"{PREFIX}{self.suffix}"
        self.bridge = f"tceipfs{self.suffix}b"
        self.network = ipaddress.IPv4Network(subnet)
        hosts = list(self.network.hosts())
        self.bridge_ip = str(hosts[0])
        self._dhcp_range = (str(hosts[GUEST_HOST_OFFSET + 100]), str(hosts[-1]))
        self._want_dhcp = dhcp and bridge
        self._want_bridge = bridge
        self.taps: list[TapNet] = []
        self.processes: list[LabProcess] = []
        self.seed: SeedNode | None = None
        self.sockets: list[Path] = []
        self._created = False
        self._closed = False

    # ------------------------------------------------------------------ lifecycle
    def open(self) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        _LIVE_LABS.add(self)
        try:
            proc.run(["ip", "netns", "add", self.netns], timeout=30, what=f"creating netns {self.netns}")
            self._created = True
            # No IPv6 at all inside the lab (no SLAAC, no link-local chatter to reason about).
            self.exec(["sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1"])
            self.exec(["sysctl", "-q", "-w", "net.ipv6.conf.default.disable_ipv6=1"])
            run_ip(self.netns, "link", "set", "lo", "up")
            if self._want_bridge:
                run_ip(self.netns, "link", "add", self.bridge, "type", "bridge", "stp_state", "0",
                       "forward_delay", "0")
                run_ip(self.netns, "addr", "add", f"{self.bridge_ip}/{self.network.prefixlen}", "dev",
                       self.bridge)
                run_ip(self.netns, "link", "set", self.bridge, "up")
            if self._want_dhcp:
                self._start_dhcp()
            self.check_isolated()
        except BaseException:
            self.close()
            raise
        log.info("lab %s up: bridge %s %s/%d", self.netns, self.bridge, self.bridge_ip,
                 self.network.prefixlen)

    def close(self) -> None:
        """Stop everything, delete the namespace, verify nothing is left. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        _LIVE_LABS.discard(self)
        problems: list[str] = []
        for p in reversed(self.processes):
            try:
                p.stop()
            except Exception as exc:  # keep tearing down whatever happens
                problems.append(f"stopping {p.name}: {exc}")
        if self._created:
            self._kill_namespace_pids()
            for tap in self.taps:
                run_ip(self.netns, "link", "del", tap.ifname, check=False)
            run_ip(self.netns, "link", "del", self.bridge, check=False)
            proc.run(["ip", "netns", "del", self.netns], check=False, timeout=30)
            if self.netns in namespaces():
                problems.append(f"namespace {self.netns} still exists")
        for sock in self.sockets:
            sock.unlink(missing_ok=True)
        for p in self.processes:
            if p.alive():
                problems.append(f"{p.name} (pid {p.pid}) still running")
        if problems:
            raise NodeError(f"lab {self.netns} teardown incomplete: " + "; ".join(problems))
        log.info("lab %s torn down", self.netns)

    def kill_processes(self) -> None:
        """Stop every process the lab started and anything else inside its namespace (the lab stays)."""
        for p in reversed(self.processes):
            with contextlib.suppress(Exception):
                p.stop(grace=2)
        if self._created:
            self._kill_namespace_pids()

    def _kill_namespace_pids(self) -> None:
        """SIGKILL whatever still runs inside our namespace (only ours: we created it)."""
        if self._created and self.netns in namespaces():
            kill_netns_pids(self.netns)

    # ------------------------------------------------------------------ running things inside
    def exec_argv(self, argv: Sequence[str | os.PathLike[str]]) -> list[str]:
        return ["ip", "netns", "exec", self.netns, *(os.fspath(a) for a in argv)]

    def exec(self, argv: Sequence[str | os.PathLike[str]],
             **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
        """Run a short command inside the namespace (``proc.run`` semantics)."""
        kwargs.setdefault("timeout", 60)
        return proc.run(self.exec_argv(argv), **kwargs)

    def spawn(self, name: str, argv: Sequence[str | os.PathLike[str]], *,
              env: Mapping[str, str] | None = None, cwd: Path | None = None) -> LabProcess:
        """Start a long-running process inside the namespace (``proc.spawn``); ``close()`` stops it.

        Its output goes to ``work_dir/<name>.log``. It gets its own process group (killed as one).
        """
        self._require_open()
        log_path = self.work_dir / f"{name}.log"
        full = self.exec_argv(argv)
        popen = proc.spawn(full, log_path=log_path, env=env, cwd=cwd)
        return self.adopt(LabProcess(name=name, argv=full, popen=popen, log_path=log_path))

    def adopt(self, process: LabProcess) -> LabProcess:
        """Make ``process`` (started inside the namespace, in its own session) the lab's: ``close()``
        stops it."""
        self.processes.append(process)
        return process

    def pids(self) -> list[int]:
        """Every pid inside the namespace."""
        if not self._created or self.netns not in namespaces():
            return []
        return netns_pids(self.netns)

    def _require_open(self) -> None:
        if not self._created or self._closed:
            raise NodeError(f"lab {self.netns} is not running")

    # ------------------------------------------------------------------ network pieces
    def tap(self) -> TapNet:
        """Add a tap on the bridge for one guest; its MAC has a fixed lease ``<net>.101+index``."""
        self._require_open()
        index = len(self.taps)
        if index >= MAX_GUESTS:
            raise NodeError(f"lab {self.netns} has {MAX_GUESTS} taps already")
        ifname = f"tceipfs{self.suffix}t{index}"
        run_ip(self.netns, "tuntap", "add", "dev", ifname, "mode", "tap")
        run_ip(self.netns, "link", "set", ifname, "master", self.bridge)
        run_ip(self.netns, "link", "set", ifname, "up")
        tap = TapNet(netns=self.netns, ifname=ifname, mac=self.guest_mac(index), ip=self.guest_ip(index),
                     index=index)
        self.taps.append(tap)
        return tap

    def guest_mac(self, index: int) -> str:
        return f"{MAC_PREFIX}:{index // 256:02x}:{index % 256:02x}"

    def guest_ip(self, index: int) -> str:
        return str(self.network.network_address + GUEST_HOST_OFFSET + 1 + index)

    def _start_dhcp(self) -> None:
        hosts_file = self.work_dir / "dhcp-hosts"
        hosts_file.write_text("".join(f"{self.guest_mac(i)},{self.guest_ip(i)}\n" for i in range(MAX_GUESTS)))
        argv = [
            "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
            "--port=0",  # no DNS server at all
            f"--interface={self.bridge}", "--except-interface=lo", "--bind-interfaces",
            f"--listen-address={self.bridge_ip}",
            f"--dhcp-range={self._dhcp_range[0]},{self._dhcp_range[1]},{self.network.netmask},1h",
            f"--dhcp-hostsfile={hosts_file}",
            "--dhcp-option=option:router",  # empty: no default route for guests
            "--dhcp-option=option:dns-server",  # empty: no DNS
            "--dhcp-authoritative",
            f"--dhcp-leasefile={self.work_dir / 'dnsmasq.leases'}",
            f"--pid-file={self.work_dir / 'dnsmasq.pid'}",
            "--user=root", "--log-dhcp", "--log-facility=-",
        ]
        if self._tftp is not None:
            root, bootfile = self._tftp
            root.mkdir(parents=True, exist_ok=True)
            argv += ["--enable-tftp", f"--tftp-root={root}", f"--dhcp-boot={bootfile}"]
        self.spawn("dnsmasq", argv)
        # dnsmasq binds at once or exits; give it a moment and check it is still there.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if not self.processes[-1].alive():
                raise NodeError(f"dnsmasq in {self.netns} exited: "
                                + self.processes[-1].log_path.read_text(errors="replace")[-500:])
            if b":67 " in (self.exec(["ss", "-H", "-uln"]).stdout or b""):
                return
            time.sleep(0.1)
        raise NodeError(f"dnsmasq in {self.netns} did not bind the DHCP port")

    def cap_uplink(self, rate_mbit: float) -> None:
        """Cap what the namespace itself (the seed, dnsmasq) sends onto the LAN: ``tbf`` on the bridge.

        Locally sent packets leave through the bridge device's own queue; frames the bridge forwards
        between taps (guest to guest) never pass it. So this is the seed's uplink and nothing else.
        """
        self._require_open()
        if rate_mbit <= 0:
            raise NodeError(f"uplink rate must be positive, not {rate_mbit!r}")
        proc.run(["tc", "-n", self.netns, "qdisc", "replace", "dev", self.bridge, "root", "tbf",
                  "rate", f"{rate_mbit:g}mbit", "burst", str(tbf_burst_bytes(rate_mbit)),
                  "latency", f"{LINK_LATENCY_MS}ms"], timeout=30, what=f"tbf rate cap on {self.bridge}")

    def uplink_tx_bytes(self) -> int:
        """Bytes the namespace itself has sent onto the LAN (the bridge device's tx counter)."""
        out = run_ip(self.netns, "-j", "-s", "link", "show", "dev", self.bridge).stdout or b"[]"
        return int(json.loads(out)[0]["stats64"]["tx"]["bytes"])

    def leases(self) -> dict[str, str]:
        """MAC -> IP from dnsmasq's lease file."""
        path = self.work_dir / "dnsmasq.leases"
        out: dict[str, str] = {}
        if path.exists():
            for line in path.read_text().splitlines():
                parts = line.split()
                if len(parts) >= 3:
                    out[parts[1]] = parts[2]
        return out

    # ------------------------------------------------------------------ isolation proof
    def links(self) -> list[dict[str, Any]]:
        out = run_ip(self.netns, "-j", "link", "show").stdout or b"[]"
        links: list[dict[str, Any]] = json.loads(out)
        return links

    def routes(self) -> list[dict[str, Any]]:
        out = run_ip(self.netns, "-j", "route", "show", "table", "all").stdout or b"[]"
        routes: list[dict[str, Any]] = json.loads(out)
        return routes

    def check_isolated(self) -> None:
        """Raise ``IsolationError`` unless the namespace has only lo + bridge + our taps, no default route."""
        allowed = {"lo", self.bridge, *(t.ifname for t in self.taps)}
        links = self.links()
        extra = {str(link["ifname"]) for link in links} - allowed
        if extra:
            raise IsolationError(f"lab {self.netns} has unexpected links: {sorted(extra)}")
        for link in links:
            if link["ifname"] in {t.ifname for t in self.taps} and link.get("master") != self.bridge:
                raise IsolationError(f"tap {link['ifname']} is not on the lab bridge")
        self.check_routes(allowed, f"lab {self.netns}")

    def netns_named_by(self, nsid: Any) -> str | None:
        """The name of the namespace that ``nsid`` (a link's ``link_netnsid``) refers to, as seen from
        this lab's namespace; None when unknown (or ``nsid`` is None)."""
        if nsid is None:
            return None
        out = run_ip(self.netns, "-j", "netns", "list-id").stdout or b"[]"
        for entry in json.loads(out):
            if entry.get("nsid") == nsid:
                name = entry.get("name")
                return str(name) if name else None
        return None

    def check_routes(self, allowed: set[str], what: str) -> None:
        """No default route, and no route through a device outside ``allowed``: nothing leaves."""
        for route in self.routes():
            if route.get("dst") in ("default", "0.0.0.0/0", "::/0"):
                raise IsolationError(f"{what} has a default route: {route}")
            dev = route.get("dev")
            if dev and dev not in allowed:
                raise IsolationError(f"{what} routes via {dev}")

    def add_address(self) -> str:
        """One more address on the lab bridge (``<net>.2``, ``.3``, ...: below the guests' range), for
        another server of the lab LAN (several seeds, each on its own address)."""
        self._require_open()
        self._extra_addresses = getattr(self, "_extra_addresses", 0) + 1
        if self._extra_addresses >= GUEST_HOST_OFFSET:
            raise NodeError(f"lab {self.netns} has no free server address left")
        addr = str(self.network.network_address + 1 + self._extra_addresses)
        run_ip(self.netns, "addr", "add", f"{addr}/{self.network.prefixlen}", "dev", self.bridge)
        return addr

    # ------------------------------------------------------------------ the host seed
    def start_seed(self, kubo: Path, *, swarm_key: str | None = None, mdns: bool = False,
                   timeout: float = 60.0) -> SeedNode:
        """Start the lab's seed kubo inside the namespace: swarm on the bridge, API on a unix socket.

        ``swarm_key`` (64 hex) makes it a private-swarm node (``swarm.key`` + ``LIBP2P_FORCE_PNET=1``).
        """
        self._require_open()
        seed = start_kubo(self, "seed", kubo, self.work_dir / "seed-repo", listen_ip=self.bridge_ip,
                          swarm_key=swarm_key, mdns=mdns, timeout=timeout)
        self.seed = seed
        return seed


# ---------------------------------------------------------------------- kubo inside a namespace
def _api_socket(lab: Lab, name: str) -> Path:
    """A short unix socket path for a node's API (``sun_path`` is 108 bytes, work dirs can be long)."""
    path = Path("/tmp") / f"{PREFIX}{lab.suffix}-{name}.sock"
    lab.sockets.append(path)
    return path


def start_kubo(lab: Lab, name: str, kubo: Path, repo: Path, *, listen_ip: str,
               port: int = SEED_SWARM_PORT, swarm_key: str | None = None, mdns: bool = False,
               peers: Sequence[str] = (), timeout: float = 60.0,
               env: Mapping[str, str] | None = None) -> SeedNode:
    """An isolated kubo daemon inside ``lab``'s namespace (the seed, or a test peer).

    A ``node.Node`` whose kubo commands run through ``ip netns exec`` (so ``isolation_config()`` is
    applied and checked as everywhere else, and the daemon lives in the namespace); only the API moves
    to a unix socket, which the host reaches without any link into the namespace (unix sockets ignore
    network namespaces). ``swarm_key`` (64 hex) makes it a private-swarm node: ``swarm.key`` in the
    repo and ``LIBP2P_FORCE_PNET=1``, so it cannot come up in the open swarm by mistake. ``env``: extra
    environment for the daemon (e.g. ``TCE_IPFS_SUPERSEED_WAIT`` for the seed build).
    """
    from tce_ipfs.ipfs import swarmkey
    from tce_ipfs.ipfs.node import DAEMON_ARGS, Node

    lab._require_open()
    sock = _api_socket(lab, name)
    sock.unlink(missing_ok=True)
    api = f"/unix{sock}"
    node = Node(repo, kubo, listen_host=listen_ip, swarm_port=port, peers=peers,
                extra_config={"Addresses.API": api,
                              # mDNS only ever inside the lab namespace (it has no other link).
                              "Discovery.MDNS.Enabled": mdns},
                launcher=lab.exec_argv([]))
    if node.running:
        raise NodeError(f"a kubo daemon already runs on {node.repo}", hint="stop it first")
    node.init()
    if swarm_key:
        swarmkey.install(node.repo, swarm_key)
    else:
        (node.repo / swarmkey.FILENAME).unlink(missing_ok=True)
    node.start(timeout, env={**(swarmkey.FORCE_PNET_ENV if swarm_key else {}), **(env or {})})
    assert node.process is not None  # started just now, by this Node
    process = lab.adopt(LabProcess(name=name, argv=node.kubo_argv(*DAEMON_ARGS), popen=node.process,
                                   log_path=node.log_path))
    return SeedNode(node=node, api=api, swarm=f"/ip4/{listen_ip}/tcp/{port}", peer_id=node.peer_id,
                    process=process, swarm_key=swarm_key)


def netns_pids(ns: str) -> list[int]:
    """Every pid inside the network namespace ``ns``."""
    out = proc.run(["ip", "netns", "pids", ns], check=False, timeout=30).stdout or b""
    return [int(x) for x in out.split() if x.isdigit()]


def kill_netns_pids(ns: str) -> None:
    """SIGKILL whatever still runs in ``ns`` (a namespace the caller created), until nothing does."""
    for _ in range(20):
        pids = netns_pids(ns)
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)


def namespaces() -> list[str]:
    out = proc.run(["ip", "netns", "list"], check=False, timeout=30).stdout or b""
    return [line.split()[0] for line in out.decode().splitlines() if line.strip()]
