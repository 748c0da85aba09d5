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
import os
import shutil
import subprocess
import sys
import textwrap
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


def run_failing_inner_test(tmp_path: Path, source: str, timeout: float) -> None:
    """Run ``source`` (a test module that fails on purpose with "deliberate failure" while something
    is up) in a pytest of its own, and check it failed that way: what it left behind is the caller's
    to check (teardown on failure)."""
    inner = tmp_path / "test_inner.py"
    inner.write_text(textwrap.dedent(source))
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          f"--basetemp={tmp_path / 'inner-tmp'}", str(inner)],
                         cwd=tmp_path, capture_output=True, text=True, timeout=timeout,
                         env={**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")})
    assert res.returncode == 1, res.stdout + res.stderr
    assert "deliberate failure" in res.stdout
