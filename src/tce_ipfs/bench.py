"""Benchmarks: numbers and plots, never asserts. Every IPFS figure is compared, in the same run, with
the baseline a Tiny Core user has today (an HTTP mirror, or a bare ``ipfs add``), as a ratio.

Scenarios
* ``publish``: ``tce-ipfs publish`` (checks md5 and deps, then adds) vs a bare ``ipfs add -r`` of the
  same directory on the same node (blocks removed between runs, order alternated).
* ``fetch-loopback``: a boot closure fetched from a seed over IPFS vs over HTTP from a mirror serving
  the same files, everything on loopback: one client (repeated), then N clients at once. This measures
  software overhead only: HTTP streams from the page cache at memory speed, which no real mirror does.
* ``fetch-link``: the lab as it is (``labbench``). N machines (``clients``, e.g. 1, 4, 8, 16), each a
  network namespace of its own on one switched LAN, run the real boot hook at the same moment against
  the origin (the seed role's kubo AND an HTTP mirror of the same files) whose uplink is capped with
  ``tc ... tbf`` (``link_mbit``, e.g. 100 and 20 Mbit/s). IPFS machines get only ``ipfs.peers=<seed>``
  and find each other by mDNS, as at boot; HTTP machines boot with ``tce=http://`` to the mirror.
  Per run: time until all are ready, origin bytes sent (application and wire), per machine bytes from
  the origin vs from peers. Writes ``fetch-link.png`` (egress / payload and time against N).

Ratios: time is IPFS / HTTP (lower is better for IPFS); egress is origin bytes sent / payload (an HTTP
mirror's is N by construction: it serves every byte to every client).
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import http.server
import json
import logging
import os
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tce_ipfs import ipfsapi, publish
from tce_ipfs.errors import NodeError
from tce_ipfs.node import Node

log = logging.getLogger(__name__)

SCENARIOS = ("publish", "fetch-loopback", "fetch-link")
MIRROR_PORT = 8080  # the HTTP mirror inside the origin namespace (its own network: no clash possible)
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


class _MirrorHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files from ``directory``; ``on_served(n)`` is called before each body is sent (so the
    count is complete by the time a client has the bytes)."""

    on_served: Callable[[int], None] = staticmethod(lambda n: None)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def copyfile(self, source: Any, outputfile: Any) -> None:
        data = source.read()
        self.on_served(len(data))
        outputfile.write(data)


def _mirror_server(root: Path, host: str, port: int,
                   on_served: Callable[[int], None]) -> http.server.ThreadingHTTPServer:
    handler = type("Handler", (_MirrorHandler,), {"on_served": staticmethod(on_served)})
    return http.server.ThreadingHTTPServer((host, port),
                                           functools.partial(handler, directory=str(root)))


@contextmanager
def http_mirror(root: Path) -> Iterator[tuple[str, dict[str, int]]]:
    """A plain HTTP mirror on loopback serving ``root``; yields (base URL, counters)."""
    served = {"bytes": 0, "requests": 0}
    lock = threading.Lock()

    def count(n: int) -> None:
        with lock:
            served["bytes"] += n
            served["requests"] += 1

    server = _mirror_server(root, "127.0.0.1", 0, count)
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


def _fetch_repo(work: Path, cfg: BenchConfig) -> tuple[Path, list[str], int]:
    """The fetch scenarios' repo (made once per run), its boot closure and the closure's size."""
    repo = work / "fetch-repo"
    if not repo.exists():
        make_repo(repo, FETCH_EXTENSIONS, cfg.fetch_mib * 1024 * 1024)
    files = _closure_files(repo)
    return repo, files, sum((repo / f).stat().st_size for f in files)


def _fetch_http(base: str, files: Sequence[str]) -> int:
    total = 0
    for f in files:
        with urllib.request.urlopen(f"{base}/{f}", timeout=120) as resp:
            total += len(resp.read())
    return total


def _fetch_ipfs(client: Any, root: str, files: Sequence[str]) -> int:
    return sum(len(ipfsapi.cat(client, f"/ipfs/{root}/{f}", timeout=600)) for f in files)


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
            http_s.append(_timed(lambda: _fetch_http(base, files)))
            with Node(work / f"client-{r}", kubo, peers=[seed_addr]) as client_node:
                c = client_node.client(timeout=600)
                ipfsapi.swarm_connect(c, seed_addr, timeout=30)
                ipfs_s.append(_timed(functools.partial(_fetch_ipfs, c, root, files)))
            shutil.rmtree(work / f"client-{r}", ignore_errors=True)

        # N clients at once, all connected to the seed and to each other.
        sent_before = int(ipfsapi.bitswap_stat(seed.client()).get("DataSent", 0))
        clients = [stack.enter_context(Node(work / f"many-{i}", kubo, peers=[seed_addr]))
                   for i in range(max(cfg.clients))]
        addrs = [f"{n.swarm_addrs[0]}/p2p/{n.peer_id}" for n in clients]
        for n in clients:
            c = n.client(timeout=600)
            for a in [seed_addr, *addrs]:
                if not a.endswith(n.peer_id):
                    ipfsapi.swarm_connect(c, a, timeout=30)
        barrier = threading.Barrier(len(clients))
        ipfs_runs = _concurrently([
            _timed_job(functools.partial(_fetch_ipfs, n.client(timeout=600), root, files), barrier)
            for n in clients])
        ipfs_sent = int(ipfsapi.bitswap_stat(seed.client()).get("DataSent", 0)) - sent_before
        served["bytes"] = 0
        barrier = threading.Barrier(len(clients))
        http_runs = _concurrently([_timed_job(functools.partial(_fetch_http, base, files), barrier)
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


# ---------------------------------------------------------------- fetch-link: origin behind a capped link
def _src_dir() -> str:
    """Where the ``tce_ipfs`` package lives (PYTHONPATH for our helpers inside a namespace)."""
    return str(Path(__file__).resolve().parents[1])


def _helper_argv(*args: str | os.PathLike[str]) -> list[str]:
    """This module's own command line (``python -m tce_ipfs.bench ...``), for use inside a namespace."""
    return [sys.executable, "-m", "tce_ipfs.bench", *(os.fspath(a) for a in args)]


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


def bench_fetch_link(kubo_bin: Path, work: Path, cfg: BenchConfig) -> dict[str, Any]:
    """The lab as it is (``labbench``): the seed role's build as origin, the plain build on machines."""
    from tce_ipfs import kubo, labbench
    from tce_ipfs.arch import Arch

    repo, _, _ = _fetch_repo(work, cfg)
    seed_kubo = kubo.ensure(Arch.host(), variant=kubo.SEED)
    link = labbench.LinkConfig(clients=tuple(cfg.clients), caps_mbit=tuple(cfg.link_mbit),
                               repeats=cfg.repeats, stock_seed=cfg.stock_seed)
    return labbench.bench(kubo_bin, seed_kubo, kubo_bin if cfg.stock_seed else None, work, repo, link)


# ---------------------------------------------------------------------- plot
BASELINE_COLOUR, IPFS_COLOUR = "#999999", "#2a7ab9"


def _panel(ax: Any, labels: tuple[str, str], values: tuple[float, float], title: str, ylabel: str) -> None:
    """One baseline-vs-IPFS bar pair: the baseline always grey and on the left."""
    ax.bar(list(labels), list(values), color=[BASELINE_COLOUR, IPFS_COLOUR])
    ax.set_title(title)
    ax.set_ylabel(ylabel)


def _grouped_panel(ax: Any, groups: Sequence[str], http: Sequence[float], ipfs: Sequence[float],
                   title: str, ylabel: str) -> None:
    """Baseline-vs-IPFS bar pairs side by side, one pair per group (baseline grey, on the left)."""
    width = 0.38
    xs = range(len(groups))
    ax.bar([x - width / 2 for x in xs], list(http), width, color=BASELINE_COLOUR, label="HTTP mirror")
    ax.bar([x + width / 2 for x in xs], list(ipfs), width, color=IPFS_COLOUR, label="IPFS seed")
    ax.set_xticks(list(xs), list(groups))
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize="small")


def _fetch_panels(ax_time: Any, ax_egress: Any, f: dict[str, Any]) -> None:
    median = statistics.median
    s, c, n = f["single"], f["concurrent"], f["clients"]
    s_http = s.get("http_s") or s["http_wall_s"]
    s_ipfs = s.get("ipfs_s") or s["ipfs_wall_s"]
    where = (f"origin behind {f['link_mbit']:g} Mbit/s" if f["scenario"] == "fetch-link"
             else "all on loopback")
    groups = ("1 client", f"{n} clients")
    _grouped_panel(ax_time, groups, (median(s_http), median(c["http_wall_s"])),
                   (median(s_ipfs), median(c["ipfs_wall_s"])),
                   f"{f['scenario']}: {f['payload_bytes'] / 2**20:.0f} MiB closure, {where}\n"
                   f"IPFS/HTTP time: 1 client {s['time_ratio']:.2f}x, {n} clients {c['time_ratio']:.2f}x",
                   "wall seconds (median)")
    egress_groups = [f"{n} clients (app)"]
    http_e, ipfs_e = [c["http_egress_ratio"]], [c["ipfs_egress_ratio"]]
    if "http_wire_ratio" in c:
        egress_groups.append(f"{n} clients (wire)")
        http_e.append(c["http_wire_ratio"])
        ipfs_e.append(c["ipfs_wire_ratio"])
    _grouped_panel(ax_egress, egress_groups, http_e, ipfs_e,
                   f"{f['scenario']}: origin bytes sent / payload", "origin egress / payload")


def plot(results: BenchResults, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tce_ipfs import labbench

    paths = []
    if results.fetch_link:
        paths.append(labbench.plot(results.fetch_link, out / "fetch-link.png"))
    columns = [name for name, data in (("publish", results.publish),
                                       ("fetch-loopback", results.fetch_loopback)) if data]
    if not columns:
        return paths
    fig, axes = plt.subplots(2, max(len(columns), 1), figsize=(6 * max(len(columns), 1), 8),
                             squeeze=False)
    median = statistics.median
    for col, name in enumerate(columns):
        top, bottom = axes[0][col], axes[1][col]
        if name == "publish":
            p = results.publish
            _panel(top, ("bare ipfs add -r", "tce-ipfs publish"),
                   (median(p["bare_add_s"]), median(p["publish_s"])),
                   f"publish {p['extensions']} ext, {p['bytes'] / 2**20:.0f} MiB\n"
                   f"ratio {p['ratio_median']:.2f}x", "seconds (median)")
            bottom.axis("off")
        else:
            _fetch_panels(top, bottom, results.fetch_loopback)
    fig.tight_layout()
    path = out / "bench.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return [path, *paths]


def run(kubo: Path, cfg: BenchConfig, scenarios: Sequence[str] = SCENARIOS) -> BenchResults:
    unknown = set(scenarios) - set(SCENARIOS)
    if unknown:
        raise ValueError(f"unknown scenarios: {sorted(unknown)}")
    cfg.out.mkdir(parents=True, exist_ok=True)
    results = BenchResults(config={k: str(v) for k, v in asdict(cfg).items()})
    with tempfile.TemporaryDirectory(prefix="tce-ipfs-bench-") as tmp:
        work = Path(tmp)
        if "publish" in scenarios:
            results.publish = bench_publish(kubo, work, cfg)
        if "fetch-loopback" in scenarios:
            results.fetch_loopback = bench_fetch_loopback(kubo, work, cfg)
        if "fetch-link" in scenarios:
            results.fetch_link = bench_fetch_link(kubo, work, cfg)
    (cfg.out / "results.json").write_text(json.dumps(asdict(results), indent=2, default=str) + "\n")
    plot(results, cfg.out)
    return results


# ---------------------------------------------------------------------- helpers run inside a namespace
def _serve_http(root: Path, host: str, port: int, stats: Path) -> None:
    """The origin's HTTP mirror; keeps ``stats`` (``{"bytes", "requests"}``) current, atomically."""
    served = {"bytes": 0, "requests": 0}
    lock = threading.Lock()

    def write() -> None:
        tmp = stats.with_name(stats.name + ".tmp")
        tmp.write_text(json.dumps(served))
        os.replace(tmp, stats)

    def count(n: int) -> None:
        with lock:
            served["bytes"] += n
            served["requests"] += 1
            write()

    server = _mirror_server(root, host, port, count)
    write()  # "ready": the socket is bound
    server.serve_forever()


def _main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tce_ipfs.bench",
                                     description="benchmark helpers run inside a lab namespace")
    sub = parser.add_subparsers(dest="cmd", required=True)
    serve = sub.add_parser("serve-http")
    serve.add_argument("root", type=Path)
    serve.add_argument("--bind", required=True)
    serve.add_argument("--port", type=int, required=True)
    serve.add_argument("--stats", type=Path, required=True)
    args = parser.parse_args(argv)
    _serve_http(args.root, args.bind, args.port, args.stats)
    return 0


if __name__ == "__main__":
    sys.exit(_main())
