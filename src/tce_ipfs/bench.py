"""Benchmarks: numbers and plots, never asserts. Every IPFS figure is compared, in the same run, with
the baseline a Tiny Core user has today (an HTTP mirror, or a bare ``ipfs add``), as a ratio.

Scenarios
* ``publish``: ``tce-ipfs publish`` (checks md5 and deps, then adds) vs a bare ``ipfs add -r`` of the
  same directory on the same node (blocks removed between runs, order alternated).
* ``fetch``: one client fetching a boot closure from a seed over IPFS vs over HTTP from a mirror
  serving the same files on loopback.
* ``egress``: N clients fetching the same closure at once; the seed's bytes sent divided by the payload
  (an HTTP mirror's ratio is N by construction: it serves every byte to every client).
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import logging
import random
import shutil
import statistics
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tce_ipfs import ipfsapi, publish
from tce_ipfs.node import Node

log = logging.getLogger(__name__)


@dataclass
class BenchConfig:
    extensions: int = 200
    total_mib: int = 500
    repeats: int = 3
    clients: int = 3
    out: Path = Path("bench-results")


@dataclass
class BenchResults:
    config: dict[str, Any]
    publish: dict[str, Any] = field(default_factory=dict)
    fetch: dict[str, Any] = field(default_factory=dict)
    egress: dict[str, Any] = field(default_factory=dict)


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
    node.kubo_cmd("pin", "ls", "--type=recursive", "--quiet")
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


@contextmanager
def http_mirror(root: Path) -> Iterator[tuple[str, dict[str, int]]]:
    """A plain HTTP mirror on loopback serving ``root``; yields (base URL, counters)."""
    served = {"bytes": 0, "requests": 0}

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def copyfile(self, source: Any, outputfile: Any) -> None:
            data = source.read()
            served["bytes"] += len(data)
            served["requests"] += 1
            outputfile.write(data)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", served
    finally:
        server.shutdown()
        server.server_close()


def _closure_files(repo: Path) -> list[str]:
    names = [n.strip() for n in (repo / "onboot.lst").read_text().split() if n.strip()]
    return [f for n in names for f in (n, f"{n}.md5.txt")]


def _fetch_http(base: str, files: list[str]) -> int:
    total = 0
    for f in files:
        with urllib.request.urlopen(f"{base}/{f}", timeout=120) as resp:
            total += len(resp.read())
    return total


def _fetch_ipfs(client: Any, root: str, files: list[str]) -> int:
    return sum(len(ipfsapi.cat(client, f"/ipfs/{root}/{f}", timeout=600)) for f in files)


def bench_fetch(kubo: Path, work: Path, cfg: BenchConfig,
                fetch_mib: int = 100) -> tuple[dict[str, Any], dict[str, Any]]:
    repo = work / "fetch-repo"
    make_repo(repo, 40, fetch_mib * 1024 * 1024)
    files = _closure_files(repo)
    payload = sum((repo / f).stat().st_size for f in files)
    with ExitStack() as stack:
        seed = stack.enter_context(Node(work / "seed", kubo))
        root = publish.publish(repo, seed.client(timeout=600), progress=False).root_cid
        seed_addr = f"{seed.swarm_addrs[0]}/p2p/{seed.peer_id}"
        base, served = stack.enter_context(http_mirror(repo))

        # One client, repeated: HTTP vs IPFS (fresh client repo each time so nothing is cached).
        http_s: list[float] = []
        ipfs_s: list[float] = []
        for r in range(cfg.repeats):
            http_s.append(_timed(lambda: _fetch_http(base, files)))
            with Node(work / f"client-{r}", kubo, peers=[seed_addr]) as client_node:
                c = client_node.client(timeout=600)
                ipfsapi.swarm_connect(c, seed_addr, timeout=30)
                ipfs_s.append(_timed(functools.partial(_fetch_ipfs, c, root, files)))
            shutil.rmtree(work / f"client-{r}", ignore_errors=True)
        fetch = {"payload_bytes": payload, "http_s": http_s, "ipfs_s": ipfs_s,
                 "ratio_median": statistics.median(ipfs_s) / statistics.median(http_s)}

        # N clients at once, all connected to the seed and to each other.
        sent_before = int(ipfsapi.bitswap_stat(seed.client()).get("DataSent", 0))
        clients = [stack.enter_context(Node(work / f"many-{i}", kubo, peers=[seed_addr]))
                   for i in range(cfg.clients)]
        addrs = [f"{n.swarm_addrs[0]}/p2p/{n.peer_id}" for n in clients]
        for n in clients:
            c = n.client(timeout=600)
            for a in [seed_addr, *addrs]:
                if not a.endswith(n.peer_id):
                    ipfsapi.swarm_connect(c, a, timeout=30)
        served["bytes"] = 0
        threads = [threading.Thread(target=_fetch_ipfs, args=(n.client(timeout=600), root, files))
                   for n in clients]
        http_threads = [threading.Thread(target=_fetch_http, args=(base, files)) for _ in clients]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        ipfs_wall = time.perf_counter() - start
        start = time.perf_counter()
        for t in http_threads:
            t.start()
        for t in http_threads:
            t.join()
        http_wall = time.perf_counter() - start
        sent = int(ipfsapi.bitswap_stat(seed.client()).get("DataSent", 0)) - sent_before
        egress = {
            "clients": cfg.clients,
            "payload_bytes": payload,
            "seed_sent_bytes": sent,
            "ipfs_egress_ratio": sent / payload,
            "http_egress_ratio": served["bytes"] / payload,
            "ipfs_wall_s": ipfs_wall,
            "http_wall_s": http_wall,
        }
    return fetch, egress


BASELINE_COLOUR, IPFS_COLOUR = "#999999", "#2a7ab9"


def _panel(ax: Any, labels: tuple[str, str], values: tuple[float, float], title: str, ylabel: str) -> None:
    """One baseline-vs-IPFS bar pair: the baseline always grey and on the left."""
    ax.bar(list(labels), list(values), color=[BASELINE_COLOUR, IPFS_COLOUR])
    ax.set_title(title)
    ax.set_ylabel(ylabel)


def plot(results: BenchResults, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    median = statistics.median
    if results.publish:
        p = results.publish
        _panel(axes[0], ("bare ipfs add -r", "tce-ipfs publish"),
               (median(p["bare_add_s"]), median(p["publish_s"])),
               f"publish {p['extensions']} ext, {p['bytes'] / 2**20:.0f} MiB\nratio {p['ratio_median']:.2f}x",
               "seconds (median)")
    if results.fetch:
        f = results.fetch
        _panel(axes[1], ("HTTP mirror", "IPFS seed"), (median(f["http_s"]), median(f["ipfs_s"])),
               f"fetch boot closure ({f['payload_bytes'] / 2**20:.0f} MiB)\nratio {f['ratio_median']:.2f}x",
               "seconds (median)")
    if results.egress:
        e = results.egress
        _panel(axes[2], ("HTTP mirror", "IPFS seed"), (e["http_egress_ratio"], e["ipfs_egress_ratio"]),
               f"origin egress / payload, {e['clients']} clients", "bytes served by origin / payload")
    fig.tight_layout()
    path = out / "bench.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    paths.append(path)
    return paths


def run(kubo: Path, cfg: BenchConfig, scenarios: tuple[str, ...] = ("publish", "fetch"),
        fetch_mib: int = 100) -> BenchResults:
    cfg.out.mkdir(parents=True, exist_ok=True)
    results = BenchResults(config={k: str(v) for k, v in asdict(cfg).items()})
    with tempfile.TemporaryDirectory(prefix="tce-ipfs-bench-") as tmp:
        work = Path(tmp)
        if "publish" in scenarios:
            results.publish = bench_publish(kubo, work, cfg)
        if "fetch" in scenarios:
            results.fetch, results.egress = bench_fetch(kubo, work, cfg, fetch_mib)
    (cfg.out / "results.json").write_text(json.dumps(asdict(results), indent=2, default=str) + "\n")
    plot(results, cfg.out)
    return results
