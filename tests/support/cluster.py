"""Cluster seeds in tests: start them (the library way or the CLI way), wait for them, kill them."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tce_ipfs.ipfs import rpc
from tce_ipfs.ipfs.cluster import ClusterSeed
from tce_ipfs.ipfs.clusterapi import ClusterAPI
from tce_ipfs.ipfs.clusterconfig import ClusterState
from tce_ipfs.ipfs.node import Node, read_api_file


def wait_for(what: str, check: Callable[[], Any], timeout: float = 120.0, poll: float = 0.5) -> Any:
    """``check()``'s first truthy value; AssertionError naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            last = check()
            if last:
                return last
        time.sleep(poll)
    raise AssertionError(f"{what}: not within {timeout:g} s (last: {last!r})")


def peer_count(api: ClusterAPI) -> int:
    return len([p for p in api.peers() if not p.get("error")])


def kubo_roots(state: ClusterState) -> set[str]:
    """The recursive pins of a seed's kubo (through its unix API socket)."""
    api = read_api_file(state.repo)
    assert api, f"kubo of {state.path} is not running"
    with rpc.client(api, timeout=30) as c:
        return set(rpc.pin_ls(c))


def holds_only(state: ClusterState, root: str, *, among: set[str]) -> bool:
    """Whether, of the roots ``among``, the seed's kubo pins ``root`` and no other."""
    return kubo_roots(state) & among == {root}


def kill_seed(state: ClusterState) -> list[int]:
    """SIGKILL a seed's cluster daemon and kubo (a machine that died), return their pids."""
    pids = [p for p in (ClusterSeed(state).pid(), Node(state.repo).pid()) if p]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for pid in pids:
        deadline = time.monotonic() + 10
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            time.sleep(0.05)
    return pids


@contextlib.contextmanager
def stopped_at_exit(*states: ClusterState) -> Iterator[None]:
    """Whatever happens, stop these seeds (cluster daemon and kubo) at the end."""
    try:
        yield
    finally:
        for state in states:
            with contextlib.suppress(Exception):
                ClusterSeed(state).stop(timeout=10)
