"""The benchmark scenarios (see ``tce_ipfs.testbed.bench``): publish, fetch-loopback, fetch-link."""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import random
import shutil
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tce_ipfs
from tce_ipfs.errors import NodeError
from tce_ipfs.ipfs import publish, rpc
from tce_ipfs.ipfs.node import Node
from tce_ipfs.testbed.bench.mirror import fetch_http, http_mirror

log = logging.getLogger(__name__)

SCENARIOS = ("publish", "fetch-loopback", "fetch-link")
MIRROR_PORT = 8080  # the HTTP mirror inside the origin namespace (its own network: no clash possible)
FETCH_EXTENSIONS = 40  # the fetch repo; its onboot.lst (the boot closure) names the first 10


@dataclass
class BenchConfig:
    extensions: int = 200
    total_mib: int = 500
    repeats: int = 3
    clients: int = 3
    fetch_mib: int = 100
    link_mbit: float = 100.0
    out: Path = Path("bench-results")


@dataclass
class BenchResults:
    config: dict[str, Any]
    publish: dict[str, Any] = field(default_factory=dict)
    fetch_loopback: dict[str, Any] = field(default_factory=dict)
    fetch_link: dict[str, Any] = field(default_factory=dict)


def make_repo(path: Path, count: int, total_bytes: int) -> list[str]:
    """A flat TC repo of ``count`` extensions: incompressible bodies, real .md5.txt, a .dep chain.

    The bodies are not squashfs images: publishing only checks md5 and deps, and the add cost depends
    on bytes, not on the format, so random bytes measure the same thing faster.
    """
    path.mkdir(parents=True, exist_ok=True)
    each = max(total_bytes // count, 4096)
    names = []
    for i in range(count):
        name = f"bench{i:03d}.tcz"
        data = _random_bytes(each, name.encode())
        (path / name).write_bytes(data)
        (path / f"{name}.md5.txt").write_text(f"{hashlib.md5(data).hexdigest()}  {name}\n")
        if i % 10:
            (path / f"{name}.dep").write_text(f"bench{i - i % 10:03d}.tcz\n")
        names.append(name)
    (path / "onboot.lst").write_text("".join(f"{n}\n" for n in names[:10]))
    return names


def _random_bytes(n: int, seed: bytes) -> bytes:
    # Seeded, so CIDs are stable across runs; never repeating, so kubo's chunker cannot dedupe blocks
    # (that would flatter IPFS).
    return random.Random(seed).randbytes(n)


def _timed(func: Callable[[], object]) -> float:
    start = time.perf_counter()
    func()
    return time.perf_counter() - start


def _drop_all(node: Node) -> None:
    """Unpin everything and gc, so the next add writes every block again."""
    pins = node.kubo_cmd("pin", "ls", "--type=recursive", "--quiet").split()
    if pins:
        node.kubo_cmd("pin", "rm", *pins, timeout=600)
    node.kubo_cmd("repo", "gc", "--quiet", timeout=600)


def bench_publish(kubo: Path, work: Path, cfg: BenchConfig) -> dict[str, Any]:
    repo = work / "publish-repo"
    make_repo(repo, cfg.extensions, cfg.total_mib * 1024 * 1024)
    size = sum(p.stat().st_size for p in repo.iterdir())
    bare: list[float] = []
    ours: list[float] = []
    with Node(work / "publish-node", kubo) as node:
        client = node.client(timeout=600)

        def bare_add() -> None:
            node.kubo_cmd("add", "-r", "-Q", "--cid-version=1", "--raw-leaves", str(repo), timeout=1800)

        def our_publish() -> None:
            publish.publish(repo, client, progress=False)

        for r in range(cfg.repeats):
            order = [("bare", bare_add), ("publish", our_publish)]
            if r % 2:
                order.reverse()
            for label, func in order:
                seconds = _timed(func)
                (bare if label == "bare" else ours).append(seconds)
                log.info("publish bench: %s run %d: %.2f s", label, r + 1, seconds)
                _drop_all(node)
    return {
        "extensions": cfg.extensions,
        "bytes": size,
        "bare_add_s": bare,
        "publish_s": ours,
        "ratio_median": statistics.median(ours) / statistics.median(bare),
    }


def _closure_files(repo: Path) -> list[str]:
    names = [n.strip() for n in (repo / "onboot.lst").read_text().split() if n.strip()]
    return [f for n in names for f in (n, f"{n}.md5.txt")]


def _fetch_repo(work: Path, cfg: BenchConfig) -> tuple[Path, list[str], int]:
    """The fetch scenarios' repo (made once per run), its boot closure and the closure's size."""
    repo = work / "fetch-repo"
    if not repo.exists():
        make_repo(repo, FETCH_EXTENSIONS, cfg.fetch_mib * 1024 * 1024)
    files = _closure_files(repo)
    return repo, files, sum((repo / f).stat().st_size for f in files)


def _fetch_ipfs(client: Any, root: str, files: Sequence[str]) -> int:
    return sum(len(rpc.cat(client, f"/ipfs/{root}/{f}", timeout=600)) for f in files)


def _concurrently(jobs: Sequence[Callable[[], dict[str, Any]]]) -> list[dict[str, Any]]:
    """Run ``jobs`` in threads at once; each returns ``{"start", "end", "bytes"}`` (monotonic clock).

    Re-raises the first failure after every thread has ended.
    """
    results: list[dict[str, Any] | None] = [None] * len(jobs)
    errors: list[BaseException] = []

    def one(i: int) -> None:
        try:
            results[i] = jobs[i]()
        except BaseException as exc:  # handed to the caller below
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return [r for r in results if r is not None]


def _timed_job(func: Callable[[], int], barrier: threading.Barrier) -> Callable[[], dict[str, Any]]:
    def job() -> dict[str, Any]:
        barrier.wait()
        start = time.monotonic()
        got = func()
        return {"start": start, "end": time.monotonic(), "bytes": got}
    return job


def _wall(clients: Sequence[dict[str, Any]]) -> float:
    """First start to last end."""
    return float(max(c["end"] for c in clients) - min(c["start"] for c in clients))


def _ratio(a: Sequence[float], b: Sequence[float]) -> float:
    return statistics.median(a) / statistics.median(b)


def bench_fetch_loopback(kubo: Path, work: Path, cfg: BenchConfig) -> dict[str, Any]:
    repo, files, payload = _fetch_repo(work, cfg)
    with ExitStack() as stack:
        seed = stack.enter_context(Node(work / "seed", kubo))
        root = publish.publish(repo, seed.client(timeout=600), progress=False).root_cid
        seed_addr = f"{seed.swarm_addrs[0]}/p2p/{seed.peer_id}"
        base, served = stack.enter_context(http_mirror(repo))

        # One client, repeated: HTTP vs IPFS (fresh client repo each time so nothing is cached).
        http_s: list[float] = []
        ipfs_s: list[float] = []
        for r in range(cfg.repeats):
            http_s.append(_timed(lambda: fetch_http(base, files)))
            with Node(work / f"client-{r}", kubo, peers=[seed_addr]) as client_node:
                c = client_node.client(timeout=600)
                rpc.swarm_connect(c, seed_addr, timeout=30)
                ipfs_s.append(_timed(functools.partial(_fetch_ipfs, c, root, files)))
            shutil.rmtree(work / f"client-{r}", ignore_errors=True)

        # N clients at once, all connected to the seed and to each other.
        sent_before = int(rpc.bitswap_stat(seed.client()).get("DataSent", 0))
        clients = [stack.enter_context(Node(work / f"many-{i}", kubo, peers=[seed_addr]))
                   for i in range(cfg.clients)]
        addrs = [f"{n.swarm_addrs[0]}/p2p/{n.peer_id}" for n in clients]
        for n in clients:
            c = n.client(timeout=600)
            for a in [seed_addr, *addrs]:
                if not a.endswith(n.peer_id):
                    rpc.swarm_connect(c, a, timeout=30)
        barrier = threading.Barrier(len(clients))
        ipfs_runs = _concurrently([
            _timed_job(functools.partial(_fetch_ipfs, n.client(timeout=600), root, files), barrier)
            for n in clients])
        ipfs_sent = int(rpc.bitswap_stat(seed.client()).get("DataSent", 0)) - sent_before
        served["bytes"] = 0
        barrier = threading.Barrier(len(clients))
        http_runs = _concurrently([_timed_job(functools.partial(fetch_http, base, files), barrier)
                                   for _ in clients])
        http_sent = served["bytes"]
    concurrent = {
        "http_wall_s": [_wall(http_runs)], "ipfs_wall_s": [_wall(ipfs_runs)],
        "http_origin_bytes": [http_sent], "ipfs_origin_bytes": [ipfs_sent],
        "http_clients": [http_runs], "ipfs_clients": [ipfs_runs],
    }
    return {
        "scenario": "fetch-loopback",
        "payload_bytes": payload, "files": len(files), "clients": cfg.clients,
        "single": {"http_s": http_s, "ipfs_s": ipfs_s, "time_ratio": _ratio(ipfs_s, http_s)},
        "concurrent": _concurrent_summary(concurrent, payload),
    }


def _concurrent_summary(c: dict[str, Any], payload: int) -> dict[str, Any]:
    """Add the ratios to the raw lists of one concurrent-fetch measurement."""
    out = dict(c)
    out["time_ratio"] = _ratio(c["ipfs_wall_s"], c["http_wall_s"])
    for kind in ("http", "ipfs"):
        out[f"{kind}_egress_ratio"] = statistics.median(c[f"{kind}_origin_bytes"]) / payload
        if f"{kind}_wire_bytes" in c:
            out[f"{kind}_wire_ratio"] = statistics.median(c[f"{kind}_wire_bytes"]) / payload
    return out


# ---------------------------------------------------------------- fetch-link: origin behind a capped link
def _src_dir() -> str:
    """Where the ``tce_ipfs`` package lives (PYTHONPATH for our helpers inside a namespace)."""
    return str(Path(tce_ipfs.__file__).resolve().parents[1])


def _helper_argv(*args: str | os.PathLike[str]) -> list[str]:
    """The helper's command line (``python -m tce_ipfs.testbed.bench.helper ...``), run in a namespace."""
    return [sys.executable, "-m", f"{__package__}.helper", *(os.fspath(a) for a in args)]


def _read_stats(path: Path) -> dict[str, int]:
    data: dict[str, int] = json.loads(path.read_text())
    return data


def _start_link_mirror(lab: Any, root: Path, host: str, stats: Path) -> Any:
    """The HTTP mirror as a process inside the origin namespace; its counters go to ``stats``."""
    stats.unlink(missing_ok=True)
    mirror = lab.spawn("http-mirror", _helper_argv("serve-http", root, "--bind", host,
                                                   "--port", str(MIRROR_PORT), "--stats", stats),
                       env={"PYTHONPATH": _src_dir()})
    deadline = time.monotonic() + 30
    while not stats.exists():
        if not mirror.alive() or time.monotonic() > deadline:
            raise NodeError("the HTTP mirror in the origin namespace did not come up: "
                            + mirror.log_path.read_text(errors="replace")[-500:])
        time.sleep(0.05)
    return mirror


def _http_link_job(lab: Any, base: str, files: Sequence[str], at: float,
                   timeout: float) -> Callable[[], dict[str, Any]]:
    """One HTTP client: a process inside the clients namespace that starts fetching at ``at``."""
    def job() -> dict[str, Any]:
        res = lab.exec(_helper_argv("fetch-http", base, "--at", repr(at), *files),
                       env={"PYTHONPATH": _src_dir()}, timeout=timeout, what="HTTP fetch over the link")
        result: dict[str, Any] = json.loads(res.stdout)
        return result
    return job


def bench_fetch_link(kubo: Path, work: Path, cfg: BenchConfig) -> dict[str, Any]:
    from tce_ipfs.testbed.lab import start_kubo
    from tce_ipfs.testbed.link import ShapedLink

    repo, files, payload = _fetch_repo(work, cfg)
    n = cfg.clients
    # Generous: the whole of N payloads at a tenth of the link rate, plus a fixed margin.
    timeout = n * payload * 8 / (cfg.link_mbit * 1e6) * 10 + 120
    stats = work / "link-mirror-stats.json"
    runs: dict[str, dict[str, list[Any]]] = {
        mode: {f"{kind}_{what}": [] for kind in ("http", "ipfs")
               for what in ("wall_s", "origin_bytes", "wire_bytes", "clients")}
        for mode in ("single", "concurrent")}
    with ShapedLink(work / "link", rate_mbit=cfg.link_mbit) as link:
        seed = start_kubo(link.origin, "seed", kubo, work / "link-seed", listen_ip=link.origin_ip)
        root = publish.publish(repo, seed.client(timeout=600), progress=False).root_cid
        _start_link_mirror(link.origin, repo, link.origin_ip, stats)
        base = f"http://{link.origin_ip}:{MIRROR_PORT}"
        clients = [start_kubo(link.clients, f"client{i}", kubo, work / f"link-client-{i}",
                              listen_ip=link.clients_ip, port=4001 + i, peers=[seed.multiaddr])
                   for i in range(n)]
        for node in clients:
            with node.client(timeout=30) as c:
                for other in [seed, *clients]:
                    if other is not node:
                        rpc.swarm_connect(c, other.multiaddr, timeout=30)

        def seed_sent() -> int:
            with seed.client(timeout=30) as c:
                return int(rpc.bitswap_stat(c).get("DataSent", 0))

        def measure(kind: str, mode: str) -> None:
            k = 1 if mode == "single" else n
            if kind == "ipfs":
                for node in clients:  # nobody holds a block but the seed
                    node.node.kubo_cmd("repo", "gc", "--quiet", timeout=600)
                app_before = seed_sent()
                barrier = threading.Barrier(k)
                jobs = [_timed_job(functools.partial(_fetch_ipfs, node.client(timeout=timeout), root, files),
                                   barrier) for node in clients[:k]]
            else:
                app_before = _read_stats(stats)["bytes"]
                at = time.monotonic() + 3.0  # every fetcher process is up and waiting by then
                jobs = [_http_link_job(link.clients, base, files, at, timeout) for _ in range(k)]
            wire_before = link.tx_bytes("origin")
            got = _concurrently(jobs)
            wire = link.tx_bytes("origin") - wire_before
            app = (seed_sent() if kind == "ipfs" else _read_stats(stats)["bytes"]) - app_before
            r = runs[mode]
            r[f"{kind}_wall_s"].append(_wall(got))
            r[f"{kind}_origin_bytes"].append(app)
            r[f"{kind}_wire_bytes"].append(wire)
            r[f"{kind}_clients"].append(got)
            log.info("fetch-link %s %s: %.2f s, origin sent %d (wire %d) for %d x %d bytes",
                     kind, mode, _wall(got), app, wire, k, payload)

        for mode in ("single", "concurrent"):
            for rep in range(cfg.repeats):
                order = ["http", "ipfs"] if rep % 2 == 0 else ["ipfs", "http"]
                for kind in order:
                    measure(kind, mode)
        qdisc = link.qdiscs("origin")
    single = _concurrent_summary(runs["single"], payload)
    return {
        "scenario": "fetch-link",
        "link_mbit": cfg.link_mbit, "qdisc_origin": qdisc,
        "payload_bytes": payload, "files": len(files), "clients": n,
        "single": single,
        "concurrent": _concurrent_summary(runs["concurrent"], payload),
    }
