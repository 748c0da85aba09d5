"""Fault suite: the publisher (the lab seed, ``tce-ipfs seed serve``) SIGKILLed mid-publish (issue 11).

A repo of real ``.tcz`` images (random contents, so every block is new) is being published when the
seed process is killed with SIGKILL. Checked: nothing half-published is announced (no boot line, no
root in ``seed.json``, no recursive pin of a partial root in its kubo); a rerun on the same state
completes (stopping the kubo the killed seed left behind) and gives the same root CID as an
uninterrupted publish of the same directory on a fresh state.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from support import record
from tce_ipfs import proc
from tce_ipfs.build import tcz

pytestmark = [pytest.mark.faults, pytest.mark.kubo]

FILES = 4
SIZE = 16 * 1024 * 1024  # per .tcz; 64 MiB in all: the add takes long enough to be hit mid-way
BOOT_LINE = re.compile(r"tce=ipfs:(\S+)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def large_repo(work: Path) -> Path:
    repo = work / "large-repo"
    repo.mkdir()
    for i in range(FILES):
        tree = work / f"src{i}"
        (tree / "usr/local/share/big").mkdir(parents=True)
        (tree / f"usr/local/share/big/data{i}").write_bytes(os.urandom(SIZE))
        tcz.pack(tree, repo / f"big{i}.tcz")
    (repo / "onboot.lst").write_text("".join(f"big{i}.tcz\n" for i in range(FILES)))
    return repo


class Serve:
    """``tce-ipfs seed serve`` as a child process on loopback."""

    def __init__(self, repo: Path, state: Path, kubo: Path) -> None:
        self.state = state
        self.log = state.parent / f"{state.name}.log"
        argv = [sys.executable, "-m", "tce_ipfs", "seed", "serve", str(repo), "--listen", "127.0.0.1",
                "--port", str(free_port()), "--api-port", "0", "--state", str(state), "--kubo", str(kubo)]
        self.popen = proc.spawn(argv, log_path=self.log)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait_ready(self, timeout: float = 300) -> str:
        deadline = time.monotonic() + timeout
        while not (m := BOOT_LINE.search(self.output())):
            assert self.popen.poll() is None, self.output()
            assert time.monotonic() < deadline, self.output()
            time.sleep(0.2)
        return m.group(1)

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            self.popen.wait(60)


def blocks_bytes(state: Path) -> int:
    """Bytes in the repo's block files; kubo moves batch files out of ``.temp`` while we walk."""
    total = 0
    for p in (state / "repo/blocks").rglob("*.data"):
        with contextlib.suppress(FileNotFoundError):
            total += p.stat().st_size
    return total


def kubo_pids(state: Path) -> list[int]:
    """kubo daemons whose IPFS_PATH is this state's repo (the killed seed's orphan)."""
    repo = str(state / "repo").encode()
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if b"daemon" in (d / "cmdline").read_bytes() and repo in (d / "environ").read_bytes():
                    pids.append(int(d.name))
            except OSError:
                continue
    return pids


@pytest.fixture
def serves() -> Iterator[list[Serve]]:
    started: list[Serve] = []
    yield started
    for s in started:
        s.stop()
        for pid in kubo_pids(s.state):
            os.kill(pid, signal.SIGKILL)


def test_publisher_killed_mid_publish(large_repo: Path, tmp_path: Path, host_kubo: Path,
                                      serves: list[Serve]) -> None:
    total = FILES * SIZE
    state = tmp_path / "state"
    killed = Serve(large_repo, state, host_kubo)
    serves.append(killed)
    deadline = time.monotonic() + 300
    while blocks_bytes(state) < total // 4:  # a quarter is in: the add is in flight
        assert killed.popen.poll() is None and time.monotonic() < deadline, killed.output()
        time.sleep(0.02)
    killed.popen.kill()
    killed.popen.wait(10)
    at_kill = blocks_bytes(state)
    assert at_kill < total, "the publish finished before the kill; make the repo bigger"
    # Nothing half-published is announced: no boot line, no root recorded, no root pinned.
    assert not BOOT_LINE.search(killed.output()), killed.output()
    record_path = state / "seed.json"
    assert not record_path.exists() or not json.loads(record_path.read_text()).get("root"), \
        record_path.read_text()
    env = {"IPFS_PATH": str(state / "repo"), "IPFS_TELEMETRY": "off", "HOME": str(tmp_path)}
    pins = subprocess.run([str(host_kubo), "pin", "ls", "--type=recursive", "-q"], env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    empty_dir = "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn"  # kubo's init pins it
    assert set(pins.stdout.split()) <= {empty_dir}, pins.stdout + pins.stderr

    rerun = Serve(large_repo, state, host_kubo)
    serves.append(rerun)
    cid = rerun.wait_ready()
    rerun.stop()
    fresh = Serve(large_repo, tmp_path / "fresh", host_kubo)
    serves.append(fresh)
    assert fresh.wait_ready() == cid
    fresh.stop()
    assert json.loads(record_path.read_text())["root"] == cid
    record("faults-publisher-killed", {"faults": 1, "completed": True, "bytes_in_repo_at_kill": at_kill,
                                       "repo_bytes": total, "root": cid, "partial_files": 0})
