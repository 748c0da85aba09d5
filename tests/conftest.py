"""Shared fixtures. Heavy artefacts (kubo per arch, guest bases) come from the cache, built once."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tce_ipfs.arch import Arch

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
    """A real kubo `ipfs` for the host arch (built and cached by tce_ipfs.kubo)."""
    override = os.environ.get("TCE_IPFS_TEST_KUBO")
    if override:
        return Path(override)
    from tce_ipfs import kubo

    return kubo.ensure(Arch.host())
