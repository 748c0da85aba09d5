"""Benchmarks (``tce-ipfs bench``): numbers and plots, never asserts. Every IPFS figure is compared, in the
same run, with the baseline a Tiny Core user has today (an HTTP mirror, or a bare ``ipfs add``), as a
ratio.

Scenarios
* ``publish``: ``tce-ipfs publish`` (checks md5 and deps, then adds) vs a bare ``ipfs add -r`` of the
  same directory on the same node (blocks removed between runs, order alternated).
* ``fetch-loopback``: a boot closure fetched from a seed over IPFS vs over HTTP from a mirror serving
  the same files, everything on loopback: one client (repeated), then N clients at once. This measures
  software overhead only: HTTP streams from the page cache at memory speed, which no real mirror does.
* ``fetch-link``: the realistic one. The origin (the seed kubo AND the HTTP mirror, same files) runs in
  one private network namespace, the clients (N kubo nodes and the HTTP fetchers) in another, joined
  by a veth pair capped with ``tc ... tbf rate <link_mbit>mbit`` (``link.ShapedLink``): the origin's
  uplink is the bottleneck. The clients share their namespace, an uncapped LAN, and are connected to the
  seed and to each other, so IPFS clients can get blocks from each other; HTTP clients only have the
  origin. One client, then N at once, each run repeated; for each: wall time and bytes the origin
  sent, both at the application (mirror's bytes served, seed's bitswap ``DataSent``) and on the wire
  (the veth's tx counter: frames with all headers).

Ratios: time is IPFS / HTTP (lower is better for IPFS); egress is origin bytes sent / payload (an HTTP
mirror's is N by construction: it serves every byte to every client).

Modules: ``scenarios`` (what is measured), ``mirror`` (the HTTP mirror baseline), ``plot`` (bench.png),
``helper`` (``python -m tce_ipfs.testbed.bench.helper``: the mirror and the HTTP fetchers as processes
inside a lab namespace). ``run()`` here ties them together.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from tce_ipfs.testbed.bench.plot import plot
from tce_ipfs.testbed.bench.scenarios import (
    SCENARIOS,
    BenchConfig,
    BenchResults,
    bench_fetch_link,
    bench_fetch_loopback,
    bench_publish,
)

__all__ = ["SCENARIOS", "BenchConfig", "BenchResults", "run"]


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
