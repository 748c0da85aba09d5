"""tcrepo: names, .dep parsing, dependency closure, repository checks (no kubo needed)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tce_ipfs import tcrepo
from tce_ipfs.errors import RepoError, UsageError

KERNEL = "6.6.8-tinycore64"


def add_ext(d: Path, name: str, data: bytes | None = None, deps: list[str] | None = None,
            *, md5: str | None = None) -> Path:
    data = data if data is not None else name.encode() * 100
    path = d / name
    path.write_bytes(data)
    digest = md5 if md5 is not None else hashlib.md5(data).hexdigest()
    (d / f"{name}.md5.txt").write_text(f"{digest}  {name}\n")
    if deps:
        (d / f"{name}.dep").write_text("\n".join(deps) + "\n")
    return path


def errors(problems: list[tcrepo.Problem]) -> list[str]:
    return [str(p) for p in problems if p.is_error]


# --- names ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["bash.tcz", "python3.9.tcz", "gtk+-2.0.tcz", "libstdc++.tcz",
                                  "alsa-modules-6.6.8-tinycore64.tcz", "a_b.tcz", "X11.tcz",
                                  "0ad.tcz", "a" * 196 + ".tcz"])
def test_valid_names(name: str) -> None:
    assert tcrepo.is_valid_name(name)
    assert tcrepo.check_name(name) == name


@pytest.mark.parametrize("name,why", [
    ("", "empty"),
    (".tcz", "nothing before"),
    ("bash", "does not end"),
    ("bash.tcz.md5.txt", "does not end"),
    ("../bash.tcz", "path"),
    ("..", "path"),
    ("a/b.tcz", "path"),
    ("/etc/passwd.tcz", "path"),
    ("a\\b.tcz", "path"),
    ("-rf.tcz", "starts with '-'"),
    (".hidden.tcz", "starts with '.'"),
    ("a b.tcz", "characters"),
    ("a;rm -rf.tcz", "characters"),
    ("$(reboot).tcz", "characters"),
    ("bash.tcz\n", "does not end"),
    ("bä.tcz", "characters"),
    ("a\0.tcz", "NUL"),
    ("a" * 300 + ".tcz", "longer"),
])
def test_malicious_names(name: str, why: str) -> None:
    problem = tcrepo.name_problem(name)
    assert problem is not None and why in problem
    with pytest.raises(UsageError):
        tcrepo.check_name(name)


# --- .dep parsing --------------------------------------------------------------------------------


def test_parse_dep_rules() -> None:
    text = ("# comment\r\n\r\n  glib2.tcz  \r\nncursesw.tcz\n\t\n# another\nlibffi\n"
            "alsa-modules-KERNEL.tcz\nglib2.tcz\n")
    assert tcrepo.parse_dep(text) == ["glib2.tcz", "ncursesw.tcz", "libffi.tcz",
                                      "alsa-modules-KERNEL.tcz"]
    assert tcrepo.parse_dep(text, KERNEL)[-1] == f"alsa-modules-{KERNEL}.tcz"
    assert tcrepo.parse_dep("") == []


def test_parse_dep_rejects_bad_entries_naming_file_and_line() -> None:
    with pytest.raises(RepoError) as info:
        tcrepo.parse_dep("ok.tcz\n../../etc/passwd.tcz\nbad name.tcz\n", source="x.tcz.dep")
    text = str(info.value)
    assert "x.tcz.dep: line 2" in text and "x.tcz.dep: line 3" in text
    assert "line 1" not in text


# --- closure -------------------------------------------------------------------------------------


def reader(graph: dict[str, list[str]]):  # type: ignore[no-untyped-def]
    calls: list[str] = []

    def read(name: str) -> str | None:
        calls.append(name)
        deps = graph.get(name)
        return "\n".join(deps) if deps is not None else None

    read.calls = calls  # type: ignore[attr-defined]
    return read


def test_closure_deps_first_each_once() -> None:
    graph = {"app.tcz": ["gtk.tcz", "glib.tcz"], "gtk.tcz": ["glib.tcz", "cairo.tcz"],
             "cairo.tcz": ["libpng.tcz", "glib.tcz"], "glib.tcz": ["libffi.tcz"]}
    read = reader(graph)
    order = tcrepo.closure(["app.tcz"], read)
    assert sorted(order) == sorted({"app.tcz", "gtk.tcz", "glib.tcz", "cairo.tcz", "libpng.tcz",
                                    "libffi.tcz"})
    assert len(order) == len(set(order))
    for name, deps in graph.items():
        for dep in deps:
            assert order.index(dep) < order.index(name), (dep, name, order)
    assert order[-1] == "app.tcz"
    # every .dep is read once
    assert sorted(read.calls) == sorted(set(read.calls))


def test_closure_several_roots_and_duplicates() -> None:
    graph = {"a.tcz": ["c.tcz"], "b.tcz": ["c.tcz"]}
    assert tcrepo.closure(["a", "b.tcz", "a.tcz", "c"], reader(graph)) == ["c.tcz", "a.tcz", "b.tcz"]


def test_closure_cycles_reported_not_hanging() -> None:
    graph = {"a.tcz": ["b.tcz"], "b.tcz": ["c.tcz"], "c.tcz": ["a.tcz", "d.tcz"], "s.tcz": ["s.tcz"]}
    cycles: list[list[str]] = []
    order = tcrepo.closure(["a.tcz", "s.tcz"], reader(graph), on_cycle=cycles.append)
    assert order == ["d.tcz", "c.tcz", "b.tcz", "a.tcz", "s.tcz"]
    assert ["a.tcz", "b.tcz", "c.tcz", "a.tcz"] in cycles
    assert ["s.tcz", "s.tcz"] in cycles


def test_closure_cycle_default_warns(caplog: pytest.LogCaptureFixture) -> None:
    tcrepo.closure(["a.tcz"], reader({"a.tcz": ["b.tcz"], "b.tcz": ["a.tcz"]}))
    assert "dependency loop: a.tcz -> b.tcz -> a.tcz" in caplog.text


def test_closure_kernel_substitution() -> None:
    graph = {"alsa.tcz": ["alsa-modules-KERNEL.tcz"],
             f"alsa-modules-{KERNEL}.tcz": ["sound-base.tcz"]}
    assert tcrepo.closure(["alsa.tcz"], reader(graph), KERNEL) == [
        "sound-base.tcz", f"alsa-modules-{KERNEL}.tcz", "alsa.tcz"]
    # roots with -KERNEL too
    assert tcrepo.closure(["alsa-modules-KERNEL"], reader(graph), KERNEL)[-1] == \
        f"alsa-modules-{KERNEL}.tcz"


def test_closure_deep_chain_no_recursion_limit() -> None:
    n = 5000
    graph = {f"e{i}.tcz": [f"e{i + 1}.tcz"] for i in range(n)}
    order = tcrepo.closure(["e0.tcz"], reader(graph))
    assert order[0] == f"e{n}.tcz" and order[-1] == "e0.tcz" and len(order) == n + 1


def test_closure_rejects_bad_root() -> None:
    with pytest.raises(UsageError):
        tcrepo.closure(["../x.tcz"], reader({}))


# --- repositories --------------------------------------------------------------------------------


def good_repo(d: Path) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    add_ext(d, "libffi.tcz")
    add_ext(d, "glib2.tcz", deps=["libffi.tcz"])
    add_ext(d, "hello.tcz", deps=["glib2.tcz", "hello-mod-KERNEL.tcz"])
    add_ext(d, f"hello-mod-{KERNEL}.tcz")
    (d / "hello.tcz.info").write_text("Title: hello.tcz\n")
    (d / "hello.tcz.list").write_text("usr/local/bin/hello\n")
    (d / "onboot.lst").write_text("hello.tcz\nlibffi\n")
    return d


def test_check_good_flat_repo(tmp_path: Path) -> None:
    repo = good_repo(tmp_path / "r")
    assert tcrepo.check_repo(repo) == []
    assert tcrepo.check_repo(repo, KERNEL) == []
    files = tcrepo.scan_repo(repo)
    assert files.layout == "flat"
    assert set(files.extensions) == {"libffi.tcz", "glib2.tcz", "hello.tcz", f"hello-mod-{KERNEL}.tcz"}
    assert "onboot.lst" in files.lists and "hello.tcz.info" in files.sidecars


def test_check_corrupt_tcz_names_file(tmp_path: Path) -> None:
    repo = good_repo(tmp_path / "r")
    data = bytearray((repo / "glib2.tcz").read_bytes())
    data[10] ^= 0xFF
    (repo / "glib2.tcz").write_bytes(bytes(data))
    errs = errors(tcrepo.check_repo(repo))
    assert len(errs) == 1 and errs[0].startswith("glib2.tcz: md5 ") and "corrupt" in errs[0]


def test_check_missing_or_bad_md5(tmp_path: Path) -> None:
    repo = good_repo(tmp_path / "r")
    (repo / "libffi.tcz.md5.txt").unlink()
    (repo / "glib2.tcz.md5.txt").write_text("not a hash\n")
    digest = hashlib.md5((repo / "hello.tcz").read_bytes()).hexdigest()
    (repo / "hello.tcz.md5.txt").write_text(f"{digest}  other.tcz\n")
    errs = errors(tcrepo.check_repo(repo))
    assert "libffi.tcz: no libffi.tcz.md5.txt next to it" in errs
    assert any(e.startswith("glib2.tcz.md5.txt: not in md5sum format") for e in errs)
    assert any(e.startswith("hello.tcz.md5.txt: names 'other.tcz'") for e in errs)


def test_check_missing_dep_names_dep_file_and_missing_name(tmp_path: Path) -> None:
    repo = good_repo(tmp_path / "r")
    (repo / "glib2.tcz.dep").write_text("libffi.tcz\npcre.tcz\n")
    assert errors(tcrepo.check_repo(repo)) == ["glib2.tcz.dep: dependency pcre.tcz not in repo"]


def test_check_unparsable_dep_names_its_line(tmp_path: Path) -> None:
    repo = good_repo(tmp_path / "r")
    (repo / "glib2.tcz.dep").write_text("libffi.tcz\n../evil.tcz\n")
    errs = errors(tcrepo.check_repo(repo))
    assert len(errs) == 1 and errs[0].startswith("glib2.tcz.dep: line 2:")


def test_check_kernel_deps(tmp_path: Path) -> None:
    repo = good_repo(tmp_path / "r")
    # any variant resolves without a kernel; the named kernel must exist when given
    assert errors(tcrepo.check_repo(repo, "5.10.0-other")) == [
        "hello.tcz.dep: dependency hello-mod-KERNEL.tcz not in repo "
        "(looked for hello-mod-5.10.0-other.tcz)"]
    (repo / f"hello-mod-{KERNEL}.tcz").unlink()
    (repo / f"hello-mod-{KERNEL}.tcz.md5.txt").unlink()
    errs = errors(tcrepo.check_repo(repo))
    assert errs == ["hello.tcz.dep: dependency hello-mod-KERNEL.tcz not in repo "
                    "(looked for any kernel variant of hello-mod-KERNEL.tcz)"]


def test_check_onboot_names_exist(tmp_path: Path) -> None:
    repo = good_repo(tmp_path / "r")
    (repo / "onboot.lst").write_text("hello.tcz\nmissing.tcz\n# comment\n\n")
    assert errors(tcrepo.check_repo(repo)) == ["onboot.lst: lists missing.tcz, which is not in the repo"]
    (repo / "onboot.lst").write_text("../evil.tcz\n")
    errs = errors(tcrepo.check_repo(repo))
    assert len(errs) == 1 and errs[0].startswith("onboot.lst: line 1:")


def test_check_stray_unsafe_and_orphans(tmp_path: Path) -> None:
    repo = good_repo(tmp_path / "r")
    (repo / "notes.txt").write_text("x")
    (repo / "sub").mkdir()
    (repo / "evil name.tcz").write_bytes(b"x")
    (repo / "-rf.tcz").write_bytes(b"x")
    (repo / "gone.tcz.md5.txt").write_text("0" * 32 + "  gone.tcz\n")
    problems = tcrepo.check_repo(repo)
    errs = errors(problems)
    assert any(e.startswith("evil name.tcz: unsafe extension name") for e in errs)
    assert any(e.startswith("-rf.tcz: unsafe extension name") for e in errs)
    warns = [str(p) for p in problems if not p.is_error]
    assert any(w.startswith("notes.txt: not a Tiny Core repository file") for w in warns)
    assert any(w.startswith("sub: directory ignored") for w in warns)
    assert any(w.startswith("gone.tcz.md5.txt: gone.tcz is missing") for w in warns)
    published = tcrepo.scan_repo(repo).published()
    assert "notes.txt" not in published and "evil name.tcz" not in published


def test_check_dep_loop_is_a_warning(tmp_path: Path) -> None:
    d = tmp_path / "r"
    d.mkdir()
    add_ext(d, "a.tcz", deps=["b.tcz"])
    add_ext(d, "b.tcz", deps=["a.tcz"])
    problems = tcrepo.check_repo(d)
    assert errors(problems) == []
    assert [str(p) for p in problems] == ["a.tcz.dep: dependency loop a.tcz -> b.tcz -> a.tcz (warning)"]


def test_tce_dir_layout(tmp_path: Path) -> None:
    tce = tmp_path / "tce"
    good_repo(tce / "optional")
    (tce / "optional" / "onboot.lst").rename(tce / "onboot.lst")
    (tce / "mydata.tgz").write_bytes(b"backup")
    (tce / "ondemand").mkdir()
    files = tcrepo.scan_repo(tce)
    assert files.layout == "tce-dir"
    assert "onboot.lst" in files.lists and "hello.tcz" in files.extensions
    assert "mydata.tgz" not in files.published()
    problems = tcrepo.check_repo(tce)
    assert errors(problems) == []
    assert {p.file for p in problems} == {"mydata.tgz", "ondemand"}
    # a corrupt file is named with its path inside the tce dir
    (tce / "optional" / "libffi.tcz").write_bytes(b"truncated")
    assert errors(tcrepo.check_repo(tce))[0].startswith("optional/libffi.tcz: md5 ")


def test_empty_repo_is_an_error(tmp_path: Path) -> None:
    assert errors(tcrepo.check_repo(tmp_path)) == [". : no .tcz files found".replace(" :", ":")]
    with pytest.raises(RepoError):
        tcrepo.scan_repo(tmp_path / "missing")
