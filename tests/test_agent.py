"""The agent (`tce-ipfs install|status|seed|unseed`) against real kubo nodes and a fake TC tree.

Two isolated loopback nodes play the lab: ``origin`` publishes the sample repo, ``local`` is the booted
machine's own kubo (the agent's API). A fake ``tce-load`` (and ``su``, since the tests run as root)
record how TC's loader is called and leave the markers the real one leaves.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tce_ipfs import cli, tcrepo
from tce_ipfs.agent import ops
from tce_ipfs.agent.machine import Machine, bootparam, cid_from_cmdline, parse_status
from tce_ipfs.errors import RepoError, UsageError
from tce_ipfs.ipfs import publish, rpc
from tce_ipfs.ipfs.node import Node
from tce_ipfs.testbed import samplerepo

KVER = "6.1.0-agenttest"

FAKE_TCE_LOAD = """#!/bin/sh
# fake tce-load: record the call, check the files like the real one, leave tce.installed markers
echo "uid=$(id -u) args=$*" >> "$FAKE_ROOT/tce-load.calls"
[ "$1" = "-i" ] || exit 2
shift
for name in "$@"; do
    [ -f "$FAKE_ROOT/tmp/tce/optional/$name.tcz" ] || { echo "$name.tcz not found!"; exit 1; }
    touch "$FAKE_ROOT/usr/local/tce.installed/$name"
    echo "$name.tcz: OK"
done
"""

# `su USER -c CMD` as busybox does it for root: run CMD with sh (recorded, so the test sees the user).
FAKE_SU = """#!/bin/sh
echo "user=$1" >> "$FAKE_ROOT/su.calls"
[ "$2" = "-c" ] || exit 2
exec sh -c "$3"
"""


@dataclass
class World:
    origin: Node
    local: Node
    cid: str
    files: dict[str, tuple[str, int]]
    repo_dir: Path


@pytest.fixture(scope="module")
def world(host_kubo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    base = tmp_path_factory.mktemp("agent")
    sample = samplerepo.build(base / "repo", [KVER])
    origin = Node(base / "origin", host_kubo)
    local = Node(base / "local", host_kubo)
    with origin, local:
        with origin.client() as c:
            result = publish.publish(sample.path, c, progress=False)
        with local.client() as c:
            rpc.swarm_connect(c, origin.swarm_addrs[0], timeout=20)
        yield World(origin, local, result.root_cid, result.files, sample.path)


@pytest.fixture
def machine(tmp_path: Path, world: World, monkeypatch: pytest.MonkeyPatch) -> Machine:
    root = tmp_path / "root"
    for d in ("etc/sysconfig", "proc", "tmp/tce/optional", "usr/local/tce.installed", "bin"):
        (root / d).mkdir(parents=True)
    (root / "etc/sysconfig/tcedir").symlink_to("/tmp/tce")  # TC-style absolute link, mapped under root
    (root / "etc/sysconfig/tcuser").write_text("tc\n")
    (root / "proc/cmdline").write_text(f"console=ttyS0 quiet tce=ipfs:{world.cid} ipfs.peers=x\n")
    for name, text in (("tce-load", FAKE_TCE_LOAD), ("su", FAKE_SU)):
        (root / "bin" / name).write_text(text)
        (root / "bin" / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{root / 'bin'}:{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_ROOT", str(root))
    return Machine(root=root, kernel=KVER)


@pytest.fixture
def local(world: World) -> Iterator[Any]:
    with world.local.client() as c:
        yield c


def _calls(machine: Machine) -> list[str]:
    path = machine.root / "tce-load.calls"
    return path.read_text().splitlines() if path.exists() else []


def _local_unpin_all(c: Any, world: World) -> None:
    pins = rpc.pin_ls(c)
    for name, (cid, _size) in world.files.items():
        if cid in pins and name.endswith(".tcz"):
            rpc.pin_rm(c, cid)


# --- machine facts ---------------------------------------------------------------------------------


def test_machine_facts(machine: Machine, world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TCE_IPFS_API", raising=False)
    assert machine.tcedir() == machine.root / "tmp/tce"
    assert machine.optional() == machine.root / "tmp/tce/optional"
    assert machine.tcuser() == "tc"
    assert machine.booted_cid() == world.cid
    assert machine.onboot_list().name == "onboot.lst"
    assert machine.api() == "/ip4/127.0.0.1/tcp/5001/http"  # nothing says otherwise
    # The hook's kubo writes its (random-port) API address into its repo ...
    (machine.root / "tmp/tce-ipfs/repo").mkdir(parents=True)
    (machine.root / "tmp/tce-ipfs/repo/api").write_text("/ip4/127.0.0.1/tcp/40001\n")
    assert machine.api() == "/ip4/127.0.0.1/tcp/40001"
    # ... and the hook's status file wins over the command line (CID, subpath, API).
    status = machine.root / "tmp/tce-ipfs/status"
    status.write_text("result=ok\ncid=bafyfromstatus\nsubpath=16.x/tcz\napi=/ip4/127.0.0.1/tcp/40002\n")
    assert machine.booted_repo() == "bafyfromstatus/16.x/tcz"
    assert machine.booted_cid() == "bafyfromstatus"
    assert machine.api() == "/ip4/127.0.0.1/tcp/40002"
    monkeypatch.setenv("TCE_IPFS_API", "/ip4/127.0.0.1/tcp/40003")
    assert machine.api() == "/ip4/127.0.0.1/tcp/40003"
    assert machine.repo_root("/ipfs/bafygiven/sub/") == "bafygiven/sub"
    for bad in ("bafy/../etc", "bafy//x", "ba fy"):
        with pytest.raises(UsageError):
            machine.repo_root(bad)
    status.write_text("result=failed\ncid=\n")
    (machine.root / "proc/cmdline").write_text("quiet tce=ipfs:bafycmd/sub lst=mine.lst\n")
    assert machine.booted_repo() == "bafycmd/sub"
    assert machine.onboot_list().name == "mine.lst"
    (machine.root / "proc/cmdline").write_text("quiet\n")
    assert machine.booted_repo() is None
    with pytest.raises(UsageError, match="did not boot with tce=ipfs"):
        machine.repo_root(None)


def test_parsers() -> None:
    assert parse_status("a=1\nB: two\n# c=3\n\nurl=http://x:1/\n") == {"a": "1", "b": "two",
                                                                       "url": "http://x:1/"}
    assert cid_from_cmdline("x tce=ipfs:bafyabc y") == "bafyabc"
    assert cid_from_cmdline("tce=ipfs:/ipfs/bafyabc/") == "bafyabc"
    assert cid_from_cmdline("tce=ipfs:bafyabc/16.x/tcz") == "bafyabc/16.x/tcz"
    assert cid_from_cmdline("tce=sda1") is None
    assert bootparam("a=1 lst=x.lst b", "lst") == "x.lst"
    assert bootparam("lstx=1", "lst") is None


# --- install -----------------------------------------------------------------------------------------


@pytest.mark.kubo
def test_install_extra_with_dependency(machine: Machine, world: World, local: Any) -> None:
    _local_unpin_all(local, world)
    res = ops.install("extra", machine=machine, client=local)
    assert res.cid == world.cid
    assert res.closure == ["libextra.tcz", "extra.tcz"]
    assert sorted(res.fetched) == ["extra.tcz", "libextra.tcz"]
    assert res.loaded == ["libextra.tcz", "extra.tcz"] and not res.onboot
    optional = machine.optional()
    for name in res.closure:
        assert (optional / name).read_bytes() == (world.repo_dir / name).read_bytes()
        assert (optional / f"{name}.md5.txt").read_text() == (world.repo_dir / f"{name}.md5.txt").read_text()
        assert tcrepo.md5_file(optional / name) == tcrepo.parse_md5_txt(
            (optional / f"{name}.md5.txt").read_text())[0]
    assert (optional / "extra.tcz.dep").read_text() == (world.repo_dir / "extra.tcz.dep").read_text()
    assert not (optional / "libextra.tcz.dep").exists()
    assert not list(optional.glob("*.part"))
    # TC's loader, as the tc user (we are root), deps first, names without .tcz.
    assert _calls(machine) == ["uid=0 args=-i libextra extra"]
    assert (machine.root / "su.calls").read_text() == "user=tc\n"
    assert not (machine.tcedir() / "onboot.lst").exists()
    # The fetched files stay pinned: this machine serves them on.
    pins = rpc.pin_ls(local)
    assert world.files["extra.tcz"][0] in pins and world.files["libextra.tcz"][0] in pins

    # Again: nothing fetched, nothing loaded.
    again = ops.install("extra.tcz", machine=machine, client=local, onboot=True)
    assert again.fetched == {} and sorted(again.reused) == ["extra.tcz", "libextra.tcz"]
    assert again.loaded == [] and sorted(again.already_loaded) == ["extra.tcz", "libextra.tcz"]
    assert len(_calls(machine)) == 1
    assert (machine.tcedir() / "onboot.lst").read_text() == "extra.tcz\n"
    ops.install("extra", machine=machine, client=local, onboot=True)
    assert (machine.tcedir() / "onboot.lst").read_text() == "extra.tcz\n"


@pytest.mark.kubo
def test_install_resolves_kernel_dependency(machine: Machine, world: World, local: Any) -> None:
    res = ops.install("hello", machine=machine, client=local)
    assert res.closure == ["libhello.tcz", "hello-core.tcz", f"hello-mod-{KVER}.tcz", "hello.tcz"]
    assert _calls(machine) == [f"uid=0 args=-i libhello hello-core hello-mod-{KVER} hello"]


@pytest.mark.kubo
def test_install_redownloads_a_corrupt_local_copy(machine: Machine, world: World, local: Any) -> None:
    (machine.optional() / "libextra.tcz").write_bytes(b"corrupt")
    res = ops.install("libextra", machine=machine, client=local)
    assert res.fetched == {"libextra.tcz": world.files["libextra.tcz"][1]}
    want = (world.repo_dir / "libextra.tcz").read_bytes()
    assert (machine.optional() / "libextra.tcz").read_bytes() == want


@pytest.mark.kubo
def test_install_unknown_name(machine: Machine, world: World, local: Any) -> None:
    with pytest.raises(RepoError, match=r"nano\.tcz is not in the repository"):
        ops.install("nano", machine=machine, client=local)
    with pytest.raises(UsageError, match="invalid extension name"):
        ops.install("../etc/passwd", machine=machine, client=local)
    assert _calls(machine) == []


@pytest.mark.kubo
def test_install_refuses_md5_mismatch(machine: Machine, world: World, local: Any, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in ("libextra.tcz", "libextra.tcz.md5.txt", "extra.tcz", "extra.tcz.md5.txt", "extra.tcz.dep"):
        shutil.copy(world.repo_dir / name, bad / name)
    (bad / "libextra.tcz.md5.txt").write_text("0" * 32 + "  libextra.tcz\n")
    with world.origin.client() as c:
        bad_cid = publish.publish(bad, c, check=False, progress=False).root_cid
    with pytest.raises(RepoError, match=r"md5 mismatch for libextra\.tcz"):
        ops.install("extra", machine=machine, client=local, cid=bad_cid)
    assert sorted(p.name for p in machine.optional().iterdir()) == []
    assert _calls(machine) == []


@pytest.mark.kubo
def test_install_reports_loader_failure(machine: Machine, world: World, local: Any) -> None:
    (machine.root / "bin/tce-load").write_text("#!/bin/sh\necho 'extra.tcz: mount failed'\nexit 1\n")
    with pytest.raises(Exception, match="tce-load -i libextra extra failed"):
        ops.install("extra", machine=machine, client=local)


# --- status -----------------------------------------------------------------------------------------


@pytest.mark.kubo
def test_status_after_install(machine: Machine, world: World, local: Any) -> None:
    ops.install("extra", machine=machine, client=local)
    info = ops.status(machine=machine, client=local)
    assert info["repo_cid"] == world.cid
    assert info["peer_id"] == world.local.peer_id
    assert {"extra.tcz", "libextra.tcz"} <= set(info["pinned_extensions"])
    assert info["bytes_received"] > 0 and info["blocks_received"] > 0
    origin_peer = next(p for p in info["peers"] if p["peer"] == world.origin.peer_id)
    assert origin_peer["recv"] > 0
    text = ops.render_status(info)
    assert world.cid in text and "extra.tcz" in text
    # The origin's side: bytes served to this machine, per peer.
    with world.origin.client() as c:
        served = ops.status(machine=Machine(root=machine.root / "nowhere"), client=c)
    assert served["repo_cid"] is None
    assert served["bytes_sent"] > 0
    assert next(p for p in served["peers"] if p["peer"] == world.local.peer_id)["sent"] > 0


# --- seed / unseed --------------------------------------------------------------------------------


@pytest.mark.kubo
def test_seed_gets_repo_cids_and_unseed_releases(machine: Machine, world: World, local: Any) -> None:
    optional = machine.optional()
    for name in ("greeter.tcz", "greeter.tcz.md5.txt", "hello.tcz", "hello.tcz.dep", "hello.tcz.md5.txt"):
        shutil.copy(world.repo_dir / name, optional / name)
    (optional / "mine.tcz").write_bytes(os.urandom(70_000))  # a local extension the repo lacks
    builtin = machine.root / "tmp/builtin/optional"  # what the boot hook fetched
    builtin.mkdir(parents=True)
    for name in ("libhello.tcz", "libhello.tcz.md5.txt", "hello.tcz"):
        shutil.copy(world.repo_dir / name, builtin / name)
    _local_unpin_all(local, world)

    rows = ops.seed(machine=machine, client=local)
    by_name = {r["name"]: r for r in rows}
    assert set(by_name) == {"greeter.tcz", "greeter.tcz.md5.txt", "hello.tcz", "hello.tcz.dep",
                            "hello.tcz.md5.txt", "mine.tcz", "libhello.tcz", "libhello.tcz.md5.txt"}
    assert by_name["hello.tcz"]["path"] == str(optional / "hello.tcz")  # the tce dir's copy first
    for name in ("greeter.tcz", "hello.tcz", "hello.tcz.dep", "greeter.tcz.md5.txt", "libhello.tcz"):
        assert by_name[name]["cid"] == world.files[name][0], name
        assert by_name[name]["in_repo"] is True
    assert by_name["mine.tcz"]["in_repo"] is False
    pins = rpc.pin_ls(local)
    assert all(r["cid"] in pins for r in rows)

    just = ops.unseed(["hello"], machine=machine, client=local)
    assert {r["name"] for r in just} == {"hello.tcz", "hello.tcz.dep", "hello.tcz.md5.txt"}
    assert all(r["unpinned"] for r in just)
    rows2 = ops.unseed(machine=machine, client=local, gc=True)
    unpinned = {r["name"] for r in rows2 if r["unpinned"]}
    assert unpinned == {"greeter.tcz", "greeter.tcz.md5.txt", "mine.tcz", "libhello.tcz",
                        "libhello.tcz.md5.txt"}
    pins = rpc.pin_ls(local)
    assert not [r for r in rows if r["cid"] in pins]
    with pytest.raises(RepoError, match="not in"):
        ops.seed(["nano"], machine=machine, client=local)


# --- the CLI ------------------------------------------------------------------------------------------


@pytest.mark.kubo
def test_cli_install_status_seed(machine: Machine, world: World, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("TCE_IPFS_AGENT_ROOT", str(machine.root))
    monkeypatch.setattr(os, "uname", lambda: os.uname_result(("Linux", "box", KVER, "#1", "x86_64")))
    api = world.local.api
    assert cli.main(["install", "extra", "--onboot", "--json", "--api", api]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["closure"] == ["libextra.tcz", "extra.tcz"] and out["onboot"] is True
    assert cli.main(["status", "--api", api]) == 0
    text = capsys.readouterr().out
    assert f"repo:      {world.cid}" in text and "served:" in text
    assert cli.main(["seed", "--json", "--api", api]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["name"] for r in rows} >= {"extra.tcz", "libextra.tcz"}
    assert cli.main(["install", "nano", "--api", api]) == 8  # RepoError's exit code
    assert "nano.tcz is not in the repository" in capsys.readouterr().err
    monkeypatch.setenv("TCE_IPFS_API", "/ip4/127.0.0.1/tcp/1")
    assert cli.main(["status"]) == 9  # NodeError: no kubo there
    err = capsys.readouterr().err
    assert "no IPFS API" in err and "hint:" in err
