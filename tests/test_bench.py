"""The benchmark entry point runs and writes numbers and a plot (tiny sizes; nothing is timed here)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tce_ipfs.testbed import bench, lab, lan
from tce_ipfs.testbed.bench import boot, scenarios


@pytest.mark.kubo
def test_bench_writes_results_and_plot(host_kubo: Path, tmp_path: Path) -> None:
    cfg = bench.BenchConfig(extensions=6, total_mib=3, repeats=1, clients=(1, 2), fetch_mib=4,
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
    """The lab as it is, tiny: 1 and 2 machines (each its own namespace, running the real hook) against
    the origin behind a 50 Mbit/s tbf cap; polite seed, stock seed and HTTP. Structure and byte
    accounting only; nothing of the LAN is left afterwards."""
    from tce_ipfs.testbed.bench import lab as labbench

    lans: list[lan.SwitchedLan] = []

    class Recorded(lan.SwitchedLan):
        def open(self) -> None:
            lans.append(self)
            super().open()

    monkeypatch.setattr(labbench, "SwitchedLan", Recorded)
    cfg = bench.BenchConfig(repeats=1, clients=(1, 2), fetch_mib=4, link_mbit=(50,), stock_seed=True,
                            out=tmp_path / "out")
    results = bench.run(host_kubo, cfg, ("fetch-link",))
    data = json.loads((cfg.out / "results.json").read_text())
    f: dict[str, Any] = data["fetch_link"]
    assert f == json.loads(json.dumps(results.fetch_link))
    assert data["publish"] == {} and data["fetch_loopback"] == {}
    assert f["scenario"] == "fetch-link" and f["clients"] == [1, 2] and f["caps_mbit"] == [50]
    (qdisc,) = f["qdisc_origin"]["50"]
    assert qdisc["kind"] == "tbf" and qdisc["options"]["rate"] == 50 * 10**6 // 8
    payload = f["payload_bytes"]
    runs = f["runs"]
    assert sorted((r["n"], r["kind"]) for r in runs) == [
        (n, k) for n in (1, 2) for k in sorted(("http", "ipfs", "ipfs-stock"))]
    for r in runs:
        n, clients = r["n"], r["clients"]
        assert len(clients) == n and r["wall_s"] == max(c["ready_s"] for c in clients) > 0
        assert r["failed_machines"] == 0 and all(c["result"] == "ok" for c in clients), clients
        # the hook counts the .tcz bytes it placed: the payload without the small list/.md5.txt/.dep
        assert all(payload - 2000 <= c["bytes"] <= payload for c in clients), clients
        # On the wire the origin sends at least what the application sent (plus headers).
        assert r["origin_wire_bytes"] >= r["origin_app_bytes"]
        if r["kind"] == "http":  # every byte to every client, exactly
            assert r["origin_app_bytes"] == n * payload
        else:  # never more than that (+5% protocol), every client got the whole closure from someone
            assert payload <= r["origin_app_bytes"] <= n * payload * 1.05
            assert all(c["from_origin"] + c["from_peers"] >= payload for c in clients)
            assert sum(c["from_origin"] for c in clients) <= r["origin_app_bytes"] + 4096
            assert all(c["t_total"] > 0 and c["kubo_cpu_s"] is not None for c in clients)
    row = f["summary"]["50"]["2"]
    assert row["http_egress_ratio"] == pytest.approx(2.0) and row["time_ratio"] > 0
    assert f["targets"]["cap_mbit"] == 100 and f["targets"]["egress_ratio"]["value"] is None  # no such run
    assert (cfg.out / "fetch-link.png").stat().st_size > 1000
    # Torn down: every namespace gone, no API socket left.
    (used,) = lans
    spaces = [used.switch, used.origin, *used.machines]
    assert not {s.netns for s in spaces} & set(lab.namespaces())
    assert not [sock for s in spaces for sock in s.sockets if sock.exists()]


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
