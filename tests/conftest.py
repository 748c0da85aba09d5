"""Shared fixtures. Heavy artefacts (kubo per arch, guest bases) come from the cache, built once."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from hookfakes.harness import SHELLS, HookEnv
from support.seed import Seed, running_seed
from tce_ipfs.arch import Arch
from tce_ipfs.build.cluster import ClusterBinaries
from tce_ipfs.testbed.lab import Lab, namespaces


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Opt-in tests stay out of the default run and run when the ``-m`` expression names their marker:
    * the fault suite is marker ``faults``; its heavy cases (``faults`` and ``qemu``) only with
      ``pytest -m faults`` (docs/RELIABILITY.md); the cheap host cases run by default;
    * ``holepunch``: the QEMU boot across the simulated internet that depends on hole punching
      (``pytest -m holepunch``): reliable now (16 of 16 runs), but 1-1.5 min more than CI's budget
      has room for (the namespace boot across two homes runs by default);
    * ``smallram``: the 256 MiB guests of issue 12, too slow for the default run (``pytest -m smallram``);
    * ``egress``: three mDNS-only guests booting at once, measuring the seed's egress ratio (~1.5 min of
      guest time; the four-guest lab test proves the sharing in the default run)."""
    expr = config.getoption("markexpr", "") or ""
    for item in items:
        if "faults" not in expr and item.get_closest_marker("faults") and item.get_closest_marker("qemu"):
            item.add_marker(pytest.mark.skip(reason="heavy fault case: run with -m faults"))
        if "smallram" not in expr and item.get_closest_marker("smallram"):
            item.add_marker(pytest.mark.skip(reason="256 MiB guests take 3-6 min per arch: "
                                                    "run with -m smallram"))
        if "egress" not in expr and item.get_closest_marker("egress"):
            item.add_marker(pytest.mark.skip(reason="three guests at once, an egress measurement: "
                                                    "run with -m egress"))
        if "holepunch" not in expr and item.get_closest_marker("holepunch"):
            item.add_marker(pytest.mark.skip(reason="a QEMU boot through the simulated NATs (1-1.5 min): "
                                                    "run with -m holepunch"))


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


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty build cache (``TCE_IPFS_CACHE``) for tests that fake a build."""
    path = tmp_path / "cache"
    monkeypatch.setenv("TCE_IPFS_CACHE", str(path))
    return path


@pytest.fixture(scope="module")
def work(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A scratch directory shared by a module's tests, named after it (test_netboot_qemu -> netboot-qemu)."""
    return tmp_path_factory.mktemp(request.path.stem.removeprefix("test_").replace("_", "-"))


@pytest.fixture(scope="module")
def seed(work: Path, host_kubo: Path) -> Iterator[Seed]:
    """The host seed P2P boots fetch from (support.seed.running_seed), one per module."""
    with running_seed(work, host_kubo) as s:
        yield s


@pytest.fixture(params=sorted(SHELLS))
def shell(request: pytest.FixtureRequest) -> str:
    """Each shell the boot hook must run under (busybox sh, dash): a test taking it runs once per shell."""
    return str(request.param)


@pytest.fixture
def env(shell: str, tmp_path: Path) -> Iterator[HookEnv]:
    """A fake TC root for the boot hook (hookfakes.harness), run by ``shell``; its fake daemon stopped."""
    hook_env = HookEnv(tmp_path / "env", shell=shell)
    yield hook_env
    hook_env.cleanup()


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
