"""An isolated kubo node: the host seed, the test nodes, and the lab's nodes.

``Node`` wraps one repo directory: ``init()`` (idempotent; applies ``isolation.isolation_config()``),
``start()``/``stop()``/``status()``, ``api``, ``swarm_addrs``, ``peer_id``. The daemon (started with
``proc.spawn``) writes its output to ``<repo>/daemon.log`` and its pid to ``<repo>/tce-ipfs.pid``;
``tce-ipfs node stop`` from another process finds it there. ``launcher`` prefixes every kubo command the
node runs (``ip netns exec NS``: a node inside a lab namespace); it must exec kubo in place, so the
daemon's pid stays kubo's.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from tce_ipfs import proc, settings
from tce_ipfs.errors import IsolationError, NodeError
from tce_ipfs.ipfs.isolation import (
    KUBO_ENV,
    check_bootstrap,
    config_drift,
    default_networks,
    isolation_config,
    set_dotted,
)

log = logging.getLogger(__name__)

PID_FILE = "tce-ipfs.pid"
LOG_FILE = "daemon.log"
DAEMON_ARGS = ("daemon", "--migrate=false")


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
    ``allowed_networks``: see ``isolation_config`` (default: from ``listen_host``).
    ``launcher``: an argv prefix for every kubo command (init, config, daemon), e.g.
    ``["ip", "netns", "exec", NS]``.
    ``open_network``: the user put this node on the open IPFS network (``seed serve --net public``
    on a real machine): kubo's own bootstrap list (``auto``) and ``/dns`` bootstrap names pass the
    start check. Never set by a test or a lab: they name their bootstrap peers.

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
        allowed_networks: Sequence[str] | None = None,
        extra_config: Mapping[str, Any] | None = None,
        launcher: Sequence[str] = (),
        open_network: bool = False,
    ) -> None:
        self.repo = Path(repo).resolve()
        self.kubo = Path(kubo) if kubo is not None else None
        self.launcher = tuple(launcher)
        self.open_network = open_network
        self.wanted_config = isolation_config(listen_host, swarm_port=swarm_port, api_port=api_port,
                                              gateway_port=gateway_port, peers=peers,
                                              allowed_networks=allowed_networks)
        self.allowed_networks = tuple(allowed_networks or default_networks(listen_host))
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
        if proc.pid_alive(pid) and _is_our_daemon(pid, self.repo):
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

    @property
    def gateway_url(self) -> str:
        """The gateway's base URL (``http://127.0.0.1:N``) of the running daemon (kubo writes it to
        ``<repo>/gateway``)."""
        try:
            url = (self.repo / "gateway").read_text().strip() if self.running else ""
        except OSError:
            url = ""
        if not url:
            raise NodeError(f"the node in {self.repo} has no gateway running")
        return url

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
        # Whatever extra_config or a hand edit put there: never dial a bootstrap peer past the gater.
        bootstrap = [str(b) for b in self.read_config().get("Bootstrap") or []]
        if self.open_network:  # the user's choice: kubo's list and /dnsaddr names are theirs to dial
            bootstrap = [b for b in bootstrap if b != "auto" and not b.startswith("/dns")]
        check_bootstrap(bootstrap, self.allowed_networks)
        with contextlib.suppress(OSError):
            (self.repo / "api").unlink()  # a stale one from a killed daemon would fool the wait
        argv = self.kubo_argv(*DAEMON_ARGS)
        with open(self.log_path, "ab") as out:
            out.write(f"--- tce-ipfs: starting kubo at {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
        popen = proc.spawn(argv, env={**self.env, **(env or {})}, log_path=self.log_path, cwd=self.repo)
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
        proc.terminate(pid, timeout=timeout, what="kubo", reap=self._reap)
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
