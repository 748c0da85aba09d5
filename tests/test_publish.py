"""publish: a TC repo directory to one root CID on a real, isolated kubo."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tce_ipfs import cli, log
from tce_ipfs.errors import RepoError
from tce_ipfs.ipfs import publish, rpc
from tce_ipfs.ipfs.node import Node

pytestmark = [pytest.mark.kubo, pytest.mark.filterwarnings("ignore:The 'strict' parameter:FutureWarning")]

KERNEL = "6.6.8-tinycore64"


def add_ext(d: Path, name: str, size: int = 50_000, deps: list[str] | None = None) -> bytes:
    data = (hashlib.sha256(name.encode()).digest() * (size // 32 + 1))[: size - 16] + os.urandom(16)
    (d / name).write_bytes(data)
    (d / f"{name}.md5.txt").write_text(f"{hashlib.md5(data).hexdigest()}  {name}\n")
    if deps:
        (d / f"{name}.dep").write_text("\n".join(deps) + "\n")
    return data


def make_repo(d: Path) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    add_ext(d, "libffi.tcz")
    add_ext(d, "glib2.tcz", 400_000, deps=["libffi.tcz"])
    add_ext(d, "hello.tcz", 30_000, deps=["glib2.tcz", "hello-mod-KERNEL.tcz"])
    add_ext(d, f"hello-mod-{KERNEL}.tcz", 10_000)
    (d / "hello.tcz.info").write_text("Title: hello.tcz\n")
    (d / "onboot.lst").write_text("hello.tcz\n")
    return d


@pytest.fixture(scope="module")
def seed(host_kubo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    with Node(tmp_path_factory.mktemp("seed") / "repo", host_kubo) as n:
        yield n


@pytest.fixture
def client(seed: Node) -> Iterator[Any]:
    with seed.client() as c:
        yield c


def test_publish_same_cid_twice(tmp_path: Path, client: Any, seed: Node, host_kubo: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    first = publish.publish(repo, client)
    second = publish.publish(repo, client)
    assert first.root_cid == second.root_cid and first.files == second.files
    assert first.root_cid.startswith("bafy")
    names = sorted(p.name for p in repo.iterdir())
    assert sorted(first.files) == names
    assert first.total_size == sum(p.stat().st_size for p in repo.iterdir())
    assert {n: s for n, (_, s) in first.files.items()} == {p.name: p.stat().st_size for p in repo.iterdir()}
    assert publish.verify_published(client, first) == []
    # what the boot hook fetches: /ipfs/<root>/<lst>, /ipfs/<root>/<name>.tcz[.md5.txt|.dep]
    assert rpc.cat(client, f"/ipfs/{first.root_cid}/onboot.lst") == b"hello.tcz\n"
    assert rpc.cat(client, f"/ipfs/{first.root_cid}/hello.tcz") == (repo / "hello.tcz").read_bytes()
    # same input on ANOTHER node (fresh repo, other identity): same CID
    with Node(tmp_path / "other", host_kubo) as other, other.client() as c2:
        assert publish.publish(repo, c2, check=False).root_cid == first.root_cid
    # JSON shape
    js = first.as_json()
    assert js["root"] == first.root_cid and js["total"] == first.total_size
    assert js["files"]["hello.tcz"] == {"cid": first.files["hello.tcz"][0], "size": 30_000}


def test_republish_keeps_unchanged_cids_and_adds_only_new_blocks(tmp_path: Path, client: Any) -> None:
    repo = make_repo(tmp_path / "repo")
    before = publish.publish(repo, client)
    size_before = rpc.repo_stat(client)["RepoSize"]
    new_size = 300_000
    add_ext(repo, "newext.tcz", new_size, deps=["libffi.tcz"])
    after = publish.publish(repo, client)
    assert after.root_cid != before.root_cid
    for name, (cid, size) in before.files.items():
        assert after.files[name] == (cid, size), name
    assert set(after.files) - set(before.files) == {"newext.tcz", "newext.tcz.md5.txt", "newext.tcz.dep"}
    growth = rpc.repo_stat(client)["RepoSize"] - size_before
    # only the new file's blocks (+ a new root directory node and small sidecars) were stored
    assert new_size <= growth < new_size + 64 * 1024, growth
    assert rpc.pin_ls(client, after.root_cid) == {after.root_cid: "recursive"}


def test_corrupt_tcz_refused_naming_file(tmp_path: Path, client: Any) -> None:
    repo = make_repo(tmp_path / "repo")
    data = bytearray((repo / "glib2.tcz").read_bytes())
    data[1000] ^= 0x01
    (repo / "glib2.tcz").write_bytes(bytes(data))
    pins = rpc.pin_ls(client)
    with pytest.raises(RepoError) as info:
        publish.publish(repo, client)
    assert len(info.value.problems) == 1
    assert info.value.problems[0].startswith("glib2.tcz: md5 ")
    assert "glib2.tcz" in str(info.value)
    assert rpc.pin_ls(client) == pins  # nothing new is pinned (the root pin was taken back)
    # --no-check publishes it anyway; a later checked publish of the same bytes still refuses
    # but leaves the existing (deliberate) pin alone
    forced = publish.publish(repo, client, check=False)
    assert forced.files["glib2.tcz"][1] == len(data)
    with pytest.raises(RepoError):
        publish.publish(repo, client)
    assert forced.root_cid in rpc.pin_ls(client)


def test_structural_problems_refused_before_adding(tmp_path: Path, client: Any) -> None:
    repo = make_repo(tmp_path / "repo")
    (repo / "onboot.lst").write_text("hello.tcz\nnothere.tcz\n")
    objects = rpc.repo_stat(client)["NumObjects"]
    with pytest.raises(RepoError, match=r"onboot\.lst: lists nothere\.tcz"):
        publish.publish(repo, client)
    assert rpc.repo_stat(client)["NumObjects"] == objects  # nothing was sent to kubo


def test_missing_dep_refused_naming_dep_file_and_name(tmp_path: Path, client: Any) -> None:
    repo = make_repo(tmp_path / "repo")
    (repo / "libffi.tcz").unlink()
    (repo / "libffi.tcz.md5.txt").unlink()
    with pytest.raises(RepoError) as info:
        publish.publish(repo, client)
    assert info.value.problems == ["glib2.tcz.dep: dependency libffi.tcz not in repo"]
    # a kernel that is not in the repo, when asked for one
    make_repo(repo)
    with pytest.raises(RepoError, match=r"hello-mod-5\.15\.0-x\.tcz"):
        publish.publish(repo, client, kernel="5.15.0-x")
    assert publish.publish(repo, client, kernel=KERNEL).root_cid


def test_unsafe_name_refused_even_without_check(tmp_path: Path, client: Any) -> None:
    repo = make_repo(tmp_path / "repo")
    (repo / "x;reboot.tcz").write_bytes(b"x")
    for check in (True, False):
        with pytest.raises(RepoError, match=r"x;reboot\.tcz: unsafe extension name"):
            publish.publish(repo, client, check=check)


def test_tce_dir_layout_is_flattened(tmp_path: Path, client: Any) -> None:
    flat = make_repo(tmp_path / "flat")
    tce = tmp_path / "tce"
    shutil.copytree(flat, tce / "optional")
    (tce / "optional" / "onboot.lst").rename(tce / "onboot.lst")
    (tce / "mydata.tgz").write_bytes(b"personal backup, never published")
    res = publish.publish(tce, client)
    assert res.layout == "tce-dir" and "mydata.tgz" not in res.files
    assert any("mydata.tgz" in w for w in res.warnings)
    names = {e["Name"] for e in rpc.ls(client, res.root_cid)}
    assert "onboot.lst" in names and "hello.tcz" in names and "optional" not in names
    # the same files in the flat layout give the same root
    assert publish.publish(flat, client).root_cid == res.root_cid


def test_progress_counts_every_byte(tmp_path: Path, client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, int] = {}

    class TtyProgress(log.Progress):
        def __init__(self, label: str, total: int, unit: str = "B") -> None:
            super().__init__(label, total, unit)
            self.enabled = True
            seen["total"] = total

        def advance(self, amount: int) -> None:
            seen["done"] = seen.get("done", 0) + amount

    monkeypatch.setattr(publish, "Progress", TtyProgress)
    repo = make_repo(tmp_path / "repo")
    res = publish.publish(repo, client)
    assert seen == {"total": res.total_size, "done": res.total_size}


def test_cli_publish_json(tmp_path: Path, seed: Node, capsys: pytest.CaptureFixture[str]) -> None:
    repo = make_repo(tmp_path / "repo")
    assert cli.main(["publish", str(repo), "--api", seed.api, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["root"].startswith("bafy") and out["total"] > 0
    assert out["files"]["onboot.lst"]["size"] == len("hello.tcz\n")
    assert "announced" not in out  # a LAN node: no routing, nothing to announce
    assert cli.main(["publish", str(repo), "--api", seed.api]) == 0
    assert capsys.readouterr().out.strip() == out["root"]
    (repo / "glib2.tcz").write_bytes(b"corrupt")
    assert cli.main(["publish", str(repo), "--api", seed.api]) == RepoError.exit_code
    err = capsys.readouterr().err
    assert "glib2.tcz: md5" in err and "hint:" in err


def test_cli_publish_no_node(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = make_repo(tmp_path / "repo")
    assert cli.main(["publish", str(repo), "--api", "/ip4/127.0.0.1/tcp/1"]) == 9
    err = capsys.readouterr().err
    assert "no IPFS API at /ip4/127.0.0.1/tcp/1" in err and "tce-ipfs node start" in err
