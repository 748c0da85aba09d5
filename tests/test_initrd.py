"""media.cpio (the newc writer against Debian's cpio and busybox cpio, compressors/readers) and
media.initrd (the P2P initrd)."""

from __future__ import annotations

import gzip
import hashlib
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
import zstandard

from tce_ipfs import settings
from tce_ipfs.cli import main
from tce_ipfs.errors import BuildError, UsageError
from tce_ipfs.media import cpio, initrd

BUSYBOX = shutil.which("busybox") or "/bin/busybox"


def sample_archive() -> bytes:
    w = cpio.CpioWriter()
    w.add_dir("tmp", 0o1777)
    w.add_dir("tmp/a")
    w.add_file("tmp/a/empty", b"")
    w.add_file("tmp/a/one", b"x", 0o600)
    w.add_file("tmp/a/script", b"#!/bin/sh\necho hi\n", 0o755)
    w.add_file("tmp/a/big", bytes(range(256)) * 1000)
    w.add_symlink("tmp/a/link", "one")
    w.add_file("tmp/a/name-with-odd.len", b"abc")
    return w.finish()


def need(tool: str) -> None:
    if shutil.which(tool) is None:
        pytest.fail(f"{tool} not found: run bootstrap/setup", pytrace=False)


# ------------------------------------------------------------------------------------------ writer


def test_gnu_cpio_lists_and_extracts(tmp_path: Path) -> None:
    need("cpio")
    data = sample_archive()
    assert len(data) % 512 == 0
    listing = subprocess.run(["cpio", "-t", "--quiet"], input=data, capture_output=True, check=True).stdout
    assert listing.decode().split() == [
        "tmp",
        "tmp/a",
        "tmp/a/empty",
        "tmp/a/one",
        "tmp/a/script",
        "tmp/a/big",
        "tmp/a/link",
        "tmp/a/name-with-odd.len",
    ]
    out = tmp_path / "x"
    out.mkdir()
    subprocess.run(
        ["cpio", "-i", "-d", "--quiet", "--no-absolute-filenames"], input=data, cwd=out, check=True
    )
    a = out / "tmp/a"
    assert (a / "empty").read_bytes() == b""
    assert (a / "big").read_bytes() == bytes(range(256)) * 1000
    assert stat.S_IMODE((a / "script").stat().st_mode) == 0o755
    assert stat.S_IMODE((a / "one").stat().st_mode) == 0o600
    assert (a / "link").is_symlink() and (a / "link").readlink() == Path("one")
    assert (a / "name-with-odd.len").read_bytes() == b"abc"


def test_busybox_cpio_extracts(tmp_path: Path) -> None:
    """TC's tce-setup unpacks with busybox: `zcat X.gz | cpio -idmu`."""
    data = cpio.compress(sample_archive(), "gzip")
    unpacked = subprocess.run([BUSYBOX, "zcat"], input=data, capture_output=True, check=True).stdout
    subprocess.run([BUSYBOX, "cpio", "-idmu"], input=unpacked, cwd=tmp_path, check=True, capture_output=True)
    assert (tmp_path / "tmp/a/script").read_bytes() == b"#!/bin/sh\necho hi\n"


def test_gnu_cpio_archive_parses(tmp_path: Path) -> None:
    need("cpio")
    (tmp_path / "d/sub").mkdir(parents=True)
    (tmp_path / "d/sub/f").write_bytes(b"hello")
    (tmp_path / "d/l").symlink_to("sub/f")
    names = b"d\nd/sub\nd/sub/f\nd/l\n"
    data = subprocess.run(
        ["cpio", "-o", "-H", "newc", "--quiet"], input=names, cwd=tmp_path, capture_output=True, check=True
    ).stdout
    entries = {e.name: e for e in cpio.parse_cpio(data)}
    assert entries["d/sub/f"].data == b"hello" and entries["d/sub/f"].is_file
    assert entries["d/l"].is_symlink and entries["d/l"].target == "sub/f"
    assert entries["d"].is_dir


def test_round_trip_and_fields() -> None:
    entries = cpio.parse_cpio(sample_archive())
    by_name = {e.name: e for e in entries}
    assert by_name["tmp"].perms == 0o1777 and by_name["tmp"].is_dir and by_name["tmp"].nlink == 2
    assert by_name["tmp/a/link"].target == "one"
    assert all(e.uid == 0 and e.gid == 0 and e.mtime == 0 for e in entries)
    assert [e.ino for e in entries] == list(range(1, len(entries) + 1))


def test_writer_is_deterministic() -> None:
    assert sample_archive() == sample_archive()
    assert cpio.compress(sample_archive(), "gzip") == cpio.compress(sample_archive(), "gzip")


@pytest.mark.parametrize("name", ["/abs", "a/", "a/../b", "..", ".", "", "a//b", "./a", "a/./b", "a\0b"])
def test_writer_rejects_bad_names(name: str) -> None:
    w = cpio.CpioWriter()
    with pytest.raises(UsageError):
        w.add_file(name, b"")


def test_writer_rejects_duplicates_and_late_adds() -> None:
    w = cpio.CpioWriter()
    w.add_dir("a")
    with pytest.raises(UsageError, match="duplicate"):
        w.add_file("a", b"")
    w.finish()
    with pytest.raises(UsageError):
        w.add_file("b", b"")


def test_writer_devices_links_gid_and_root(tmp_path: Path) -> None:
    need("cpio")
    w = cpio.CpioWriter()
    w.add_dir(".")
    w.add_dir("dev")
    w.add_device("dev/console", "c", 5, 1)
    w.add_device("dev/sda", "b", 8, 0, 0o660, gid=6)
    w.add_dir("tce", 0o775, gid=50)
    w.add_symlink("bin/sh", "/bin/busybox")
    w.add_file("bin/busybox.suid", b"x", 0o4755)
    data = w.finish()
    out = subprocess.run(["cpio", "-itvn", "--quiet"], input=data, capture_output=True, check=True).stdout
    listing = {line.split()[-1] if "->" not in line else line.split()[-3]: line
               for line in out.decode().splitlines()}
    assert listing["dev/console"].startswith("crw-------")
    assert re.search(r"\b5,\s*1\b", listing["dev/console"])
    assert listing["dev/sda"].startswith("brw-rw----") and re.search(r"\b8,\s*0\b", listing["dev/sda"])
    assert listing["tce"].startswith("drwxrwxr-x") and listing["tce"].split()[3] == "50"
    assert listing["bin/sh"].startswith("lrwxrwxrwx")
    assert listing["bin/busybox.suid"].startswith("-rwsr-xr-x")
    by_name = {e.name: e for e in cpio.parse_cpio(data)}
    assert by_name["."].is_dir
    assert (by_name["dev/sda"].rdevmajor, by_name["dev/sda"].rdevminor, by_name["dev/sda"].gid) == (8, 0, 6)
    with pytest.raises(UsageError, match="kind"):
        cpio.CpioWriter().add_device("dev/x", "p", 1, 1)  # type: ignore[arg-type]


def test_writer_first_ino_and_padding() -> None:
    w = cpio.CpioWriter(first_ino=0x1001, pad_to=4)
    w.add_dir("a")
    w.add_file("a/b", b"xyz")
    data = w.finish()
    assert [e.ino for e in cpio.parse_cpio(data)] == [0x1001, 0x1002]
    assert cpio._cpio_end(data) == len(data)  # trailer last, no block padding


# ------------------------------------------------------------------------------------------ compression


@pytest.mark.parametrize("method", cpio.COMPRESSIONS)
def test_compress_detect_read(tmp_path: Path, method: str) -> None:
    data = sample_archive()
    packed = cpio.compress(data, method)
    assert cpio.detect(packed) == method
    assert cpio.compress(data, method) == packed
    path = tmp_path / f"x.{method}"
    path.write_bytes(packed)
    assert cpio.read_initrd(path) == data


def test_xz_uses_crc32_for_the_kernel() -> None:
    packed = cpio.compress(b"abc", "xz")
    assert packed[7] & 0x0F == 0x01  # stream flags: check type 1 = CRC32


def test_gzip_matches_system_tools(tmp_path: Path) -> None:
    packed = cpio.compress(sample_archive(), "gzip")
    assert packed[4:8] == b"\0\0\0\0"  # mtime 0
    assert subprocess.run(["gzip", "-t"], input=packed, check=False).returncode == 0
    assert gzip.decompress(packed) == sample_archive()


def test_concatenated_initrds(tmp_path: Path) -> None:
    """core.gz = rootfs.gz + modules.gz; a plain cpio, NUL padding and a zstd part may follow."""
    a = cpio.CpioWriter()
    a.add_file("a", b"1")
    b = cpio.CpioWriter()
    b.add_file("b", b"2")
    c = cpio.CpioWriter()
    c.add_file("c", b"3")
    d = cpio.CpioWriter()
    d.add_file("d", b"4")
    blob = (
        cpio.compress(a.finish(), "gzip")
        + cpio.compress(b.finish(), "gzip")
        + b"\0" * 7
        + c.finish()
        + zstandard.ZstdCompressor().compress(d.finish())
        + cpio.compress(b"", "xz")[:0]
    )
    path = tmp_path / "core.gz"
    path.write_bytes(blob)
    names = [e.name for e in cpio.parse_cpio(cpio.read_initrd(path))]
    assert names == ["a", "b", "c", "d"]


def test_read_initrd_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.write_bytes(b"PK\x03\x04 not an initrd")
    with pytest.raises(BuildError, match="unknown initrd format"):
        cpio.read_initrd(bad)
    truncated = tmp_path / "t.gz"
    truncated.write_bytes(cpio.compress(sample_archive(), "gzip")[:50])
    with pytest.raises(BuildError):
        cpio.read_initrd(truncated)
    with pytest.raises(BuildError):
        cpio.read_initrd(tmp_path / "missing")
    with pytest.raises(BuildError):
        cpio.parse_cpio(b"070701" + b"0" * 20)


def test_compress_unknown() -> None:
    with pytest.raises(UsageError):
        cpio.compress(b"", "lz4")


# ------------------------------------------------------------------------------------------ hook initrd


@pytest.fixture(scope="module")
def fake_tcz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Any squashfs will do (the real one comes from the ipfs recipe)."""
    need("mksquashfs")
    base = tmp_path_factory.mktemp("tcz")
    (base / "tree/usr/local/bin").mkdir(parents=True)
    (base / "tree/usr/local/bin/ipfs").write_text("#!/bin/sh\necho fake kubo\n")
    out = base / "ipfs.tcz"
    subprocess.run(
        [
            "mksquashfs",
            str(base / "tree"),
            str(out),
            "-b",
            "4k",
            "-no-xattrs",
            "-noappend",
            "-quiet",
            "-all-root",
            "-mkfs-time",
            "0",
            "-all-time",
            "0",
        ],
        check=True,
        capture_output=True,
    )
    return out


def test_hook_initrd_layout(tmp_path: Path, fake_tcz: Path) -> None:
    out = initrd.build_hook_initrd("x86_64", tmp_path / "tce-ipfs.gz", ipfs_tcz=fake_tcz)
    assert out.read_bytes()[:2] == cpio.GZIP_MAGIC
    entries = {e.name: e for e in cpio.parse_cpio(cpio.read_initrd(out))}
    assert list(entries) == [
        "tmp",
        "tmp/builtin",
        "tmp/builtin/optional",
        "tmp/builtin/tce-ipfs.gz",
        "tmp/builtin/optional/ipfs.tcz",
        "tmp/builtin/optional/ipfs.tcz.md5.txt",
    ]
    assert entries["tmp"].perms == 0o1777
    tcz = fake_tcz.read_bytes()
    assert entries["tmp/builtin/optional/ipfs.tcz"].data == tcz
    md5 = hashlib.md5(tcz).hexdigest()
    assert entries["tmp/builtin/optional/ipfs.tcz.md5.txt"].data == f"{md5}  ipfs.tcz\n".encode()
    # the inner archive: what tce-setup unpacks into / and runs
    inner_gz = entries["tmp/builtin/tce-ipfs.gz"].data
    assert inner_gz[:2] == cpio.GZIP_MAGIC
    inner = {e.name: e for e in cpio.parse_cpio(gzip.decompress(inner_gz))}
    assert inner["usr/local/tce.installed/tce-ipfs"].perms == 0o755
    for name in (
        "lib.sh",
        "parse.sh",
        "net.sh",
        "kubo.sh",
        "fetch.sh",
        "main.sh",
        "names.awk",
        "closure.awk",
        "udhcpc.script",
        "build.conf",
    ):
        assert f"usr/local/lib/tce-ipfs/{name}" in inner, name
    assert inner["usr/local/lib/tce-ipfs/udhcpc.script"].perms == 0o755
    assert inner["usr/local/lib/tce-ipfs/lib.sh"].perms == 0o644
    assert b"HOOK_ARCH=x86_64" in inner["usr/local/lib/tce-ipfs/build.conf"].data
    # TC's own directories are not in it (cpio -idmu would reset their modes)
    assert "usr" not in inner and "usr/local" not in inner and "usr/local/tce.installed" not in inner


def test_hook_initrd_with_system_cpio(tmp_path: Path, fake_tcz: Path) -> None:
    need("cpio")
    out = initrd.build_hook_initrd("aarch64", tmp_path / "h.gz", ipfs_tcz=fake_tcz)
    listing = (
        subprocess.run(
            ["cpio", "-t", "--quiet"],
            input=gzip.decompress(out.read_bytes()),
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .split()
    )
    assert "tmp/builtin/tce-ipfs.gz" in listing and "tmp/builtin/optional/ipfs.tcz" in listing
    root = tmp_path / "root"
    root.mkdir()
    subprocess.run(["cpio", "-idm", "--quiet"], input=gzip.decompress(out.read_bytes()), cwd=root, check=True)
    # then what tce-setup does with it
    inner = subprocess.run(
        [BUSYBOX, "zcat", str(root / "tmp/builtin/tce-ipfs.gz")], capture_output=True, check=True
    ).stdout
    subprocess.run([BUSYBOX, "cpio", "-idmu"], input=inner, cwd=root, check=True, capture_output=True)
    assert (root / "usr/local/tce.installed/tce-ipfs").read_bytes() == (
        Path(settings.hooks_dir()) / "tce-ipfs"
    ).read_bytes()
    assert (root / "usr/local/lib/tce-ipfs/build.conf").read_text().endswith("HOOK_ARCH=aarch64\n")


@pytest.mark.parametrize("method", cpio.COMPRESSIONS)
def test_hook_initrd_is_reproducible(tmp_path: Path, fake_tcz: Path, method: str) -> None:
    one = initrd.build_hook_initrd("x86_64", tmp_path / "1", ipfs_tcz=fake_tcz, compression=method)
    two = initrd.build_hook_initrd("x86_64", tmp_path / "2", ipfs_tcz=fake_tcz, compression=method)
    assert one.read_bytes() == two.read_bytes()
    assert cpio.detect(one.read_bytes()) == method
    assert not list(tmp_path.glob("*.part"))


def test_hook_initrd_rejects_non_squashfs(tmp_path: Path) -> None:
    bogus = tmp_path / "ipfs.tcz"
    bogus.write_bytes(b"not squashfs")
    with pytest.raises(BuildError, match="not a squashfs"):
        initrd.build_hook_initrd("x86_64", tmp_path / "o.gz", ipfs_tcz=bogus)
    with pytest.raises(BuildError):
        initrd.build_hook_initrd("x86_64", tmp_path / "o.gz", ipfs_tcz=tmp_path / "absent.tcz")
    with pytest.raises(UsageError):
        initrd.build_hook_initrd("sparc", tmp_path / "o.gz", ipfs_tcz=bogus)
    assert not (tmp_path / "o.gz").exists()


def test_cli_builds_ipfs_tcz_with_the_recipe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without --ipfs-tcz the command builds ipfs.tcz with the recipe and hands the resulting image
    (``TczResult.tcz``) to the initrd builder, which never builds anything itself."""
    from tce_ipfs.build import recipes, tcz

    calls: list[tuple[str, str]] = []

    def build(name: str, arch: object, out_dir: Path) -> tcz.TczResult:
        calls.append((name, str(arch)))
        tree = out_dir / "tree"
        (tree / "usr/local/bin").mkdir(parents=True)
        (tree / "usr/local/bin/ipfs").write_bytes(b"stand-in for kubo")
        return tcz.pack(tree, out_dir / "ipfs.tcz")

    monkeypatch.setattr(recipes, "build", build)
    out = tmp_path / "k.gz"
    assert main(["initrd", "build", "--arch", "aarch64", "-o", str(out)]) == 0
    assert calls == [("ipfs", "aarch64")]
    entries = {e.name: e for e in cpio.parse_cpio(cpio.read_initrd(out))}
    assert entries["tmp/builtin/optional/ipfs.tcz"].data[:4] == initrd.SQUASHFS_MAGIC


# ------------------------------------------------------------------------------------------ CLI


def test_cli_build_and_list(tmp_path: Path, fake_tcz: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli.gz"
    assert (
        main(
            [
                "initrd",
                "build",
                "--arch",
                "arm64",
                "-o",
                str(out),
                "--ipfs-tcz",
                str(fake_tcz),
                "--compression",
                "zstd",
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert str(out) in text and "zstd" in text and "aarch64" in text
    assert cpio.detect(out.read_bytes()) == "zstd"
    assert main(["initrd", "list", str(out)]) == 0
    listing = capsys.readouterr().out
    assert "d1777" in listing and "tmp/builtin/optional/ipfs.tcz" in listing
    assert (
        main(["initrd", "build", "--json", "--arch", "x86_64", "-o", str(out), "--ipfs-tcz", str(fake_tcz)])
        == 0
    )
    assert '"size":' in capsys.readouterr().out


def test_cli_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bogus = tmp_path / "x.tcz"
    bogus.write_bytes(b"nope")
    assert (
        main(["initrd", "build", "--arch", "x86_64", "-o", str(tmp_path / "o"), "--ipfs-tcz", str(bogus)])
        == 5
    )
    assert "not a squashfs" in capsys.readouterr().err
