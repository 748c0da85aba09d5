"""End to end in QEMU: a guest boots with tce=ipfs:<CID> and loads its onboot closure from a host seed.

Positive boots for x86_64 and aarch64 (the aarch64 guest loads through piCore's tce-bootload), for
tce=ipfs:<CID>, tce=ipfs:<CID>/sub and lst=other.lst, each followed by after-boot checks (the tce dir,
tce-load -i, tce-load -wi from a mirror, tce-ipfs install, ipfs mounted and set up once). Negative
boots (a CID nobody has, a corrupt .md5.txt) must still reach the base system with one clear error
line on the console, within the timeout.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from support import record
from support.gateway import CorruptingGateway
from tce_ipfs.arch import Arch
from tce_ipfs.build import recipes
from tce_ipfs.testbed import e2e, guest, qemu, samplerepo

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


AGENT_EXTS = ["glibc-testbase.tcz", "python3.11.tcz", "tce-ipfs-agent.tcz"]  # load order, deps first


@dataclass
class Published:
    repo: samplerepo.SampleRepo
    cid: str  # the repo at the root
    wrapped: str  # a directory holding the same repo at "sub"
    closure: list[str]  # what a boot loads, deps first
    payload: int  # bytes of the closure's .tcz files
    mirror: Path  # TC's mirror layout: <mirror>/<major>.x/<build>/tcz/
    local_tcz: bytes  # localext.tcz, put into the guest for `tce-load -i PATH`


def tc_major() -> str:
    """The test base's major release (TC's getMajorVer: VERSION_ID of /etc/os-release, 16.0 -> 16)."""
    text = (guest.base_dir() / "rootfs/etc/os-release").read_text()
    version = next(line.split("=", 1)[1] for line in text.splitlines() if line.startswith("VERSION_ID="))
    return version.strip('"').split(".")[0]


@pytest.fixture(scope="module")
def published(kit: e2e.GuestKit, seed: e2e.Seed, work: Path) -> Published:
    """The sample repo + python3.11 + the agent (all loaded at boot, so `tce-ipfs install` works after
    boot), with the same list as onboot.lst and other.lst; a mirror with mirrored (+ mirrordep)."""
    arch = kit.arch
    repo = samplerepo.build(work / f"repo-{arch}", [kit.base.kver])
    recipes.build("python3.11", arch, repo.path, testbase=True)
    recipes.build("tce-ipfs-agent", arch, repo.path)
    onboot = "".join(f"{n}\n" for n in [*repo.onboot, "tce-ipfs-agent.tcz"])
    (repo.path / "onboot.lst").write_text(onboot)
    (repo.path / "other.lst").write_text(onboot)
    cid = seed.publish(repo.path)
    closure = [*repo.closure, *AGENT_EXTS]
    mirror = work / f"mirror-{arch}"
    tczdir = mirror / f"{tc_major()}.x" / arch.info.tc_repo / "tcz"
    e2e.small_tcz(work / f"src-{arch}", "mirrordep", "mirrordep ok", tczdir)
    e2e.small_tcz(work / f"src-{arch}", "mirrored", "mirrored ok", tczdir, deps=["mirrordep.tcz"])
    local = e2e.small_tcz(work / f"src-{arch}", "localext", "local ok", work / f"local-{arch}")
    return Published(repo=repo, cid=cid, wrapped=seed.wrap(cid, "sub"), closure=closure,
                     payload=sum((repo.path / n).stat().st_size for n in closure), mirror=mirror,
                     local_tcz=local.read_bytes())


# tce= value, extra boot codes and the list tce-load -wi appends to, per variant
VARIANTS = {
    "cid": ("{cid}", [], "onboot.lst"),
    "sub": ("{wrapped}/sub", [], "onboot.lst"),
    "lst": ("{cid}", ["lst=other.lst"], "other.lst"),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_boot_loads_onboot_closure_from_seed(kit: e2e.GuestKit, seed: e2e.Seed, published: Published,
                                             work: Path, variant: str) -> None:
    """The onboot closure loads from the seed; afterwards the guest is a normal Tiny Core: the tce dir
    resolves, ipfs is mounted and set up once, and as user tc tce-load -i (a local file), tce-load -wi
    (from a mirror) and tce-ipfs install (from the booted repo) work."""
    value, codes, lst = VARIANTS[variant]
    tce_id = value.format(cid=published.cid, wrapped=published.wrapped)
    if kit.arch is Arch.AARCH64:
        codes = [*codes, "debugbootload"]  # tce-bootload logs each step to /tmp/debugboot.log
    after = e2e.AfterBoot(lst=lst, local_tcz="/tmp/e2e/localext.tcz", local_says="local ok",
                          mirror_ext="mirrored", mirror_says="mirrored ok",
                          agent_ext="extra", agent_says="extra data", loader=qemu.profile(kit.arch).loader)
    script = samplerepo.check_script(published.repo, closure=published.closure, extra=after.script())
    check = guest.write_overlay(work / f"check-{kit.arch}-{variant}.gz", {
        "opt/bootsync.sh": (script.encode(), 0o755),
        "tmp/e2e/localext.tcz": (published.local_tcz, 0o644),
    })
    memory = 512 if kit.arch is Arch.X86_64 else None
    with e2e.http_mirror(published.mirror) as mirror_port:
        net = qemu.user_restricted({e2e.SEED_GUEST_PORT: seed.swarm_port, e2e.MIRROR_GUEST_PORT: mirror_port})
        outcome = e2e.boot(kit, e2e.boot_codes(tce_id, seed, extra=codes), check, net=net, memory=memory,
                           seed=seed, timeout=600, log_path=work / f"console-{kit.arch}-{variant}.log")
    assert outcome.ok, outcome.result.tail(60)
    assert "after-boot checks passed" in outcome.result.log_text
    n = len(published.closure)
    assert any(line.startswith(f"tce-ipfs: loaded {n} extensions from ipfs:{tce_id} in ")
               for line in outcome.console_lines()), outcome.console_lines()
    # Every extension of the closure really came from the seed over bitswap.
    assert outcome.seed_bytes_sent >= published.payload
    assert outcome.fields["extensions"].split(",") == published.closure
    record(f"e2e-{kit.arch}-{variant}", {
        "arch": str(kit.arch), "variant": variant, "memory_mib": memory or "profile default",
        "qemu_start_to_sentinel_s": round(outcome.result.seconds, 1),
        "hook_total_s": outcome.fields.get("t_total"),
        "kubo_start_to_first_byte_s": outcome.fields.get("t_first_byte"),
        "kubo_peak_rss_kib": outcome.fields.get("kubo_hwm_kb"),
        "seed_bytes_sent": outcome.seed_bytes_sent, "payload_bytes": published.payload,
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


def test_gateway_cars_and_a_corrupt_one_refused(x86_kit: e2e.GuestKit, seed: e2e.Seed, work: Path) -> None:
    """ipfs.gateway= in a real guest (issue 17): the list comes as a CAR from the seed's gateway,
    imported and checked by the guest's kubo (so are .tcz files fetched before the bad one); the
    gateway hands out a CAR of bigdata.tcz with one flipped byte: kubo refuses it, one warning line,
    and bitswap brings the rest -- every extension loads with its md5 checked. (The clean CAR path in
    a guest is the boot benchmark's gateway mode; on the host, test_hook_kubo's gateway tests.)"""
    repo = samplerepo.build(work / "repo-gateway", [x86_kit.base.kver])
    cid = seed.publish(repo.path)
    liar = CorruptingGateway(seed.node.gateway_url, "bigdata.tcz")
    try:
        net = qemu.user_restricted({e2e.SEED_GUEST_PORT: seed.swarm_port,
                                    e2e.SEED_GATEWAY_GUEST_PORT: liar.port})
        outcome = e2e.boot(x86_kit, e2e.boot_codes(cid, seed, extra=[f"ipfs.gateway={seed.guest_gateway}"]),
                           e2e.check_initrd(work, samplerepo.check_script(repo), "check-gateway.gz"),
                           net=net, memory=512, seed=seed, timeout=400, log_path=work / "console-gateway.log")
    finally:
        liar.close()
    assert outcome.ok, outcome.result.tail(60)
    assert liar.corrupted == 1
    f = outcome.fields
    assert f["extensions"].split(",") == repo.closure and f["result"] == "ok"
    assert f["ipfs_gateway"] == "failed" and int(f["ipfs_gateway_cars"]) >= 1, f
    warned = [ln for ln in outcome.console_lines() if "ipfs.gateway=" in ln]
    assert len(warned) == 1 and "bigdata.tcz: refused by kubo's import" in warned[0], outcome.console_lines()
    assert outcome.seed_bytes_sent >= repo.sizes["bigdata.tcz"]  # it came over bitswap after all
    record("e2e-gateway-corrupt", {k: f.get(k) for k in ("t_total", "t_first_byte", "ipfs_gateway_cars",
                                                         "bytes_ipfs_gateway", "marks")})
