"""`tce-ipfs mirror pull`: a local copy of a TC HTTP mirror, kept in sync from the mirror's own index.

The mirror is a synthetic one (testbed.samplemirror: 2 releases x 2 arches, 300 extensions each, every
sidecar and index file) served on loopback by tests/support/httpmirror.py (directory listings, Range
requests, a request log). No kubo, no outside network.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support.httpmirror import serve, tree_contents
from tce_ipfs import cli, tcindex, tcmirror
from tce_ipfs.errors import RepoError, UsageError
from tce_ipfs.testbed import samplemirror

SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture(scope="module")
def mirror(tmp_path_factory: pytest.TempPathFactory) -> samplemirror.SampleMirror:
    return samplemirror.build(tmp_path_factory.mktemp("mirror") / "www", extensions=300)


def tcz_dirs(root: Path) -> dict[str, bytes]:
    """The published part of a tree (the tcz/ directories), path -> content."""
    return {p: data for p, data in tree_contents(root).items() if "/tcz/" in p}


def all_md5s_correct(dest: Path) -> None:
    for tcz in dest.glob("*/*/tcz"):
        db = tcindex.parse_md5_db(tcindex.read_index(tcz / "md5.db.gz"))
        assert db, tcz
        for name, md5 in db.items():
            assert hashlib.md5((tcz / name).read_bytes()).hexdigest() == md5, name
            assert (tcz / f"{name}.md5.txt").read_text().split()[0] == md5


def test_pull_whole_mirror_then_only_what_changed(mirror: samplemirror.SampleMirror, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "www"
    shutil.copytree(mirror.path, src)
    copy = samplemirror.SampleMirror(path=src, dirs=mirror.dirs, extensions=dict(mirror.extensions))
    dest = tmp_path / "local"
    with serve(src) as (url, log):
        # First pull: the releases and arches come from the mirror's directory listings.
        assert cli.main(["mirror", "pull", f"{url}/", str(dest), "--json"]) == 0
        out = json.loads(capsys.readouterr().out)
        assert sorted(d["dir"] for d in out["dirs"]) == sorted(mirror.dirs)
        assert all(len(d["fetched"]) == 300 and not d["failed"] for d in out["dirs"])
        assert tcz_dirs(dest) == tcz_dirs(src)  # every extension, sidecar and index file, byte for byte
        assert not (dest / "latest-x86_64").exists()  # only the tcz/ directories are followed
        all_md5s_correct(dest)
        # A lab's own list next to the extensions is the admin's: a pull leaves it alone.
        (dest / "16.x/x86_64/tcz/lab.lst").write_text("pkg00001-16.tcz\n")

        # The mirror changes 3 extensions (in 3 directories) and drops one; its index says so.
        changed = [("16.x/x86_64/tcz", "pkg00007-16.tcz"), ("16.x/aarch64/tcz", "pkg00123-16.tcz"),
                   ("15.x/x86_64/tcz", "pkg00299-15.tcz")]
        for prefix, name in changed:
            samplemirror.change(copy, prefix, name)
        samplemirror.remove(copy, "15.x/aarch64/tcz", "pkg00298-15.tcz")
        log.clear()
        assert cli.main(["mirror", "pull", f"{url}/", str(dest), "--json"]) == 0
        out = json.loads(capsys.readouterr().out)
        # Only those 3 extensions were downloaded (plus their sidecars and the index files).
        assert sorted(log.gets(".tcz")) == sorted(f"/{p}/{n}" for p, n in changed)
        fetched = sorted((d["dir"], n) for d in out["dirs"] for n in d["fetched"])
        assert fetched == sorted(changed)
        assert [(d["dir"], d["removed"]) for d in out["dirs"] if d["removed"]] == \
            [("15.x/aarch64/tcz", ["pkg00298-15.tcz"])]
        assert not list((dest / "15.x/aarch64/tcz").glob("pkg00298-15.tcz*"))
        assert (dest / "16.x/x86_64/tcz/lab.lst").exists()
        assert {k: v for k, v in tcz_dirs(dest).items() if not k.endswith("lab.lst")} == tcz_dirs(src)
        all_md5s_correct(dest)

        # Nothing changed: nothing but the index files is asked for.
        log.clear()
        res = tcmirror.pull(f"{url}/", dest, progress=False)
        assert not log.gets(".tcz") and all(not r.fetched for r in res)
        assert {p.rsplit("/", 1)[1] for p in log.gets()} <= set(tcmirror.INDEXES) | {""}

        # One release/arch only: the tcz/ URL, into the same layout.
        one = tmp_path / "one"
        (r,) = tcmirror.pull(f"{url}/16.x/aarch64/tcz/", one, progress=False)
        assert r.prefix == "16.x/aarch64/tcz" and len(r.fetched) == 300
        assert [p.relative_to(one).as_posix() for p in one.glob("*/*/tcz")] == ["16.x/aarch64/tcz"]
        (r,) = tcmirror.pull(f"{url}/", tmp_path / "two", releases=["16.x"], arches=["x86_64"],
                             progress=False)
        assert r.prefix == "16.x/x86_64/tcz"


def test_a_pull_killed_mid_file_resumes(tmp_path: Path) -> None:
    src = tmp_path / "www"
    m = samplemirror.build(src, extensions=12, releases=("16.x",), arches=("x86_64",), extras=False)
    big = "pkg00005-16.tcz"
    prefix = "16.x/x86_64/tcz"
    size = 6 * 1024 * 1024
    samplemirror.write_extension(m.tcz(prefix), big, samplemirror.body(big, size))
    tcindex.write_indexes(m.tcz(prefix))
    dest = tmp_path / "local"
    part = dest / ".tce-ipfs/partial" / prefix / big
    with serve(src) as (url, log):
        log.slow[f"/{prefix}/{big}"] = 1024 * 1024  # 1 MiB/s: about 6 s for the whole file
        pull = subprocess.Popen([sys.executable, "-m", "tce_ipfs", "mirror", "pull", f"{url}/{prefix}/",
                                 str(dest), "--jobs", "1"], env={**os.environ, "PYTHONPATH": str(SRC)},
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 120
        while not (part.exists() and part.stat().st_size > size // 4):
            assert pull.poll() is None, pull.stderr.read() if pull.stderr else ""
            assert time.monotonic() < deadline, "the download never started"
            time.sleep(0.05)
        pull.send_signal(signal.SIGKILL)  # no chance to clean up
        pull.wait(30)
        assert pull.stderr is not None
        pull.stderr.close()
        had = part.stat().st_size
        assert 0 < had < size
        assert not (dest / prefix / big).exists()  # a half file never sits where TC would take it
        log.slow.clear()
        log.clear()
        (r,) = tcmirror.pull(f"{url}/{prefix}/", dest, progress=False)
    assert r.resumed == [big] and big in r.fetched and not r.failed
    assert (f"/{prefix}/{big}", f"bytes={had}-") in log.ranges()  # it asked only for the rest
    assert not part.exists()
    all_md5s_correct(dest)
    assert tcz_dirs(dest) == tcz_dirs(src)


def test_bad_files_on_the_mirror_are_refused_and_the_old_copy_kept(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "www"
    m = samplemirror.build(src, extensions=20, releases=("16.x",), arches=("x86_64",), extras=False)
    d = m.tcz("16.x/x86_64/tcz")
    dest = tmp_path / "local"
    with serve(src) as (url, log):
        tcmirror.pull(f"{url}/16.x/x86_64/tcz/", dest, progress=False)
        good = (dest / "16.x/x86_64/tcz/pkg00003-16.tcz").read_bytes()
        # The mirror's file no longer matches its index (a broken upload): refused, the old copy stays.
        samplemirror.change(m, "16.x/x86_64/tcz", "pkg00003-16.tcz")
        (d / "pkg00003-16.tcz").write_bytes(b"truncated")
        # An index entry with a path in it is never fetched.
        db = tcindex.read_index(d / "md5.db.gz") + f"{'0' * 32}  ../../etc/passwd.tcz\n"
        (d / "md5.db.gz").write_bytes(tcindex.gzip_bytes(db.encode()))
        assert cli.main(["mirror", "pull", f"{url}/16.x/x86_64/tcz/", str(dest)]) == RepoError.exit_code
        assert "2 extension(s) could not be pulled" in capsys.readouterr().err
        (r,) = tcmirror.pull(f"{url}/16.x/x86_64/tcz/", dest, progress=False)
        assert "md5" in r.failed["pkg00003-16.tcz"] and "unsafe name" in r.failed["../../etc/passwd.tcz"]
        assert (dest / "16.x/x86_64/tcz/pkg00003-16.tcz").read_bytes() == good
        assert not (tmp_path / "etc").exists()
        assert not any("passwd" in p for p in log.gets())
    with serve(tmp_path / "nothing-here") as (url, _log):
        (tmp_path / "nothing-here/16.x/x86_64/tcz").mkdir(parents=True)
        with pytest.raises(RepoError, match=r"md5\.db\.gz: not found"):
            tcmirror.pull(f"{url}/16.x/x86_64/tcz/", tmp_path / "x", progress=False)
    for bad in ("ftp://host/tcz/", "http://user:pw@host/tcz/", "http://host/a/../tcz/", "file:///etc"):
        with pytest.raises(UsageError):
            tcmirror.pull(bad, tmp_path / "y", progress=False)


def test_progress_on_a_terminal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "www"
    samplemirror.build(src, extensions=5, releases=("16.x",), arches=("x86_64",), extras=False)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    with serve(src) as (url, _log):
        tcmirror.pull(f"{url}/16.x/x86_64/tcz/", tmp_path / "local", progress=True)
    err = capsys.readouterr().err
    assert "16.x/x86_64/tcz: fetching 5 of 5 extensions" in err and "100%" in err
