"""The benchmark entry point runs and writes numbers and a plot (tiny sizes; nothing is timed here)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tce_ipfs.testbed import bench, lab, link
from tce_ipfs.testbed.bench import boot, scenarios


@pytest.mark.kubo
def test_bench_writes_results_and_plot(host_kubo: Path, tmp_path: Path) -> None:
    cfg = bench.BenchConfig(extensions=6, total_mib=3, repeats=1, clients=2, fetch_mib=4,
                            out=tmp_path / "out")
    results = bench.run(host_kubo, cfg, ("publish", "fetch-loopback"))
    data = json.loads((cfg.out / "results.json").read_text())
    assert data["publish"]["extensions"] == 6
    assert data["publish"]["ratio_median"] > 0
    f = data["fetch_loopback"]
    assert f["scenario"] == "fetch-loopback" and f["clients"] == 2
    assert f["single"]["time_ratio"] > 0 and f["concurrent"]["time_ratio"] > 0
    # HTTP serves every byte to every client; the seed must never send more than that.
    assert f["concurrent"]["http_egress_ratio"] == pytest.approx(2.0)
    assert 0 < f["concurrent"]["ipfs_egress_ratio"] <= 2.0 + 0.05
    for kind in ("http", "ipfs"):
        assert [c["bytes"] for c in f["concurrent"][f"{kind}_clients"][0]] == [f["payload_bytes"]] * 2
    assert data["fetch_link"] == {}
    assert (cfg.out / "bench.png").stat().st_size > 1000
    assert results.fetch_loopback["clients"] == 2


@pytest.mark.kubo
@pytest.mark.root
def test_bench_fetch_link(host_kubo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Origin (seed + mirror) behind a tbf-capped veth, 2 clients on their own LAN: structure and
    byte accounting only; and nothing of the two namespaces is left afterwards."""
    links: list[link.ShapedLink] = []

    class Recorded(link.ShapedLink):
        def open(self) -> None:
            links.append(self)
            super().open()

    monkeypatch.setattr(link, "ShapedLink", Recorded)
    cfg = bench.BenchConfig(repeats=1, clients=2, fetch_mib=4, link_mbit=50, out=tmp_path / "out")
    results = bench.run(host_kubo, cfg, ("fetch-link",))
    data = json.loads((cfg.out / "results.json").read_text())
    f: dict[str, Any] = data["fetch_link"]
    assert f == json.loads(json.dumps(results.fetch_link))
    assert data["publish"] == {} and data["fetch_loopback"] == {}
    assert f["scenario"] == "fetch-link" and f["clients"] == 2 and f["link_mbit"] == 50
    assert [q["kind"] for q in f["qdisc_origin"]] == ["tbf"]
    assert f["qdisc_origin"][0]["options"]["rate"] == 50 * 10**6 // 8
    payload = f["payload_bytes"]
    for mode, n in (("single", 1), ("concurrent", 2)):
        m = f[mode]
        for kind in ("http", "ipfs"):
            assert len(m[f"{kind}_wall_s"]) == 1 and m[f"{kind}_wall_s"][0] > 0
            assert [c["bytes"] for c in m[f"{kind}_clients"][0]] == [payload] * n
            # On the wire the origin sends at least what the application sent (plus headers).
            assert m[f"{kind}_wire_bytes"][0] >= m[f"{kind}_origin_bytes"][0]
        assert m["time_ratio"] > 0
        # HTTP: every byte to every client, exactly; IPFS: never more than that (+5% protocol).
        assert m["http_origin_bytes"] == [n * payload]
        assert m["http_egress_ratio"] == pytest.approx(n)
        assert 0 < m["ipfs_origin_bytes"][0] <= n * payload * 1.05
        assert m["http_wire_ratio"] < n * 1.1
    assert (cfg.out / "bench.png").stat().st_size > 1000
    # Torn down: both namespaces gone, no API socket left.
    assert len(links) == 1
    gone = {links[0].origin.netns, links[0].clients.netns}
    assert not gone & set(lab.namespaces())
    assert not [s for s in links[0].origin.sockets + links[0].clients.sockets if s.exists()]
    assert not links[0].origin.pids() and not links[0].clients.pids()


def test_cli_knows_every_scenario() -> None:
    from tce_ipfs.commands import bench as command

    assert command.HOST_SCENARIOS == bench.SCENARIOS
    assert (*bench.SCENARIOS, boot.SCENARIO) == command.SCENARIOS
    with pytest.raises(ValueError, match="unknown scenarios"):
        bench.run(Path("/nonexistent/ipfs"), bench.BenchConfig(out=Path("/nonexistent")), ("fetch",))


def test_make_repo_is_valid_and_stable(tmp_path: Path) -> None:
    from tce_ipfs import tcrepo

    scenarios.make_repo(tmp_path / "a", 12, 12 * 5000)
    scenarios.make_repo(tmp_path / "b", 12, 12 * 5000)
    assert tcrepo.errors_only(tcrepo.check_repo(tmp_path / "a")) == []
    assert (tmp_path / "a/bench011.tcz").read_bytes() == (tmp_path / "b/bench011.tcz").read_bytes()
