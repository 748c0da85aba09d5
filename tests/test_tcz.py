"""tcz.pack: TC-conformant squashfs, sidecars, reproducibility and refusals."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from support import need_tool
from tce_ipfs import cli, proc
from tce_ipfs.build import tcz
from tce_ipfs.errors import TczError


def make_tree(root: Path) -> Path:
    (root / "usr/local/bin").mkdir(parents=True)
    (root / "usr/local/share/hello").mkdir(parents=True)
    (root / "usr/local/tce.installed").mkdir(parents=True)
    hello = root / "usr/local/bin/hello"
    hello.write_text("#!/bin/sh\necho hello\n")
    hello.chmod(0o755)
    (root / "usr/local/bin/hi").symlink_to("hello")
    (root / "usr/local/bin/hello-abs").symlink_to("/usr/local/bin/hello")
    (root / "usr/local/share/hello/data with space.txt").write_text("x" * 10000)
    script = root / "usr/local/tce.installed/hello"
    script.write_text("#!/bin/sh\necho installed\n")
    script.chmod(0o644)  # pack must make it executable
    return root


FILES = (
    "usr/local/bin/hello",
    "usr/local/bin/hello-abs",
    "usr/local/bin/hi",
    "usr/local/share/hello/data with space.txt",
    "usr/local/tce.installed/hello",
)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return make_tree(tmp_path / "tree")


@pytest.fixture
def out(tmp_path: Path) -> Path:
    d = tmp_path / "out"
    d.mkdir()
    return d


def test_superblock_is_tc_default(tree: Path, out: Path) -> None:
    need_tool("unsquashfs")
    res = tcz.pack(tree, out / "hello.tcz")
    text = proc.output(["unsquashfs", "-s", res.tcz])
    assert "SQUASHFS 4:0" in text
    assert re.search(r"^Block size 4096$", text, re.M)
    assert re.search(r"^Compression gzip$", text, re.M)
    assert "Xattrs are not stored" in text
    assert res.size == res.tcz.stat().st_size and res.size % 4096 == 0


def test_md5sum_c_passes(tree: Path, out: Path) -> None:
    res = tcz.pack(tree, out / "hello.tcz")
    assert res.md5_file.read_text() == f"{res.md5}  hello.tcz\n"
    assert re.fullmatch(r"[0-9a-f]{32}", res.md5)
    proc.run(["md5sum", "-c", "hello.tcz.md5.txt"], cwd=out)


def test_byte_identical_rebuild(tree: Path, tmp_path: Path) -> None:
    a = tcz.pack(tree, _dir(tmp_path, "a") / "hello.tcz")
    # Different mtimes, a different location for the tree, a different umask-ish dir mode.
    for path in tree.rglob("*"):
        os.utime(path, (1_000_000, 1_000_000), follow_symlinks=False)
    os.utime(tree, (5, 5))
    moved = tmp_path / "elsewhere" / "tree"
    shutil.copytree(tree, moved, symlinks=True)
    b = tcz.pack(moved, _dir(tmp_path, "b") / "hello.tcz")
    assert a.tcz.read_bytes() == b.tcz.read_bytes()
    assert a.md5 == b.md5
    assert a.list_file.read_text() == b.list_file.read_text()
    assert a.info_file.read_text() == b.info_file.read_text()


def test_source_date_epoch_is_honoured(tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    need_tool("unsquashfs")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    a = tcz.pack(tree, _dir(tmp_path, "a") / "hello.tcz")  # mksquashfs would refuse both: we unset it
    os.utime(tree / "usr/local/bin/hello", (1, 1))  # older than the epoch: not just clamped
    b = tcz.pack(tree, _dir(tmp_path, "b") / "hello.tcz")
    assert a.tcz.read_bytes() == b.tcz.read_bytes()
    assert "2023-11-14" in proc.output(["unsquashfs", "-lls", a.tcz])
    monkeypatch.delenv("SOURCE_DATE_EPOCH")
    c = tcz.pack(tree, _dir(tmp_path, "c") / "hello.tcz")
    assert c.md5 != a.md5  # default epoch 0


def test_sidecars(tree: Path, out: Path) -> None:
    res = tcz.pack(tree, out / "hello.tcz", deps=["ncursesw", "glib2.tcz", "fs-KERNEL", "ncursesw.tcz"],
                   info={"author": "Jane Doe", "Comments": "line one\nline two", "Version": "1.2"})
    # .list: files and symlinks only, no directories, no leading slash
    assert res.list_file.read_text().splitlines() == list(FILES)
    assert res.files == FILES
    # .dep: normalised, de-duplicated, -KERNEL kept
    assert res.dep_file is not None
    assert res.dep_file.read_text() == "ncursesw.tcz\nglib2.tcz\nfs-KERNEL.tcz\n"
    info = res.info_file.read_text()
    keys = [line.split(":", 1)[0] for line in info.splitlines() if not line.startswith(" ")]
    assert keys == list(tcz.INFO_FIELDS)
    assert "Title:          hello.tcz\n" in info
    assert "Author:         Jane Doe\n" in info
    assert "Version:        1.2\n" in info
    assert "Comments:       line one\n                line two\n" in info
    assert f"Size:           {tcz.human_size(res.size)}\n" in info
    assert sorted(p.name for p in out.iterdir()) == [
        "hello.tcz", "hello.tcz.dep", "hello.tcz.info", "hello.tcz.list", "hello.tcz.md5.txt"]
    # Packing again without deps removes the stale .dep.
    res2 = tcz.pack(tree, out / "hello.tcz")
    assert res2.dep_file is None and not (out / "hello.tcz.dep").exists()
    assert "hello.tcz.dep" not in [p.name for p in res2.paths]


def test_ownership_and_install_script_modes(tree: Path, out: Path) -> None:
    need_tool("unsquashfs")
    (tree / "usr/local/share").chmod(0o700)  # unreadable for user tc on the target: fixed to r-x
    res = tcz.pack(tree, out / "hello.tcz")
    listing = {}
    for line in proc.output(["unsquashfs", "-lln", res.tcz]).splitlines():
        mode, owner, *_rest = line.split()
        listing[line.split("squashfs-root", 1)[1].lstrip("/").split(" -> ")[0]] = (mode, owner)
    assert listing["usr/local/tce.installed"] == ("drwxrwxr-x", "0/50")
    assert listing["usr/local/tce.installed/hello"] == ("-rwxr-xr-x", "0/50")
    assert listing["usr/local/share"][0] == "drwxr-xr-x"
    assert listing["usr/local/bin/hello"] == ("-rwxr-xr-x", "0/0")
    assert listing[""] == ("drwxr-xr-x", "0/0")
    others = {k: v for k, v in listing.items() if not k.startswith("usr/local/tce.installed")}
    assert {owner for _mode, owner in others.values()} == {"0/0"}


def test_nondefault_params(tree: Path, out: Path) -> None:
    need_tool("unsquashfs")
    res = tcz.pack(tree, out / "hello.tcz", block_size=128 * 1024, compression="xz")
    text = proc.output(["unsquashfs", "-s", res.tcz])
    assert re.search(r"^Block size 131072$", text, re.M) and re.search(r"^Compression xz$", text, re.M)
    assert "squashfs: xz, 128 KiB blocks (TC default: gzip, 4 KiB)" in res.info_file.read_text()


@pytest.mark.parametrize(("block_size", "compression"), [(2048, "gzip"), (3 * 4096, "gzip"),
                                                         (2 * 1024 * 1024, "gzip"), (4096, "lzo")])
def test_bad_params(tree: Path, out: Path, block_size: int, compression: str) -> None:
    with pytest.raises(TczError):
        tcz.pack(tree, out / "hello.tcz", block_size=block_size, compression=compression)


def _refused(src: Path, out: Path, needle: str, **kwargs: object) -> TczError:
    with pytest.raises(TczError) as info:
        tcz.pack(src, out, **kwargs)  # type: ignore[arg-type]
    assert needle in str(info.value), str(info.value)
    assert not out.exists()
    return info.value


def test_refuses_empty_tree(tmp_path: Path, out: Path) -> None:
    (tmp_path / "empty/usr/local/bin").mkdir(parents=True)
    _refused(tmp_path / "empty", out / "x.tcz", str(tmp_path / "empty"))


# One bad entry made in the tree (its path, how, the message naming it as ``{bad}``): pack refuses.
BAD_ENTRIES: dict[str, tuple[str, Callable[[Path], object], str]] = {
    "escaping_relative_symlink": (
        "usr/local/bin/evil",
        lambda p: p.symlink_to("../../../../etc/shadow"),
        "{bad}: symlink to ../../../../etc/shadow escapes",
    ),
    "special_files": ("usr/local/share/hello/pipe", os.mkfifo, "{bad} is a fifo"),
    "control_characters": (
        "usr/local/share/hello/bad\nname",
        lambda p: p.write_text("x"),
        "control character",
    ),
    "foreign_install_script": (
        "usr/local/tce.installed/other",
        lambda p: p.write_text("#!/bin/sh\n"),
        "{bad}: install scripts",
    ),
    "install_script_without_shebang": (
        "usr/local/tce.installed/hello",
        lambda p: p.write_text("echo no shebang\n"),
        "{bad}: install script has no #! line",
    ),
}


@pytest.mark.parametrize("case", BAD_ENTRIES)
def test_refuses_bad_entry(tree: Path, out: Path, case: str) -> None:
    rel, make, needle = BAD_ENTRIES[case]
    bad = tree / rel
    make(bad)
    _refused(tree, out / "hello.tcz", needle.format(bad=bad))


def test_refuses_absolute_symlink_outside_tree(tree: Path, out: Path) -> None:
    bad = tree / "usr/local/bin/leak"
    bad.symlink_to(str(tree / "usr/local/bin/hello"))  # the classic DESTDIR leak
    err = _refused(tree, out / "hello.tcz", f"{bad}: absolute symlink")
    assert err.hint and "build directory" in err.hint
    bad.unlink()
    bad.symlink_to("/etc/passwd")
    _refused(tree, out / "hello.tcz", str(bad))


@pytest.mark.root
def test_refuses_device_file(tree: Path, out: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root for mknod")
    dev = tree / "usr/local/share/hello/null"
    os.mknod(dev, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    _refused(tree, out / "hello.tcz", f"{dev} is a character device")


@pytest.mark.parametrize("name", ["hello", "hello.tgz", "-x.tcz", ".x.tcz", "a b.tcz", "a$b.tcz",
                                  "é.tcz", ".tcz", "x" * 100 + ".tcz", "mods-KERNEL.tcz"])
def test_refuses_bad_names(tree: Path, out: Path, name: str) -> None:
    _refused(tree, out / name, repr(name))


@pytest.mark.parametrize("dep", ["a b", "-x", "x/y.tcz", "", "bad;dep", ".hidden"])
def test_refuses_bad_dep(tree: Path, out: Path, dep: str) -> None:
    _refused(tree, out / "hello.tcz", f"dependency {dep!r}", deps=["good.tcz", dep])


def test_refuses_self_dep_and_bad_info(tree: Path, out: Path) -> None:
    _refused(tree, out / "hello.tcz", "itself", deps=["hello"])
    _refused(tree, out / "hello.tcz", "'Flavour'", info={"Flavour": "x"})
    _refused(tree, out / "hello.tcz", "Size", info={"size": "1K"})


def test_refuses_output_inside_tree(tree: Path) -> None:
    _refused(tree, tree / "usr/hello.tcz", "inside the tree")


def test_good_names_accepted() -> None:
    for name in ("gcc_libs.tcz", "libstdc++.tcz", "python3.11.tcz", "filesystems-6.6.8-tinycore64.tcz",
                 "Xorg-7.7.tcz", "a.tcz"):
        assert tcz.check_name(name) == name
    assert tcz.normalize_dep(" filesystems-KERNEL ") == "filesystems-KERNEL.tcz"


def test_human_size() -> None:
    cases = {0: "0.0K", 4096: "4.0K", 296 * 1024: "296K", 1_200_000: "1.2M", 10 * 1024 * 1024: "10M",
             18_210_816: "18M", 1023 * 1024 + 1: "1.0M", 3 * 1024**3: "3.0G"}
    assert {n: tcz.human_size(n) for n in cases} == cases


@pytest.mark.root
def test_loop_mount(tree: Path, out: Path, tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root for a loop mount")
    res = tcz.pack(tree, out / "hello.tcz")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    proc.run(["mount", "-t", "squashfs", "-o", "loop,ro", res.tcz, mnt])
    try:
        assert (mnt / "usr/local/bin/hello").read_text() == "#!/bin/sh\necho hello\n"
        assert os.readlink(mnt / "usr/local/bin/hi") == "hello"
        assert os.readlink(mnt / "usr/local/bin/hello-abs") == "/usr/local/bin/hello"
        assert (mnt / "usr/local/share/hello/data with space.txt").read_text() == "x" * 10000
        found = sorted(str(p.relative_to(mnt)) for p in mnt.rglob("*") if not p.is_dir() or p.is_symlink())
        assert found == sorted(FILES)
        for path in [mnt, *mnt.rglob("*")]:
            st = path.lstat()
            assert st.st_uid == 0, path
            rel = str(path.relative_to(mnt))
            assert st.st_gid == (tcz.STAFF_GID if rel.startswith("usr/local/tce.installed") else 0), path
        script = mnt / "usr/local/tce.installed/hello"
        assert os.access(script, os.X_OK)
        assert proc.output([script]) == "installed"
    finally:
        proc.run(["umount", mnt])


# ----------------------------------------------------------------------------------------- CLI


def test_cli_pack(tree: Path, out: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = cli.main(["tcz", "pack", str(tree), "-o", str(out / "hello.tcz"), "--dep", "a", "--dep", "b.tcz",
                   "--info-field", "Author=Me", "--info-field", "Comments=one\\ntwo"])
    assert rc == 0
    text = capsys.readouterr().out
    assert str(out / "hello.tcz") in text and "bytes" in text
    assert (out / "hello.tcz.dep").read_text() == "a.tcz\nb.tcz\n"
    assert "Comments:       one\n                two\n" in (out / "hello.tcz.info").read_text()

    out2 = _dir(out, "second")
    rc = cli.main(["tcz", "pack", str(tree), "-o", str(out2 / "hello.tcz"), "--json", "--block-size", "128K"])
    data = json.loads(capsys.readouterr().out)
    assert rc == 0 and data["block_size"] == 131072 and data["name"] == "hello.tcz"
    assert data["outputs"]["hello.tcz"]["size"] == (out2 / "hello.tcz").stat().st_size


def test_cli_pack_refusal(tree: Path, out: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = cli.main(["tcz", "pack", str(tree), "-o", str(out / "bad name.tcz")])
    assert rc == TczError.exit_code
    assert "'bad name.tcz'" in capsys.readouterr().err


def _dir(base: Path, name: str) -> Path:
    d = base / name
    d.mkdir()
    return d
