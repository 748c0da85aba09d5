"""The benchmark entry point runs and writes numbers and a plot (tiny sizes; nothing is timed here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tce_ipfs import bench

pytestmark = pytest.mark.kubo


def test_bench_writes_results_and_plot(host_kubo: Path, tmp_path: Path) -> None:
    cfg = bench.BenchConfig(extensions=6, total_mib=3, repeats=1, clients=2, out=tmp_path / "out")
    results = bench.run(host_kubo, cfg, fetch_mib=4)
    data = json.loads((cfg.out / "results.json").read_text())
    assert data["publish"]["extensions"] == 6
    assert data["publish"]["ratio_median"] > 0
    assert data["fetch"]["ratio_median"] > 0
    # HTTP serves every byte to every client; the seed must never send more than that.
    assert data["egress"]["http_egress_ratio"] == pytest.approx(2.0)
    assert 0 < data["egress"]["ipfs_egress_ratio"] <= 2.0 + 0.05
    assert (cfg.out / "bench.png").stat().st_size > 1000
    assert results.egress["clients"] == 2


def test_make_repo_is_valid_and_stable(tmp_path: Path) -> None:
    from tce_ipfs import tcrepo

    bench.make_repo(tmp_path / "a", 12, 12 * 5000)
    bench.make_repo(tmp_path / "b", 12, 12 * 5000)
    assert tcrepo.errors_only(tcrepo.check_repo(tmp_path / "a")) == []
    assert (tmp_path / "a/bench011.tcz").read_bytes() == (tmp_path / "b/bench011.tcz").read_bytes()
