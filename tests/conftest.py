"""Shared fixtures. Heavy artefacts (kubo per arch, guest bases) come from the cache, built once."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.seed import Seed, running_seed
from tce_ipfs.arch import Arch
from tce_ipfs.build.cluster import ClusterBinaries
from tce_ipfs.testbed.lab import Lab, namespaces


@pytest.fixture(scope="session")
def host_kubo() -> Path:
    """A real kubo `ipfs` for the host arch (built and cached by tce_ipfs.build.kubo)."""
    override = os.environ.get("TCE_IPFS_TEST_KUBO")
    if override:
        return Path(override)
    from tce_ipfs.build import kubo

    return kubo.ensure(Arch.host())


@pytest.fixture(scope="session")
def host_cluster() -> ClusterBinaries:
    """Real ipfs-cluster-service and ipfs-cluster-ctl for the host (built and cached by build.cluster)."""
    from tce_ipfs.build import cluster

    return cluster.ensure(Arch.host())


@pytest.fixture(scope="module")
def work(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A scratch directory shared by a module's tests, named after it (test_netboot_qemu -> netboot-qemu)."""
    return tmp_path_factory.mktemp(request.path.stem.removeprefix("test_").replace("_", "-"))


@pytest.fixture(scope="module")
def seed(work: Path, host_kubo: Path) -> Iterator[Seed]:
    """The host seed P2P boots fetch from (support.seed.running_seed), one per module."""
    with running_seed(work, host_kubo) as s:
        yield s


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    """A lab torn down by the finalizer whatever the test does (and checked to be gone)."""
    lab = Lab(tmp_path / "lab")
    lab.open()
    try:
        yield lab
    finally:
        lab.close()
        assert lab.netns not in namespaces()
