"""Pinned versions and where things live. The one place to change a default."""

from __future__ import annotations

import os
from pathlib import Path

# kubo release we build by default. Changing it changes every cache key that depends on it.
KUBO_VERSION = "v0.43.1"
KUBO_MODULE = "github.com/ipfs/kubo"

# IPFS Cluster release for the seeds' cluster (`tce-ipfs cluster build`). The Go module proxy serves
# v1.1.0 and v1.0.8 (not the newest releases); v1.1.0 is the newest it serves.
CLUSTER_VERSION = "v1.1.0"
CLUSTER_MODULE = "github.com/ipfs-cluster/ipfs-cluster"

# Tiny Core release our repos and guests pretend to be (VERSION_ID major).
TC_MAJOR = "16"


def project_root() -> Path:
    """The source checkout: recipes (tcz-build/), hooks (initrd-hooks/) and profiles (qemu/) live here."""
    env = os.environ.get("TCE_IPFS_ROOT")
    if env:
        return Path(env).resolve()
    # src/tce_ipfs/settings.py -> repo root
    return Path(__file__).resolve().parents[2]


def cache_dir() -> Path:
    """Heavy, reusable build outputs (kubo per arch, guest kernels). Safe to delete."""
    env = os.environ.get("TCE_IPFS_CACHE")
    if env:
        path = Path(env)
    else:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        path = Path(base) / "tce-ipfs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def state_dir() -> Path:
    """Runtime state (node repos, pid files) for commands like `tce-ipfs node start`."""
    env = os.environ.get("TCE_IPFS_STATE")
    if env:
        path = Path(env)
    else:
        base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
        path = Path(base) / "tce-ipfs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def hooks_dir() -> Path:
    return project_root() / "initrd-hooks"


def recipes_dir() -> Path:
    return project_root() / "tcz-build"


def qemu_dir() -> Path:
    return project_root() / "qemu"
