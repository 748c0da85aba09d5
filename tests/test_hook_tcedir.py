"""The hook at boot: ``ROOT`` empty, in a chroot of the fake root inside a private mount namespace.

At boot every path the hook builds is a real one ("/tce", whose parent is "/"); the ``ROOT``-prefixed
harness of test_hook_boot.py never sees that arithmetic. Here the hook runs exactly as tce-setup runs
it (``sh /usr/local/tce.installed/tce-ipfs`` with ``/`` the root), then TC's own step (c) is replayed
in the same root: the tce dir tce-setup derives from ``tce=`` must exist with ``optional/`` so that
``/etc/sysconfig/tcedir`` resolves and tce-load works after boot.

Also here: the tce dir shim's refusals (system directories, symlinked parents, over-long paths) and
ipfs.tcz under piCore's loader (tce-bootload), with both busybox sh and dash.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hookfakes.harness import CID, HOST_TOOLS, PEER, HookEnv, Repo, Result

pytestmark = [pytest.mark.root]

IPNS_NAME = "k51qzi5uqu5dlvj2baxnqndepeb86cbk3ng7n3i46uzyxzyqj2xjonzllnv0v8"


@pytest.fixture
def boot(shell: str, tmp_path: Path) -> Iterator[HookEnv]:
    """A fake TC root the hook runs in as at boot (ROOT empty, chroot)."""
    if os.geteuid() != 0:
        pytest.skip("needs root (unshare -m, chroot)")
    hook_env = HookEnv(tmp_path / "env", shell=shell, boot_root=True)
    yield hook_env
    hook_env.cleanup()


# What TC's tce-setup does with tce= after the hook (process_normal_tcedir) and what tce-load then
# checks, in TC's own arithmetic: device = up to the first "/", dir = the rest ("tce" without one);
# find_mountpoint finds no such device, so the tce dir is "" + "/" + dir; `mkdir <dir>/optional`
# fails unless <dir> exists; the tcedir link is made either way; tce-load exits 1 unless it is a dir.
TC_STEP_C = r"""
TCE=$1
TCE_DEVICE="${TCE%%/*}"
TCE_DIR="${TCE#*/}"
[ "$TCE_DEVICE" = "$TCE_DIR" ] && TCE_DIR=tce
MOUNTPOINT=
TCEDIR="$MOUNTPOINT/$TCE_DIR"
[ -d "$TCEDIR/optional" ] || mkdir "$TCEDIR/optional" || echo "mkdir failed"
[ -L /etc/sysconfig/tcedir ] && rm -f /etc/sysconfig/tcedir
ln -sf "$TCEDIR" /etc/sysconfig/tcedir
[ -d /etc/sysconfig/tcedir ] || { echo "tcedir dangles: $(readlink /etc/sysconfig/tcedir)"; exit 1; }
[ -d /etc/sysconfig/tcedir/optional ] || { echo "no optional/"; exit 1; }
echo "tcedir=$(readlink /etc/sysconfig/tcedir) real=$(readlink -f /etc/sysconfig/tcedir)"
"""


def in_root(env: HookEnv, script: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``script`` with busybox sh inside the boot root (as root, like tce-setup)."""
    argv = [HOST_TOOLS["chroot"], str(env.root), "/bin/busybox", "sh", "-c", script, "sh", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False,
                          env={"PATH": "/bin", "LC_ALL": "C"})


def tce_value(cmdline: str) -> str:
    return [w for w in cmdline.split() if w.startswith("tce=")][-1].removeprefix("tce=")


def ready(env: HookEnv, sub: str = "") -> Repo:
    repo = env.ipfs_repo(CID, sub)
    env.peers_ok(PEER)
    repo.ext("a.tcz")
    repo.lst("a.tcz\n")
    repo.lst("a.tcz\n", name="other.lst")
    return repo


def ok(result: Result) -> None:
    assert result.rc == 0, result.stderr
    assert result.final.startswith("loaded "), result.console


# ------------------------------------------------------------------------- every shape of tce=
SHAPES = [
    (f"tce=ipfs:{CID}", "", "/tce"),
    (f"tce=ipfs:{CID}/a", "a", "/a"),
    (f"tce=ipfs:{CID}/a/b", "a/b", "/a/b"),
    (f"tce=ipfs:{CID} lst=other.lst", "", "/tce"),
    (f"tce=ipfs:{CID}/a lst=other.lst", "a", "/a"),
]


@pytest.mark.parametrize(("codes", "sub", "tcedir"), SHAPES, ids=lambda v: str(v).replace(CID, "CID"))
def test_tcedir_valid_at_boot(boot: HookEnv, codes: str, sub: str, tcedir: str) -> None:
    ready(boot, sub)
    result = boot.run(f"quiet {codes} ipfs.peers={PEER}")
    ok(result)
    step = in_root(boot, TC_STEP_C, tce_value(codes))
    assert step.returncode == 0, step.stdout + step.stderr + result.console
    assert step.stdout.strip() == f"tcedir={tcedir} real=/tmp/tce", step.stdout
    assert os.readlink(boot.root / tcedir.lstrip("/")) == "/tmp/tce"
    lst = "other.lst" if "lst=other.lst" in codes else "onboot.lst"
    assert (boot.root / "tmp/tce" / lst).read_text() == ""  # tce-load -wi appends here after boot
    assert boot.builtin_list(lst) == ["ipfs.tcz", "a.tcz"]
    assert "warning" not in result.console


def test_tcedir_ipns_at_boot(boot: HookEnv) -> None:
    ready(boot, "repo")
    (boot.state / "ipns").mkdir()
    (boot.state / "ipns" / IPNS_NAME).write_text(f"/ipfs/{CID}\n")
    codes = f"tce=ipns:{IPNS_NAME}/repo"
    ok(boot.run(f"{codes} ipfs.peers={PEER}"))
    step = in_root(boot, TC_STEP_C, tce_value(codes))
    assert step.returncode == 0 and step.stdout.strip() == "tcedir=/repo real=/tmp/tce", step.stdout


def test_tcedir_http_at_boot(boot: HookEnv) -> None:
    repo = boot.http_repo("10.0.2.100:8080", "tcz")
    repo.ext("a.tcz")
    repo.lst("a.tcz\n")
    codes = "tce=http://10.0.2.100:8080/tcz"
    ok(boot.run(codes))
    step = in_root(boot, TC_STEP_C, tce_value(codes))
    # TC's device is "http:", its dir "/10.0.2.100:8080/tcz": "//10.0.2.100:8080/tcz" on the link
    assert step.returncode == 0, step.stdout
    assert step.stdout.strip() == "tcedir=//10.0.2.100:8080/tcz real=/tmp/tce", step.stdout
    assert boot.builtin_list() == ["a.tcz"]


def test_base_keeps_tmp_tce_and_creates_nothing(boot: HookEnv) -> None:
    ready(boot)
    before = sorted(p.name for p in boot.root.iterdir())
    ok(boot.run(f"tce=ipfs:{CID} base ipfs.peers={PEER}"))
    assert sorted(p.name for p in boot.root.iterdir()) == before  # no /tce: TC keeps /tmp/tce
    assert boot.builtin_list() == ["ipfs.tcz", "a.tcz"]


def test_bad_cid_still_keeps_tcedir_valid_at_boot(boot: HookEnv) -> None:
    result = boot.run("tce=ipfs:QmBAD")
    assert result.final.startswith("FAILED: bad boot code: ")
    step = in_root(boot, TC_STEP_C, "ipfs:QmBAD")
    assert step.returncode == 0 and step.stdout.strip() == "tcedir=/tce real=/tmp/tce", step.stdout


# ------------------------------------------------------------------------- refusals
@pytest.mark.parametrize(
    ("sub", "why"),
    [
        ("etc/newfile", "inside a system directory"),
        ("usr/local/x", "inside a system directory"),
        ("tmp/builtin/x", "inside a system directory"),
        ("tmp/tcloop/x", "inside a system directory"),
        ("home/tc/tce", "inside a system directory"),
        ("tmp", "inside a system directory"),
    ],
)
def test_shim_never_writes_into_system_directories(boot: HookEnv, sub: str, why: str) -> None:
    ready(boot, sub)
    result = boot.run(f"tce=ipfs:{CID}/{sub} ipfs.peers={PEER}")
    ok(result)
    line = f"warning: tce-setup will use /{sub} as the tce dir: {why}, not creating it"
    assert [ln for ln in result.lines if ln.startswith(line)], result.console
    path = boot.root / sub
    assert not os.path.lexists(path) or (path.is_dir() and not path.is_symlink()), sub  # /tmp is TC's own
    assert not (path / "optional").exists()


def test_shim_leaves_an_existing_tce_dir_alone(boot: HookEnv) -> None:
    ready(boot, "tmp/tce")
    result = boot.run(f"tce=ipfs:{CID}/tmp/tce ipfs.peers={PEER}")
    ok(result)
    assert "warning" not in result.console
    assert (boot.root / "tmp/tce").is_dir() and not (boot.root / "tmp/tce").is_symlink()


def test_shim_does_not_follow_a_symlinked_parent(boot: HookEnv) -> None:
    (boot.root / "link").symlink_to("/etc")
    ready(boot, "link/x")
    result = boot.run(f"tce=ipfs:{CID}/link/x ipfs.peers={PEER}")
    ok(result)
    assert "warning: tce-setup will use /link/x as the tce dir: /link is a symlink, not creating it" in (
        result.lines
    ), result.console
    assert not (boot.root / "etc/x").exists()


def test_shim_refusal_does_not_block_a_good_boot(env: HookEnv) -> None:
    ready(env, "proc/x")
    result = env.run(f"tce=ipfs:{CID}/proc/x ipfs.peers={PEER}")
    ok(result)
    assert env.builtin_list() == ["ipfs.tcz", "a.tcz"]


# ------------------------------------------------------------------------- piCore's loader
def picore(env: HookEnv) -> None:
    """What the hook looks for to know tce-setup will load through tce-bootload (piCore)."""
    (env.root / "usr/bin").mkdir(parents=True, exist_ok=True)
    (env.root / "usr/bin/tce-bootload").write_text("#!/usr/bin/micropython\n")


def install_script_runs(result: Result, wait: float = 20) -> int:
    """How often ipfs.tcz's (fake) install script ran: under tce-bootload the hook starts it in the
    background (its work waits for tce-setup, which is not our parent here: it runs at once)."""
    deadline = time.monotonic() + wait
    while "ipfs-install-script uid=0" not in result.calls and time.monotonic() < deadline:
        time.sleep(0.1)
    return result.calls.count("ipfs-install-script uid=0")


def test_tce_bootload_ipfs_loaded_once_in_place(boot: HookEnv) -> None:
    picore(boot)
    ready(boot)
    result = boot.run(f"tce=ipfs:{CID} ipfs.peers={PEER}")
    ok(result)
    # tce-bootload would fail its mkdir of /tmp/tcloop/ipfs: ipfs.tcz is not handed to it ...
    assert boot.builtin_list() == ["a.tcz"]
    # ... the hook mounted it once, linked it into / and ran its install script once, as root
    assert [c for c in result.calls if c.startswith("mount ")] == [
        "mount -t squashfs -o loop,ro /tmp/builtin/optional/ipfs.tcz /tmp/tcloop/ipfs"
    ]
    # (in the background: its work waits until tce-setup is done, and the boot goes on at once)
    assert install_script_runs(result) == 1
    script = "usr/local/tce.installed/ipfs"
    assert os.readlink(boot.root / script) == f"/tmp/tcloop/ipfs/{script}"
    assert (boot.root / "usr/local/bin/ipfs").is_symlink()
    assert "ipfs.tcz: ran /usr/local/tce.installed/ipfs" in result.log


def test_tce_bootload_rerun_does_not_run_the_script_again(env: HookEnv) -> None:
    picore(env)
    ready(env)
    first = env.run(f"tce=ipfs:{CID} ipfs.peers={PEER}")
    ok(first)
    assert install_script_runs(first) == 1
    env.cleanup()
    result = env.run(f"tce=ipfs:{CID} ipfs.peers={PEER}")
    ok(result)
    time.sleep(1)  # (a second background run would have recorded itself by now)
    assert result.calls.count("ipfs-install-script uid=0") == 1


def test_tce_load_gets_ipfs_first_in_the_list(env: HookEnv) -> None:
    ready(env)
    result = env.run(f"tce=ipfs:{CID} ipfs.peers={PEER}")
    ok(result)
    assert env.builtin_list() == ["ipfs.tcz", "a.tcz"]
    assert "ipfs-install-script uid=0" not in result.calls  # tce-load queues it; tce-setup runs it
    assert not (env.root / "usr/local/tce.installed/ipfs").exists()


def test_tce_bootload_when_the_fetch_fails(boot: HookEnv) -> None:
    picore(boot)
    boot.ipfs_repo()  # no list
    boot.peers_ok(PEER)
    result = boot.run(f"tce=ipfs:{CID} ipfs.peers={PEER}")
    assert result.final == f"FAILED: onboot.lst from ipfs:{CID}: not found"
    assert boot.builtin_list() == []
    assert install_script_runs(result) == 1  # still a loaded extension, as with tce-load



@pytest.mark.parametrize("loader", ["tce-load", "tce-bootload"])
def test_dep_on_ipfs(env: HookEnv, loader: str) -> None:
    """An extension that needs ipfs.tcz: tce-load skips the mounted ipfs; tce-bootload would add it to
    its list from the .dep (mkdir EEXIST, install script again), so that .dep line is dropped."""
    if loader == "tce-bootload":
        picore(env)
    repo = env.ipfs_repo(CID)
    env.peers_ok(PEER)
    repo.ext("lib.tcz")
    repo.ext("tool.tcz", ["ipfs.tcz", "lib.tcz"])
    repo.lst("tool.tcz\n")
    result = env.run(f"tce=ipfs:{CID} ipfs.peers={PEER}")
    ok(result)
    dep = (env.optional() / "tool.tcz.dep").read_text().split()
    if loader == "tce-bootload":
        assert dep == ["lib.tcz"] and env.builtin_list() == ["lib.tcz", "tool.tcz"]
        assert install_script_runs(result) == 1
    else:
        assert dep == ["ipfs.tcz", "lib.tcz"] and env.builtin_list() == ["ipfs.tcz", "lib.tcz", "tool.tcz"]
