"""Publishing a TC mirror tree on a real, isolated kubo: one root for every <release>/<arch>/tcz/, the
index files cross-checked, incremental republish (same root as a full one), --keep, IPNS names,
CAR export/import. The synthetic mirror is shaped like TC's (testbed.samplemirror: 2 releases x 2 arches,
300 extensions each with every sidecar and index file), so each tcz/ directory is a sharded (HAMT)
UnixFS directory as a real one is.
"""

from __future__ import annotations

import base64
import json
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tce_ipfs import cli, proc, tcindex, tctree
from tce_ipfs.errors import NodeError, RepoError, UsageError
from tce_ipfs.ipfs import car, duplex, names, publish, roots, rpc
from tce_ipfs.ipfs.node import Node
from tce_ipfs.testbed import samplemirror
from test_isolation import Sampler
from test_seed import free_port

pytestmark = [pytest.mark.kubo, pytest.mark.filterwarnings("ignore:The 'strict' parameter:FutureWarning")]

SRC = Path(__file__).resolve().parents[1] / "src"
X86 = "16.x/x86_64/tcz"


# A real mirror's tcz/ (thousands of extensions) is past kubo's sharding threshold (256 KiB of links);
# the synthetic one (300) is not, so this node shards at 32 KiB: the same code path, for add and MFS.
SHARDING = {"Import.UnixFSHAMTDirectorySizeThreshold": "32KiB"}


@pytest.fixture(scope="module")
def node(host_kubo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    with Node(tmp_path_factory.mktemp("mirror-node") / "repo", host_kubo, extra_config=SHARDING) as n:
        yield n


@pytest.fixture(autouse=True)
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The CLI keeps its publish caches in the state directory: a scratch one per test."""
    monkeypatch.setenv("TCE_IPFS_STATE", str(tmp_path / "state-dir"))
    return tmp_path / "state-dir"


@pytest.fixture
def client(node: Node) -> Iterator[Any]:
    with node.client(timeout=600) as c:
        yield c


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> samplemirror.SampleMirror:
    return samplemirror.build(tmp_path_factory.mktemp("mirror") / "tree", extensions=300)


@pytest.fixture
def mirror(built: samplemirror.SampleMirror, tmp_path: Path) -> samplemirror.SampleMirror:
    """A private copy of the synthetic mirror (tests change it)."""
    shutil.copytree(built.path, tmp_path / "tree")
    return samplemirror.SampleMirror(path=tmp_path / "tree", dirs=list(built.dirs),
                                     extensions=dict(built.extensions))


def bare_add(node: Node, tree: Path, tmp: Path) -> str:
    """The root a plain `ipfs add -r` gives for the published part of ``tree`` (its tcz/ directories)."""
    only = tmp / "bare"
    shutil.rmtree(only, ignore_errors=True)
    for tcz in tree.glob("*/*/tcz"):
        shutil.copytree(tcz, only / tcz.relative_to(tree))
    return node.kubo_cmd("add", "-r", "-Q", "--cid-version=1", "--raw-leaves", "--pin=false", str(only),
                         timeout=600).strip()


def unixfs_type(client: Any, cid: str) -> int:
    """The UnixFS node type of a directory (1 directory, 5 HAMT shard)."""
    res = client._client.request("/dag/get", (cid,), decoder="json")[0]
    data = base64.b64decode(res["Data"]["/"]["bytes"] + "==")
    assert data[0] == 0x08
    return int(data[1])


def test_a_mirror_tree_publishes_as_one_root(mirror: samplemirror.SampleMirror, node: Node, client: Any,
                                             tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert tctree.is_tree(mirror.path)
    assert cli.main(["publish", str(mirror.path), "--api", node.api, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    root = out["root"]
    assert out["layout"] == "tree" and out["dirs"] == sorted(mirror.dirs) and out["mode"] == "full"
    assert len([f for f in out["files"] if f.endswith(".tcz")]) == 4 * 300
    # TC's URL layout under the root: <release>/<arch>/tcz/NAME.tcz with every sidecar and index file
    assert sorted(e["Name"] for e in rpc.ls(client, root)) == ["15.x", "16.x"]
    assert sorted(e["Name"] for e in rpc.ls(client, f"/ipfs/{root}/16.x")) == ["aarch64", "x86_64"]
    for name in ("md5.db.gz", "sizelist.gz", "dep.db.gz", "tags.db.gz", "provides.db", "info.lst",
                 "pkg00010-16.tcz", "pkg00010-16.tcz.zsync", "pkg00010-16.tcz.tree"):
        assert rpc.cat(client, f"/ipfs/{root}/{X86}/{name}") == (mirror.tcz(X86) / name).read_bytes()
    # What a mirror holds besides tcz/ (release/, latest-*) is left out, not a warning.
    assert out["warnings"] == []
    assert "release" not in {e["Name"] for e in rpc.ls(client, f"/ipfs/{root}/16.x/x86_64")}
    # The same root as a plain `ipfs add -r` of those directories: nothing but content decides it.
    assert root == bare_add(node, mirror.path, tmp_path)
    tcz_dir = rpc.resolve(client, f"/ipfs/{root}/{X86}")
    assert unixfs_type(client, tcz_dir) == 5  # a sharded directory, as a real mirror's tcz/ is
    assert root in rpc.pin_ls(client, root)
    assert roots.parse_pin_name(rpc.pin_names(client)[root]) is not None


def test_index_files_are_cross_checked(mirror: samplemirror.SampleMirror, client: Any,
                                       tmp_path: Path) -> None:
    d = mirror.tcz(X86)
    # A stale md5.db.gz: one extension changed after the index was made, one entry for a removed one.
    samplemirror.change(mirror, X86, "pkg00042-16.tcz", reindex=False)
    db = tcindex.read_index(d / "md5.db.gz") + f"{'1' * 32}  gone-16.tcz\n"
    (d / "md5.db.gz").write_bytes(tcindex.gzip_bytes(db.encode()))
    sizes = tcindex.read_index(d / "sizelist.gz").replace("pkg00001-16.tcz ", "pkg00001-16.tcz 1")
    (d / "sizelist.gz").write_bytes(tcindex.gzip_bytes(sizes.encode()))
    res = publish.publish(mirror.path, client, progress=False, cache=tmp_path / "cache.json")
    warnings = "\n".join(res.warnings)
    assert f"{X86}/md5.db.gz: stale md5 for pkg00042-16.tcz" in warnings, warnings
    assert f"{X86}/md5.db.gz: stale entry gone-16.tcz: not in the directory" in warnings
    assert f"{X86}/sizelist.gz: stale size for pkg00001-16.tcz" in warnings
    assert f"{X86}/sizelist.gz: stale size for pkg00042-16.tcz" not in warnings  # same size: not stale
    assert all("15.x" not in w for w in res.warnings)  # the other directories are consistent
    # An extension that does not match its .md5.txt refuses the whole publish, naming its path.
    (d / "pkg00007-16.tcz").write_bytes(b"corrupt")
    with pytest.raises(RepoError) as err:
        publish.publish(mirror.path, client, progress=False, cache=tmp_path / "cache.json")
    assert any(p.startswith(f"{X86}/pkg00007-16.tcz: md5 ") for p in err.value.problems), err.value.problems


def test_incremental_republish_equals_a_full_one(mirror: samplemirror.SampleMirror, node: Node,
                                                 client: Any, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    cache = tmp_path / "cache.json"
    first = publish.publish(mirror.path, client, progress=False, cache=cache)
    again = publish.publish(mirror.path, client, progress=False, cache=cache)
    assert again.mode == "unchanged" and again.root_cid == first.root_cid and again.added_files == 0
    assert again.diff == {"added": [], "removed": [], "changed": [], "other": []}

    # A day on a mirror: 3 extensions updated, one added, one removed, a new arch, an arch dropped.
    for prefix, name in ((X86, "pkg00007-16.tcz"), ("16.x/aarch64/tcz", "pkg00150-16.tcz"),
                         ("15.x/x86_64/tcz", "pkg00299-15.tcz")):
        samplemirror.change(mirror, prefix, name)
    samplemirror.add(mirror, X86, "newtool.tcz")
    samplemirror.remove(mirror, "16.x/aarch64/tcz", "pkg00298-16.tcz")
    shutil.rmtree(mirror.path / "15.x/aarch64")
    samplemirror.build(mirror.path, extensions=5, releases=("17.x",), arches=("x86_64",), extras=False)
    # A file rewritten with the same content gets the same CID: not in the diff.
    info = mirror.tcz(X86) / "pkg00001-16.tcz.info"
    info.write_bytes(info.read_bytes())

    assert cli.main(["publish", str(mirror.path), "--api", node.api, "--json"]) == 0  # default cache
    assert cli.main(["publish", str(mirror.path), "--api", node.api, "--json"]) == 0
    capsys.readouterr()
    inc = publish.publish(mirror.path, client, progress=False, cache=cache)
    assert inc.mode == "incremental" and inc.previous == first.root_cid
    assert inc.added_files < 120, inc.added_files  # the changed and new files (~90), not all 9,000
    full = publish.publish(mirror.path, client, progress=False, full=True)
    assert full.mode == "full" and inc.root_cid == full.root_cid
    assert inc.root_cid == bare_add(node, mirror.path, tmp_path)
    assert inc.files == full.files
    diff = inc.diff
    assert diff is not None
    assert diff["changed"] == ["15.x/x86_64/tcz/pkg00299-15.tcz", "16.x/aarch64/tcz/pkg00150-16.tcz",
                               f"{X86}/pkg00007-16.tcz"]
    assert f"{X86}/newtool.tcz" in diff["added"] and "17.x/x86_64/tcz/pkg00000-17.tcz" in diff["added"]
    assert "16.x/aarch64/tcz/pkg00298-16.tcz" in diff["removed"]
    assert len([r for r in diff["removed"] if r.startswith("15.x/aarch64/")]) == 300
    assert f"{X86}/md5.db.gz" in diff["other"] and f"{X86}/pkg00001-16.tcz" not in diff["changed"]
    # The previous root stays pinned (until --keep says otherwise); MFS holds nothing afterwards.
    assert first.root_cid in rpc.pin_ls(client, first.root_cid)
    assert not [e for e in client.files.ls("/")["Entries"] or [] if e["Name"].startswith("tce-ipfs")]
    # The CLI (its own cache, in the state directory) says the same in --json.
    samplemirror.change(mirror, X86, "pkg00008-16.tcz", generation=2)
    assert cli.main(["publish", str(mirror.path), "--api", node.api, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["mode"] == "incremental" and out["previous"] == inc.root_cid
    assert out["diff"] == {"added": [], "removed": [], "changed": [f"{X86}/pkg00008-16.tcz"],
                           "other": [f"{X86}/md5.db.gz"]}  # same size: sizelist.gz as it was


Request = tuple[str, tuple[str, ...], dict[str, str]]  # RPC path, arguments, options


def _mfs_requests(client: Any, monkeypatch: pytest.MonkeyPatch) -> list[Request]:
    """Record every RPC request the client makes through ipfshttpclient (MFS calls go that way)."""
    seen: list[Request] = []
    cls = type(client._client)  # its instances take no attributes (__slots__)
    request = cls.request

    def spy(self: Any, path: str, args: Any = (), **kwargs: Any) -> Any:
        seen.append((path, tuple(args), dict(kwargs.get("opts") or {})))
        return request(self, path, args, **kwargs)

    monkeypatch.setattr(cls, "request", spy)
    session_call = duplex.Session.call  # many calls in a row go over one kept-alive connection

    def session_spy(self: duplex.Session, command: str, args: Any = (), opts: Any = None) -> Any:
        seen.append((f"/{command}", tuple(args), dict(opts or {})))
        return session_call(self, command, args, opts)

    monkeypatch.setattr(duplex.Session, "call", session_spy)
    return seen


@pytest.mark.parametrize("overwrite", [True, False], ids=["cp-force", "old-kubo-rm"])
def test_an_unflushed_republish_gives_the_root_of_a_full_publish(
        mirror: samplemirror.SampleMirror, node: Node, client: Any, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, overwrite: bool) -> None:
    """The changed files are linked over the old ones without a flush per file (``files rm`` flushes
    up to the MFS root each time, what made a republish slow): one flush per ``FLUSH_EVERY`` links and
    one at the end. The root is the one a from-scratch publish gives, to the CID. ``old-kubo-rm``: a
    kubo without ``files cp --force`` unlinks them first (slower, same root)."""
    cache = tmp_path / "cache.json"
    first = publish.publish(mirror.path, client, progress=False, cache=cache)
    for i in (3, 77, 150, 299):
        for prefix in mirror.dirs:
            samplemirror.change(mirror, prefix, mirror.extensions[prefix][i], reindex=False)
    for prefix in mirror.dirs:
        tcindex.write_indexes(mirror.tcz(prefix))
    samplemirror.remove(mirror, X86, "pkg00298-16.tcz")  # nothing needs it
    samplemirror.build(mirror.path, extensions=3, releases=("17.x",), arches=("x86_64",), extras=False)
    monkeypatch.setattr(publish, "FLUSH_EVERY", 16)  # ~100 links: the periodic flush is used too
    monkeypatch.setattr(publish, "_can_overwrite", lambda c: overwrite)
    seen = _mfs_requests(client, monkeypatch)
    inc = publish.publish(mirror.path, client, progress=False, cache=cache)
    assert inc.mode == "incremental" and 80 < inc.added_files < 300, inc.added_files  # not all 9,000

    def staged(a: str) -> str:  # "/tce-ipfs-publish-<token>/16.x/..." -> "16.x/..."
        return a.split("/", 2)[2]

    links = [(args, opts) for path, args, opts in seen
             if path == "/files/cp" and args[0] != f"/ipfs/{first.root_cid}"]  # not the stage's copy
    assert all(opts.get("flush") == "false" for _, opts in links)
    assert all((opts.get("force") == "true") == overwrite for _, opts in links)
    linked = {staged(args[1]) for args, _ in links}
    # Every file whose stat changed is added again, and only those whose CID is new are linked (the
    # .info, .list, ... and index files rewritten with the same bytes are not).
    assert len(links) == len(linked) < inc.added_files
    assert linked == {r for r in inc.files if inc.files[r] != first.files.get(r)}
    flushes = [args for path, args, _ in seen if path == "/files/flush"]
    assert len(flushes) == -(-len(links) // 16), flushes  # every 16 links, and once at the end
    unlinked = sorted(staged(a) for path, args, _ in seen if path == "/files/rm"
                      for a in args if a.count("/") > 1)  # not the stage itself, removed at the end
    removed = set(first.files) - set(inc.files)
    assert removed and all(r.startswith(f"{X86}/pkg00298-16.tcz") for r in removed)
    # Each `files rm` path flushes up to the MFS root: only what is gone (a kubo without cp --force:
    # also the files that are replaced).
    replaced = linked & set(first.files)
    assert unlinked == sorted(removed if overwrite else removed | replaced)
    # Exactly the root of a from-scratch publish and of a plain `ipfs add -r`, with every file's CID.
    full = publish.publish(mirror.path, client, progress=False, full=True)
    assert inc.root_cid == full.root_cid == bare_add(node, mirror.path, tmp_path)
    assert inc.files == full.files
    assert not [e for e in client.files.ls("/")["Entries"] or [] if e["Name"].startswith("tce-ipfs")]


def test_a_republish_flushes_when_kubo_allows_fewer_unflushed_links(tmp_path: Path, host_kubo: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A kubo whose ``Internal.MFSNoFlushLimit`` is below ``FLUSH_EVERY`` refuses the next unflushed
    ``files cp``: the republish flushes and goes on, same root as a full publish."""
    repo = tmp_path / "flat"
    samplemirror.build(tmp_path / "m", extensions=20, releases=("16.x",), arches=("x86_64",), extras=False)
    shutil.move(tmp_path / "m/16.x/x86_64/tcz", repo)
    with Node(tmp_path / "node", host_kubo, extra_config={"Internal.MFSNoFlushLimit": 4}) as n, \
            n.client(timeout=300) as c:
        cache = tmp_path / "c.json"
        publish.publish(repo, c, progress=False, cache=cache)
        for i in range(0, 20, 3):
            samplemirror.write_extension(repo, f"pkg{i:05d}-16.tcz", b"new content %d" % i)
        seen = _mfs_requests(c, monkeypatch)
        inc = publish.publish(repo, c, progress=False, cache=cache)
        assert inc.mode == "incremental" and 8 < inc.added_files < publish.FLUSH_EVERY
        linked = {r[1][1] for r in seen if r[0] == "/files/cp" and r[2].get("flush") == "false"}
        flushes = [r for r in seen if r[0] == "/files/flush"]
        assert len(linked) > 8 and len(flushes) > len(linked) // 4  # kubo said when
        assert inc.root_cid == publish.publish(repo, c, progress=False, full=True).root_cid
        # Only a removal (the index files left stale: warnings): nothing to add, the same root as a full one.
        mirror = samplemirror.SampleMirror(path=repo.parent, dirs=[repo.name],
                                           extensions={repo.name: [f.name for f in repo.glob("*.tcz")]})
        samplemirror.remove(mirror, repo.name, "pkg00019-16.tcz", reindex=False)  # nothing needs it
        gone = publish.publish(repo, c, progress=False, cache=cache)
        assert gone.mode == "incremental" and gone.added_files == 0 and gone.warnings
        assert gone.diff is not None and gone.diff["removed"] == ["pkg00019-16.tcz"]
        assert gone.root_cid == publish.publish(repo, c, progress=False, full=True).root_cid


def test_incremental_flat_repo_and_a_root_that_was_unpinned(tmp_path: Path, client: Any, node: Node) -> None:
    repo = tmp_path / "flat"
    samplemirror.build(tmp_path / "m", extensions=40, releases=("16.x",), arches=("x86_64",), extras=False)
    shutil.move(tmp_path / "m/16.x/x86_64/tcz", repo)
    (repo / "onboot.lst").write_text("pkg00003-16.tcz\n")
    cache = tmp_path / "c.json"
    first = publish.publish(repo, client, progress=False, cache=cache)
    samplemirror.write_extension(repo, "pkg00003-16.tcz", b"new content")
    inc = publish.publish(repo, client, progress=False, cache=cache)
    assert inc.mode == "incremental"
    assert inc.root_cid == publish.publish(repo, client, progress=False).root_cid
    # The previous root gone from the node (unpinned, collected): a full publish, the same root.
    rpc.pin_rm(client, inc.root_cid)
    rpc.pin_rm(client, first.root_cid)
    node.kubo_cmd("repo", "gc", "--quiet", timeout=300)
    again = publish.publish(repo, client, progress=False, cache=cache)
    assert again.mode == "full" and again.root_cid == inc.root_cid


def flat_repo(tmp_path: Path, extensions: int = 20) -> tuple[Path, samplemirror.SampleMirror]:
    """A flat repo (one synthetic tcz/ directory with its index files) and the mirror handle to change it."""
    repo = tmp_path / "flat"
    samplemirror.build(tmp_path / "m", extensions=extensions, releases=("16.x",), arches=("x86_64",),
                       extras=False)
    shutil.move(tmp_path / "m/16.x/x86_64/tcz", repo)
    return repo, samplemirror.SampleMirror(path=repo.parent, dirs=[repo.name],
                                           extensions={repo.name: sorted(f.name for f in repo.glob("*.tcz"))})


def test_a_republish_reads_only_changed_sidecars_and_checks_them(tmp_path: Path, client: Any,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The cache keeps the texts of the sidecars (``pubcache``): a republish reads only those whose stat
    changed, and every check of a full publish still holds for them: a ``.md5.txt`` that no longer
    matches its (unchanged) ``.tcz``, a ``.dep`` naming an extension that is not there, an index made
    before the last change."""
    repo, mirror = flat_repo(tmp_path)
    cache = tmp_path / "c.json"
    publish.publish(repo, client, progress=False, cache=cache)
    samplemirror.change(mirror, repo.name, "pkg00015-16.tcz")  # it has a .dep (every 5th from 10 on)
    reads: list[str] = []
    read_text = Path.read_text

    def counted(self: Path, *args: Any, **kwargs: Any) -> str:
        reads.append(self.name)
        return read_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", counted)
    inc = publish.publish(repo, client, progress=False, cache=cache)
    assert inc.mode == "incremental" and not inc.warnings
    assert sorted(n for n in reads if n.endswith((".md5.txt", ".dep", ".lst"))) == \
        ["pkg00015-16.tcz.dep", "pkg00015-16.tcz.md5.txt"]  # not all 20 of each

    md5_txt = repo / "pkg00003-16.tcz.md5.txt"
    good = md5_txt.read_text()
    md5_txt.write_text(f"{'0' * 32}  pkg00003-16.tcz\n")
    with pytest.raises(RepoError) as err:
        publish.publish(repo, client, progress=False, cache=cache)
    assert any(p.startswith("pkg00003-16.tcz: md5 ") for p in err.value.problems), err.value.problems
    assert not [e for e in client.files.ls("/")["Entries"] or [] if e["Name"].startswith("tce-ipfs")]
    md5_txt.write_text(good)

    dep = repo / "pkg00010-16.tcz.dep"
    deps = dep.read_text()
    dep.write_text(deps + "missing-16.tcz\n")
    with pytest.raises(RepoError) as err:
        publish.publish(repo, client, progress=False, cache=cache)
    assert "pkg00010-16.tcz.dep: dependency missing-16.tcz not in repo" in err.value.problems
    dep.write_text(deps)

    samplemirror.change(mirror, repo.name, "pkg00004-16.tcz", generation=2, reindex=False)
    stale = publish.publish(repo, client, progress=False, cache=cache)
    assert stale.mode == "incremental"
    assert "md5.db.gz: stale md5 for pkg00004-16.tcz" in "\n".join(stale.warnings), stale.warnings
    assert stale.root_cid == publish.publish(repo, client, progress=False, full=True).root_cid


def test_an_old_or_damaged_cache_on_a_republish(tmp_path: Path, client: Any) -> None:
    """A cache of format 1 (no texts) still makes a republish incremental (the texts are read); a damaged
    one makes it a full publish. The same root either way."""
    repo, mirror = flat_repo(tmp_path)
    cache = tmp_path / "c.json"
    first = publish.publish(repo, client, progress=False, cache=cache)
    data = json.loads(cache.read_text())
    data["format"] = 1
    data["files"] = {rel: entry[:6] for rel, entry in data["files"].items()}
    cache.write_text(json.dumps(data))
    samplemirror.change(mirror, repo.name, "pkg00002-16.tcz")
    old = publish.publish(repo, client, progress=False, cache=cache)
    assert old.mode == "incremental" and old.previous == first.root_cid
    assert json.loads(cache.read_text())["format"] == 2
    cache.write_text(cache.read_text()[:100])
    samplemirror.change(mirror, repo.name, "pkg00002-16.tcz", generation=2)
    damaged = publish.publish(repo, client, progress=False, cache=cache)
    assert damaged.mode == "full" and damaged.previous is None
    full = publish.publish(repo, client, progress=False, full=True)
    assert damaged.root_cid == full.root_cid != old.root_cid


def test_keep_two_roots_after_three_publishes(mirror: samplemirror.SampleMirror, node: Node,
                                              client: Any, capsys: pytest.CaptureFixture[str]) -> None:
    src = str(mirror.path.resolve())
    published = []
    for generation in (1, 2, 3):
        samplemirror.change(mirror, X86, "pkg00011-16.tcz", generation=generation)
        assert cli.main(["publish", str(mirror.path), "--api", node.api, "--keep", "2", "--json"]) == 0
        out = json.loads(capsys.readouterr().out)
        published.append(out["root"])
        time.sleep(1.1)  # pin names carry the second a root was first published
    assert len(set(published)) == 3
    ours = [r.cid for r in roots.published_roots(client, src)]
    assert ours == published[:0:-1]  # exactly 2: the newest two, newest first
    assert published[0] not in rpc.pin_ls(client)
    assert out["unpinned"] == [published[0]]
    with pytest.raises(UsageError):
        roots.keep(client, src, 0, current=published[-1])


def test_car_export_is_deterministic_and_import_checks_the_root(
        mirror: samplemirror.SampleMirror, client: Any, host_kubo: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    root = publish.publish(mirror.path, client, progress=False).root_cid
    a, b = tmp_path / "a.car", tmp_path / "b.car"
    car.export(client, root, a, progress=False)
    car.export(client, f"/ipfs/{root}", b, progress=False)
    assert a.read_bytes() == b.read_bytes()  # the same root, the same bytes
    assert car.read_roots(a) == [root]
    sub = car.export(client, f"/ipfs/{root}/{X86}", tmp_path / "x86.car", progress=False)
    assert sub.root == rpc.resolve(client, f"/ipfs/{root}/{X86}") and sub.bytes < a.stat().st_size
    truncated = tmp_path / "t.car"
    truncated.write_bytes(a.read_bytes()[: a.stat().st_size * 2 // 3])
    (tmp_path / "not.car").write_bytes(b"hello, not a CAR")
    with Node(tmp_path / "other", host_kubo) as other, other.client(timeout=600) as oc:
        with pytest.raises(NodeError, match="incomplete"):
            car.import_car(oc, truncated)
        assert root not in rpc.pin_ls(oc)
        with pytest.raises(UsageError, match="not a CAR file"):
            car.import_car(oc, tmp_path / "not.car")
        with pytest.raises(UsageError, match="not bafy"):
            car.import_car(oc, a, expect="bafynotit")
        assert cli.main(["car", "import", str(a), "--api", other.api, "--root", root, "--json"]) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["roots"] == [root] and out["complete"] == {root: True}
        assert root in rpc.pin_ls(oc, root)
        # the imported root is complete offline: every block of the mirror is there
        assert rpc.cat(oc, f"/ipfs/{root}/{X86}/md5.db.gz") == (mirror.tcz(X86) / "md5.db.gz").read_bytes()
        assert cli.main(["car", "export", root, "-o", str(tmp_path / "c.car"), "--api", other.api]) == 0
    assert (tmp_path / "c.car").read_bytes() == a.read_bytes()  # another node, the same file
    assert cli.main(["car", "export", str(tmp_path / "nope"), "-o", str(tmp_path / "x.car"),
                     "--api", "/ip4/127.0.0.1/tcp/1"]) == UsageError.exit_code  # refused before any node


def test_names_are_refused_by_a_node_that_cannot_serve_them(mirror: samplemirror.SampleMirror, node: Node,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    rc = cli.main(["publish", str(mirror.path), "--api", node.api, "--name", "lab"])
    err = capsys.readouterr().err
    assert rc == UsageError.exit_code and "does not answer IPNS queries" in err and "--name KEY" in err
    for bad in (["--name", "a b"], ["--name", "self"], ["--name", "ok", "--lifetime", "2 days"],
                ["--name", "ok", "--ttl", "x"], ["--dnslink", "not a domain"], ["--keep", "0"]):
        assert cli.main(["publish", str(mirror.path), "--api", node.api, *bad]) == UsageError.exit_code
    assert names.dnslink_line("bafyx", "tce.lab.example") == \
        '_dnslink.tce.lab.example  TXT  "dnslink=/ipfs/bafyx"'


def _seed(tmp: Path, source: Path, state: Path, kubo: Path,
          *extra: str) -> tuple[subprocess.Popen[bytes], str]:
    out, err = tmp / "seed.out", tmp / "seed.err"
    argv = [sys.executable, "-m", "tce_ipfs", "seed", "serve", str(source), "--listen", "127.0.0.1",
            "--port", str(free_port()), "--api-port", "0", "--state", str(state), "--kubo", str(kubo), *extra]
    with out.open("wb") as fo, err.open("wb") as fe:
        popen = subprocess.Popen(argv, stdout=fo, stderr=fe, stdin=subprocess.DEVNULL,
                                 env={**proc.clean_env(), "PYTHONPATH": str(SRC)})
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if "tce=" in out.read_text():
            return popen, out.read_text().strip().splitlines()[-1]
        if popen.poll() is not None:
            break
        time.sleep(0.2)
    popen.kill()
    raise AssertionError(f"no boot line:\n{err.read_text()[-3000:]}")


def resolve_soon(client: Any, name: str) -> str:
    """``name resolve`` as the boot hook does it: right after the dial the seed may not be in the
    client's DHT routing table yet (identify still running) and kubo fails at once; try again."""
    deadline = time.monotonic() + 15
    while True:
        try:
            return rpc.name_resolve(client, f"/ipns/{name}", timeout=60)
        except NodeError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_a_seed_serves_an_ipns_name_resolved_by_a_dht_client(
        mirror: samplemirror.SampleMirror, host_kubo: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state"
    popen, line = _seed(tmp_path, mirror.path, state, host_kubo, "--name", "lab-mirror", "--keep", "2")
    try:
        words = dict(w.split("=", 1) for w in line.split())
        assert words["tce"].startswith("ipns:k51")
        name = words["tce"].removeprefix("ipns:")
        peer = words["ipfs.peers"]
        config = json.loads((state / "repo/config").read_text())
        assert config["Routing"]["Type"] == "dhtserver" and config["Bootstrap"] == []
        record = json.loads((state / "seed.json").read_text())
        root = record["root"]
        # A machine's kubo (a DHT client, as the boot hook runs it for tce=ipns:) asks the seed.
        client_repo = tmp_path / "client"
        with Sampler([state / "repo", client_repo]) as sampler, \
                Node(client_repo, host_kubo, extra_config={"Routing.Type": "dhtclient"}) as machine, \
                machine.client(timeout=120) as mc:
            rpc.swarm_connect(mc, peer, timeout=30)
            assert resolve_soon(mc, name) == f"/ipfs/{root}"
            # publish --seed: what changed goes to the seed, the name follows, 2 roots kept.
            samplemirror.change(mirror, X86, "pkg00020-16.tcz")
            assert cli.main(["publish", str(mirror.path), "--seed", str(state), "--name", "lab-mirror",
                             "--keep", "2", "--dnslink", "tce.lab.example", "--json"]) == 0
            out = json.loads(capsys.readouterr().out)
            assert out["mode"] == "incremental" and out["previous"] == root
            assert out["name"]["name"] == name and out["dnslink"].endswith(f'"dnslink=/ipfs/{out["root"]}"')
            assert cli.main(["publish", str(mirror.path), "--seed", str(state), "--name", "lab-mirror"]) == 0
            text = capsys.readouterr().out.splitlines()
            assert text[0] == out["root"] and f"tce=ipns:{name}/{X86}" in text
            assert text[-1].startswith("_dnslink.<your.domain>  TXT")
            deadline = time.monotonic() + 60
            while resolve_soon(mc, name) != f"/ipfs/{out['root']}":
                assert time.monotonic() < deadline, "the name never followed the new root"
                time.sleep(1)
        assert sampler.violations == [] and len(sampler.pids) == 2  # the DHT stayed on loopback
        # status --repo: the root the seed publishes now, its age, the name pointing at it.
        assert cli.main(["status", "--repo", str(state), "--json"]) == 0
        st = json.loads(capsys.readouterr().out)
        assert st["root"] == out["root"] and st["root_age_s"] is not None
        assert [(n["key"], n["value"]) for n in st["names"]] == [("lab-mirror", f"/ipfs/{out['root']}")]
        assert cli.main(["status", "--repo", str(state)]) == 0
        shown = capsys.readouterr().out
        assert f"root:      {out['root']} (published " in shown and f"ipns:      {name}" in shown
        # SIGHUP: the seed republishes (nothing changed since: the same root) and keeps 2 roots.
        popen.send_signal(signal.SIGHUP)
        time.sleep(3)
        with Node(state / "repo").client() as sc:
            ours = roots.published_roots(sc, str(mirror.path.resolve()))
        assert len(ours) == 2 and ours[0].cid == out["root"]
    finally:
        popen.send_signal(signal.SIGTERM)
        assert popen.wait(60) == 0, (tmp_path / "seed.err").read_text()[-3000:]
