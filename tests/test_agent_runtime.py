"""python3.11.tcz (+ the test-only glibc-testbase.tcz) and the shipped agent, in a Tiny-Core-like chroot.

The chroot has nothing but a static busybox. The three extensions are loop-mounted at
``/tmp/tcloop/NAME`` and linked into ``/`` with ``cp -ais`` -- exactly what tce-load's mount mode does --
so the launcher, the PT_INTERP path, the private library dir and the vendored agent are exercised as on
a booted guest, with no library from the build host. The chroot shares the host's network namespace,
so the agent inside talks to a real kubo on loopback.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tce_ipfs.arch import Arch
from tce_ipfs.ipfs import publish
from tce_ipfs.ipfs.node import Node
from tce_ipfs.testbed import samplerepo

pytestmark = [pytest.mark.root]

EXTENSIONS = ("glibc-testbase", "python3.11", "tce-ipfs-agent")  # load order (deps first)
CHROOT = shutil.which("chroot") or "/usr/sbin/chroot"
APPLETS = ("sh", "cp", "su", "id", "touch", "cat", "ls", "mkdir", "readlink")
FAKE_TCE_LOAD = """#!/bin/sh
echo "uid=$(id -u) args=$*" >> /tmp/tce-load.calls
shift
for n in "$@"; do [ -f "/tmp/tce/optional/$n.tcz" ] && touch "/usr/local/tce.installed/$n"; done
"""


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """python3.11.tcz + glibc-testbase.tcz + tce-ipfs-agent.tcz for the host arch, in one directory."""
    from tce_ipfs.build import recipes

    out = tmp_path_factory.mktemp("runtime")
    recipes.build("python3.11", Arch.host(), out, testbase=True)
    recipes.build("tce-ipfs-agent", Arch.host(), out)
    return out


@dataclass
class Chroot:
    root: Path

    def run(self, *argv: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        res = subprocess.run([CHROOT, str(self.root), *argv], capture_output=True, text=True,
                             timeout=timeout, env={"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/"})
        if check and res.returncode != 0:
            raise AssertionError(f"{argv} exited {res.returncode}:\n{res.stdout}\n{res.stderr}")
        return res


@pytest.fixture
def chroot(runtime: Path, tmp_path: Path) -> Iterator[Chroot]:
    root = tmp_path / "root"
    for d in ("bin", "usr/bin", "etc/sysconfig", "tmp/tce/optional", "tmp/tcloop", "usr/local/tce.installed",
              "home/tc"):
        (root / d).mkdir(parents=True)
    busybox = shutil.which("busybox")
    assert busybox, "busybox-static is needed (bootstrap/packages.txt)"
    shutil.copy(busybox, root / "bin/busybox")
    for applet in APPLETS:
        (root / "bin" / applet).symlink_to("busybox")
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\ntc:x:1001:50:tc:/home/tc:/bin/sh\n")
    (root / "etc/group").write_text("root:x:0:\nstaff:x:50:tc\n")
    (root / "etc/sysconfig/tcedir").symlink_to("/tmp/tce")
    (root / "usr/bin/tce-load").write_text(FAKE_TCE_LOAD)
    (root / "usr/bin/tce-load").chmod(0o755)
    (root / "usr/local/tce.installed").chmod(0o777)
    (root / "tmp").chmod(0o1777)
    # The test base marks TC's loader path with an empty file (for getBuild), as in the guests.
    placeholder = root / Arch.host().info.ld_so.lstrip("/")
    placeholder.parent.mkdir(parents=True, exist_ok=True)
    placeholder.write_bytes(b"")
    mounted: list[Path] = []
    try:
        for name in EXTENSIONS:
            mnt = root / "tmp/tcloop" / name
            mnt.mkdir()
            subprocess.run(["mount", "-t", "squashfs", "-o", "loop,ro", str(runtime / f"{name}.tcz"),
                            str(mnt)], check=True, capture_output=True, timeout=60)
            mounted.append(mnt)
            # tce-load's mount mode: a tree of symlinks into the mounted image
            Chroot(root).run("/bin/sh", "-c", f"cp -ais /tmp/tcloop/{name}/* /")
            if os.path.lexists(root / "usr/local/tce.installed" / name):  # tce-load runs it (as root)
                Chroot(root).run("/bin/sh", f"/usr/local/tce.installed/{name}")
        yield Chroot(root)
    finally:
        for mnt in reversed(mounted):
            subprocess.run(["umount", "-d", str(mnt)], check=False, capture_output=True, timeout=60)


def test_python_runs_on_a_busybox_only_root(chroot: Chroot) -> None:
    res = chroot.run("/usr/local/bin/python3", "-I", "-c",
                     "import json, http.client, socket, hashlib, subprocess, select, sys\n"
                     "print(json.dumps({'prefix': sys.prefix, 'md5': hashlib.md5(b'tc').hexdigest(),"
                     " 'version': sys.version_info[:2], 'path': sys.path}))")
    info = json.loads(res.stdout)
    assert info["version"] == [3, 11]
    assert info["md5"] == hashlib.md5(b"tc").hexdigest()
    assert info["prefix"] == "/tmp/tcloop/python3.11/usr/local"  # found through the symlink tree
    # Nothing of the host: the interpreter's libraries resolve inside the root.
    assert chroot.run("/usr/local/bin/python3.11", "-c", "print('ok')").stdout == "ok\n"
    # glibc-testbase's install script replaced the test base's empty loader placeholder.
    ld_so = chroot.root / Arch.host().info.ld_so.lstrip("/")
    assert ld_so.is_symlink() and "/tmp/tcloop/glibc-testbase/lib/" in str(ld_so.readlink())


def test_images_are_trimmed_and_marked(runtime: Path) -> None:
    listing = (runtime / "python3.11.tcz.list").read_text().splitlines()
    stdlib = "usr/local/lib/python3.11/"
    for gone in ("test/", "idlelib/", "tkinter/", "ensurepip/", "pydoc_data/", "lib2to3/", "unittest/"):
        assert not [p for p in listing if p.startswith(stdlib + gone)], gone
    assert not [p for p in listing if p.endswith(".py")]  # .pyc only (runtime.toml: sources = false)
    assert stdlib + "json/__init__.pyc" in listing
    assert "usr/local/bin/python3" in listing and stdlib + "bin/python3.11" in listing
    assert sorted(p.rsplit("/", 1)[1] for p in listing if "/lib-deps/" in p) == ["libexpat.so.1", "libz.so.1"]
    assert not [p for p in listing if "_ssl" in p or "_ctypes" in p or "_test" in p]
    assert (runtime / "python3.11.tcz.dep").read_text() == "glibc-testbase.tcz\n"
    assert "TEST ONLY" in (runtime / "glibc-testbase.tcz.info").read_text()
    glibc = (runtime / "glibc-testbase.tcz.list").read_text().splitlines()
    assert "usr/local/tce.installed/glibc-testbase" in glibc and "lib/libc.so.6" in glibc
    assert (runtime / "python3.11.tcz").stat().st_size < 12 * 1024 * 1024


@pytest.mark.kubo
def test_shipped_agent_installs_from_a_real_kubo(chroot: Chroot, host_kubo: Path, tmp_path: Path) -> None:
    sample = samplerepo.build(tmp_path / "repo", ["6.1.0-chroot"])
    with Node(tmp_path / "node", host_kubo) as node:
        with node.client() as c:
            cid = publish.publish(sample.path, c, progress=False).root_cid
        api = node.api
        res = chroot.run("/usr/local/bin/tce-ipfs", "status", "--json", "--api", api)
        status = json.loads(res.stdout)
        assert status["peer_id"] == node.peer_id and status["repo_cid"] is None
        res = chroot.run("/usr/local/bin/tce-ipfs", "install", "extra", "--cid", cid, "--api", api, "--json")
        out = json.loads(res.stdout)
    assert out["closure"] == ["libextra.tcz", "extra.tcz"]
    optional = chroot.root / "tmp/tce/optional"
    assert (optional / "extra.tcz").read_bytes() == (sample.path / "extra.tcz").read_bytes()
    # tce-load ran as the tc user (uid 1001), not as root
    assert (chroot.root / "tmp/tce-load.calls").read_text() == "uid=1001 args=-i libextra extra\n"
