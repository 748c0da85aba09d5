"""The fault suite's network: the real boot hook in a namespace of its own, wired to a lab LAN.

::

    lab (namespace, bridge 10.77.0.1/24) -- seed kubo(s), HTTP mirror, the packet capture
     |  veth
    client namespace (10.77.0.50/24, lo) -- the real hook (busybox sh) and the hook's real kubo

The client is a machine on the lab LAN: its traffic crosses a real veth into the lab bridge, so a
``tc`` qdisc on the lab end shapes what it receives, ``ip link set ... down`` on its end is a pulled
cable, and an ``AF_PACKET`` capture in the lab namespace sees every frame it sends. Its only route out
is a default route *into the lab* (``via 10.77.0.1``), whose namespace has no link anywhere else and
does not forward: a packet for the outside would be seen by the capture and then dropped -- so a
capture proves what the hook tried to reach, not only what happened to be routable.

Only DHCP, ``ip``/``ifconfig``, ``uname`` and ``modprobe`` are the harness's fakes (the client's
address is static); kubo, busybox ``wget``, the shells and the kernel are real.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from hookfakes.harness import HookEnv, Result
from tce_ipfs import proc
from tce_ipfs.testbed.lab import Lab, LabProcess, SeedNode, run_ip, start_kubo

IP = shutil.which("ip") or "/usr/sbin/ip"
TC = shutil.which("tc") or "/usr/sbin/tc"
HOOK_FAKES = ("udhcpc", "ip", "ifconfig", "uname", "modprobe")
CLIENT_IP_BASE = 50  # client N is 10.77.0.(50+N)
MIRROR_PORT = 8080
CAPTURE = Path(__file__).with_name("capture.py")


@dataclass
class Client:
    """A namespace on the lab LAN that runs the real hook (one ``HookEnv``)."""

    netns: str
    ip: str
    veth_lab: str  # the lab end (on the bridge): qdiscs here shape what the client receives
    veth_client: str
    hook: HookEnv

    def run(self, cmdline: str, *, timeout: float = 180) -> Result:
        return self.hook.run(cmdline, timeout=timeout)

    def exec(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        return proc.run([IP, "netns", "exec", self.netns, *argv], check=check, timeout=60)

    def pids(self) -> list[int]:
        out = proc.run([IP, "netns", "pids", self.netns], check=False, timeout=30).stdout or b""
        return [int(x) for x in out.split() if x.isdigit()]

    def kubo_pid(self) -> int | None:
        """The hook's kubo daemon (found by its command line: the status file is written at the end)."""
        for pid in self.pids():
            with contextlib.suppress(OSError):
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                if len(cmd) > 1 and cmd[0].endswith(b"ipfs") and cmd[1] == b"daemon":
                    return pid
        return None

    def link(self, up: bool) -> None:
        run_ip(self.netns, "link", "set", self.veth_client, "up" if up else "down")

    def optional(self) -> Path:
        return self.hook.optional()

    def listening(self) -> list[str]:
        """``ADDR:PORT`` of every listening TCP socket in the client namespace."""
        out = self.exec("ss", "-Hltn").stdout.decode()
        return [line.split()[3] for line in out.splitlines() if line.strip()]


@dataclass
class FaultNet:
    """A lab plus hook clients and extra kubo peers on it; ``close()`` (via the fixture) tears all down."""

    lab: Lab
    kubo: Path
    clients: list[Client] = field(default_factory=list)
    peers: list[SeedNode] = field(default_factory=list)

    def peer(self, name: str, *, swarm_key: str | None = None) -> SeedNode:
        """Another kubo on the lab LAN, on an address of its own (10.77.0.2, .3, ...), port 4001."""
        ip = self.lab.add_address()
        node = start_kubo(self.lab, name, self.kubo, self.lab.work_dir / f"{name}-repo", listen_ip=ip,
                          swarm_key=swarm_key)
        self.peers.append(node)
        return node

    def client(self, base: Path) -> Client:
        index = len(self.clients)
        netns = f"{self.lab.netns}c{index}"
        veth_lab, veth_client = f"tceipfs{self.lab.suffix}v{index}", f"tceipfs{self.lab.suffix}c{index}"
        ip = str(self.lab.network.network_address + CLIENT_IP_BASE + index)
        proc.run([IP, "netns", "add", netns], timeout=30)
        hook = HookEnv(base, shell="busybox", fakes=HOOK_FAKES, extra_path=(str(self.kubo.parent),),
                       launcher=(IP, "netns", "exec", netns))
        (hook.optional() / "ipfs.tcz").unlink()  # kubo comes from PATH here
        client = Client(netns=netns, ip=ip, veth_lab=veth_lab, veth_client=veth_client, hook=hook)
        self.clients.append(client)
        for key in ("all", "default"):
            client.exec("sysctl", "-q", "-w", f"net.ipv6.conf.{key}.disable_ipv6=1")
        run_ip(self.lab.netns, "link", "add", veth_lab, "type", "veth", "peer", "name", veth_client, "netns",
               netns)
        run_ip(self.lab.netns, "link", "set", veth_lab, "master", self.lab.bridge)
        run_ip(self.lab.netns, "link", "set", veth_lab, "up")
        run_ip(netns, "link", "set", "lo", "up")
        run_ip(netns, "addr", "add", f"{ip}/{self.lab.network.prefixlen}", "dev", veth_client)
        run_ip(netns, "link", "set", veth_client, "up")
        # Everything else goes into the lab (which has no way out): attempts show up in a capture.
        run_ip(netns, "route", "add", "default", "via", self.lab.bridge_ip)
        return client

    def mirror(self, root: Path, name: str = "mirror") -> str:
        """A plain HTTP server (Python's http.server) in the lab serving ``root``; returns its base URL."""
        proc_ = self.lab.spawn(name, [sys.executable, "-m", "http.server", "--bind", self.lab.bridge_ip,
                                      "--directory", str(root), str(MIRROR_PORT)])
        url = f"http://{self.lab.bridge_ip}:{MIRROR_PORT}"
        deadline = time.monotonic() + 20
        while b":8080" not in (self.lab.exec(["ss", "-Hltn"]).stdout or b""):
            assert proc_.alive() and time.monotonic() < deadline, proc_.log_path.read_text()
            time.sleep(0.1)
        return url

    def shape(self, client: Client, rate: str, *, src: str | None = None) -> None:
        """Limit what ``client`` receives to ``rate`` (tbf) -- from ``src`` only, or everything."""
        dev = client.veth_lab

        def tc(*args: str) -> None:
            proc.run([IP, "netns", "exec", self.lab.netns, TC, *args], timeout=30)

        tbf = ("tbf", "rate", rate, "burst", "16kb", "latency", "400ms")
        if src is None:
            tc("qdisc", "replace", "dev", dev, "root", *tbf)
            return
        # htb (this kernel has no prio qdisc): everything in a wide class, ``src`` in a 256-kbit one whose
        # leaf is the tbf.
        tc("qdisc", "replace", "dev", dev, "root", "handle", "1:", "htb", "default", "10")
        tc("class", "add", "dev", dev, "parent", "1:", "classid", "1:10", "htb", "rate", "10gbit")
        tc("class", "add", "dev", dev, "parent", "1:", "classid", "1:20", "htb", "rate", rate, "ceil", rate)
        tc("qdisc", "add", "dev", dev, "parent", "1:20", "handle", "20:", *tbf)
        tc("filter", "add", "dev", dev, "parent", "1:", "protocol", "ip", "prio", "1", "u32", "match", "ip",
           "src", f"{src}/32", "flowid", "1:20")

    def capture(self, out: Path) -> LabProcess:
        """Every frame on every interface of the lab namespace (bridge, veth ends, taps), summarised
        into ``out`` (JSON) when the process gets SIGTERM (``stop_capture``)."""
        p = self.lab.spawn("capture", [sys.executable, str(CAPTURE), str(out)])
        deadline = time.monotonic() + 20
        while not out.with_suffix(".ready").exists():
            assert p.alive() and time.monotonic() < deadline, p.log_path.read_text()
            time.sleep(0.05)
        return p

    def close(self) -> None:
        for client in self.clients:
            for pid in client.pids():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            proc.run([IP, "netns", "del", client.netns], check=False, timeout=30)
        self.lab.close()


def stop_capture(p: LabProcess, out: Path) -> dict[str, object]:
    p.stop(grace=20)
    summary: dict[str, object] = json.loads(out.read_text())
    return summary


def kill_when(condition: Callable[[], bool], action: Callable[[], None], *, timeout: float = 120,
              poll: float = 0.02) -> threading.Thread:
    """In a thread: wait until ``condition()`` holds, then run ``action()`` once (the injected fault).
    ``thread.fired`` (an attribute) says whether it did."""
    def watch() -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                if condition():
                    action()
                    t.fired = True  # type: ignore[attr-defined]
                    return
            time.sleep(poll)

    t = threading.Thread(target=watch, daemon=True)
    t.fired = False  # type: ignore[attr-defined]
    t.start()
    return t


def part_bytes(optional: Path) -> int:
    """Bytes in ``*.part`` files under ``optional`` (a download in flight)."""
    return sum(p.stat().st_size for p in optional.glob("*.part"))


@contextlib.contextmanager
def faultnet(work: Path, kubo: Path, *, dhcp: bool = False) -> Iterator[FaultNet]:
    """A lab (with DHCP for QEMU guests when ``dhcp``) as a ``FaultNet``; torn down on exit."""
    lab = Lab(work / "lab", dhcp=dhcp)
    lab.open()
    net = FaultNet(lab=lab, kubo=kubo)
    try:
        yield net
    finally:
        net.close()
