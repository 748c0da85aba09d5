"""An isolated kubo node: the host seed, the test nodes, and (through ``isolation_config``) the guests.

``isolation_config()`` is the ONE list of kubo config keys that keeps a node off the public network:
no bootstrap peers, no DHT or delegated routing, no AutoConf/AutoTLS/relay/hole punching/NAT mapping,
no mDNS, no DNS, no telemetry, TCP only, listening on one address, and a connection gater
(``Swarm.AddrFilters``) that refuses every address outside the allowed networks. Peers are only ever
dialled explicitly (``ipfs swarm connect`` or ``Peering.Peers``); bitswap then fetches from them.

``Node`` wraps one repo directory: ``init()`` (idempotent), ``start()``/``stop()``/``status()``,
``api``, ``swarm_addrs``, ``peer_id``. The daemon's output goes to ``<repo>/daemon.log`` and its pid to
``<repo>/tce-ipfs.pid``; ``tce-ipfs node stop`` from another process finds it there. ``launcher``
prefixes every kubo command the node runs (``ip netns exec NS``: a node inside a lab namespace); it must
exec kubo in place, so the daemon's pid stays kubo's.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import os
import shlex
import signal
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from tce_ipfs import proc, settings
from tce_ipfs.errors import IsolationError, NodeError, UsageError

log = logging.getLogger(__name__)

PID_FILE = "tce-ipfs.pid"
LOG_FILE = "daemon.log"
DAEMON_ARGS = ("daemon", "--migrate=false")

# Environment every kubo process we run gets (on top of proc.clean_env, which drops proxies etc.).
KUBO_ENV = {
    "IPFS_TELEMETRY": "off",  # wins over config and DO_NOT_TRACK (docs/telemetry.md)
    "DO_NOT_TRACK": "1",  # the shared opt-out, for any plugin that reads only this one
}

# Networks a loopback-only node may talk to, and the ones a LAN node (a guest) may talk to.
LOOPBACK_NETS = ("127.0.0.0/8",)
PRIVATE_NETS = ("127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16")

# DNS.Resolvers catch-all that can never answer: a DoH URL on a loopback port nothing listens on.
# With it every DNS lookup kubo might try (DNSLink, /dns* multiaddrs) fails locally instead of asking
# the operating system's resolver (which may be a non-loopback nameserver).
DNS_SINKHOLE = "https://127.0.0.1:1/dns-query"


def blocked_networks(allowed: Iterable[str]) -> list[str]:
    """The complement of ``allowed`` as ``/ipX/<net>/ipcidr/<len>`` multiaddrs (v4 and v6).

    IPv6 is blocked entirely unless an allowed network is IPv6 (then its complement is listed).
    """
    result: list[str] = []
    for version, everything in ((4, "0.0.0.0/0"), (6, "::/0")):
        allow: list[Any] = [ipaddress.ip_network(n) for n in allowed]
        remaining: list[Any] = [ipaddress.ip_network(everything)]
        for net in (n for n in allow if n.version == version):
            nxt: list[Any] = []
            for block in remaining:
                if net.subnet_of(block):
                    nxt.extend(block.address_exclude(net))
                elif not block.subnet_of(net):
                    nxt.append(block)
            remaining = nxt
        proto = "ip4" if version == 4 else "ip6"
        result += [f"/{proto}/{b.network_address}/ipcidr/{b.prefixlen}" for b in sorted(remaining)]
    return result


def _peering(peers: Sequence[str]) -> list[dict[str, Any]]:
    """``Peering.Peers`` entries from full multiaddrs ``/ip4/H/tcp/P/p2p/ID`` (grouped by peer ID)."""
    by_id: dict[str, list[str]] = {}
    for addr in peers:
        head, sep, peer_id = addr.rpartition("/p2p/")
        if not sep or not head or not peer_id or "/" in peer_id:
            raise UsageError(f"peer address {addr!r} has no /p2p/<peer id> at the end")
        by_id.setdefault(peer_id, []).append(head)
    return [{"ID": pid, "Addrs": addrs} for pid, addrs in by_id.items()]


def isolation_config(
    listen_host: str = "127.0.0.1",
    *,
    swarm_port: int = 0,
    api_port: int = 0,
    gateway_port: int = 0,
    allowed_networks: Sequence[str] | None = None,
    peers: Sequence[str] = (),
    dns: bool = False,
) -> dict[str, Any]:
    """kubo config keys (dotted, as ``ipfs config --json KEY VALUE`` takes them) for an isolated node.

    ``listen_host``: the one IPv4 address the swarm listens on (loopback for the host seed; a guest's
    LAN address or ``0.0.0.0`` inside an isolated lab network). Port 0 = kernel-chosen free port.
    ``allowed_networks``: the only networks the node may connect to or accept connections from;
    default loopback only for a loopback ``listen_host``, else loopback + RFC 1918 + link-local.
    ``peers``: full multiaddrs (``.../p2p/<id>``) to keep connected (``Peering.Peers``).
    ``dns``: allow the OS resolver (only for a lab where ``/dns4/`` peer names must resolve).
    """
    try:
        host = ipaddress.IPv4Address(listen_host)
    except ValueError:
        raise UsageError(f"listen address {listen_host!r} is not an IPv4 address") from None
    if allowed_networks is None:
        allowed_networks = LOOPBACK_NETS if host.is_loopback else PRIVATE_NETS
    blocked = blocked_networks(allowed_networks)
    if not host.is_unspecified and not any(
        host in ipaddress.ip_network(n) for n in allowed_networks
    ):
        raise IsolationError(f"listen address {listen_host} is outside the allowed networks")

    return {
        # --- who we ever talk to -------------------------------------------------------------------
        # No bootstrap peers: the public ones (and AutoConf's "auto" placeholder) are the first thing
        # a default node dials.
        "Bootstrap": [],
        # AutoConf fetches a JSON from the public mainnet config service at start; off, fields emptied.
        "AutoConf.Enabled": False,
        # No content/peer routing at all: no Amino DHT, no delegated HTTP routers. Blocks come from
        # peers we connected to explicitly (bitswap asks every connected peer).
        "Routing.Type": "none",
        "Routing.DelegatedRouters": [],
        "Ipns.DelegatedPublishers": [],
        # Peers to stay connected to (the seed for a guest); empty for the seed itself.
        "Peering.Peers": _peering(peers),
        # Nothing to announce to without routing; the provide system would otherwise try the DHT.
        "Provide.Enabled": False,
        # IPNS over pubsub and pubsub itself would gossip with whoever is connected; not used.
        "Ipns.UsePubsub": False,
        "Pubsub.Enabled": False,
        # HTTP block retrieval talks HTTPS to providers found by delegated routing.
        "HTTPRetrieval.Enabled": False,
        # --- discovery and NAT traversal ----------------------------------------------------------
        # mDNS multicasts on every interface (224.0.0.251); peers are given explicitly instead.
        "Discovery.MDNS.Enabled": False,
        # AutoTLS registers with libp2p.direct and talks to Let's Encrypt.
        "AutoTLS.Enabled": False,
        # AutoNAT service dials back addresses other peers hand us; nobody here needs reachability.
        "AutoNAT.ServiceMode": "disabled",
        # Relays and hole punching find and use public relays.
        "Swarm.RelayClient.Enabled": False,
        "Swarm.RelayService.Enabled": False,
        "Swarm.EnableHolePunching": False,
        # UPnP/NAT-PMP would talk to the router.
        "Swarm.DisableNatPortMap": True,
        # --- transports and addresses -------------------------------------------------------------
        # TCP only: no UDP sockets (QUIC/WebTransport/WebRTC) and no relay or websocket transports.
        "Swarm.Transports.Network.TCP": True,
        "Swarm.Transports.Network.QUIC": False,
        "Swarm.Transports.Network.WebTransport": False,
        "Swarm.Transports.Network.WebRTCDirect": False,
        "Swarm.Transports.Network.Websocket": False,
        "Swarm.Transports.Network.Relay": False,
        # Listen on one IPv4 address (never all interfaces of the build host).
        "Addresses.Swarm": [f"/ip4/{listen_host}/tcp/{swarm_port}"],
        # The RPC API and the gateway are for local use only, always loopback.
        "Addresses.API": f"/ip4/127.0.0.1/tcp/{api_port}",
        "Addresses.Gateway": f"/ip4/127.0.0.1/tcp/{gateway_port}",
        # Announce what we listen on, nothing more; never announce an address outside our networks.
        "Addresses.Announce": [],
        "Addresses.AppendAnnounce": [],
        "Addresses.NoAnnounce": blocked,
        # The connection gater: refuse to dial or accept any address outside the allowed networks,
        # whatever a peer or a user hands us. This is the backstop for everything above.
        "Swarm.AddrFilters": blocked,
        # Our peers are private by design: publish our (private) addresses to them over identify.
        "Internal.NonPublicAddrPublishing": True,
        # --- names and DNS ------------------------------------------------------------------------
        # Every DNS lookup goes to a resolver that cannot answer (see DNS_SINKHOLE), or the OS one.
        "DNS.Resolvers": {} if dns else {".": DNS_SINKHOLE},
        # The gateway must not resolve DNSLink names (DNS) nor expose a routing API.
        "Gateway.NoDNSLink": True,
        "Gateway.ExposeRoutingAPI": False,
        # --- telemetry ----------------------------------------------------------------------------
        # Also forced off by IPFS_TELEMETRY=off in the environment of every kubo we run; a build
        # without the telemetry plugin ignores these keys.
        "Plugins.Plugins.telemetry.Config.Mode": "off",
        "Plugins.Plugins.telemetry.Disabled": True,
    }


def set_dotted(config: dict[str, Any], key: str, value: Any) -> None:
    """``config["A"]["B"]["C"] = value`` for ``key == "A.B.C"`` (creating / replacing null levels)."""
    parts = key.split(".")
    node = config
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


def get_dotted(config: Mapping[str, Any], key: str) -> Any:
    node: Any = config
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise KeyError(key)
        node = node[part]
    return node


def config_drift(config: Mapping[str, Any], wanted: Mapping[str, Any]) -> list[str]:
    """Keys of ``wanted`` whose value in ``config`` differs (missing counts as different)."""
    drift = []
    for key, value in wanted.items():
        try:
            have = get_dotted(config, key)
        except KeyError:
            drift.append(key)
            continue
        if have != value:
            drift.append(key)
    return drift


def default_repo() -> Path:
    """The repo of the seed node `tce-ipfs node start` runs without --repo."""
    return settings.state_dir() / "seed"


def read_api_file(repo: Path) -> str | None:
    """The API multiaddr a running daemon wrote to ``<repo>/api`` (None when there is none)."""
    try:
        text = (repo / "api").read_text().strip()
    except OSError:
        return None
    return text or None


def _spawn(args: Sequence[str | os.PathLike[str]], *, env: Mapping[str, str], log_path: Path,
           cwd: Path) -> subprocess.Popen[bytes]:
    """Start a long-running process the ``proc.run`` way (argv list, clean env, logged), detached.

    Its own session, so Ctrl-C in the terminal that ran `tce-ipfs node start` does not reach it;
    stdin from /dev/null (kubo must never prompt), stdout+stderr appended to ``log_path``.
    """
    argv = [os.fspath(a) for a in args]
    log.debug("+ %s  (background, log %s)", shlex.join(argv), log_path)
    with open(log_path, "ab") as out:
        try:
            return subprocess.Popen(argv, env=proc.clean_env(env), cwd=cwd, stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        except FileNotFoundError:
            tool = Path(argv[0]).name
            raise NodeError(f"{argv[0]} not found",
                            hint=f"install {proc.TOOL_PACKAGES.get(tool, tool)}") from None


def _pid_alive(pid: int) -> bool:
    """True when ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # state is the field after the ")" that closes the command name
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def _is_our_daemon(pid: int, repo: Path) -> bool:
    """Is ``pid`` a kubo daemon on ``repo`` (guards against a recycled pid in a stale pid file)?"""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"daemon" in cmdline and f"IPFS_PATH={repo}".encode() in environ


class Node:
    """One isolated kubo repo and (at most) one daemon on it.

    ``kubo`` (the ``ipfs`` binary) is needed to init and start; ``stop``/``status`` work without it.
    ``launcher``: an argv prefix for every kubo command (init, config, daemon), e.g.
    ``["ip", "netns", "exec", NS]``.

    ``with Node(repo, kubo) as node:`` initialises, starts, and stops it again on exit.
    """

    def __init__(
        self,
        repo: Path,
        kubo: Path | None = None,
        *,
        listen_host: str = "127.0.0.1",
        swarm_port: int = 0,
        api_port: int = 0,
        gateway_port: int = 0,
        peers: Sequence[str] = (),
        extra_config: Mapping[str, Any] | None = None,
        launcher: Sequence[str] = (),
    ) -> None:
        self.repo = Path(repo).resolve()
        self.kubo = Path(kubo) if kubo is not None else None
        self.launcher = tuple(launcher)
        self.wanted_config = isolation_config(listen_host, swarm_port=swarm_port, api_port=api_port,
                                              gateway_port=gateway_port, peers=peers)
        if extra_config:
            self.wanted_config.update(extra_config)
        self._proc: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        return f"Node({str(self.repo)!r})"

    # --- paths and plain files --------------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.repo / "config"

    @property
    def pid_path(self) -> Path:
        return self.repo / PID_FILE

    @property
    def log_path(self) -> Path:
        return self.repo / LOG_FILE

    @property
    def env(self) -> dict[str, str]:
        return {"IPFS_PATH": str(self.repo), **KUBO_ENV}

    def read_config(self) -> dict[str, Any]:
        try:
            data = json.loads(self.config_path.read_text())
        except FileNotFoundError:
            raise NodeError(f"{self.repo} is not a kubo repo (no config)",
                            hint="run `tce-ipfs node start` (it initialises the repo)") from None
        except (OSError, ValueError) as exc:
            raise NodeError(f"cannot read {self.config_path}: {exc}") from None
        if not isinstance(data, dict):
            raise NodeError(f"{self.config_path} is not a JSON object")
        return data

    @property
    def initialized(self) -> bool:
        return self.config_path.is_file()

    @property
    def peer_id(self) -> str:
        """This node's peer ID (from the repo config; no daemon needed)."""
        pid = self.read_config().get("Identity", {}).get("PeerID")
        if not isinstance(pid, str) or not pid:
            raise NodeError(f"{self.config_path} has no Identity.PeerID")
        return pid

    # --- running state --------------------------------------------------------------------------
    def pid(self) -> int | None:
        """The daemon's pid when it is running on this repo, else None (a stale pid file is removed)."""
        try:
            pid = int(self.pid_path.read_text().strip())
        except (OSError, ValueError):
            return None
        if _pid_alive(pid) and _is_our_daemon(pid, self.repo):
            return pid
        with contextlib.suppress(OSError):
            self.pid_path.unlink()
        return None

    @property
    def running(self) -> bool:
        return self.pid() is not None

    @property
    def api(self) -> str:
        """The RPC API multiaddr (``/ip4/127.0.0.1/tcp/N``) of the running daemon."""
        addr = read_api_file(self.repo) if self.running else None
        if not addr:
            raise NodeError(f"the node in {self.repo} is not running",
                            hint=f"start it with `tce-ipfs node start --repo {self.repo}`")
        return addr

    def client(self, timeout: float = 30.0) -> Any:
        """An ``ipfshttpclient.Client`` for this node (version-checked)."""
        from tce_ipfs.ipfs import rpc

        return rpc.client(self.api, timeout=timeout)

    @property
    def swarm_addrs(self) -> list[str]:
        """Dialable swarm multiaddrs of the running daemon, each ending in ``/p2p/<peer id>``."""
        with self.client() as c:
            ident = c.id()
        return sorted(str(a) for a in ident["Addresses"] or [])

    # --- lifecycle --------------------------------------------------------------------------------
    def kubo_argv(self, *args: str) -> list[str]:
        """``[*launcher, kubo, *args]``: how this node runs ``ipfs ARGS``."""
        if self.kubo is None:
            raise NodeError(f"no kubo binary given for {self.repo}", hint="run `tce-ipfs kubo build`")
        return [*self.launcher, os.fspath(self.kubo), *args]

    def kubo_cmd(self, *args: str, timeout: float = 60, input: bytes | None = None) -> str:
        """Run ``ipfs ARGS`` on this repo (isolated env); return stdout."""
        res = proc.run(self.kubo_argv(*args), env=self.env, timeout=timeout, input=input,
                       what=f"ipfs {args[0] if args else ''} ({self.repo})")
        return (res.stdout or b"").decode()

    def init(self) -> Node:
        """Create the repo if needed, then (re)apply ``isolation_config``. Idempotent."""
        if not self.initialized:
            self.repo.mkdir(parents=True, exist_ok=True)
            if any(p.name not in (LOG_FILE, PID_FILE) for p in self.repo.iterdir()):
                raise NodeError(f"{self.repo} exists, is not empty and is not a kubo repo")
            # `test` profile: loopback addresses, no bootstrap/mDNS/AutoConf/AutoTLS from the start,
            # so even a half-finished init never yields a config that would reach out.
            self.kubo_cmd("init", "--profile", "test", "--empty-repo")
            log.debug("initialised kubo repo %s", self.repo)
        config = self.read_config()
        drift = config_drift(config, self.wanted_config)
        if not drift:
            return self
        if self.running:
            raise IsolationError(f"the running node in {self.repo} has config that differs from "
                                 f"isolation_config(): {', '.join(drift)}",
                                 hint="stop it and run init again")
        for key, value in self.wanted_config.items():
            set_dotted(config, key, value)
        # Written directly while no daemon runs (atomic, Identity untouched). Every key is one kubo
        # knows: tests/test_isolation.py round-trips them through kubo's own Config struct.
        tmp = self.config_path.with_name("config.tce-ipfs.tmp")
        tmp.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.config_path)
        log.debug("applied isolation config to %s (%s)", self.repo, ", ".join(drift))
        return self

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        """The daemon this object started (None when it did not, or it has been reaped)."""
        return self._proc

    def start(self, timeout: float = 60.0, *, env: Mapping[str, str] | None = None) -> Node:
        """Start the daemon in the background; return once its API answers. No-op when running.

        ``env``: extra environment for the daemon (e.g. ``swarmkey.FORCE_PNET_ENV``).
        """
        if self.running:
            return self
        self.init()
        with contextlib.suppress(OSError):
            (self.repo / "api").unlink()  # a stale one from a killed daemon would fool the wait
        argv = self.kubo_argv(*DAEMON_ARGS)
        with open(self.log_path, "ab") as out:
            out.write(f"--- tce-ipfs: starting kubo at {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
        popen = _spawn(argv, env={**self.env, **(env or {})}, log_path=self.log_path, cwd=self.repo)
        self._proc = popen
        self.pid_path.write_text(f"{popen.pid}\n")
        deadline = time.monotonic() + timeout
        last_error = "no API file yet"
        from tce_ipfs.ipfs import rpc

        while time.monotonic() < deadline:
            if popen.poll() is not None:
                self.pid_path.unlink(missing_ok=True)
                raise NodeError(f"kubo exited with code {popen.returncode} while starting on {self.repo}"
                                f":\n{self._log_tail()}", hint=f"full log: {self.log_path}")
            addr = read_api_file(self.repo)
            if addr:
                try:
                    with rpc.client(addr, timeout=5) as c:
                        c.id()
                    log.debug("kubo %s ready on %s (pid %d)", self.repo, addr, popen.pid)
                    return self
                except NodeError as exc:
                    last_error = exc.message
            time.sleep(0.1)
        self.stop()
        raise NodeError(f"kubo on {self.repo} did not answer within {timeout:g} s ({last_error})",
                        hint=f"see {self.log_path}")

    def stop(self, timeout: float = 20.0) -> bool:
        """Stop the daemon (SIGTERM, then SIGKILL after ``timeout``). True if one was running."""
        pid = self.pid()
        if pid is None:
            self._reap()
            return False
        log.debug("stopping kubo pid %d (%s)", pid, self.repo)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _pid_alive(pid) and time.monotonic() < deadline:
            self._reap()
            time.sleep(0.05)
        if _pid_alive(pid):
            log.warning("kubo pid %d did not stop within %g s; killing it", pid, timeout)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            while _pid_alive(pid):
                self._reap()
                time.sleep(0.05)
        self._reap()
        self.pid_path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            (self.repo / "api").unlink()
        return True

    def _reap(self) -> None:
        if self._proc is not None and self._proc.poll() is not None:
            self._proc = None

    def _log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def status(self) -> dict[str, Any]:
        """Repo, running state and (when running) pid, peer ID, API, addresses, peers, repo size."""
        info: dict[str, Any] = {"repo": str(self.repo), "initialized": self.initialized,
                                "running": False, "log": str(self.log_path)}
        if self.initialized:
            info["peer_id"] = self.peer_id
            drift = config_drift(self.read_config(), self.wanted_config)
            info["isolated"] = not drift
            if drift:
                info["config_drift"] = drift
        pid = self.pid()
        if pid is None:
            return info
        from tce_ipfs.ipfs import rpc

        info.update(running=True, pid=pid, api=self.api)
        with rpc.client(self.api, timeout=10) as c:
            ident = c.id()
            info["version"] = c.version()["Version"]
            info["swarm_addrs"] = sorted(str(a) for a in ident["Addresses"] or [])
            info["peers"] = len(rpc.swarm_peers(c))
            stat = rpc.repo_stat(c)
            info["repo_size"] = stat["RepoSize"]
            info["num_objects"] = stat["NumObjects"]
        return info

    # --- context manager --------------------------------------------------------------------------
    def __enter__(self) -> Node:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
