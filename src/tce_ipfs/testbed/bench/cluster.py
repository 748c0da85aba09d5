"""The cluster benchmark (``tce-ipfs cluster bench``, root): seeds replicating a repo on the lab LAN.

N cluster seeds (``tce-ipfs cluster start``, each on its own address of one lab LAN namespace) and the
bench repo (``scenarios.make_repo``: 200 extensions, 500 MiB by default). Measured, in the same run:

* ``publish --cluster`` through seed 1: the add on seed 1, then the time from the pin request to
  "pinned on N/N" (the other seeds fetch every block from seed 1 and from each other over bitswap),
  with the time each seed finished;
* a republish after one new extension (what a repo update costs: only the new blocks move);
* the baseline an HTTP mirror network has today: N-1 mirrors each download the whole repo from the
  origin's HTTP server at once (``helper fetch-http``, the bytes are read, not written: generous to
  HTTP). Ratio: cluster time to N/N / HTTP time for every mirror to have it;
* the resident memory of each cluster peer and of each kubo after the run.

Writes ``cluster-results.json`` and ``cluster.png`` (when matplotlib is installed) into ``out``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from tce_ipfs.ipfs import clusterpins, rpc
from tce_ipfs.ipfs.cluster import ClusterSeed
from tce_ipfs.ipfs.clusterconfig import ClusterState
from tce_ipfs.ipfs.publish import publish
from tce_ipfs.ipfs.seed import pin_name
from tce_ipfs.testbed.bench import mirror
from tce_ipfs.testbed.bench.scenarios import make_repo
from tce_ipfs.testbed.lab import Lab

log = logging.getLogger(__name__)


def _start(lab: Lab, state: Path, addr: str, name: str, kubo: Path, service: Path,
           join: list[str | Path]) -> dict[str, Any]:
    """``tce-ipfs cluster start`` run inside the lab namespace (as on that seed's machine)."""
    res = lab.exec([sys.executable, "-m", "tce_ipfs", "cluster", "start", "--state", state, "--listen", addr,
                    "--api-port", "0", "--rest-port", "0", "--name", name, "--kubo", kubo,
                    "--service", service, "--json", *join], env={"PYTHONPATH": mirror.src_dir()}, timeout=600)
    info: dict[str, Any] = json.loads(res.stdout)
    return info


def _timeline(api: Any, cid: str, started: float, want: int, timeout: float) -> dict[str, float]:
    """Seconds (from ``started``) at which each seed reported the root pinned."""
    done: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    while len(done) < want and time.monotonic() < deadline:
        for p in (api.status(cid).get("peer_map") or {}).values():
            if p.get("status") == "pinned" and p.get("peername") not in done:
                done[str(p.get("peername"))] = round(time.monotonic() - started, 2)
        time.sleep(0.2)
    return done


def _http_baseline(lab: Lab, repo: Path, origin: str, mirrors: int, work: Path) -> dict[str, Any]:
    """N-1 mirrors download the whole repo from the origin's HTTP server at the same moment."""
    server = mirror.start_in(lab, repo, origin, work / "mirror-stats.json")
    files = sorted(p.name for p in repo.iterdir() if p.is_file())
    at = time.monotonic() + 2.0
    results: list[dict[str, Any]] = []

    def one() -> None:
        argv = mirror.helper_argv("fetch-http", f"http://{origin}:{mirror.PORT}", "--at", repr(at), *files)
        res = lab.exec(argv, env={"PYTHONPATH": mirror.src_dir()}, timeout=3600, what="HTTP mirror sync")
        results.append(json.loads(res.stdout))

    threads = [threading.Thread(target=one) for _ in range(mirrors)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    server.stop()
    return {"mirrors": mirrors, "seconds": round(max(r["end"] for r in results) - at, 2),
            "bytes_each": [r["bytes"] for r in results]}


def run(kubo: Path, service: Path, work: Path, out: Path, *, seeds: int = 3, total_mib: int = 500,
        extensions: int = 200) -> dict[str, Any]:
    """The whole benchmark (see the module doc); returns and writes the results."""
    out.mkdir(parents=True, exist_ok=True)
    repo = work / "repo"
    make_repo(repo, extensions, total_mib * 1024 * 1024)
    payload = sum(p.stat().st_size for p in repo.iterdir())
    states = [ClusterState(work / f"seed{i + 1}") for i in range(seeds)]
    results: dict[str, Any] = {"seeds": seeds, "extensions": extensions, "payload_bytes": payload}
    with Lab(work / "lab", dhcp=False) as lab:
        try:
            addrs = [lab.add_address() for _ in states]
            first = _start(lab, states[0].path, addrs[0], "seed1", kubo, service, [])
            join: list[str | Path] = ["--join", first["cluster_addrs"][0], "--secret", states[0].secret_path]
            for i in range(1, seeds):
                _start(lab, states[i].path, addrs[i], f"seed{i + 1}", kubo, service, join)
            api = ClusterSeed(states[0]).api(timeout=120)
            with rpc.client(clusterpins.kubo_api_of(states[0]), timeout=1800) as client:
                t0 = time.monotonic()
                result = publish(repo, client, progress=False)
                add_s = time.monotonic() - t0
                t1 = time.monotonic()
                api.pin(result.root_cid, name=pin_name(str(repo)))
                timeline = _timeline(api, result.root_cid, t1, seeds, 3600)
                results["first"] = {"add_s": round(add_s, 2), "pinned_at_s": timeline,
                                    "to_all_s": max(timeline.values(), default=None)}
                log.info("cluster bench: %d seeds hold %s after %s s", len(timeline), result.root_cid,
                         results["first"]["to_all_s"])
                name = "zz-update.tcz"
                data = os.urandom(2 * 1024 * 1024)
                (repo / name).write_bytes(data)
                (repo / f"{name}.md5.txt").write_text(f"{hashlib.md5(data).hexdigest()}  {name}\n")
                t2 = time.monotonic()
                res = clusterpins.publish_to_cluster(api, client, repo, keep=1, timeout=3600)
                results["update"] = {"total_s": round(time.monotonic() - t2, 2),
                                     "to_all_s": round(res.seconds_to_pinned, 2), "new_bytes": len(data)}
            results["rss"] = {s.path.name: {"cluster": ClusterSeed(s).status()["rss"],
                                            "kubo": ClusterSeed(s).status()["kubo_rss"]} for s in states}
            results["http"] = _http_baseline(lab, repo, addrs[0], seeds - 1, work)
            if results["first"]["to_all_s"]:
                results["ratio_cluster_vs_http"] = round(results["first"]["to_all_s"] /
                                                         results["http"]["seconds"], 2)
        finally:
            for s in states:
                ClusterSeed(s).stop(timeout=30)
    (out / "cluster-results.json").write_text(json.dumps(results, indent=2) + "\n")
    _plot(results, out)
    return results


def _plot(results: dict[str, Any], out: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.info("matplotlib not installed: no cluster.png")
        return
    fig, ax = plt.subplots(figsize=(6, 3))
    labels = ["cluster: pinned on all", "HTTP: every mirror synced", "cluster: update"]
    values = [results["first"]["to_all_s"] or 0, results["http"]["seconds"], results["update"]["to_all_s"]]
    ax.barh(labels, values, color=["tab:blue", "tab:gray", "tab:cyan"])
    ax.set_xlabel("seconds")
    ax.set_title(f"{results['payload_bytes'] / 2**20:.0f} MiB repo to {results['seeds']} seeds (lab LAN)")
    fig.tight_layout()
    fig.savefig(out / "cluster.png", dpi=100)
    plt.close(fig)
