"""The benchmark scenarios (see ``tce_ipfs.testbed.bench``): publish, fetch-loopback, fetch-link."""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import random
import shutil
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tce_ipfs.ipfs import publish, rpc
from tce_ipfs.ipfs.node import Node
from tce_ipfs.testbed.bench.mirror import fetch_http, http_mirror

log = logging.getLogger(__name__)

SCENARIOS = ("publish", "fetch-loopback", "fetch-link", "mirror", "routing")
FETCH_EXTENSIONS = 40  # the fetch repo; its onboot.lst (the boot closure) names the first 10


@dataclass
class BenchConfig:
    extensions: int = 200
    total_mib: int = 500
    repeats: int = 3
    clients: tuple[int, ...] = (1, 4, 8, 16)  # lab sizes for fetch-link; fetch-loopback uses the largest
    fetch_mib: int = 30  # the fetch repo; its boot closure (onboot.lst) is a quarter: 7.5 MiB
    link_mbit: tuple[float, ...] = (100.0, 20.0)  # origin uplink caps for fetch-link
    stock_seed: bool = False  # fetch-link also against a stock kubo seed (no super-seeding)
    mirror_extensions: int = 3000  # the mirror scenario's tree (2 releases x 2 arches)
    mirror_mib: int = 3072
    out: Path = Path("bench-results")


@dataclass
class BenchResults:
    config: dict[str, Any]
    publish: dict[str, Any] = field(default_factory=dict)
    fetch_loopback: dict[str, Any] = field(default_factory=dict)
    fetch_link: dict[str, Any] = field(default_factory=dict)
    mirror: dict[str, Any] = field(default_factory=dict)
    routing: dict[str, Any] = field(default_factory=dict)


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
                   for i in range(max(cfg.clients))]
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
        "payload_bytes": payload, "files": len(files), "clients": max(cfg.clients),
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


# ---------------------------------------------------------------- fetch-link: the lab as it is
def bench_fetch_link(kubo_bin: Path, work: Path, cfg: BenchConfig) -> dict[str, Any]:
    """The lab as it is (``bench.lab``): the seed role's build as origin, the plain build on machines."""
    from tce_ipfs.arch import Arch
    from tce_ipfs.build import kubo
    from tce_ipfs.testbed.bench import lab

    repo, _, _ = _fetch_repo(work, cfg)
    seed_kubo = kubo.ensure(Arch.host(), variant=kubo.SEED)
    # The seeds' kubo log level and super-seeding wait come from the environment, when set (tracing).
    seed_env = {k: v for k, v in os.environ.items() if k in ("GOLOG_LOG_LEVEL", "TCE_IPFS_SUPERSEED_WAIT")}
    link = lab.LinkConfig(clients=tuple(cfg.clients), caps_mbit=tuple(cfg.link_mbit),
                          repeats=cfg.repeats, stock_seed=cfg.stock_seed,
                          failures_dir=cfg.out / "fetch-link-failures", seed_env=seed_env)
    return lab.bench(kubo_bin, seed_kubo, kubo_bin if cfg.stock_seed else None, work, repo, link)
