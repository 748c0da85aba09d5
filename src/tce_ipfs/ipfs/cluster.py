"""One cluster seed: an isolated kubo (``seed.seed_node``) and an ``ipfs-cluster-service`` daemon beside it.

``ClusterSeed(state, service=..., kubo=...)``: ``init(options, secret=, swarm_key=, private=)``
(idempotent: makes or re-applies the state, ``clusterconfig``), ``start()`` (kubo, then the cluster
daemon, joining through every seed it knows with ``--bootstrap``; returns once the cluster answers,
has joined and our kubo is connected to the other seeds' kubos), ``stop()``, ``status()``, ``api()``
(its REST API). The daemon's pid is in ``service/tce-ipfs.pid``, its output in
``service/daemon.log``; like ``node.Node``, another process (``tce-ipfs cluster stop``) finds it there.

The seeds' kubos have no routing (``isolation_config``): bitswap asks the peers a kubo is connected to.
So each start connects our kubo to every other seed's (from the cluster's peer list) and keeps them
as ``Peering.Peers``; cluster's own ``connect_swarms`` does the same from the other side.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import secrets
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tce_ipfs import proc
from tce_ipfs.errors import NodeError, UsageError
from tce_ipfs.ipfs import rpc, swarmkey
from tce_ipfs.ipfs.clusterapi import ClusterAPI
from tce_ipfs.ipfs.clusterconfig import (
    DAEMON_LOG,
    DATASTORE,
    PID_FILE,
    SERVICE_CONFIG,
    ClusterOptions,
    ClusterState,
    config_drift,
    drop_sections,
    lan_addrs,
    service_config,
    write_private,
)
from tce_ipfs.ipfs.clusterpins import cluster_status
from tce_ipfs.ipfs.isolation import set_dotted
from tce_ipfs.ipfs.node import Node, read_api_file
from tce_ipfs.ipfs.seed import seed_node

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------- the seed
def rss_bytes(pid: int | None) -> int | None:
    """Resident memory of a process (``VmRSS``); None when it is gone."""
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


class ClusterSeed:
    """One cluster seed: its state, the kubo and the ``ipfs-cluster-service`` daemon on it.

    ``service``/``kubo``: the binaries (needed for ``init``/``start``; ``stop``/``status`` work without).
    """

    def __init__(self, state: ClusterState, *, service: Path | None = None, kubo: Path | None = None) -> None:
        self.state = state
        self.service = Path(service) if service else None
        self.kubo = Path(kubo) if kubo else None
        self._proc: subprocess.Popen[bytes] | None = None

    # --- pieces -------------------------------------------------------------------------------
    def node(self, options: ClusterOptions | None = None) -> Node:
        """The seed's kubo, configured from the options and the other seeds the last start found."""
        options = options or self.state.options()
        peers = self.state.record().get("kubo_peers", []) if self.state.record_path.exists() else []
        opts = options.kubo_options(swarm_key=self.state.swarm_key(), peers=peers)
        return seed_node(self.state.repo, self.kubo, opts, self.state.api_socket)

    def api(self, timeout: float = 30.0) -> ClusterAPI:
        return ClusterAPI(self.state.rest_api(), timeout=timeout)

    @property
    def pid_path(self) -> Path:
        return self.state.service_dir / PID_FILE

    @property
    def log_path(self) -> Path:
        return self.state.service_dir / DAEMON_LOG

    def pid(self) -> int | None:
        """The cluster daemon's pid when it runs on this state (a stale pid file is removed)."""
        try:
            pid = int(self.pid_path.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return None
        if proc.pid_alive(pid) and str(self.state.service_dir).encode() in cmdline and b"daemon" in cmdline:
            return pid
        self.pid_path.unlink(missing_ok=True)
        return None

    # --- init ---------------------------------------------------------------------------------
    def init(self, options: ClusterOptions, *, secret: str | None = None, swarm_key: str | None = None,
             private: bool = False) -> dict[str, Any]:
        """Create (or re-configure) the state: secret, kubo repo, cluster config. Idempotent.

        ``secret``: the cluster's (a joining seed gets the first seed's); None keeps the state's, or
        makes a new one. ``swarm_key``/``private``: the lab's private kubo swarm (as ``seed serve``).
        """
        if self.service is None or self.kubo is None:
            raise NodeError("initialising a cluster seed needs the ipfs-cluster-service and kubo binaries")
        if self.pid() is not None or Node(self.state.repo).running:
            raise NodeError(f"the cluster seed in {self.state.path} is running", hint="stop it first")
        state = self.state
        state.path.mkdir(parents=True, exist_ok=True)
        os.chmod(state.path, 0o700)
        have = state.secret()
        if options.join and not secret and not have:
            raise UsageError("a seed joining a cluster needs the cluster's secret",
                             hint="copy the first seed's STATE/secret here and pass --secret FILE "
                                  "(or set CLUSTER_SECRET)")
        if secret and have and secret != have:
            raise UsageError(f"{state.secret_path} holds another cluster's secret",
                             hint="use a new --state for another cluster")
        secret = have or secret or secrets.token_hex(32)
        write_private(state.secret_path, secret + "\n")
        key = swarm_key or state.swarm_key() or (swarmkey.generate() if private else None)
        record = state.update_record(options=options.as_dict())
        node = self.node(options)
        node.init()
        if key:
            swarmkey.install(node.repo, key)
        self._init_service(options, secret, record.get("cluster_peers") or list(options.join))
        return state.record()

    def _init_service(self, options: ClusterOptions, secret: str, peer_addresses: Sequence[str]) -> None:
        assert self.service is not None
        svc = self.state.service_dir
        config_path = svc / SERVICE_CONFIG
        if not config_path.is_file():
            svc.mkdir(parents=True, exist_ok=True)
            os.chmod(svc, 0o700)
            # cluster's own init writes a complete default config and the identity (the peer ID);
            # the secret comes from the environment, never from the command line.
            proc.run([self.service, "--config", svc, "init", "--consensus", "crdt", "--datastore", DATASTORE],
                     env={"CLUSTER_SECRET": secret}, timeout=120, what="ipfs-cluster-service init")
        config = json.loads(config_path.read_text())
        wanted = service_config(self.state, options, secret, peer_addresses)
        for key, value in wanted.items():
            set_dotted(config, key, value)
        drop_sections(config, proxy=bool(wanted["api.ipfsproxy.listen_multiaddress"]))
        write_private(config_path, json.dumps(config, indent=2) + "\n")
        os.chmod(svc / "identity.json", 0o600)

    def config_drift(self) -> list[str]:
        """Keys of service.json that differ from ``service_config`` (empty: isolated as configured).

        The seeds to dial (``peer_addresses``) are not compared: each start learns more of them.
        """
        config = json.loads((self.state.service_dir / SERVICE_CONFIG).read_text())
        wanted = service_config(self.state, self.state.options(), self.state.secret() or "")
        wanted.pop("cluster.peer_addresses")
        return config_drift(config, wanted)

    # --- start / stop -------------------------------------------------------------------------
    def start(self, timeout: float = 120.0) -> dict[str, Any]:
        """Start kubo and the cluster daemon (re-applying the config first); return once the cluster
        answers, joined the first seed when joining, and kubo is connected to the other seeds."""
        if self.pid() is not None:
            return self.state.record()
        options = self.state.options()
        secret = self.state.secret()
        if secret is None:
            raise NodeError(f"no cluster secret in {self.state.path}", hint="run `tce-ipfs cluster init`")
        record = self.init(options)
        node = self.node(options)
        key = self.state.swarm_key()
        if not node.running:  # a seed that died (power cut, SIGKILL) leaves its sockets; kubo would not bind
            self.state.api_socket.unlink(missing_ok=True)
        node.start(timeout, env=swarmkey.FORCE_PNET_ENV if key else None)
        assert self.service is not None
        argv: list[str | os.PathLike[str]] = [self.service, "--config", self.state.service_dir, "daemon"]
        # Join through every seed known (the given one, those the last start saw): one that answers
        # is enough, and through it (build.cluster's join patch) this seed connects to all the others.
        me = record.get("cluster_peer_id") or "-"
        known = [a for a in dict.fromkeys([*options.join, *record.get("cluster_peers", [])])
                 if not a.endswith(f"/p2p/{me}")]
        if known:
            argv += ["--bootstrap", ",".join(known)]
        with self.log_path.open("ab") as out:
            out.write(f"--- tce-ipfs: starting ipfs-cluster-service at {time.strftime('%F %T')}\n".encode())
        for sock in (self.state.rest_socket, self.state.proxy_socket):
            sock.unlink(missing_ok=True)  # a killed daemon leaves them; cluster would not bind
        self._proc = proc.spawn(argv, log_path=self.log_path, cwd=self.state.path)
        self.pid_path.write_text(f"{self._proc.pid}\n")
        try:
            first_join = bool(options.join) and not record.get("joined")
            ident = self._wait_ready(timeout, joining=first_join, rejoining=bool(known))
        except BaseException:
            self.stop()
            raise
        return self._after_start(ident, options)

    def _wait_ready(self, timeout: float, *, joining: bool, rejoining: bool) -> dict[str, Any]:
        """Wait until the daemon answers with its kubo connected; then, when it joins (or rejoins) a
        cluster, until every seed it sees also sees it (so a publish right after counts it).

        A first join that does not happen is an error; a restart whose seeds are all down only warns.
        """
        deadline = time.monotonic() + timeout
        api = self.api(timeout=5)

        def answers(i: dict[str, Any]) -> bool:  # with its kubo connected
            return bool(i.get("id") and (i.get("ipfs") or {}).get("id") and not i.get("error"))

        ident: dict[str, Any] = self._poll(deadline, api.id, answers, "answer")
        if not (joining or rejoining):
            return ident
        me = ident["id"]

        def seen_by_all(peers: list[dict[str, Any]]) -> bool:
            up = [p for p in peers if not p.get("error") and p.get("id") != me]
            return bool(up) and all(me in (p.get("cluster_peers") or []) for p in up)

        try:
            self._poll(deadline if joining else min(deadline, time.monotonic() + 30), api.peers,
                       seen_by_all, "join the other seeds")
        except NodeError:
            if joining:
                raise
            log.warning("no other seed of the cluster answers now; this seed serves on and syncs when "
                        "they are back")
        return api.id()

    def _poll(self, deadline: float, call: Callable[[], Any], done: Callable[[Any], bool], what: str) -> Any:
        last = "no answer yet"
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                self.pid_path.unlink(missing_ok=True)
                raise NodeError(f"ipfs-cluster-service exited with code {self._proc.returncode} while "
                                f"starting:\n{self._log_tail()}", hint=f"full log: {self.log_path}")
            try:
                value = call()
                if done(value):
                    return value
                last = f"not yet: {json.dumps(value)[:300]}"
            except NodeError as exc:
                last = exc.message
            time.sleep(0.2)
        raise NodeError(f"the cluster seed in {self.state.path} did not {what} in time ({last})",
                        hint=f"see {self.log_path}")

    def _after_start(self, ident: dict[str, Any], options: ClusterOptions) -> dict[str, Any]:
        """Record who we are and who the others are; connect our kubo to the other seeds' kubos."""
        loopback = all(ipaddress.IPv4Address(a).is_loopback for a in options.listen)
        addrs = lan_addrs(ident.get("addresses") or [], loopback_ok=loopback)
        kubo_addrs = lan_addrs((ident.get("ipfs") or {}).get("addresses") or [], loopback_ok=loopback)
        self.state.update_record(
            cluster_peer_id=ident["id"], peername=ident.get("peername"), cluster_addrs=addrs,
            kubo_peer_id=(ident.get("ipfs") or {}).get("id"), kubo_addrs=kubo_addrs,
            version=ident.get("version"), joined=True,
            started_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        self.connect_seeds(loopback_ok=loopback)
        return self.state.record()

    def connect_seeds(self, *, loopback_ok: bool = False) -> list[str]:
        """Connect this seed's kubo to every other seed's (kubo has no routing: bitswap asks the peers
        it is connected to) and keep them as ``Peering.Peers`` for the next start. Best effort."""
        me = self.state.record().get("cluster_peer_id")
        others: list[str] = []
        cluster_addrs: list[str] = []
        by_seed: dict[str, list[str]] = {}
        for peer in self.api().peers():
            if peer.get("error") or peer.get("id") == me:
                continue
            addrs = lan_addrs((peer.get("ipfs") or {}).get("addresses") or [], loopback_ok=loopback_ok)
            by_seed[str(peer.get("peername") or peer.get("id"))] = addrs
            others += addrs
            cluster_addrs += lan_addrs(peer.get("addresses") or [], loopback_ok=loopback_ok)
        unreachable = []
        with self.node().client() as client:
            for seed, addrs in by_seed.items():
                reached = False
                for addr in addrs:
                    try:
                        rpc.swarm_connect(client, addr, timeout=10)
                        rpc.peering_add(client, addr)
                        reached = True
                    except NodeError as exc:
                        log.debug("connecting to seed %s at %s: %s", seed, addr, exc.message)
                if not reached:
                    unreachable.append(seed)
        if unreachable:
            log.warning("this seed's kubo cannot connect to the kubo of %s: it will not fetch roots from "
                        "there (a private swarm? every seed needs the same swarm key: --swarm-key)",
                        ", ".join(unreachable))
        record = self.state.record()
        kubo_peers = sorted(set(record.get("kubo_peers", [])) | set(others))
        known = sorted(set(record.get("cluster_peers", [])) | set(cluster_addrs))
        self.state.update_record(kubo_peers=kubo_peers, cluster_peers=known)
        return others

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop the cluster daemon (SIGTERM, SIGKILL after ``timeout``), then kubo. True if either ran."""
        pid = self.pid()
        if pid is not None:
            proc.terminate(pid, timeout=timeout, what="ipfs-cluster-service", reap=self._reap)
            self.pid_path.unlink(missing_ok=True)
        self._reap()
        kubo_ran = Node(self.state.repo).stop(timeout=timeout)
        for sock in (self.state.rest_socket, self.state.proxy_socket):
            sock.unlink(missing_ok=True)
        return pid is not None or kubo_ran

    def _reap(self) -> None:
        if self._proc is not None and self._proc.poll() is not None:
            self._proc = None

    def _log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    # --- status ---------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """This seed (running, pids, RSS, addresses) and, when it runs, the cluster's seeds and roots."""
        record = self.state.record()
        pid = self.pid()
        kubo = Node(self.state.repo)
        kubo_pid = kubo.pid()
        info: dict[str, Any] = {
            "state": str(self.state.path), "running": pid is not None, "pid": pid, "kubo_pid": kubo_pid,
            "rss": rss_bytes(pid), "kubo_rss": rss_bytes(kubo_pid), "peername": record.get("peername"),
            "cluster_peer_id": record.get("cluster_peer_id"),
            "cluster_addrs": record.get("cluster_addrs", []),
            "kubo_peer_id": record.get("kubo_peer_id"), "kubo_addrs": record.get("kubo_addrs", []),
            "private": self.state.swarm_key() is not None, "rest_api": self.state.rest_api(),
            "kubo_api": read_api_file(self.state.repo) if kubo_pid else None, "log": str(self.log_path),
        }
        if pid is not None:
            info.update(cluster_status(self.api()))
        return info


