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

``net="public"`` (``seed serve --net public``: a publisher at home): the seed joins the open IPFS
network on top of that config (``netmode.public_config``, role client: DHT client, AutoNAT, relay
client, hole punching, provider records of the roots), its gater lets any IPv4 peer in, and after each
publish (and SIGHUP's) it announces the root once AutoNAT has said how peers reach it
(``opennet.announce``). Bootstrap peers: ``bootstrap``, else kubo's defaults -- only ever on a real
machine; tests give the simulated internet's list. No private swarm and no mDNS with it.

Only shared modules and ``ipfs`` ones are imported: this ships in the agent (``tests/test_layering``).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, ClassVar

from tce_ipfs import cidtext
from tce_ipfs.errors import NodeError, TceIpfsError, UsageError
from tce_ipfs.ipfs import names, netmode, opennet, roots, rpc, swarmkey
from tce_ipfs.ipfs.isolation import trustless_gateway_config
from tce_ipfs.ipfs.node import Node
from tce_ipfs.ipfs.pubcache import cache_path
from tce_ipfs.ipfs.publish import publish

# Pin names live in ipfs.roots; re-exported: callers know them as seed.*
from tce_ipfs.ipfs.roots import PIN_PREFIX as PIN_PREFIX
from tce_ipfs.ipfs.roots import parse_pin_name as parse_pin_name
from tce_ipfs.ipfs.roots import pin_name as pin_name
from tce_ipfs.ipfs.seedline import BootInfo, allowed_networks, check_listen, own_peers

log = logging.getLogger(__name__)

FORMAT = 1  # of seed.json
RECORD = "seed.json"
LOCK = "serve.lock"
PID = "serve.pid"
API_SOCKET = "api.sock"
DEFAULT_PORT = 4001  # the swarm port: what the boot hook's ipfs.port defaults to, kubo's usual
DEFAULT_API_PORT = 5001  # kubo's usual; fixed so that monitoring knows where the metrics are
NAMES = "names.json"  # the IPNS names published through this seed (publish --name, serve --name)
SUN_PATH_MAX = 107  # a unix socket path longer than this cannot be bound
NETS = ("lan", "public")  # seed serve --net (a private swarm is --private/--swarm-key on a lan seed)


class Stopped(BaseException):
    """Raised by the caller's SIGTERM/SIGINT handler to end ``SeedServer.run`` cleanly.

    A ``BaseException``: no ``except Exception`` on the way may swallow it.
    """


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
    name: str | None = None  # an IPNS key: the seed points its name at each root it serves
    lifetime: str = names.DEFAULT_LIFETIME  # of the IPNS record
    ttl: str | None = None  # of the IPNS record (how long resolvers may cache it)
    keep: int | None = None  # roots of this source kept pinned (older ones unpinned)
    gateway_port: int | None = None  # a trustless gateway on the listen addresses (ipfs.gateway=)
    net: str = "lan"  # "public": on the open IPFS network (netmode.public_config), see ``open_config``
    bootstrap: tuple[str, ...] = ()  # with net public: these instead of kubo's defaults

    def __post_init__(self) -> None:
        if not self.listen:
            raise UsageError("a seed needs at least one listen address")
        self._check_net()
        if self.name is not None:
            names.check_key(self.name)
        names.check_duration(self.lifetime, "--lifetime")
        if self.ttl is not None:
            names.check_duration(self.ttl, "--ttl")
        if self.keep is not None and self.keep < 1:
            raise UsageError(f"--keep {self.keep}: keep at least the root being served (1)")
        for addr in self.listen:
            check_listen(addr, public=self.public)
        for what, port in (("--port", self.port), ("--api-port", self.api_port)):
            if not 0 <= port <= 65535:
                raise UsageError(f"{what} {port}: not a TCP port (0..65535; 0 = any free one)")
        if self.gateway_port is not None and not 1 <= self.gateway_port <= 65535:
            raise UsageError(f"--gateway-port {self.gateway_port}: not a TCP port (1..65535): machines are "
                             "told it on their boot line")
        if self.gateway_port is not None and self.gateway_port in (self.port, self.api_port):
            raise UsageError(f"--gateway-port {self.gateway_port} is already the swarm or API port")
        if self.mdns and self.public:
            raise UsageError("--mdns announces the seed on every link of this machine: for a private lab "
                             "LAN only, not with --public")
        if self.swarm_key is not None:
            object.__setattr__(self, "swarm_key", swarmkey.check_hex(self.swarm_key))
        for peer in self.peers:
            if "/p2p/" not in peer:
                raise UsageError(f"--peer {peer!r} must end in /p2p/<peer id>")

    def _check_net(self) -> None:
        if self.net not in NETS:
            raise UsageError(f"--net {self.net!r}: one of {', '.join(NETS)}",
                             hint="lan: the lab's LAN only (the default); public: the open IPFS network")
        if self.net != "public":
            if self.bootstrap:
                raise UsageError("--bootstrap is for --net public: a LAN seed dials nobody by itself",
                                 hint="add --net public, or drop --bootstrap")
            return
        # netmode's rule, as the boot hook applies it: a private swarm stays inside the swarm.
        netmode.resolve_mode("public", peers=bool(self.peers),
                             swarm_key=self.private or self.swarm_key is not None)
        if self.mdns:
            raise UsageError("--mdns announces the seed on every link of this machine: for a private lab "
                             "LAN only, not with --net public")
        for addr in self.bootstrap:
            if not addr.startswith(("/ip4/", "/ip6/", "/dns4/", "/dns6/", "/dnsaddr/", "/dns/")):
                raise UsageError(f"--bootstrap {addr!r} is not a multiaddr",
                                 hint="e.g. /ip4/203.0.113.7/tcp/4001/p2p/12D3KooW...")
        netmode.public_config(self.bootstrap)  # each one ends in /p2p/<peer id>

    @property
    def open_network(self) -> bool:
        """On the open network: the gater lets any IPv4 peer in (``--public`` or ``--net public``)."""
        return self.public or self.net == "public"

    def open_config(self) -> dict[str, Any]:
        """The kubo keys ``--net public`` puts on top of the isolation config (``netmode``, role
        client: DHT client, AutoNAT, relay client, hole punching, provide strategy roots); kubo's
        defaults (``auto``) without ``--bootstrap``: only ever on a real machine. Empty for lan."""
        if self.net != "public":
            return {}
        return netmode.public_config(self.bootstrap or None)


@dataclass
class StateDir:
    """A server's state directory: its kubo repo (``repo/``), its record file and its API socket.
    Seeds (``SeedState``) and cluster seeds (``clusterconfig.ClusterState``) each have one."""

    RECORD: ClassVar[str] = RECORD
    path: Path

    def __post_init__(self) -> None:
        self.path = Path(self.path).absolute()

    @property
    def repo(self) -> Path:
        return self.path / "repo"

    @property
    def record_path(self) -> Path:
        return self.path / self.RECORD

    @property
    def api_socket(self) -> Path:
        return self.path / API_SOCKET


@dataclass
class SeedState(StateDir):
    """A seed's state directory (see the module doc)."""

    _lock: IO[bytes] | None = field(default=None, repr=False)

    @property
    def pid_path(self) -> Path:
        return self.path / PID

    @property
    def publish_cache_dir(self) -> Path:
        """Where publishing through this seed remembers each source's last publish (``pubcache``)."""
        return self.path / "publish"

    def ipns_records(self) -> dict[str, dict[str, Any]]:
        """``names.json``: per IPNS key the last record published through this seed."""
        try:
            data = json.loads((self.path / NAMES).read_text())
        except (FileNotFoundError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def record_name(self, record: names.NameRecord, source: str) -> None:
        data = self.ipns_records()
        data[record.key] = {**record.as_dict(), "source": source, "published_at": _now()}
        tmp = self.path / (NAMES + ".tmp")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, self.path / NAMES)

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


_now = roots.now


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
        if have and opts.net == "public" and not opts.swarm_key:
            raise UsageError(f"the seed in {self.state.path} is a private swarm (its repo holds a swarm "
                             "key): it cannot join the public network",
                             hint=f"remove {self.state.repo / swarmkey.FILENAME} to make it a public seed "
                                  "(machines booted with the key then lose it), or use another --state")
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
        opts = self.options
        dirs: list[str] = []
        source = str(self._dir or self.source)  # what pin names and --keep go by (as `publish` names it)
        with node.client(timeout=opts.timeout) as client:
            if self._dir is not None:
                res = publish(self._dir, client, progress=False, pin_name=pin_name(source),
                              cache=cache_path(self.state.publish_cache_dir, node.peer_id, self._dir),
                              node_id=node.peer_id)
                cid, dirs = res.root_cid, [d for d in res.dirs if d]
            else:
                assert self._cid is not None
                cid = self._cid
                log.info("pinning %s (fetching what is not here from %s)", cid,
                         ", ".join(opts.peers) or "nobody: it must be in the repo already")
            named = rpc.pin_names(client)
            if parse_pin_name(named.get(cid, "")) is None:  # keep the first name: the root's age
                try:
                    rpc.pin_add_named(client, cid, pin_name(source), timeout=opts.timeout)
                except NodeError as exc:
                    raise NodeError(f"cannot pin {cid}: {exc.message}",
                                    hint="a CID must be in the seed's repo already or on a --peer that "
                                         "has it; or serve the repo directory instead") from None
            if dirs:
                log.info("%s is a mirror tree: machines boot from one of its tcz/ directories, e.g. "
                         "tce=ipfs:%s/%s (with lst= naming a list it has)", cid, cid, dirs[0])
            elif "onboot.lst" not in {str(e["Name"]) for e in rpc.ls(client, f"/ipfs/{cid}")}:
                log.warning("%s has no onboot.lst: machines booting from it load nothing unless lst= names "
                            "a list it has", cid)
            ipns = None
            if opts.name:
                named_as = names.publish_name(client, opts.name, cid, lifetime=opts.lifetime, ttl=opts.ttl)
                self.state.record_name(named_as, source)
                ipns = named_as.name
                log.info("IPNS %s (key %s) -> /ipfs/%s", ipns, opts.name, cid)
            if opts.keep:
                roots.keep(client, source, opts.keep, current=cid)
            peers = own_peers(node.swarm_addrs, opts.listen)
            announced = {**opennet.announce_root(client, cid, timeout=opts.timeout), "at": _now()} \
                if opts.net == "public" else None
        gateway = gateway_url(opts)
        info = BootInfo(cid=cid, peers=peers, swarm_key=key, ipns=ipns, gateway=gateway)
        record = self.state.record() or {}
        self.state.write_record({
            "root": cid, "source": str(self._dir or self.source),
            "published_at": _now() if record.get("root") != cid else record.get("published_at", _now()),
            "peer_id": node.peer_id, "peers": list(peers), "listen": list(self.options.listen),
            "port": self.options.port, "public": self.options.public, "mdns": self.options.mdns,
            "private": key is not None, "gateway": gateway, "api": node.api, "api_tcp": _tcp_api(node),
            "ipns": ipns, "net": opts.net, "announced": announced,
            "pid": os.getpid(), "kubo_pid": node.pid(), "started_at": record.get("started_at")
            if record.get("pid") == os.getpid() else _now(), "stopped_at": None,
        })
        return info


def gateway_url(opts: SeedOptions) -> str | None:
    """``ipfs.gateway=`` for the boot line: the trustless gateway on the first non-loopback listen
    address (a loopback one is no use to another machine), or None without ``gateway_port``."""
    if opts.gateway_port is None:
        return None
    lan = [a for a in opts.listen if not a.startswith("127.")]
    return f"http://{(lan or list(opts.listen))[0]}:{opts.gateway_port}"


def seed_node(repo: Path, kubo: Path | None, opts: SeedOptions, api_socket: Path) -> Node:
    """The seed's kubo (also each cluster seed's, ``ipfs.cluster``): swarm on the listen addresses,
    the API on ``api_socket`` (when the path fits) and on TCP loopback ``opts.api_port``."""
    api = [f"/unix{api_socket}"] if len(str(api_socket)) <= SUN_PATH_MAX else []
    api.append(f"/ip4/127.0.0.1/tcp/{opts.api_port}")
    return Node(repo, kubo, listen_host=opts.listen[0], swarm_port=opts.port,
                api_port=opts.api_port, peers=opts.peers,
                allowed_networks=allowed_networks(opts.listen, public=opts.open_network),
                open_network=opts.net == "public" and not opts.bootstrap,
                extra_config={"Addresses.Swarm": [f"/ip4/{a}/tcp/{opts.port}" for a in opts.listen],
                              "Addresses.API": api,
                              # LAN discovery only when asked: for a private lab LAN.
                              "Discovery.MDNS.Enabled": opts.mdns,
                              # Serving a name: answer the LAN's DHT queries for its record (a DHT of
                              # the peers that connect: no bootstrap, the gater as always).
                              "Routing.Type": "dhtserver" if opts.name else "none",
                              **_gateway_config(opts),
                              # The open network (--net public): routing as a DHT client, NAT
                              # traversal, provider records of the roots.
                              **opts.open_config()})


def _gateway_config(opts: SeedOptions) -> dict[str, Any]:
    """The trustless gateway's keys (``isolation.trustless_gateway_config``) on every listen address,
    or nothing (kubo's gateway then stays on loopback, as for every node here)."""
    if opts.gateway_port is None:
        return {}
    return trustless_gateway_config(opts.listen, opts.gateway_port)


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
