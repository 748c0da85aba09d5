"""The lab's seed: a persistent, isolated kubo that serves one Tiny Core repo to the LAN.

``SeedServer(state, kubo, options, source).run(on_ready)`` is ``tce-ipfs seed serve`` (on the build host
and, from ``tce-ipfs-agent.tcz``, on a booted Tiny Core machine): it starts kubo on the state's repo,
publishes the repo directory (or pins a CID), hands the boot line to ``on_ready`` and serves in the
foreground until the caller's signal handler raises ``Stopped`` (SIGTERM, Ctrl-C); then kubo is
stopped cleanly whatever happened. ``request_reload()`` (SIGHUP) publishes the directory again.

The state directory (``SeedState``, mode 0700)::

    repo/            the kubo repo; its Identity is the seed's peer ID, so the ID survives restarts
    repo/swarm.key   the private swarm's key (0600), only for a private seed
    seed.json        what is served: root CID, source, listen addresses, peers, API; read by
                     `seed status` and by `netboot`/`remaster --seed`
    serve.lock       flock'd by the serving process: the kernel drops it however that process ends
    serve.pid        that process's pid
    api.sock         kubo's RPC API (a unix socket reaches into a network namespace; also on TCP
                     127.0.0.1, where kubo's Prometheus metrics are)

Isolation: ``isolation_config()`` as for every kubo here (no bootstrap, no DHT, AutoConf, telemetry and
NAT traversal off, the connection gater), the swarm on the named addresses only, peers accepted from
the private networks only. A listen address outside them is refused unless ``public`` (then the
gater lets any IPv4 peer in: the admin asked for it). mDNS only with ``mdns`` (a private lab LAN).

Only shared modules and ``ipfs`` ones are imported: this ships in the agent (``tests/test_layering``).
"""

from __future__ import annotations

import calendar
import contextlib
import fcntl
import ipaddress
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from tce_ipfs import bootcodes, cidtext, proc
from tce_ipfs.errors import NodeError, TceIpfsError, UsageError
from tce_ipfs.ipfs import rpc, swarmkey
from tce_ipfs.ipfs.isolation import LOOPBACK_NETS, PRIVATE_NETS
from tce_ipfs.ipfs.node import Node, read_api_file
from tce_ipfs.ipfs.publish import publish

log = logging.getLogger(__name__)

FORMAT = 1  # of seed.json
RECORD = "seed.json"
LOCK = "serve.lock"
PID = "serve.pid"
API_SOCKET = "api.sock"
DEFAULT_PORT = 4001  # the swarm port: what the boot hook's ipfs.port defaults to, kubo's usual
DEFAULT_API_PORT = 5001  # kubo's usual; fixed so that monitoring knows where the metrics are
PIN_PREFIX = "tce-ipfs-seed "  # pin names: "<prefix><UTC time> <source>"
MAX_PEERS = bootcodes.BY_NAME["ipfs.peers"].max_count or 16
ANY_IPV4 = ("0.0.0.0/0",)
SUN_PATH_MAX = 107  # a unix socket path longer than this cannot be bound
_IFNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@-]{0,14}")
_TIME = "%Y-%m-%dT%H:%M:%SZ"


class Stopped(BaseException):
    """Raised by the caller's SIGTERM/SIGINT handler to end ``SeedServer.run`` cleanly.

    A ``BaseException``: no ``except Exception`` on the way may swallow it.
    """


# ------------------------------------------------------------------------------- listen addresses
def is_private(addr: str) -> bool:
    """Loopback, RFC 1918 or link-local (the networks ``isolation.PRIVATE_NETS`` allows)."""
    ip = ipaddress.IPv4Address(addr)
    return any(ip in ipaddress.IPv4Network(net) for net in PRIVATE_NETS)


def interface_addresses() -> dict[str, list[str]]:
    """IPv4 addresses per interface, from ``ip -4 addr show`` (iproute2 and busybox print the same)."""
    text = (proc.run(["ip", "-4", "addr", "show"], timeout=30, what="ip addr show").stdout or b"").decode()
    found: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        head = re.match(r"\d+:\s+([^:@\s]+)", line)
        if head:
            current = head.group(1)
            found.setdefault(current, [])
            continue
        addr = re.match(r"\s+inet\s+(\d+\.\d+\.\d+\.\d+)", line)
        if addr and current is not None:
            found[current].append(addr.group(1))
    return found


def _candidates() -> str:
    """A hint naming this machine's private addresses (what ``--listen`` probably wants)."""
    try:
        pairs = [f"{name} {a}" for name, addrs in interface_addresses().items() for a in addrs
                 if is_private(a) and not ipaddress.IPv4Address(a).is_loopback]
    except TceIpfsError:
        pairs = []
    example = pairs[0].split()[0] if pairs else "eth1"
    return (f"private addresses here: {', '.join(pairs)}; " if pairs else "") + \
        f"name the lab LAN's address or interface, e.g. --listen {example}"


def check_listen(addr: str, *, public: bool = False) -> str:
    """``addr`` (IPv4) if a seed may listen there; a non-private address needs ``public``."""
    ip = ipaddress.IPv4Address(addr)
    if public:
        return str(ip)
    if ip.is_unspecified:
        raise UsageError("refusing to listen on 0.0.0.0 without --public: that is every interface, "
                         "public ones included", hint=_candidates())
    if not is_private(str(ip)):
        raise UsageError(f"refusing to listen on {ip} without --public: it is not a private address "
                         f"(10/8, 172.16/12, 192.168/16, 169.254/16, 127/8), so the seed would serve "
                         f"this repo to the internet and take connections from anywhere",
                         hint=_candidates() + " (or pass --public if it must serve a public network)")
    return str(ip)


def resolve_listen(values: Sequence[str], *, public: bool = False) -> tuple[str, ...]:
    """IPv4 addresses from ``--listen`` values (an address, or an interface: all its IPv4 addresses),
    each checked with ``check_listen``. Nothing is bound or sent: this only reads the interfaces."""
    if not values:
        raise UsageError("name where the seed listens: --listen ADDR or --listen IFACE", hint=_candidates())
    addrs: list[str] = []
    interfaces: dict[str, list[str]] | None = None
    for value in values:
        try:
            found = [str(ipaddress.IPv4Address(value))]
        except ValueError:
            if not _IFNAME.fullmatch(value):
                raise UsageError(f"--listen {value!r} is neither an IPv4 address nor an interface name",
                                 hint=_candidates()) from None
            interfaces = interfaces if interfaces is not None else interface_addresses()
            if value not in interfaces:
                raise UsageError(f"--listen {value}: no such network interface", hint=_candidates()) from None
            found = interfaces[value]
            if not found:
                raise UsageError(f"--listen {value}: the interface has no IPv4 address",
                                 hint=_candidates()) from None
        addrs += [check_listen(a, public=public) for a in found]
    return tuple(dict.fromkeys(addrs))


def allowed_networks(listen: Sequence[str], *, public: bool) -> tuple[str, ...]:
    """Whom the seed's connection gater lets in: loopback for a loopback-only seed, the private
    networks for a LAN seed, any IPv4 address for a ``public`` one."""
    if public:
        return ANY_IPV4
    if all(ipaddress.IPv4Address(a).is_loopback for a in listen):
        return LOOPBACK_NETS
    return PRIVATE_NETS


# ---------------------------------------------------------------------------------- the boot line
@dataclass(frozen=True)
class BootInfo:
    """What a machine needs on its kernel command line to boot from this seed."""

    cid: str
    peers: tuple[str, ...]  # full multiaddrs .../p2p/<peer id>
    swarm_key: str | None = None  # 64 hex when the swarm is private
    running: bool = True

    def codes(self) -> dict[str, str | None]:
        """Boot codes for ``P2PBoot`` (``tce=`` comes from the CID)."""
        codes: dict[str, str | None] = {"ipfs.peers": ",".join(self.peers)}
        if self.swarm_key:
            codes[swarmkey.BOOT_CODE] = self.swarm_key
        return codes

    def line(self) -> str:
        """``tce=ipfs:<CID> ipfs.peers=... [ipfs.swarmkey=...]``: the words for the kernel command line."""
        return " ".join([f"tce=ipfs:{self.cid}", *(f"{k}={v}" for k, v in self.codes().items())])

    def as_dict(self) -> dict[str, Any]:
        return {"cid": self.cid, "peers": list(self.peers), "private": self.swarm_key is not None,
                "boot_line": self.line(), "running": self.running}


def check_peers(peers: Sequence[str]) -> tuple[str, ...]:
    if not peers:
        raise NodeError("the seed reports no swarm address to put in ipfs.peers=")
    if len(peers) > MAX_PEERS:
        log.warning("the seed has %d addresses; the boot line names the first %d", len(peers), MAX_PEERS)
        peers = peers[:MAX_PEERS]
    bootcodes.check("ipfs.peers", ",".join(peers))
    return tuple(peers)


# ------------------------------------------------------------------------------------- the state
@dataclass(frozen=True)
class SeedOptions:
    """How a seed serves (checked when made; ``listen`` holds addresses ``resolve_listen`` returned)."""

    listen: tuple[str, ...]
    port: int = DEFAULT_PORT
    api_port: int = DEFAULT_API_PORT
    public: bool = False
    mdns: bool = False
    private: bool = False  # make a swarm key when the state has none
    swarm_key: str | None = None  # use this one (64 hex)
    peers: tuple[str, ...] = ()  # where a CID to pin may be fetched from
    timeout: float = 600.0  # publishing or pinning, per API read

    def __post_init__(self) -> None:
        if not self.listen:
            raise UsageError("a seed needs at least one listen address")
        for addr in self.listen:
            check_listen(addr, public=self.public)
        for what, port in (("--port", self.port), ("--api-port", self.api_port)):
            if not 0 <= port <= 65535:
                raise UsageError(f"{what} {port}: not a TCP port (0..65535; 0 = any free one)")
        if self.mdns and self.public:
            raise UsageError("--mdns announces the seed on every link of this machine: for a private lab "
                             "LAN only, not with --public")
        if self.swarm_key is not None:
            object.__setattr__(self, "swarm_key", swarmkey.check_hex(self.swarm_key))
        for peer in self.peers:
            if "/p2p/" not in peer:
                raise UsageError(f"--peer {peer!r} must end in /p2p/<peer id>")


@dataclass
class SeedState:
    """A seed's state directory (see the module doc)."""

    path: Path
    _lock: IO[bytes] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.path = Path(self.path).absolute()

    @property
    def repo(self) -> Path:
        return self.path / "repo"

    @property
    def record_path(self) -> Path:
        return self.path / RECORD

    @property
    def pid_path(self) -> Path:
        return self.path / PID

    @property
    def api_socket(self) -> Path:
        return self.path / API_SOCKET

    def record(self) -> dict[str, Any] | None:
        """``seed.json`` (None before a seed has served from here)."""
        try:
            data = json.loads(self.record_path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise NodeError(f"cannot read {self.record_path}: {exc}") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise NodeError(f"{self.record_path} is not a seed record this tce-ipfs understands")
        return data

    def write_record(self, data: dict[str, Any]) -> None:
        tmp = self.record_path.with_name(RECORD + ".tmp")
        tmp.write_text(json.dumps({"format": FORMAT, **data}, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, self.record_path)

    def serving_pid(self) -> int | None:
        """The pid of the process serving from this state (None when none does)."""
        try:
            pid = int(self.pid_path.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return None
        return pid if b"serve" in cmdline else None

    def swarm_key(self) -> str | None:
        try:
            return swarmkey.read(self.repo)
        except PermissionError:
            raise NodeError(f"cannot read the seed's swarm key {self.repo / swarmkey.FILENAME}",
                            hint="run this as the user the seed runs as (or root)") from None

    def peer_id(self) -> str | None:
        try:
            return Node(self.repo).peer_id
        except NodeError:
            return None

    # --- the serving process's lock ----------------------------------------------------------
    def lock(self) -> None:
        """Become the one process serving from this state (``NodeError`` if another one is)."""
        self.path.mkdir(parents=True, exist_ok=True)
        os.chmod(self.path, 0o700)
        fh = open(self.path / LOCK, "ab")  # noqa: SIM115 -- held until unlock()
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            other = self.serving_pid()
            raise NodeError(f"a seed already serves from {self.path}" + (f" (pid {other})" if other else ""),
                            hint="stop it first (SIGTERM, systemctl stop), or use another --state") from None
        self._lock = fh
        self.pid_path.write_text(f"{os.getpid()}\n")

    def unlock(self) -> None:
        if self._lock is None:
            return
        self.pid_path.unlink(missing_ok=True)
        self._lock.close()  # releases the flock
        self._lock = None


def _now() -> str:
    return time.strftime(_TIME, time.gmtime())


def _age(stamp: str | None) -> float | None:
    if not stamp:
        return None
    try:
        return max(0.0, time.time() - calendar.timegm(time.strptime(stamp, _TIME)))
    except ValueError:
        return None


def pin_name(source: str, when: str | None = None) -> str:
    return f"{PIN_PREFIX}{when or _now()} {source}"[:255]


def parse_pin_name(name: str) -> tuple[str, str] | None:
    """``(time, source)`` of a seed's pin name, None for any other pin."""
    if not name.startswith(PIN_PREFIX):
        return None
    when, _, source = name[len(PIN_PREFIX):].partition(" ")
    return when, source


# ------------------------------------------------------------------------------------- serving
class SeedServer:
    """One seed in the foreground (see the module doc). ``source``: a repo directory or a CID."""

    def __init__(self, state: SeedState, kubo: Path, options: SeedOptions, source: str) -> None:
        self.state = state
        self.kubo = Path(kubo)
        self.options = options
        self.source = source
        self.node: Node | None = None
        self.info: BootInfo | None = None
        self._reload = threading.Event()
        self._dir, self._cid = check_source(source)

    def request_reload(self) -> None:
        """Publish the directory again at the next poll (SIGHUP); a no-op for a pinned CID."""
        self._reload.set()

    def make_node(self) -> Node:
        return seed_node(self.state.repo, self.kubo, self.options, self.state.api_socket)

    def run(self, on_ready: Callable[[BootInfo], None], *, poll: float = 1.0) -> None:
        """Start, publish, ``on_ready(info)``, serve until ``Stopped`` (or kubo dies: ``NodeError``).

        Leaves no daemon, pid file or lock behind, however it ends.
        """
        if not self.kubo.is_file():
            raise NodeError(f"kubo binary {self.kubo} not found",
                            hint="pass --kubo PATH (on Tiny Core: load ipfs.tcz)")
        self.state.lock()
        try:
            node = self.make_node()
            if node.running:  # a seed killed with SIGKILL leaves its kubo behind: it is ours to stop
                log.warning("stopping the kubo (pid %s) a previous seed left running on %s", node.pid(),
                            node.repo)
                node.stop()
            key = self._swarm_key()
            node.init()
            if key:
                swarmkey.install(node.repo, key)
            self.node = node  # from here on, whatever happens, _shutdown() stops it
            node.start(timeout=120, env=swarmkey.FORCE_PNET_ENV if key else None)
            self.info = self._publish(node, key)
            on_ready(self.info)
            while True:
                time.sleep(poll)  # the caller's signal handler raises Stopped out of here
                if node.process is not None and node.process.poll() is not None:
                    raise NodeError(f"kubo exited unexpectedly (code {node.process.returncode})",
                                    hint=f"see {node.log_path}")
                if self._reload.is_set():
                    self._reload.clear()
                    self._republish(node, key, on_ready)
        finally:
            self._shutdown()

    def _republish(self, node: Node, key: str | None, on_ready: Callable[[BootInfo], None]) -> None:
        """SIGHUP: publish again; a repo that became invalid is reported and the old root served on."""
        before = self.info
        try:
            self.info = self._publish(node, key)
        except TceIpfsError as exc:
            log.error("republishing %s failed, still serving %s: %s", self.source,
                      before.cid if before else "nothing", exc)
            return
        if self.info != before:
            on_ready(self.info)

    def _shutdown(self) -> None:
        try:
            if self.node is not None:
                self.node.stop(timeout=30)
            record = self.state.record()
            if record is not None and self.node is not None:
                record.pop("format", None)
                self.state.write_record({**record, "stopped_at": _now(), "pid": None, "kubo_pid": None})
        finally:
            self.state.unlock()

    def _swarm_key(self) -> str | None:
        """The key to run with: the given one, else the state's, else a new one when ``private``."""
        opts = self.options
        have = self.state.swarm_key() if self.state.repo.is_dir() else None
        if opts.swarm_key:
            if have and have != opts.swarm_key:
                log.warning("replacing the seed's swarm key: machines booted with the old one cannot "
                            "fetch from it any more")
            return opts.swarm_key
        if have:
            return have
        if opts.private:
            log.info("private swarm: made a new swarm key")
            return swarmkey.generate()
        return None

    def _publish(self, node: Node, key: str | None) -> BootInfo:
        with node.client(timeout=self.options.timeout) as client:
            if self._dir is not None:
                cid = publish(self._dir, client, progress=False).root_cid
            else:
                assert self._cid is not None
                cid = self._cid
                log.info("pinning %s (fetching what is not here from %s)", cid,
                         ", ".join(self.options.peers) or "nobody: it must be in the repo already")
            named = rpc.pin_names(client)
            if parse_pin_name(named.get(cid, "")) is None:  # keep the first name: the root's age
                try:
                    rpc.pin_add_named(client, cid, pin_name(self.source), timeout=self.options.timeout)
                except NodeError as exc:
                    raise NodeError(f"cannot pin {cid}: {exc.message}",
                                    hint="a CID must be in the seed's repo already or on a --peer that "
                                         "has it; or serve the repo directory instead") from None
            names = {str(e["Name"]) for e in rpc.ls(client, f"/ipfs/{cid}")}
            if "onboot.lst" not in names:
                log.warning("%s has no onboot.lst: machines booting from it load nothing unless lst= names "
                            "a list it has", cid)
            peers = own_peers(node.swarm_addrs, self.options.listen)
        info = BootInfo(cid=cid, peers=peers, swarm_key=key)
        record = self.state.record() or {}
        self.state.write_record({
            "root": cid, "source": str(self._dir or self.source),
            "published_at": _now() if record.get("root") != cid else record.get("published_at", _now()),
            "peer_id": node.peer_id, "peers": list(peers), "listen": list(self.options.listen),
            "port": self.options.port, "public": self.options.public, "mdns": self.options.mdns,
            "private": key is not None, "api": node.api, "api_tcp": _tcp_api(node),
            "pid": os.getpid(), "kubo_pid": node.pid(), "started_at": record.get("started_at")
            if record.get("pid") == os.getpid() else _now(), "stopped_at": None,
        })
        return info


def seed_node(repo: Path, kubo: Path | None, opts: SeedOptions, api_socket: Path) -> Node:
    """The seed's kubo (also each cluster seed's, ``ipfs.cluster``): swarm on the listen addresses,
    the API on ``api_socket`` (when the path fits) and on TCP loopback ``opts.api_port``."""
    api = [f"/unix{api_socket}"] if len(str(api_socket)) <= SUN_PATH_MAX else []
    api.append(f"/ip4/127.0.0.1/tcp/{opts.api_port}")
    return Node(repo, kubo, listen_host=opts.listen[0], swarm_port=opts.port,
                api_port=opts.api_port, peers=opts.peers,
                allowed_networks=allowed_networks(opts.listen, public=opts.public),
                extra_config={"Addresses.Swarm": [f"/ip4/{a}/tcp/{opts.port}" for a in opts.listen],
                              "Addresses.API": api,
                              # LAN discovery only when asked: for a private lab LAN.
                              "Discovery.MDNS.Enabled": opts.mdns})


def check_source(source: str) -> tuple[Path | None, str | None]:
    """A repo directory or a root CID (``/ipfs/`` or ``ipfs://`` allowed); checked before anything starts."""
    path = Path(source)
    if path.is_dir():
        return path.resolve(), None
    if path.exists():
        raise UsageError(f"{source}: not a directory (serve a TC repo directory, or a root CID)")
    try:
        return None, cidtext.validate(source)
    except UsageError:
        what = "no such directory" if "/" in source and not source.startswith(("/ipfs/", "ipfs:")) \
            else "neither a directory nor a CID"
        raise UsageError(f"{source}: {what}",
                         hint="serve a TC repo directory (flat, or a tce dir), or a root CID") from None


def own_peers(addrs: Sequence[str], listen: Sequence[str]) -> tuple[str, ...]:
    """The running seed's ``.../p2p/<id>`` addresses on the listen addresses, in their order."""
    wild = "0.0.0.0" in listen
    out: list[str] = []
    for want in listen:
        for addr in addrs:
            m = re.match(r"/ip4/([\d.]+)/tcp/\d+/p2p/", addr)
            if m and (m.group(1) == want or (wild and want == "0.0.0.0"
                                             and not ipaddress.IPv4Address(m.group(1)).is_loopback)):
                out.append(addr)
    # A loopback address is no use to another machine (it would dial itself) next to a LAN one.
    lan = [a for a in out if not a.startswith("/ip4/127.")]
    return check_peers(list(dict.fromkeys(lan or out)))


def _tcp_api(node: Node) -> str | None:
    """The TCP API address the running daemon said it listens on (its log, since its last start)."""
    try:
        text = node.log_path.read_text(errors="replace")
    except OSError:
        return None
    text = text.rsplit("--- tce-ipfs: starting kubo", 1)[-1]
    found = re.findall(r"RPC API server listening on (/ip4/\S+)", text)
    return found[-1] if found else None


def metrics_url(api_tcp: str | None) -> str | None:
    """kubo's Prometheus endpoint on its TCP API (``/ip4/127.0.0.1/tcp/5001`` -> ``http://...``)."""
    m = re.fullmatch(r"/ip4/([\d.]+)/tcp/(\d+)(?:/http)?", api_tcp or "")
    return f"http://{m.group(1)}:{m.group(2)}/debug/metrics/prometheus" if m else None


# ------------------------------------------------------------------------ reading a running seed
def boot_info(state: SeedState) -> BootInfo:
    """The boot line of the seed with this state (from ``seed.json``; the seed need not run now)."""
    record = state.record()
    if record is None or not record.get("root"):
        raise NodeError(f"no seed has served from {state.path} yet",
                        hint=f"start one: tce-ipfs seed serve REPO_DIR --listen ADDR --state {state.path}")
    running = state.serving_pid() is not None
    if not running:
        log.warning("the seed in %s is not running now: machines boot from it once it is", state.path)
    return BootInfo(cid=str(record["root"]), peers=check_peers(list(record.get("peers") or [])),
                    swarm_key=state.swarm_key() if record.get("private") else None, running=running)


def boot_info_from_api(api: str) -> BootInfo:
    """The boot line of the seed whose RPC API is ``api``: its state when the repo is on this machine,
    else its newest root pinned by a seed and its non-loopback addresses."""
    with rpc.client(api, timeout=30) as client:
        repo_path = Path(str(rpc.repo_stat(client).get("RepoPath", "")))
        if (repo_path.parent / RECORD).is_file():
            return boot_info(SeedState(repo_path.parent))
        roots = sorted(((w, cid) for cid, name in rpc.pin_names(client).items()
                        if (parsed := parse_pin_name(name)) for w in [parsed[0]]), reverse=True)
        if not roots:
            raise NodeError(f"the node at {api} has no root pinned by `tce-ipfs seed serve`",
                            hint="pass --cid (and --boot-code ipfs.peers=...) instead")
        addrs = [str(a) for a in rpc.identity(client).get("Addresses") or []]
    v4 = [a for a in addrs if re.match(r"/ip4/[\d.]+/tcp/\d+/p2p/", a)]
    lan = [a for a in v4 if not a.startswith("/ip4/127.")]
    if (repo_path / swarmkey.FILENAME).exists():
        key = swarmkey.read(repo_path)
    else:
        key = None
        if not repo_path.is_dir():
            log.warning("the seed's repo is not on this machine: if its swarm is private, add "
                        "--boot-code ipfs.swarmkey=<its key>")
    return BootInfo(cid=roots[0][1], peers=check_peers(lan or v4), swarm_key=key)


def resolve(value: str) -> BootInfo:
    """``--seed``: a seed's state directory, or its RPC API multiaddr."""
    if value.startswith(("/ip4/", "/ip6/", "/dns", "/unix/")) and not Path(value).is_dir():
        return boot_info_from_api(value)
    path = Path(value)
    if not path.is_dir():
        raise UsageError(f"--seed {value}: neither a seed's state directory nor an API multiaddr",
                         hint="give the --state of `tce-ipfs seed serve`, or its API, e.g. "
                              "/ip4/127.0.0.1/tcp/5001")
    return boot_info(SeedState(path))


def _repo_bytes(repo: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(repo):
        for name in files:
            with contextlib.suppress(OSError):
                total += (Path(root) / name).stat().st_size
    return total


def status(state: SeedState, *, ledgers: bool = True) -> dict[str, Any]:
    """Running or not, peer ID, boot line, peers with bytes served to each, totals, roots pinned with
    their age, the repo's disk use, the metrics URL."""
    record = state.record() or {}
    pid = state.serving_pid()
    info: dict[str, Any] = {
        "state": str(state.path), "running": pid is not None, "pid": pid, "peer_id": state.peer_id(),
        "source": record.get("source"), "root": record.get("root"), "listen": record.get("listen", []),
        "peers_addrs": record.get("peers", []), "private": bool(record.get("private")),
        "started_at": record.get("started_at"), "stopped_at": record.get("stopped_at"),
        "metrics": metrics_url(record.get("api_tcp")) if pid is not None else None,
        "boot_line": (BootInfo(str(record["root"]), tuple(record.get("peers") or ()),
                               swarm_key="<key>" if record.get("private") else None).line()
                      if record.get("root") else None),
    }
    roots: dict[str, dict[str, Any]] = {}
    if record.get("root"):
        roots[str(record["root"])] = {"cid": record["root"], "source": record.get("source"),
                                      "pinned_at": record.get("published_at")}
    api = read_api_file(state.repo) if pid is not None else None
    if api is None:
        info.update(repo_bytes=_repo_bytes(state.repo), peers=[], bytes_sent=None)
    else:
        with rpc.client(api, timeout=30) as client:
            bs = rpc.bitswap_stat(client)
            peers = []
            for p in rpc.swarm_peers(client):
                entry: dict[str, Any] = {"peer": str(p.get("Peer", "")), "addr": str(p.get("Addr", ""))}
                if ledgers and entry["peer"]:
                    with contextlib.suppress(NodeError):
                        ledger = rpc.bitswap_ledger(client, entry["peer"])
                        entry.update(sent=int(ledger.get("Sent", 0)), recv=int(ledger.get("Recv", 0)))
                peers.append(entry)
            for cid, name in rpc.pin_names(client).items():
                parsed = parse_pin_name(name)
                if parsed:
                    roots.setdefault(cid, {"cid": cid}).update(pinned_at=parsed[0], source=parsed[1])
            stat = rpc.repo_stat(client)
        info.update(peers=sorted(peers, key=lambda p: -int(p.get("sent", 0))),
                    bytes_sent=int(bs.get("DataSent", 0)), blocks_sent=int(bs.get("BlocksSent", 0)),
                    bytes_received=int(bs.get("DataReceived", 0)), repo_bytes=int(stat["RepoSize"]),
                    repo_objects=int(stat["NumObjects"]), repo_max=int(stat.get("StorageMax", 0)))
    for root in roots.values():
        root["age_s"] = _age(root.get("pinned_at"))
        root["current"] = root["cid"] == record.get("root")
    info["roots"] = sorted(roots.values(), key=lambda r: (not r["current"], r.get("age_s") or 0))
    return info

