"""Shared fixtures. Heavy artefacts (kubo per arch, guest bases) come from the cache, built once."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tce_ipfs.arch import Arch
from tce_ipfs.testbed.lab import Lab, namespaces
from test_remaster_support import Seed, running_seed

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / ".results"


def record(name: str, data: dict[str, object]) -> None:
    """Keep measured numbers (boot times, RSS, bytes) for the report; never asserted as timings."""
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(data, indent=2, default=str) + "\n")


def need_tool(name: str) -> None:
    if shutil.which(name) is None:
        pytest.fail(f"{name} not found: run bootstrap/setup", pytrace=False)


@pytest.fixture(scope="session")
def host_kubo() -> Path:
    """A real kubo `ipfs` for the host arch (built and cached by tce_ipfs.build.kubo)."""
    override = os.environ.get("TCE_IPFS_TEST_KUBO")
    if override:
        return Path(override)
    from tce_ipfs.build import kubo

    return kubo.ensure(Arch.host())


@pytest.fixture(scope="module")
def work(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A scratch directory shared by a module's tests, named after it (test_netboot_qemu -> netboot-qemu)."""
    return tmp_path_factory.mktemp(request.path.stem.removeprefix("test_").replace("_", "-"))


@pytest.fixture(scope="module")
def seed(work: Path, host_kubo: Path) -> Iterator[Seed]:
    """The host seed P2P boots fetch from (test_remaster_support.running_seed), one per module."""
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
