"""The ``fetch-link`` benchmark: a lab that boots at once, measured as the lab is.

For each origin cap (``tc tbf`` on the origin's uplink, default 100 and 20 Mbit/s) and each lab size N
(default 1, 4, 8, 16), N machines start the real boot hook at the same moment and fetch the same boot
closure, once over IPFS and once over HTTP (same hook, ``tce=http://`` to the origin's mirror):

* every machine is a network namespace of its own on one switched LAN (``testbed.lan.SwitchedLan``): its own
  address (libp2p's per-IP limits behave as in a lab) and LAN multicast, so the hook's kubo finds the
  other machines by mDNS exactly as at boot -- no connection is made by hand;
* every machine runs the hook itself (``testbed.hookrun.HookMachine``: a fake TC root, the hook's own scripts,
  real kubo), with only ``ipfs.peers=<seed>`` on its command line, as a netboot config would have it;
* the origin namespace holds the seed (the seed role's kubo build, ``build.kubo.SEED``: the polite origin)
  and a plain HTTP mirror of the same files; ``stock_seed`` adds runs against a stock kubo seed.

Per run: time until every machine's hook has finished (``wall_s``, from the common start), what the
origin sent (``origin_app_bytes``: the seed's bitswap ``DataSent`` or the mirror's bytes served;
``origin_wire_bytes``: the origin eth0's tx counter, all headers included), and per machine its hook
timings, bytes from the origin (the seed's bitswap ledger for that peer) and from LAN peers (the rest
of what its kubo received), duplicates, and the CPU seconds its kubo used. Hook roots live on a tmpfs
(``/dev/shm``) like TC's RAM-backed ``/tmp``.

On a small build host the N machines share its cores: N kubo daemons starting and trading at once are
CPU-bound long before the LAN is. ``kubo_cpu_s`` in the results shows how much.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tce_ipfs import tcrepo
from tce_ipfs.arch import Arch
from tce_ipfs.errors import NodeError
from tce_ipfs.ipfs import publish, rpc
from tce_ipfs.testbed.bench import mirror
from tce_ipfs.testbed.hookrun import HookMachine, applet_dir
from tce_ipfs.testbed.lab import SeedNode, start_kubo
from tce_ipfs.testbed.lan import SwitchedLan

log = logging.getLogger(__name__)

STOCK_SEED_PORT = 4002
KINDS = ("http", "ipfs", "ipfs-stock")


@dataclass
class LinkConfig:
    clients: tuple[int, ...] = (1, 4, 8, 16)
    caps_mbit: tuple[float, ...] = (100.0, 20.0)
    repeats: int = 1
    stock_seed: bool = False
    hook_timeout: int = 600  # ipfs.timeout= for the hooks: a hang guard
    failures_dir: Path | None = None  # the logs of machines that did not load the closure go here
    seed_env: dict[str, str] = field(default_factory=dict)  # e.g. GOLOG_LOG_LEVEL to trace the seeds


@dataclass
class _Origin:
    lan: SwitchedLan
    seed: SeedNode
    stock: SeedNode | None
    root_cid: str
    mirror_stats: Path


def boot_files(repo: Path, lst: str = "onboot.lst") -> list[str]:
    """What one booting machine fetches from ``repo``: the list, and for every extension of its ``.dep``
    closure the ``.tcz``, its ``.md5.txt`` and its ``.dep`` (when there is one)."""
    def dep_text(name: str) -> str | None:
        path = repo / f"{name}.dep"
        return path.read_text() if path.exists() else None

    names = tcrepo.closure(tcrepo.parse_list((repo / lst).read_text()), dep_text)
    return [lst, *(f for n in names for f in (n, f"{n}.md5.txt", f"{n}.dep") if (repo / f).exists())]


def _tmpfs_dir(fallback: Path) -> Path:
    """A scratch dir on a tmpfs when there is one (the hook's RAM repo on TC), else under ``fallback``."""
    shm = Path("/dev/shm")
    base = shm if shm.is_dir() and os.access(shm, os.W_OK) else fallback
    return Path(tempfile.mkdtemp(prefix="tce-ipfs-lab-", dir=base))


def _sent(seed: SeedNode) -> int:
    with seed.client(timeout=30) as c:
        return int(rpc.bitswap_stat(c).get("DataSent", 0))


def _ledger_sent(seed: SeedNode, peer_id: str) -> int:
    with seed.client(timeout=30) as c:
        return int(rpc.bitswap_ledger(c, peer_id).get("Sent", 0))


def _kubo_cpu_s(pid: str) -> float | None:
    """CPU seconds (user + system) the machine's kubo daemon has used, or None when it is gone."""
    try:
        fields = Path(f"/proc/{int(pid)}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, ValueError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _seconds(status: dict[str, str], key: str) -> float | None:
    try:
        return float(status[key])
    except (KeyError, ValueError):
        return None


class LabFetch:
    """One origin cap: the LAN, the origin (seed(s) + mirror) and the machines; ``run()`` per (kind, N)."""

    def __init__(self, kubo: Path, seed_kubo: Path, stock_kubo: Path | None, work: Path, repo: Path,
                 cap_mbit: float, machines: int, hook_timeout: int, *, failures_dir: Path | None = None,
                 seed_env: dict[str, str] | None = None) -> None:
        self.kubo, self.seed_kubo, self.stock_kubo = kubo, seed_kubo, stock_kubo
        self.failures_dir, self.seed_env = failures_dir, dict(seed_env or {})
        self._seed_logs: list[Path] = []
        self.work, self.repo = work, repo
        self.files = boot_files(repo)
        self.extensions = sum(1 for f in self.files if f.endswith(".tcz"))
        self.payload = sum((repo / f).stat().st_size for f in self.files)
        self.cap_mbit, self.machines, self.hook_timeout = cap_mbit, machines, hook_timeout

    @contextlib.contextmanager
    def up(self) -> Iterator[_Origin]:
        roots = _tmpfs_dir(self.work)
        self._roots = roots
        self._applets = applet_dir(self.work / "applets")
        try:
            with SwitchedLan(self.work / f"lan-{self.cap_mbit:g}", machines=self.machines,
                             origin_mbit=self.cap_mbit) as lan:
                seed = start_kubo(lan.origin, "seed", self.seed_kubo, self.work / f"seed-{self.cap_mbit:g}",
                                  listen_ip=lan.origin_ip, env=self.seed_env)
                self._seed_logs = [seed.node.log_path]
                with seed.client(timeout=600) as c:
                    cid = publish.publish(self.repo, c, progress=False).root_cid
                stock = None
                if self.stock_kubo is not None:
                    stock = start_kubo(lan.origin, "stock-seed", self.stock_kubo,
                                       self.work / f"stock-seed-{self.cap_mbit:g}", listen_ip=lan.origin_ip,
                                       port=STOCK_SEED_PORT, env=self.seed_env)
                    self._seed_logs.append(stock.node.log_path)
                    with stock.client(timeout=600) as c:
                        if publish.publish(self.repo, c, progress=False).root_cid != cid:
                            raise NodeError("the stock seed published another root CID")
                stats = self.work / f"mirror-{self.cap_mbit:g}.json"
                mirror.start_in(lan.origin, self.repo, lan.origin_ip, stats)
                yield _Origin(lan, seed, stock, cid, stats)
        finally:
            shutil.rmtree(roots, ignore_errors=True)

    def run(self, origin: _Origin, kind: str, n: int) -> dict[str, Any]:
        """N machines boot at once with ``kind`` (http, ipfs, ipfs-stock); returns the run's numbers."""
        lan = origin.lan
        seed = origin.stock if kind == "ipfs-stock" else origin.seed
        assert seed is not None
        codes = f"nodhcp ipfs.timeout={self.hook_timeout}"
        if kind == "http":
            cmdline = f"tce=http://{lan.origin_ip}:{mirror.PORT} {codes}"
        else:
            cmdline = f"tce=ipfs:{origin.root_cid} ipfs.peers={seed.multiaddr} {codes}"
        go = self._roots / "go"
        go.unlink(missing_ok=True)
        machines = [HookMachine(self._roots / f"m{i}", Arch.host(), self.kubo, self._applets)
                    for i in range(n)]
        try:
            for i, m in enumerate(machines):
                m.prepare(cmdline)
                m.spawn(lan.machines[i], f"hook-{kind}-{n}-{i}", go)
            app0 = mirror.served_bytes(origin.mirror_stats) if kind == "http" else _sent(seed)
            wire0 = lan.origin_tx_bytes()
            time.sleep(0.2)  # every launcher is polling for the go file
            t0 = time.monotonic()
            go.touch()
            deadline = t0 + self.hook_timeout + 60
            while not all(m.poll() for m in machines):
                if time.monotonic() > deadline:
                    raise NodeError(f"fetch-link {kind} N={n}: hooks still running after "
                                    f"{self.hook_timeout} s")
                time.sleep(0.02)
            wire = lan.origin_tx_bytes() - wire0
            app = (mirror.served_bytes(origin.mirror_stats) if kind == "http" else _sent(seed)) - app0
            clients = self._clients(origin, seed, kind, machines, t0)
        finally:
            lan.kill_machine_processes()
        wall = max(c["ready_s"] for c in clients)
        failed = sum(c["result"] != "ok" for c in clients)
        log.info("fetch-link %g Mbit/s %s N=%d: all ready in %.2f s, origin sent %.2fx the payload%s",
                 self.cap_mbit, kind, n, wall, app / self.payload,
                 f"; {failed} machine(s) did not load the closure" if failed else "")
        return {"cap_mbit": self.cap_mbit, "kind": kind, "n": n, "wall_s": wall, "failed_machines": failed,
                "origin_app_bytes": app, "origin_wire_bytes": wire,
                "egress_ratio": app / self.payload, "wire_ratio": wire / self.payload,
                "kubo_cpu_s": sum(c.get("kubo_cpu_s") or 0.0 for c in clients), "clients": clients}

    def _keep_logs(self, m: HookMachine, name: str) -> None:
        """Copy a failed machine's hook log, console, status and kubo log to ``failures_dir``."""
        if self.failures_dir is None:
            return
        dest = self.failures_dir / name
        dest.mkdir(parents=True, exist_ok=True)
        for rel in ("var/log/tce-ipfs.log", "dev/console", "tmp/tce-ipfs/status", "tmp/tce-ipfs/kubo.log"):
            with contextlib.suppress(OSError):
                shutil.copyfile(m.root / rel, dest / Path(rel).name)
        for seed_log in self._seed_logs:  # the seeds' side of it (verbose with GOLOG_LOG_LEVEL)
            with contextlib.suppress(OSError):
                shutil.copyfile(seed_log, dest / f"{seed_log.parent.name}.log")

    def _clients(self, origin: _Origin, seed: SeedNode, kind: str, machines: list[HookMachine],
                 t0: float) -> list[dict[str, Any]]:
        lan = origin.lan
        out: list[dict[str, Any]] = []
        for m in machines:
            st = m.status
            assert m.ended is not None
            c: dict[str, Any] = {"ready_s": round(m.ended - t0, 3), "bytes": int(st.get("bytes", 0)),
                                 "result": st.get("result", "none")}
            if st.get("result") != "ok" or st.get("loaded") != str(self.extensions):
                # A machine that did not load the closure is a result too: kept, counted, reported.
                c["result"] = f"{st.get('result', 'none')} ({st.get('loaded', 0)} of {self.extensions})"
                c["problem"] = st.get("reason", "")[:300]
                log.warning("fetch-link %s N=%d: %s did not load the closure: %s", kind, len(machines),
                            m.root.name, c["problem"] or m.console()[-300:])
                self._keep_logs(m, f"{self.cap_mbit:g}mbit-{kind}-n{len(machines)}-{m.root.name}")
            for key in ("t_kubo_start", "t_kubo_ready", "t_list", "t_first_byte", "t_total"):
                c[key] = _seconds(st, key)
            out.append(c)
        if kind == "http":
            for c in out:
                c["from_origin"], c["from_peers"] = c["bytes"], 0
            return out

        def kubo_side(i: int) -> dict[str, Any]:
            m, st = machines[i], machines[i].status
            res = lan.machines[i].exec([self.kubo, "bitswap", "stat", "--enc=json"],
                                       env={"IPFS_PATH": str(m.ipfs_path)}, timeout=60, check=False)
            if res.returncode != 0:  # its kubo is gone (a hook that loaded nothing stops it)
                return {"received": None, "dup_bytes": None, "from_origin": None, "from_peers": None,
                        "kubo_cpu_s": None}
            bs = json.loads(res.stdout)
            from_origin = _ledger_sent(seed, st["peer_id"])
            received = int(bs.get("DataReceived", 0))
            return {"received": received, "dup_bytes": int(bs.get("DupDataReceived", 0)),
                    "from_origin": from_origin, "from_peers": max(received - from_origin, 0),
                    "kubo_cpu_s": _kubo_cpu_s(st.get("kubo_pid", ""))}

        with ThreadPoolExecutor(max_workers=8) as pool:
            for c, extra in zip(out, pool.map(kubo_side, range(len(machines))), strict=True):
                c.update(extra)
        return out


def bench(kubo: Path, seed_kubo: Path, stock_kubo: Path | None, work: Path, repo: Path,
          cfg: LinkConfig) -> dict[str, Any]:
    """Every (cap, N, kind, repeat); kinds alternate their order per repeat. Returns runs + summary.

    The payload is what one machine fetches (``boot_files``): an HTTP mirror's egress is exactly N
    times it."""
    runs: list[dict[str, Any]] = []
    kinds = ["http", "ipfs", *(["ipfs-stock"] if stock_kubo is not None else [])]
    qdiscs: dict[str, Any] = {}
    files: list[str] = []
    payload = 0
    for cap in cfg.caps_mbit:
        lab = LabFetch(kubo, seed_kubo, stock_kubo, work, repo, cap, max(cfg.clients), cfg.hook_timeout,
                       failures_dir=cfg.failures_dir, seed_env=cfg.seed_env)
        files, payload = lab.files, lab.payload
        with lab.up() as origin:
            for n in cfg.clients:
                for rep in range(cfg.repeats):
                    for kind in (kinds if rep % 2 == 0 else kinds[::-1]):
                        runs.append({**lab.run(origin, kind, n), "repeat": rep})
            qdiscs[f"{cap:g}"] = origin.lan.origin_qdisc()
    return {"scenario": "fetch-link", "payload_bytes": payload, "files": len(files),
            "clients": list(cfg.clients), "caps_mbit": list(cfg.caps_mbit), "repeats": cfg.repeats,
            "cpus": os.cpu_count(), "qdisc_origin": qdiscs, "runs": runs,
            "summary": summarize(runs), "targets": targets(runs)}


def _median(runs: Sequence[dict[str, Any]], cap: float, kind: str, n: int, key: str) -> float | None:
    vals = [r[key] for r in runs if r["cap_mbit"] == cap and r["kind"] == kind and r["n"] == n]
    return statistics.median(vals) if vals else None


def summarize(runs: Sequence[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """``summary[cap][n]``: medians per kind of wall time, egress and wire ratio, and IPFS/HTTP time."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for cap in sorted({r["cap_mbit"] for r in runs}, reverse=True):
        per_n: dict[str, dict[str, Any]] = {}
        for n in sorted({r["n"] for r in runs if r["cap_mbit"] == cap}):
            row: dict[str, Any] = {}
            for kind in KINDS:
                for key in ("wall_s", "egress_ratio", "wire_ratio", "kubo_cpu_s"):
                    v = _median(runs, cap, kind, n, key)
                    if v is not None:
                        row[f"{kind}_{key}"] = round(v, 3)
                these = [r for r in runs if r["cap_mbit"] == cap and r["kind"] == kind and r["n"] == n]
                if these:
                    row[f"{kind}_failed_machines"] = sum(r.get("failed_machines", 0) for r in these)
                clients = [c for r in these for c in r["clients"] if c.get("from_peers") is not None]
                if clients and kind != "http":
                    row[f"{kind}_from_peers_share"] = round(
                        sum(c["from_peers"] for c in clients)
                        / max(sum(c["from_peers"] + c["from_origin"] for c in clients), 1), 3)
            if "http_wall_s" in row and "ipfs_wall_s" in row:
                row["time_ratio"] = round(row["ipfs_wall_s"] / row["http_wall_s"], 3)
            per_n[str(n)] = row
        out[f"{cap:g}"] = per_n
    return out


def targets(runs: Sequence[dict[str, Any]], cap: float = 100.0, big: int = 16) -> dict[str, Any]:
    """The issue's targets at ``cap`` Mbit/s (reported, never asserted): value, bound, met."""
    def t(value: float | None, bound: float) -> dict[str, Any]:
        return {"value": None if value is None else round(value, 3), "target": bound,
                "met": None if value is None else value <= bound}

    egress = _median(runs, cap, "ipfs", big, "egress_ratio")
    all_ready = _median(runs, cap, "ipfs", big, "wall_s")
    one = _median(runs, cap, "ipfs", 1, "wall_s")
    http_big = _median(runs, cap, "http", big, "wall_s")
    http_one = _median(runs, cap, "http", 1, "wall_s")

    def ratio(a: float | None, b: float | None) -> float | None:
        return a / b if a is not None and b else None

    return {
        "cap_mbit": cap, "n": big,
        "egress_ratio": t(egress, 1.5), "egress_ratio_stretch": t(egress, 1.2),
        "all_ready_vs_one_client": t(ratio(all_ready, one), 2.0),
        "all_ready_vs_http": t(ratio(all_ready, http_big), 0.25),
        "one_client_vs_http": t(ratio(one, http_one), 1.25),
    }
