"""Mirror scale in QEMU: a guest boots from one tcz/ directory of a published mirror tree, by CID
(``tce=ipfs:<root>/16.x/x86_64/tcz``) and by the IPNS name a seed publishes with ``seed serve --name``
(``tce=ipns:<name>/16.x/x86_64/tcz``: the guest's kubo, a DHT client, asks the seed it dialled).

The seed is the real ``tce-ipfs seed serve`` process on loopback; the guest reaches it through QEMU's
restricted user network (guestfwd 10.0.2.100:4001 -> the seed's swarm port), nothing else.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from support import record
from tce_ipfs import proc
from tce_ipfs.arch import Arch
from tce_ipfs.testbed import e2e, qemu, samplemirror, samplerepo
from test_seed import free_port

pytestmark = [pytest.mark.qemu, pytest.mark.kubo]

SRC = Path(__file__).resolve().parents[1] / "src"
X86 = "16.x/x86_64/tcz"


@dataclass
class MirrorSeed:
    root: str
    name: str
    peer_id: str
    port: int
    repo: samplerepo.SampleRepo

    @property
    def guest_peer(self) -> str:
        return f"/ip4/{e2e.SEED_GUEST_IP}/tcp/{e2e.SEED_GUEST_PORT}/p2p/{self.peer_id}"

    def net(self) -> qemu.UserNet:
        return qemu.user_restricted({e2e.SEED_GUEST_PORT: self.port})


@pytest.fixture(scope="module")
def kit(work: Path) -> e2e.GuestKit:
    return e2e.prepare_kit(Arch.X86_64, work)


@pytest.fixture(scope="module")
def mirror_seed(kit: e2e.GuestKit, work: Path, host_kubo: Path) -> Iterator[MirrorSeed]:
    """A small mirror tree (2 releases x 2 arches; 16.x/x86_64/tcz holds the bootable sample repo)
    served by `tce-ipfs seed serve --name lab-mirror`."""
    repo = samplerepo.build(work / "repo", [kit.base.kver])
    tree = work / "tree"
    samplemirror.build(tree, extensions=20, boot=(X86, repo.path))
    state, port = work / "seed-state", free_port()
    out, err = work / "seed.out", work / "seed.err"
    argv = [sys.executable, "-m", "tce_ipfs", "seed", "serve", str(tree), "--listen", "127.0.0.1",
            "--port", str(port), "--api-port", "0", "--state", str(state), "--kubo", str(host_kubo),
            "--name", "lab-mirror"]
    with out.open("wb") as fo, err.open("wb") as fe:
        popen = subprocess.Popen(argv, stdout=fo, stderr=fe, stdin=subprocess.DEVNULL,
                                 env={**proc.clean_env(), "PYTHONPATH": str(SRC)})
    try:
        deadline = time.monotonic() + 300
        while "tce=" not in out.read_text():
            assert popen.poll() is None and time.monotonic() < deadline, err.read_text()[-3000:]
            time.sleep(0.2)
        words = dict(w.split("=", 1) for w in out.read_text().strip().splitlines()[-1].split())
        record_ = json.loads((state / "seed.json").read_text())
        yield MirrorSeed(root=record_["root"], name=words["tce"].removeprefix("ipns:"),
                         peer_id=words["ipfs.peers"].rsplit("/", 1)[1], port=port, repo=repo)
    finally:
        popen.terminate()
        popen.wait(60)


def _boot(kit: e2e.GuestKit, seed: MirrorSeed, work: Path, tce: str, label: str) -> e2e.BootOutcome:
    codes = f"tce={tce} ipfs.timeout=150 ipfs.peers={seed.guest_peer}"
    check = e2e.check_initrd(work, samplerepo.check_script(seed.repo), f"check-{label}.gz")
    return e2e.boot(kit, codes, check, net=seed.net(), memory=512, timeout=400,
                    log_path=work / f"console-{label}.log")


def test_a_guest_boots_from_a_tcz_dir_of_the_mirror_root(kit: e2e.GuestKit, mirror_seed: MirrorSeed,
                                                         work: Path) -> None:
    tce = f"ipfs:{mirror_seed.root}/{X86}"
    outcome = _boot(kit, mirror_seed, work, tce, "tree")
    assert outcome.ok, outcome.result.tail(60)
    assert any(ln.startswith(f"tce-ipfs: loaded 6 extensions from {tce} in ")
               for ln in outcome.console_lines()), outcome.console_lines()
    assert outcome.fields["extensions"].split(",") == mirror_seed.repo.closure
    record("mirror-qemu-tree", {"qemu_start_to_sentinel_s": round(outcome.result.seconds, 1),
                                "hook_total_s": outcome.fields.get("t_total")})


def test_a_guest_boots_from_the_seeds_ipns_name(kit: e2e.GuestKit, mirror_seed: MirrorSeed,
                                                work: Path) -> None:
    assert mirror_seed.name.startswith("k51")
    outcome = _boot(kit, mirror_seed, work, f"ipns:{mirror_seed.name}/{X86}", "ipns")
    assert outcome.ok, outcome.result.tail(60)
    assert outcome.fields["ipns"] == mirror_seed.name and outcome.fields["cid"] == mirror_seed.root
    assert any(ln.startswith(f"tce-ipfs: loaded 6 extensions from ipfs:{mirror_seed.root}/{X86} in ")
               for ln in outcome.console_lines()), outcome.console_lines()
    assert outcome.fields["extensions"].split(",") == mirror_seed.repo.closure
    record("mirror-qemu-ipns", {"qemu_start_to_sentinel_s": round(outcome.result.seconds, 1),
                                "hook_total_s": outcome.fields.get("t_total")})
