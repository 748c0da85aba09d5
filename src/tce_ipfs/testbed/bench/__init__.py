"""Benchmarks (``tce-ipfs bench``): numbers and plots, never asserts. Every IPFS figure is compared, in the
same run, with the baseline a Tiny Core user has today (an HTTP mirror, or a bare ``ipfs add``), as a
ratio.

Scenarios
* ``publish``: ``tce-ipfs publish`` (checks md5 and deps, then adds) vs a bare ``ipfs add -r`` of the
  same directory on the same node (blocks removed between runs, order alternated).
* ``fetch-loopback``: a boot closure fetched from a seed over IPFS vs over HTTP from a mirror serving
  the same files, everything on loopback: one client (repeated), then N clients at once. This measures
  software overhead only: HTTP streams from the page cache at memory speed, which no real mirror does.
* ``fetch-link``: the lab as it is (``lab``). For each lab size N (``clients``, e.g. 1, 4, 8, 16) N
  machines, each a network namespace of its own on one switched LAN (``testbed.lan``), run the real boot
  hook (``testbed.hookrun``) at the same moment against the origin -- the seed role's kubo build and an
  HTTP mirror of the same files -- whose uplink is capped with ``tc ... tbf`` (``link_mbit``, e.g. 100
  and 20 Mbit/s). IPFS machines get only ``ipfs.peers=<seed>`` and find each other by mDNS, as at
  boot; HTTP machines boot with ``tce=http://`` to the mirror. Per run: time until all are ready,
  origin bytes sent (application: seed's bitswap ``DataSent`` / mirror's bytes served; wire: the
  origin's tx counter), per machine bytes from the origin vs from peers. ``fetch-link.png``: origin
  egress / payload and time against N, IPFS next to HTTP.
* ``routing``: content routing for a machine at home (``routing``): DHT client, a delegated HTTP
  router, or both, on the simulated internet (needs root); ``routing-results.json``, ``routing.png``.

Ratios: time is IPFS / HTTP (lower is better for IPFS); egress is origin bytes sent / payload (an HTTP
mirror's is N by construction: it serves every byte to every client).

Modules: ``scenarios`` (what is measured), ``lab`` (fetch-link's lab of hook machines), ``mirror`` (the
HTTP mirror baseline), ``plot`` (bench.png, fetch-link.png), ``helper`` (``python -m
tce_ipfs.testbed.bench.helper``: the mirror as a process inside a lab namespace). ``run()`` here ties
them together.
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
        if "mirror" in scenarios:
            from tce_ipfs.testbed.bench.mirrorscale import bench_mirror

            results.mirror = bench_mirror(kubo, work, cfg.mirror_extensions, cfg.mirror_mib, cfg.repeats)
        if "routing" in scenarios:
            from tce_ipfs.testbed.bench import routing

            results.routing = routing.run(kubo, work, cfg.out, cfg.repeats)
    (cfg.out / "results.json").write_text(json.dumps(asdict(results), indent=2, default=str) + "\n")
    plot(results, cfg.out)
    return results
