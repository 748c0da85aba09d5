"""The boot benchmark: its arithmetic on fixed inputs, and a smoke run with one real boot per mode
(numbers are written, never asserted as timings)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tce_ipfs.arch import Arch
from tce_ipfs.testbed.bench import boot as bench_boot

IPFS_FIELDS = {
    "marks": "start:2.5,kubo_mount:2.6,kubo_init:5.3,net:5.3,kubo_ready:7.3,peers:8.1,list:9.3,"
             "first_byte:9.9,fetched:15.1,settled:15.1,end:15.2",
    "t_md5": "0.2", "t_place": "0.1", "t_total": "12.7", "t_first_byte": "4.6",
    "bootsync_up": "20.5", "sentinel_up": "20.6",
}


def test_parse_marks_keeps_the_first_of_a_name_and_skips_junk() -> None:
    assert bench_boot.parse_marks("start:1.5,net:2,bad,net:3.0,x:y") == {"start": 1.5, "net": 2.0}


def test_steps_add_up_to_the_whole_boot() -> None:
    steps = bench_boot.steps_of(IPFS_FIELDS, wall_s=21.0, total_s=21.5)
    assert list(steps) == list(bench_boot.STEPS)
    assert sum(steps.values()) == pytest.approx(21.5)
    assert steps["kernel, initrd, tc-config"] == pytest.approx(21.0 - 20.6 + 2.5)
    assert steps["kubo init"] == pytest.approx(2.8)
    assert steps["DHCP"] == 0.0
    assert steps["daemon start"] == pytest.approx(2.0)
    assert steps["first byte"] == pytest.approx(0.6)
    # first byte -> last file: 5.2 s, of which md5 0.2 and placing 0.1
    assert (steps["transfer"], steps["md5"], steps["placing"]) == pytest.approx((4.9, 0.2, 0.1))
    assert steps["TC's loading"] == pytest.approx(20.5 - 15.2)
    assert steps["shutdown"] == pytest.approx(0.5)


def test_http_boot_has_no_kubo_steps_and_overlapping_md5_is_capped() -> None:
    fields = {"marks": "start:2.4,net:2.9,list:2.9,first_byte:3.1,fetched:3.3,settled:3.3,end:3.4",
              "t_md5": "0.5", "t_place": "0.1", "bootsync_up": "4.8", "sentinel_up": "4.9"}
    steps = bench_boot.steps_of(fields, wall_s=7.0, total_s=7.0)
    assert steps["kubo init"] == steps["daemon start"] == steps["peer connect"] == 0.0
    assert steps["DHCP"] == pytest.approx(0.5)
    # md5 ran in parallel with transfers: it cannot take more than the span it lies in
    assert steps["md5"] == pytest.approx(0.2) and steps["placing"] == 0.0 and steps["transfer"] == 0.0
    assert sum(steps.values()) == pytest.approx(7.0)


def test_steps_need_the_clocks() -> None:
    assert bench_boot.steps_of({"marks": "start:1,end:2"}, 5.0, 5.0) == {}


def test_summary_medians_and_ratios() -> None:
    def rec(mode: str, wall: float, hook: float) -> bench_boot.BootRecord:
        return bench_boot.BootRecord(mode=mode, round=1, wall_s=wall, total_s=wall, cpu_s=wall / 2,
                                     hook_s=hook,
                                     first_byte_s=1.0 if mode == "ipfs" else None, seed_bytes_sent=0,
                                     steps=dict.fromkeys(bench_boot.STEPS, 1.0))
    boots = [rec("http", 10, 2), rec("ipfs", 12, 4), rec("http", 8, 3), rec("ipfs", 16, 5), rec("http", 9, 2)]
    s = bench_boot.summarize(boots)
    assert s["median"]["http"]["wall_s"] == 9 and s["median"]["ipfs"]["wall_s"] == 14
    assert s["ratio"]["wall"] == pytest.approx(14 / 9, abs=1e-3)
    assert s["ratio"]["hook"] == pytest.approx(4.5 / 2, abs=1e-3)
    assert s["ratio"]["cpu"] == pytest.approx(14 / 9, abs=1e-3)
    assert s["median"]["http"]["first_byte_s"] is None


@pytest.mark.qemu
@pytest.mark.kubo
def test_boot_bench_smoke(tmp_path: Path) -> None:
    """`tce-ipfs bench --only boot --repeats 1` end to end: one x86_64 boot per mode, both load the
    closure, the figures and the stacked-bar plot are written."""
    cfg = bench_boot.BootBenchConfig(arches=(Arch.X86_64,), repeats=1, out=tmp_path / "out",
                                     work=tmp_path / "work", modes=("http", "ipfs"))
    results = bench_boot.run(cfg)
    data = json.loads((cfg.out / "boot-results.json").read_text())
    assert data == json.loads(json.dumps(results))
    a = data["arches"]["x86_64"]
    assert [b["mode"] for b in a["boots"]] == ["http", "ipfs"]
    for boot in a["boots"]:
        assert set(boot["steps"]) == set(bench_boot.STEPS)
        assert sum(boot["steps"].values()) == pytest.approx(boot["total_s"], abs=0.05)
        assert boot["marks"]["start"] < boot["marks"]["list"] < boot["marks"]["end"]
    ipfs = next(b for b in a["boots"] if b["mode"] == "ipfs")
    assert ipfs["seed_bytes_sent"] >= a["payload_bytes"]
    assert {"kubo_init", "kubo_ready", "peers", "first_byte"} <= set(ipfs["marks"])
    assert a["ratio"]["wall"] > 0 and a["ratio"]["hook"] > 0 and a["ratio"]["cpu"] > 0
    assert all(0 < b["cpu_s"] <= b["wall_s"] * 1.5 for b in a["boots"])
    assert (cfg.out / "boot.png").stat().st_size > 1000
