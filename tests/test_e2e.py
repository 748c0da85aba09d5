"""End to end in QEMU: a guest boots with tce=ipfs:<CID> and loads its onboot closure from a host seed.

Positive boots for x86_64 and aarch64; negative boots (a CID nobody has, a corrupt .md5.txt) must still
reach the base system with one clear error line on the console, within the timeout.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from support import record
from tce_ipfs.arch import Arch
from tce_ipfs.testbed import e2e, samplerepo

pytestmark = [pytest.mark.qemu, pytest.mark.kubo]

@pytest.fixture(scope="module")
def seed(work: Path) -> Iterator[e2e.Seed]:
    with e2e.Seed(work) as s:
        yield s


@pytest.fixture(scope="module", params=[Arch.X86_64, Arch.AARCH64], ids=str)
def kit(request: pytest.FixtureRequest, work: Path) -> e2e.GuestKit:
    return e2e.prepare_kit(request.param, work)


@pytest.fixture(scope="module")
def x86_kit(work: Path) -> e2e.GuestKit:
    return e2e.prepare_kit(Arch.X86_64, work)


def test_boot_loads_onboot_closure_from_seed(kit: e2e.GuestKit, seed: e2e.Seed, work: Path) -> None:
    repo = samplerepo.build(work / f"repo-{kit.arch}", [kit.base.kver])
    cid = seed.publish(repo.path)
    memory = 512 if kit.arch is Arch.X86_64 else None
    outcome = e2e.boot(kit, e2e.boot_codes(cid, seed), e2e.check_initrd(work, samplerepo.check_script(repo),
                                                                        f"check-{kit.arch}.gz"),
                       net=seed.net(), memory=memory, seed=seed, log_path=work / f"console-{kit.arch}.log")
    assert outcome.ok, outcome.result.tail(60)
    assert any(line.startswith("tce-ipfs: loaded 6 extensions from ipfs:" + cid)
               for line in outcome.console_lines()), outcome.console_lines()
    # Every extension of the closure really came from the seed over bitswap.
    assert outcome.seed_bytes_sent >= repo.payload_bytes
    assert outcome.fields["extensions"].split(",") == repo.closure
    record(f"e2e-{kit.arch}", {
        "arch": str(kit.arch), "memory_mib": memory or "profile default",
        "qemu_start_to_sentinel_s": round(outcome.result.seconds, 1),
        "hook_total_s": outcome.fields.get("t_total"),
        "kubo_start_to_first_byte_s": outcome.fields.get("t_first_byte"),
        "kubo_peak_rss_kib": outcome.fields.get("kubo_hwm_kb"),
        "seed_bytes_sent": outcome.seed_bytes_sent, "payload_bytes": repo.payload_bytes,
        "hook_initrd_bytes": kit.hook_initrd.stat().st_size,
    })


def _unknown_cid(seed: e2e.Seed) -> str:
    """A well-formed CID of content no node has (hashed only, never stored)."""
    data = hashlib.sha256(b"nobody has this").hexdigest().encode()
    out = seed.node.kubo_cmd("add", "--only-hash", "-Q", "--cid-version=1", "--raw-leaves", input=data)
    return out.strip()


def test_unknown_cid_reports_and_boots_base(x86_kit: e2e.GuestKit, seed: e2e.Seed, work: Path) -> None:
    cid = _unknown_cid(seed)
    outcome = e2e.boot(x86_kit, e2e.boot_codes(cid, seed, timeout=25),
                       e2e.check_initrd(work, e2e.failure_check_script(), "check-fail.gz"),
                       net=seed.net(), timeout=200, log_path=work / "console-unknown.log")
    assert outcome.result.ok, outcome.result.tail(60)  # the base system came up
    assert (outcome.result.sentinel_line or "").split(": ", 1)[1].startswith("BASE-UP")
    failed = [ln for ln in outcome.console_lines() if ln.startswith("tce-ipfs: FAILED:")]
    assert failed and "onboot.lst" in failed[0], outcome.console_lines()
    assert outcome.fields.get("result") == "failed"
    assert float(outcome.fields["t_total"]) <= 25 + 5  # the hook honours its own timeout (bound, not perf)


def test_corrupt_md5_is_refused_and_base_boots(x86_kit: e2e.GuestKit, seed: e2e.Seed, work: Path) -> None:
    repo = samplerepo.build(work / "repo-bad", [x86_kit.base.kver])
    bad = repo.path / "greeter.tcz.md5.txt"
    bad.write_text("0" * 32 + "  greeter.tcz\n")
    cid = seed.publish(repo.path, check=False)  # the publisher would refuse it; a broken mirror might not
    outcome = e2e.boot(x86_kit, e2e.boot_codes(cid, seed, timeout=60),
                       e2e.check_initrd(work, e2e.failure_check_script(), "check-md5.gz"),
                       net=seed.net(), timeout=240, log_path=work / "console-md5.log")
    assert outcome.result.ok, outcome.result.tail(60)
    lines = outcome.console_lines()
    failed = [ln for ln in lines if "FAILED" in ln]
    assert failed and "greeter.tcz" in " ".join(lines), lines
    assert "md5" in " ".join(lines).lower(), lines
    # The corrupt extension was never placed where TC would load it.
    assert "greeter.tcz" not in outcome.fields.get("extensions", "").split(",")
    shutil.rmtree(repo.path, ignore_errors=True)
