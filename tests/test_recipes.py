"""Recipes in tcz-build/: schema, builds, the ipfs install script and the vendored agent."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tarfile
import textwrap
import time
import zipfile
from pathlib import Path

import pytest

from support import need_tool
from tce_ipfs import cli, proc
from tce_ipfs.arch import Arch
from tce_ipfs.build import recipes, tcz, vendor
from tce_ipfs.errors import BuildError, UsageError

MiB = 1024 * 1024


@pytest.fixture
def fake_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project root with an empty tcz-build/ (recipes_dir() follows TCE_IPFS_ROOT)."""
    root = tmp_path / "project"
    (root / "tcz-build").mkdir(parents=True)
    monkeypatch.setenv("TCE_IPFS_ROOT", str(root))
    return root


def write_recipe(root: Path, name: str, toml: str, files: dict[str, str] | None = None) -> Path:
    rdir = root / "tcz-build" / name
    (rdir / "files").mkdir(parents=True)
    (rdir / "recipe.toml").write_text(textwrap.dedent(toml))
    for rel, text in (files or {}).items():
        path = rdir / "files" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        if text.startswith("#!"):
            path.chmod(0o755)
    return rdir


HELLO = """\
    version = "2.0-{arch}"
    description = "hello for {arch}"
    deps = ["base-{arch}", "mods-KERNEL.tcz"]
    install_script = "setup.sh"

    [info]
    Author = "Jane"
    Comments = "TC {tc_major}, kubo {kubo_version}"

    [[install]]
    kind = "file"
    src = "hello"
    dest = "usr/local/bin/hello"

    [[install]]
    kind = "file"
    src = "share"
    dest = "usr/local/share/hello"
    """
HELLO_FILES = {"hello": "#!/bin/sh\necho hi\n", "setup.sh": "#!/bin/sh\ntrue\n", "share/a.txt": "a",
               "share/sub/b.txt": "b"}


def _unsquash_list(image: Path) -> dict[str, tuple[str, str]]:
    out = {}
    for line in proc.output(["unsquashfs", "-lln", image]).splitlines():
        mode, owner, *_ = line.split()
        out[line.split("squashfs-root", 1)[1].lstrip("/").split(" -> ")[0]] = (mode, owner)
    return out


def _extract(image: Path, dest: Path) -> Path:
    proc.run(["unsquashfs", "-q", "-n", "-d", dest, image])
    return dest


# ------------------------------------------------------------------------------------------ schema


def test_real_recipes_load() -> None:
    names = recipes.list_recipes()
    assert {"ipfs", "tce-ipfs-agent"} <= set(names)
    ipfs = recipes.load("ipfs")
    assert [i.kind for i in ipfs.install] == ["kubo"] and ipfs.install[0].dest == "usr/local/bin/ipfs"
    assert ipfs.install_script == "tce.installed"
    agent = recipes.load("tce-ipfs-agent")
    assert agent.python == "3.11" and agent.deps == ("python{python}.tcz",)
    assert {i.kind for i in agent.install} == {"python-package", "file"}


def test_file_recipe_build(fake_root: Path, tmp_path: Path) -> None:
    need_tool("unsquashfs")
    write_recipe(fake_root, "hello", HELLO, HELLO_FILES)
    res = recipes.build("hello", "aarch64", tmp_path / "out")
    assert res.tcz == tmp_path / "out/hello.tcz"
    assert res.files == ("usr/local/bin/hello", "usr/local/share/hello/a.txt",
                         "usr/local/share/hello/sub/b.txt", "usr/local/tce.installed/hello")
    assert res.dep_file is not None
    assert res.dep_file.read_text() == "base-aarch64.tcz\nmods-KERNEL.tcz\n"
    info = res.info_file.read_text()
    assert "Version:        2.0-aarch64\n" in info and "Description:    hello for aarch64\n" in info
    assert "Comments:       TC 16, kubo 0.43.1\n" in info
    listing = _unsquash_list(res.tcz)
    assert listing["usr/local/bin/hello"] == ("-rwxr-xr-x", "0/0")
    assert listing["usr/local/share/hello/a.txt"] == ("-rw-r--r--", "0/0")
    assert listing["usr/local/tce.installed/hello"] == ("-rwxr-xr-x", "0/50")
    # no staging leftovers
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "hello.tcz", "hello.tcz.dep", "hello.tcz.info", "hello.tcz.list", "hello.tcz.md5.txt"]
    again = recipes.build("hello", Arch.AARCH64, tmp_path / "again")
    assert again.tcz.read_bytes() == res.tcz.read_bytes()


@pytest.mark.parametrize(("toml", "needle"), [
    ('colour = "red"\n[[install]]\nkind = "kubo"\ndest = "x"\n', "unknown key(s) colour"),
    ('[[install]]\nkind = "tarball"\ndest = "x"\n', "kind 'tarball'"),
    ('[[install]]\nkind = "kubo"\ndest = "../x"\n', "dest '../x'"),
    ('[[install]]\nkind = "kubo"\ndest = "/usr/bin/ipfs"\n', "dest '/usr/bin/ipfs'"),
    ('[[install]]\nkind = "file"\nsrc = "nope"\ndest = "x"\n', "nope does not exist"),
    ('[[install]]\nkind = "file"\nsrc = "../recipe.toml"\ndest = "x"\n', "is outside"),
    ('[[install]]\nkind = "kubo"\ndest = "x"\nmode = "755"\n', "unknown key(s) mode"),
    ('name = "other"\n[[install]]\nkind = "kubo"\ndest = "x"\n', "differs from the directory name"),
    ('block_size = 1000\n[[install]]\nkind = "kubo"\ndest = "x"\n', "block size 1000"),
    ('deps = "a.tcz"\n[[install]]\nkind = "kubo"\ndest = "x"\n', "deps must be a list"),
    ('[[install]]\nkind = "python-package"\ndest = "x"\nmodules = ["tce_ipfs.cli"]\n', "needs the top-level"),
    ('python = "3.11"\n[[install]]\nkind = "python-package"\ndest = "x"\nmodules = ["os"]\n', "submodules"),
    ('version = "1"\n', "at least one [[install]]"),
    ('version = \n', "recipe.toml"),
])
def test_recipe_errors(fake_root: Path, toml: str, needle: str) -> None:
    rdir = write_recipe(fake_root, "bad", toml)
    with pytest.raises(BuildError) as info:
        recipes.load("bad")
    assert needle in str(info.value) and str(rdir / "recipe.toml") in str(info.value)


def test_unknown_recipe_and_variable(fake_root: Path, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no recipe named 'nope'"):
        recipes.build("nope", "x86_64", tmp_path)
    write_recipe(fake_root, "hello",
                 'version = "{colour}"\n[[install]]\nkind = "file"\nsrc = "h"\ndest = "h"\n', {"h": "x"})
    with pytest.raises(BuildError, match=r"unknown variable \{colour\}"):
        recipes.build("hello", "x86_64", tmp_path / "out")


def test_cli_list_and_build(fake_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_recipe(fake_root, "hello", HELLO, HELLO_FILES)
    assert cli.main(["tcz", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == ["hello"] and rows[0]["kinds"] == ["file", "file"]
    assert cli.main(["tcz", "build", "hello", "--arch", "armhf", "-o", str(tmp_path / "o")]) == 0
    text = capsys.readouterr().out
    for name in ("hello.tcz", "hello.tcz.md5.txt", "hello.tcz.list", "hello.tcz.info", "hello.tcz.dep"):
        assert str(tmp_path / "o" / name) in text
    assert "base-armv7.tcz" in (tmp_path / "o/hello.tcz.dep").read_text()


def test_runtime_recipe_dispatch(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """tcz-build/python3.11 is a runtime recipe (runtime.toml, built by pyruntime), listed like the rest."""
    from tce_ipfs.build import pyruntime

    spec = recipes.runtime_spec("python3.11")
    assert spec is not None and recipes.runtime_spec("ipfs") is None
    assert "python3.11" in recipes.list_recipes()
    rt = pyruntime.load_spec(spec)
    assert rt.name == "python3.11" and "python3.11-minimal" in rt.packages
    assert rt.file(rt.launcher).read_text().startswith("#!/bin/sh\n")
    with pytest.raises(UsageError, match="runtime recipe"):
        recipes.load("python3.11")
    with pytest.raises(UsageError, match="runtime recipes only"):
        recipes.build("ipfs", "x86_64", tmp_path, testbase=True)
    assert cli.main(["tcz", "list", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["python3.11"]["kinds"] == ["python-runtime"] and rows["ipfs"]["kinds"] == ["kubo"]


# ----------------------------------------------------------------------------- python-package


def _fake_package(root: Path) -> Path:
    pkg = root / "tce_ipfs"
    files = {
        "__init__.py": "",
        "errors.py": "",
        "cli.py": "from tce_ipfs.errors import X\nimport importlib\n",
        "kubo.py": "import elftools\n",
        "tcrepo.py": "",
        "commands/__init__.py": "",
        "commands/agent.py": ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                              "    from tce_ipfs import kubo\n"
                              "def run():\n    from tce_ipfs.agent import ops\n"),
        "commands/kubo.py": "from tce_ipfs import kubo\n",
        "agent/__init__.py": "",
        "agent/ops.py": "from . import machine\nfrom ..tcrepo import parse\n",
        "agent/machine.py": "",
        "agent/extra.py": "",
    }
    for rel, text in files.items():
        (pkg / rel).parent.mkdir(parents=True, exist_ok=True)
        (pkg / rel).write_text(text)
    return pkg


def test_module_closure(tmp_path: Path) -> None:
    pkg = _fake_package(tmp_path)
    got = vendor.module_closure(["tce_ipfs.cli", "tce_ipfs.commands.agent", "tce_ipfs.missing"], pkg)
    # lazy import followed, relative imports resolved, TYPE_CHECKING and host-only commands not
    assert got == ["tce_ipfs", "tce_ipfs.agent", "tce_ipfs.agent.machine", "tce_ipfs.agent.ops",
                   "tce_ipfs.cli", "tce_ipfs.commands", "tce_ipfs.commands.agent", "tce_ipfs.errors",
                   "tce_ipfs.tcrepo"]
    # a package entry brings every module in it
    assert "tce_ipfs.agent.extra" in vendor.module_closure(["tce_ipfs.agent"], pkg)
    (pkg / "agent/ops.py").write_text("from tce_ipfs import gone_module\nimport tce_ipfs.vanished\n")
    with pytest.raises(BuildError, match=r"tce_ipfs.agent.ops imports tce_ipfs.vanished"):
        vendor.module_closure(["tce_ipfs.agent"], pkg)


def _zip(path: Path, members: dict[str, str]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in members.items():
            zf.writestr(name, text)
    return path


def test_extract_wheel(tmp_path: Path) -> None:
    whl = _zip(tmp_path / "demo-1.0-py3-none-any.whl", {
        "demo/__init__.py": "x = 1\n", "demo/__pycache__/x.cpython-311.pyc": "",
        "demo/data/big.txt": "big", "demo-1.0.dist-info/METADATA": "Name: demo\n",
        "demo-1.0.dist-info/RECORD": "", "demo-1.0.dist-info/LICENSE": "MIT",
        "demo-1.0.data/purelib/extra.py": "", "demo-1.0.data/scripts/tool": "#!/bin/sh\n"})
    owners: dict[str, str] = {}
    dest = tmp_path / "vendor"
    assert vendor.extract_wheel(whl, dest, ["demo/data/*"], owners) == 4
    got = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    assert got == ["demo-1.0.dist-info/LICENSE", "demo-1.0.dist-info/METADATA", "demo/__init__.py",
                   "extra.py"]
    with pytest.raises(BuildError, match="is in both"):
        vendor.extract_wheel(whl, dest, [], owners)
    native = _zip(tmp_path / "fast-1.0-cp311-cp311-linux_x86_64.whl", {"fast/__init__.py": ""})
    with pytest.raises(BuildError, match="not a pure-Python wheel"):
        vendor.extract_wheel(native, dest, [], {})
    sneaky = _zip(tmp_path / "sneaky-1.0-py3-none-any.whl", {"sneaky/_speed.so": ""})
    with pytest.raises(BuildError, match="native library"):
        vendor.extract_wheel(sneaky, dest, [], {})


def test_read_lock(tmp_path: Path) -> None:
    good = tmp_path / "good.lock"
    good.write_text("# c\nfoo==1.0 --hash=sha256:" + "a" * 64 + " \\\n    --hash=sha256:" + "b" * 64 + "\n")
    (locked,) = vendor.read_lock(good)
    assert (locked.name, locked.version, len(locked.hashes)) == ("foo", "1.0", 2)
    bad = tmp_path / "bad.lock"
    bad.write_text("foo>=1.0\n")
    with pytest.raises(BuildError, match=r"bad\.lock:1"):
        vendor.read_lock(bad)


# ------------------------------------------------------------------------------------ ipfs.tcz


@pytest.fixture(scope="module")
def ipfs_tcz(host_kubo: Path, tmp_path_factory: pytest.TempPathFactory) -> tcz.TczResult:
    if Arch.host() is not Arch.X86_64:
        pytest.skip("the ipfs recipe test builds for x86_64 with the host's kubo")
    mp = pytest.MonkeyPatch()
    mp.setenv(recipes.KUBO_BIN_ENV, str(host_kubo))
    try:
        return recipes.build("ipfs", Arch.X86_64, tmp_path_factory.mktemp("ipfs-tcz"))
    finally:
        mp.undo()


@pytest.mark.kubo
def test_ipfs_recipe(ipfs_tcz: tcz.TczResult, host_kubo: Path, tmp_path: Path) -> None:
    need_tool("unsquashfs")
    need_tool("shellcheck")
    res = ipfs_tcz
    print(f"\nipfs.tcz (x86_64): {res.size} bytes = {res.size / MiB:.2f} MiB "
          f"(binary {host_kubo.stat().st_size / MiB:.1f} MiB, {res.block_size // 1024} KiB blocks)")
    assert res.files == ("usr/local/bin/ipfs", "usr/local/tce.installed/ipfs")
    assert res.dep_file is None
    assert res.block_size == 65536 and res.compression == "gzip"  # see the recipe: kubo's first start
    listing = _unsquash_list(res.tcz)
    assert listing["usr/local/bin/ipfs"] == ("-rwxr-xr-x", "0/0")
    assert listing["usr/local/tce.installed/ipfs"] == ("-rwxr-xr-x", "0/50")
    info = res.info_file.read_text()
    assert "Version:        0.43.1\n" in info and f"Size:           {tcz.human_size(res.size)}\n" in info
    proc.run(["md5sum", "-c", res.md5_file.name], cwd=res.tcz.parent)
    tree = _extract(res.tcz, tmp_path / "x")
    assert (tree / "usr/local/bin/ipfs").read_bytes() == host_kubo.read_bytes()
    proc.run(["shellcheck", "-s", "sh", tree / "usr/local/tce.installed/ipfs"])


def _chroot(ipfs_tcz: tcz.TczResult, root: Path) -> Path:
    """A minimal TC-like root: the extracted extension, static busybox, tc user in staff."""
    _extract(ipfs_tcz.tcz, root)
    busybox = shutil.which("busybox")
    assert busybox, "busybox-static missing: run bootstrap/setup"
    (root / "bin").mkdir()
    shutil.copy2(busybox, root / "bin/busybox")
    for tool in ("sh", "cat", "mkdir", "rm", "chown", "mv", "tar", "readlink", "echo", "gzip", "grep"):
        (root / "bin" / tool).symlink_to("busybox")
    (root / "etc/sysconfig").mkdir(parents=True)
    (root / "etc/sysconfig/tcuser").write_text("tc\n")
    (root / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\ntc:x:1001:50::/home/tc:/bin/sh\n")
    (root / "etc/group").write_text("root:x:0:\nstaff:x:50:tc\n")
    (root / "home").mkdir()
    (root / "tmp").mkdir()
    (root / "dev").mkdir()
    os.mknod(root / "dev/null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    return root


def _run_script(root: Path) -> subprocess.CompletedProcess[bytes]:
    return proc.run(["chroot", root, "/bin/sh", "/usr/local/tce.installed/ipfs"], timeout=120)


@pytest.mark.kubo
@pytest.mark.root
def test_ipfs_install_script(ipfs_tcz: tcz.TczResult, host_kubo: Path, tmp_path: Path) -> None:
    """Run the script under busybox sh in a chroot, then start kubo with the repo it made in a network
    namespace of its own (nothing can leave the machine)."""
    if os.geteuid() != 0:
        pytest.skip("needs root for chroot and unshare")
    need_tool("unsquashfs")
    root = _chroot(ipfs_tcz, tmp_path / "root")
    started = time.monotonic()
    out = _run_script(root)
    print(f"\ninstall script: {time.monotonic() - started:.2f} s")
    assert out.returncode == 0 and out.stderr == b"", out.stderr
    repo = root / "home/tc/.ipfs"
    cfg = json.loads((repo / "config").read_text())
    assert cfg["Addresses"]["API"] == "/ip4/127.0.0.1/tcp/5001"
    assert cfg["Addresses"]["Gateway"] == "/ip4/127.0.0.1/tcp/8080"
    assert (cfg["Swarm"]["ConnMgr"]["LowWater"], cfg["Swarm"]["ConnMgr"]["HighWater"]) == (20, 40)
    assert cfg["Swarm"]["ResourceMgr"]["MaxMemory"] == "64MB"
    assert cfg["Datastore"]["StorageMax"] == "512MB"
    assert cfg["Routing"]["Type"] == "autoclient"  # from the lowpower profile
    assert cfg["Bootstrap"], "a user's node keeps kubo's bootstrap list"
    st = repo.stat()
    assert (st.st_uid, st.st_gid) == (1001, 50)
    assert not list((root / "home/tc").glob(".ipfs.new.*"))

    # A second load keeps the existing repository untouched.
    before = (repo / "config").read_bytes()
    assert _run_script(root).returncode == 0
    assert (repo / "config").read_bytes() == before

    # A backup that holds a repository wins: nothing is created before the restore.
    shutil.rmtree(repo)
    tce = root / "mnt/sda1/tce"
    tce.mkdir(parents=True)
    payload = tmp_path / "payload/home/tc/.ipfs"
    payload.mkdir(parents=True)
    (payload / "config").write_text("{}")
    with tarfile.open(tce / "mydata.tgz", "w:gz") as tar:
        tar.add(tmp_path / "payload/home", arcname="home")
    (root / "etc/sysconfig/tcedir").symlink_to("/mnt/sda1/tce")
    assert _run_script(root).returncode == 0
    assert not repo.exists()

    # At boot (tce-setup runs the scripts listed in /tmp/setup.lst) the work goes to the background:
    # the script returns at once, the repository appears a little later, made the same way.
    (root / "etc/sysconfig/tcedir").unlink()
    (root / "tmp/setup.lst").write_text("/usr/local/tce.installed/ipfs\n")
    out = _run_script(root)
    assert out.returncode == 0 and out.stderr == b"", out.stderr
    deadline = time.monotonic() + 90
    while not (repo / "config").exists():
        assert time.monotonic() < deadline, "no repository from the background job"
        time.sleep(0.2)
    assert json.loads((repo / "config").read_text())["Datastore"]["StorageMax"] == "512MB"
    assert not list((root / "home/tc").glob(".ipfs.new.*"))
    (root / "tmp/setup.lst").unlink()

    # kubo starts with the prepared config (resource manager limits vs connection manager are
    # checked at start). A fresh network namespace has only a loopback interface.
    log = tmp_path / "daemon.log"
    with log.open("wb") as fh:
        daemon = subprocess.Popen(
            ["unshare", "-n", "sh", "-c", 'ip link set lo up 2>/dev/null; exec "$0" daemon', str(host_kubo)],
            env=proc.clean_env({"IPFS_PATH": str(repo)}), stdout=fh, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 90
            while "Daemon is ready" not in log.read_text(errors="replace"):
                assert daemon.poll() is None, log.read_text(errors="replace")
                assert time.monotonic() < deadline, log.read_text(errors="replace")
                time.sleep(0.2)
        finally:
            daemon.terminate()
            try:
                daemon.wait(timeout=30)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()
    assert "resource manager" not in log.read_text(errors="replace").lower()


# -------------------------------------------------------------------------- tce-ipfs-agent.tcz


@pytest.fixture(scope="module")
def agent_tcz(tmp_path_factory: pytest.TempPathFactory) -> tcz.TczResult:
    return recipes.build("tce-ipfs-agent", Arch.X86_64, tmp_path_factory.mktemp("agent-tcz"))


def test_agent_recipe(agent_tcz: tcz.TczResult, tmp_path: Path) -> None:
    need_tool("unsquashfs")
    res = agent_tcz
    print(f"\ntce-ipfs-agent.tcz: {res.size} bytes = {res.size / 1024:.0f} KiB, {len(res.files)} files")
    assert res.dep_file is not None and res.dep_file.read_text() == "python3.11.tcz\n"
    assert res.block_size == 4096 and res.compression == "gzip"
    tree = _extract(res.tcz, tmp_path / "x")
    lib = tree / "usr/local/lib/tce-ipfs-agent"
    vendor = lib / "vendor"
    launcher = tree / "usr/local/bin/tce-ipfs"
    assert launcher.read_text().startswith("#!/usr/local/bin/python3 -IS\n")
    assert os.access(launcher, os.X_OK)
    # host-only code and C extensions stay out
    packaged = {str(p.relative_to(lib)) for p in lib.rglob("*.py")}
    # nothing of the build-host packages (test_layering.py checks the agent's imports module by module)
    host_only = ("tce_ipfs/build/", "tce_ipfs/media/", "tce_ipfs/testbed/")
    assert not [p for p in packaged if p.startswith(host_only)]
    assert "tce_ipfs/commands/tcz.py" not in packaged and "tce_ipfs/commands/seed.py" not in packaged
    # `tce-ipfs seed serve` on TC: the seed library and the isolated node it runs
    assert {"tce_ipfs/ipfs/rpc.py", "tce_ipfs/ipfs/seed.py", "tce_ipfs/ipfs/node.py",
            "tce_ipfs/ipfs/isolation.py"} <= packaged
    assert "tce_ipfs/proc.py" in packaged  # the agent runs programs through proc.run() too
    for absent in ("elftools", "zstandard", "psutil", "trio"):
        assert not (vendor / absent).exists()
    assert not [p for p in tree.rglob("*") if p.suffix in (".so", ".pyc") or p.name == "__pycache__"]

    # Vendoring is complete: an isolated interpreter (-I: no environment, no user site; -S: no
    # site-packages) with only the packaged dirs on its path imports the CLI and ipfshttpclient.
    code = textwrap.dedent(f"""
        import sys
        sys.path[:0] = [{str(lib)!r}, {str(vendor)!r}]
        import tce_ipfs.cli, ipfshttpclient, multiaddr
        from ipfshttpclient.http_common import multiaddr_to_url_data
        assert multiaddr_to_url_data("/ip4/127.0.0.1/tcp/5001", "/api/v0")[0] == "http://127.0.0.1:5001/api/v0/"
        tce_ipfs.cli.build_parser()
        for name, mod in sys.modules.items():
            f = getattr(mod, "__file__", None) or ""
            assert "site-packages" not in f and "/work/main/src" not in f, (name, f)
        print(tce_ipfs.cli.__file__)
    """)
    out = proc.output([sys.executable, "-I", "-S", "-B", "-c", code])
    assert out == str(lib / "tce_ipfs/cli.py")
    # The launcher itself finds its library relative to its real path.
    version = proc.output([sys.executable, "-I", "-S", "-B", launcher, "--version"])
    assert version.startswith("tce-ipfs ")
    helptext = proc.output([sys.executable, "-I", "-S", "-B", launcher, "--help"])
    assert "tcz" not in helptext.split("examples:")[0]  # host-only command groups are not there
    # The seed group, registered by the agent itself (no install-unit: that is the build host's).
    seedhelp = proc.output([sys.executable, "-I", "-S", "-B", launcher, "seed", "--help"])
    assert "serve" in seedhelp and "install-unit" not in seedhelp
    assert "--listen" in proc.output([sys.executable, "-I", "-S", "-B", launcher, "seed", "serve", "--help"])


def test_agent_recipe_reproducible(agent_tcz: tcz.TczResult, tmp_path: Path) -> None:
    # Two builds back to back (the module fixture's build may predate edits to src/ in a live tree).
    first = recipes.build("tce-ipfs-agent", Arch.X86_64, tmp_path / "a")
    again = recipes.build("tce-ipfs-agent", Arch.X86_64, tmp_path / "b")
    assert again.md5 == first.md5
