"""Helpers shared by several test files (fixtures live in conftest.py; fakes in the modules here).

* ``support.media``: fake boot media -- kernels with real headers, cpio initrds, .tcz files, ISOs, FAT
  boot-partition images;
* ``support.seed``: the host seed P2P boots fetch from, and the guest-side check;
* ``support.elfs``: crafted ELF headers and host-compiled C programs;
* ``support.faultnet``: the fault suite's network (the real hook in a namespace on a lab LAN, extra
  kubo peers, the HTTP mirror, ``tc`` shaping, fault triggers); ``support.capture``: the packet
  capture it runs inside the lab namespace.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
RESULTS = Path(__file__).resolve().parents[1] / ".results"


def record(name: str, data: dict[str, object]) -> None:
    """Keep measured numbers (boot times, RSS, bytes) for the report; never asserted as timings."""
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(data, indent=2, default=str) + "\n")


def need_tool(name: str) -> None:
    if shutil.which(name) is None:
        pytest.fail(f"{name} not found: run bootstrap/setup", pytrace=False)
