"""Issue 12: every fetched byte held once in RAM, and kubo's limits from the machine's RAM.

The hook against a real kubo seed on 127.0.0.1 (as in test_hook_kubo): after an extension is verified
and placed, the hook's kubo serves it from the placed file (filestore) instead of a second copy in
its repo -- the CID checked, the file in optional/ unchanged, the CID still served to a peer that
asks once the seed is gone. A repo published with other parameters (CIDv0) keeps its blocks.
``/proc/meminfo`` is faked in the hook's root: it decides when the switch runs and kubo's limits.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

import test_hook_kubo
from hookfakes.harness import SHELLS, HookEnv, Repo, Result, kill_and_wait
from test_hook_kubo import Seed, free_port, start_seed, stop

pytestmark = pytest.mark.kubo

HOOK_LIB = Path(__file__).resolve().parents[1] / "initrd-hooks" / "lib"
BIG = {"big.tcz": 3 * 1024 * 1024 + 1000, "mid.tcz": 600 * 1024}  # several 256 KiB chunks each
TIGHT = "MemTotal:         262144 kB\nMemFree:           40000 kB\nMemAvailable:      60000 kB\n"
SHORT = "MemTotal:         262144 kB\nMemFree:            3000 kB\nMemAvailable:       6000 kB\n"
ROOMY = "MemTotal:        2097152 kB\nMemFree:         1900000 kB\nMemAvailable:    1950000 kB\n"


def make_repo(path: Path) -> Repo:
    """Two files of random bytes (every chunk its own block) and a small one, all in onboot.lst."""
    repo = Repo(path)
    repo.ext("small.tcz")
    for name, size in BIG.items():
        repo.ext(name, data=os.urandom(size))
    repo.lst("small.tcz\nbig.tcz\nmid.tcz\n")
    return repo


# test_hook_kubo's fixtures: its loopback seed, and the hook whose kubo is the real one.
seed = test_hook_kubo.seed
hook = test_hook_kubo.hook


def hook_cli(hook: HookEnv, kubo: Path, *args: str) -> bytes:
    env = {"PATH": "/usr/bin:/bin", "IPFS_PATH": str(hook.root / "tmp/tce-ipfs/repo"),
           "HOME": str(hook.base), "IPFS_TELEMETRY": "off"}
    return subprocess.run([str(kubo), *args], env=env, capture_output=True, timeout=60,
                          check=True).stdout


def flatfs_bytes(hook: HookEnv) -> int:
    blocks = hook.root / "tmp/tce-ipfs/repo/blocks"
    return sum(p.stat().st_size for p in blocks.rglob("*.data"))


def publish_v1(seed: Seed, repo: Repo) -> str:
    return seed.ipfs("add", "-r", "-Q", "--cid-version=1", "--raw-leaves", str(repo.path))


def boot(seed: Seed, hook: HookEnv, cid: str, meminfo: str, *codes: str, port: int | None = None) -> Result:
    """The hook on a machine whose ``/proc/meminfo`` says ``meminfo``, booting ``cid`` from the seed."""
    (hook.root / "proc/meminfo").write_text(meminfo)
    line = " ".join([f"tce=ipfs:{cid}", f"ipfs.peers={seed.peer}", f"ipfs.port={port or free_port()}",
                     "ipfs.timeout=60", *codes])
    return hook.run(line, timeout=120)


def test_placed_files_are_served_from_optional(seed: Seed, hook: HookEnv, host_kubo: Path,
                                               tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    cid = publish_v1(seed, repo)
    port = free_port()
    result = boot(seed, hook, cid, TIGHT, port=port)  # RAM is tight: switched as each file is placed
    assert result.final.startswith(f"loaded 3 extensions from ipfs:{cid}"), result.console + result.log
    assert flatfs_bytes(hook) < 64 * 1024  # kubo's copies went as each file was placed
    st = result.wait_status("pinned", timeout=60)  # ... and the seeding job re-referenced the files
    assert "pin_failed" not in st, result.env_log()
    assert st["onecopy"] == "2" and int(st["onecopy_bytes"]) == sum(BIG.values()), result.env_log()
    assert st["mem_mib"] == "256"
    for name, data in repo.data.items():  # what TC mounts is exactly what was published
        assert (hook.optional() / name).read_bytes() == data
    # kubo's limits for 256 MiB, and its filestore on
    config = json.loads((hook.root / "tmp/tce-ipfs/repo/config").read_text())
    assert config["Experimental"]["FilestoreEnabled"] is True
    assert (config["Swarm"]["ConnMgr"]["LowWater"], config["Swarm"]["ConnMgr"]["HighWater"]) == (16, 32)
    assert config["Swarm"]["ResourceMgr"]["MaxMemory"] == "32MiB"
    assert config["Gateway"]["RetrievalTimeout"] in ("120s", "2m0s")  # kubo may write it back in Go form
    # below 512 MiB: fewer blocks read and held at once for peers
    bitswap = config["Internal"]["Bitswap"]
    assert (bitswap["EngineBlockstoreWorkerCount"], bitswap["EngineTaskWorkerCount"]) == (16, 4)
    # step 3 went to the daemon's RPC API (busybox nc): no second Go process next to the daemon
    assert result.env_log().count("added over the RPC API") == 2, result.env_log()
    env_dump = (hook.root / "tmp/tce-ipfs/kubo.log").read_text()
    assert "Daemon is ready" in env_dump
    # the leaves are references into optional/, verified by kubo; the repo holds no copy of them
    listed = hook_cli(hook, host_kubo, "filestore", "verify").decode()
    assert listed.count("ok ") >= 12 + 3 and "changed" not in listed and "no-file" not in listed, listed
    assert "builtin/optional/big.tcz" in listed and "builtin/optional/mid.tcz" in listed
    assert flatfs_bytes(hook) < 64 * 1024, flatfs_bytes(hook)

    # The seed goes away; a new peer asks the hook's kubo for the same CIDs and gets the bytes.
    stop(seed.proc)
    other = start_seed(host_kubo, tmp_path / "other")
    try:
        other.ipfs("swarm", "connect", f"/ip4/127.0.0.1/tcp/{port}/p2p/{st['peer_id']}")
        for name in BIG:
            got = subprocess.run([str(host_kubo), "cat", f"/ipfs/{cid}/{name}"], env=other.env,
                                 capture_output=True, timeout=60, check=True).stdout
            assert got == repo.data[name]
    finally:
        stop(other.proc)


def test_other_parameters_keep_the_blocks(seed: Seed, hook: HookEnv, host_kubo: Path,
                                          tmp_path: Path) -> None:
    """CIDv0 (kubo's `add` defaults): the file cannot give the same CID, so nothing is touched."""
    repo = make_repo(tmp_path / "repo")
    cid = seed.add(repo.path)
    assert cid.startswith("Qm")
    result = boot(seed, hook, cid, TIGHT)
    assert result.final.startswith("loaded 3 extensions"), result.console
    assert result.status["onecopy"] == "0"
    assert "onecopy: big.tcz: CID Qm" in result.log and "kubo keeps its copy" in result.log, result.log
    assert flatfs_bytes(hook) >= sum(BIG.values())
    assert hook_cli(hook, host_kubo, "cat", "--offline", f"/ipfs/{cid}/big.tcz") == repo.data["big.tcz"]


def test_roomy_machine_switches_after_boot(seed: Seed, hook: HookEnv, tmp_path: Path) -> None:
    """With RAM to spare the switch waits for the seeding job (off the boot's path)."""
    repo = make_repo(tmp_path / "repo")
    cid = publish_v1(seed, repo)
    result = boot(seed, hook, cid, ROOMY)
    assert result.final.startswith("loaded 3 extensions"), result.console
    assert result.status["onecopy"] == "0"  # not yet: the hook has returned
    st = result.wait_status("pinned", timeout=90)
    assert st["onecopy"] == "2" and "pin_failed" not in st, result.env_log()
    assert flatfs_bytes(hook) < 64 * 1024
    config = json.loads((hook.root / "tmp/tce-ipfs/repo/config").read_text())
    assert (config["Swarm"]["ConnMgr"]["LowWater"], config["Swarm"]["ConnMgr"]["HighWater"]) == (20, 40)
    assert config["Swarm"]["ResourceMgr"]["MaxMemory"] == "128MiB"


def test_no_ram_left_to_switch_says_so(seed: Seed, hook: HookEnv, tmp_path: Path) -> None:
    """Under 8 MiB available after the boot: the files stay loaded, are not seeded (nor pinned: a pin
    would fetch the dropped blocks again), and one console line says which ones did not fit."""
    repo = make_repo(tmp_path / "repo")
    cid = publish_v1(seed, repo)
    result = boot(seed, hook, cid, SHORT)
    assert result.final.startswith("loaded 3 extensions"), result.console
    st = result.wait_status("pinned", timeout=60)
    assert st["onecopy"] == "0" and "pin_failed" not in st, result.env_log()
    console = (hook.root / "dev/console").read_text()
    line = next((ln for ln in console.splitlines() if "not enough RAM to seed" in ln), "")
    assert "2 extension(s)" in line and "big.tcz" in line and "mid.tcz" in line, console
    assert "6000 KiB available" in line, line
    assert flatfs_bytes(hook) < 64 * 1024  # nothing was fetched back into RAM
    for name, data in repo.data.items():
        assert (hook.optional() / name).read_bytes() == data


def test_onecopy_0_and_seed_0(seed: Seed, hook: HookEnv, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    cid = publish_v1(seed, repo)
    (hook.root / "proc/meminfo").write_text(TIGHT)
    off = hook.run(f"tce=ipfs:{cid} ipfs.peers={seed.peer} ipfs.port={free_port()} ipfs.onecopy=0",
                   timeout=120)
    assert off.final.startswith("loaded 3 extensions") and off.status["onecopy"] == "0", off.console
    config = json.loads((hook.root / "tmp/tce-ipfs/repo/config").read_text())
    assert config["Experimental"]["FilestoreEnabled"] is False
    assert flatfs_bytes(hook) >= sum(BIG.values())  # the old behaviour: two copies
    kill_and_wait(int(off.status["kubo_pid"]))
    # ipfs.seed=0: kubo stops and its RAM repo goes with it
    gone = hook.run(f"tce=ipfs:{cid} ipfs.peers={seed.peer} ipfs.port={free_port()} ipfs.seed=0",
                    timeout=120)
    assert gone.final.startswith("loaded 3 extensions"), gone.console
    assert gone.status["kubo_pid"] == ""
    assert not (hook.root / "tmp/tce-ipfs/repo").exists()
    assert not (hook.root / "tmp/.tce-ipfs-repo").exists()
    for name, data in repo.data.items():
        assert (hook.optional() / name).read_bytes() == data


@pytest.mark.parametrize("shell", sorted(SHELLS))
@pytest.mark.parametrize(("mem_kib", "expect"), [
    (131072, ("32MiB", 8, 16, "16MiB", "50")),
    (262144, ("42MiB", 16, 32, "32MiB", "50")),  # below 512 MiB: M/6; the heap does not fill the cap first
    (524288, ("100MiB", 20, 40, "64MiB", "off")),
    (4194304, ("100MiB", 20, 40, "128MiB", "off")),
    (None, ("100MiB", 20, 40, "", "off")),
])
def test_limits_from_ram(tmp_path: Path, shell: str, mem_kib: int | None,
                         expect: tuple[str, int, int, str, str]) -> None:
    (tmp_path / "proc").mkdir()
    if mem_kib is not None:
        (tmp_path / "proc/meminfo").write_text(f"MemTotal:       {mem_kib} kB\nMemFree: 1000 kB\n")
    script = (f'ROOT={tmp_path}; . {HOOK_LIB}/lib.sh; . {HOOK_LIB}/kubo.sh; kubo_limits; '
              'echo "$KUBO_GOMEMLIMIT $KUBO_CONN_LOW $KUBO_CONN_HIGH $KUBO_GOGC $KUBO_RCMGR"')
    out = subprocess.run([*SHELLS[shell], "-c", script], capture_output=True, text=True, check=True,
                         env={"PATH": "/usr/bin:/bin"}).stdout.split(" ", 4)
    gomem, low, high, rcmgr, gogc = expect
    assert out[:4] == [gomem, str(low), str(high), gogc]
    assert out[4].strip() == (f'{{"MaxMemory": "{rcmgr}"}}' if rcmgr else "")


@pytest.mark.parametrize("shell", sorted(SHELLS))
def test_a_fetch_failure_says_when_ram_ran_out(tmp_path: Path, shell: str) -> None:
    """ram_short: the reason added to an extension's error line when kubo is gone (OOM killer)."""
    dead = subprocess.run(["sh", "-c", "echo $$"], capture_output=True, text=True, check=True).stdout.strip()
    script = (f'ROOT={tmp_path}; . {HOOK_LIB}/lib.sh; . {HOOK_LIB}/fetch.sh; MEM_MIB=256; '
              f'mkdir -p "$OPT"; KUBO_PID=; ram_short; echo "[$RAM_SHORT]"; KUBO_PID={dead}; ram_short; '
              'echo "[$RAM_SHORT]"')
    out = subprocess.run([*SHELLS[shell], "-c", script], capture_output=True, text=True, check=True,
                         env={"PATH": "/usr/bin:/bin"}).stdout.splitlines()
    assert out == ["[]", "[kubo is gone, killed for want of memory? (256 MiB RAM)]"]
