"""P2P boots in tests: the host seed guests fetch from (through QEMU's guestfwd), the guest-side check."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tce_ipfs.arch import Arch
from tce_ipfs.testbed import qemu

GUEST_SWARM_PORT = 4001  # the seed as the guest sees it: 10.0.2.100:4001 (guestfwd)
BOOT_TIMEOUT = 900.0  # TCG, 2 cores shared with other builds: generous


@dataclass
class Seed:
    """An isolated kubo on 127.0.0.1; ``publish(kver)`` adds a sample repo built for that guest kernel."""

    node: object  # tce_ipfs.ipfs.node.Node
    work: Path
    peer: str  # the seed's multiaddr as seen from a guest
    forwards: dict[int, int]  # guest port on 10.0.2.100 -> host port on 127.0.0.1
    published: dict[str, tuple[str, object]] = field(default_factory=dict)  # kver -> (CID, SampleRepo)

    def publish(self, kver: str) -> tuple[str, object]:
        """(root CID, SampleRepo) of the sample repo for kernel ``kver`` (its check expects that kernel)."""
        if kver not in self.published:
            from tce_ipfs.ipfs.publish import publish
            from tce_ipfs.testbed import samplerepo

            repo = samplerepo.build(self.work / f"repo-{kver}", [kver])
            with self.node.client() as client:  # type: ignore[attr-defined]
                res = publish(repo.path, client, progress=False)
            self.published[kver] = (res.root_cid, repo)
        return self.published[kver]

    def codes(self) -> dict[str, str | None]:
        return {"ipfs.peers": self.peer, "ipfs.timeout": "600"}


@contextlib.contextmanager
def running_seed(work: Path, kubo: Path) -> Iterator[Seed]:
    from tce_ipfs.ipfs.node import Node

    node = Node(work / "seed", kubo)
    node.init()
    node.start()
    try:
        ports = [int(m.group(1)) for a in node.swarm_addrs
                 if (m := re.match(r"/ip4/127\.0\.0\.1/tcp/(\d+)/p2p/", a))]
        assert ports, f"seed has no loopback TCP swarm address: {node.swarm_addrs}"
        yield Seed(node=node, work=work, peer=f"/ip4/10.0.2.100/tcp/{GUEST_SWARM_PORT}/p2p/{node.peer_id}",
                   forwards={GUEST_SWARM_PORT: ports[0]})
    finally:
        node.stop()


def check_overlay(repo: object) -> bytes:
    """A gzip'd cpio with the guest check for ``repo`` as /opt/bootsync.sh (prints the sentinel)."""
    from tce_ipfs.media import cpio
    from tce_ipfs.testbed import samplerepo

    w = cpio.CpioWriter()
    w.add_dir("opt", 0o775)
    w.add_file("opt/bootsync.sh", samplerepo.check_script(repo).encode(), 0o755)  # type: ignore[arg-type]
    return cpio.compress(w.finish(), "gzip")


def ipfs_tcz(arch: Arch, out_dir: Path) -> Path:
    """ipfs.tcz for ``arch`` (kubo built and cached by tce_ipfs.build.kubo), built once per test module."""
    from tce_ipfs.build import recipes

    return Path(recipes.build("ipfs", arch, out_dir).tcz)


def assert_booted(res: qemu.BootResult) -> None:
    res.require()
    assert res.sentinel_line is not None and ": OK " in res.sentinel_line, res.tail()
