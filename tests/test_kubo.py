"""kubo.ensure: cache, manifest, recipe key, lock, --from; real builds for all four arches (mark `kubo`)."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from support.elfs import compile_c, make_elf
from tce_ipfs import proc
from tce_ipfs.arch import Arch
from tce_ipfs.build import elf, kubo
from tce_ipfs.cli import main
from tce_ipfs.errors import BuildError, ElfMismatch, UsageError
from tce_ipfs.settings import KUBO_VERSION

VERSION_NUMBER = KUBO_VERSION.removeprefix("v")


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "cache"
    monkeypatch.setenv("TCE_IPFS_CACHE", str(path))
    return path


class FakeBuilder:
    """Stands in for kubo._build: writes a crafted static ELF of the arch, counts calls."""

    def __init__(self, delay: float = 0.0) -> None:
        self.calls: list[Arch] = []
        self.delay = delay
        self.lock = threading.Lock()

    def __call__(self, arch: Arch, version: str, dest: Path) -> dict[str, Any]:
        with self.lock:
            self.calls.append(arch)
        time.sleep(self.delay)
        make_elf(dest.with_name(".tmp"), arch)
        os.replace(dest.with_name(".tmp"), dest)
        return {"source": "built", "recipe": kubo.recipe_id(version), "build": kubo.recipe(version),
                "seconds": self.delay}


@pytest.fixture
def fake_build(monkeypatch: pytest.MonkeyPatch) -> FakeBuilder:
    fake = FakeBuilder()
    monkeypatch.setattr(kubo, "_build", fake)
    return fake


def test_normalize_version() -> None:
    assert kubo.normalize_version("0.43.1") == "v0.43.1"
    assert kubo.normalize_version(" v0.43.1 ") == "v0.43.1"
    assert kubo.normalize_version("v0.44.0-rc1") == "v0.44.0-rc1"
    for bad in ("", "latest", "v0.43", "0.43.1; rm -rf /", "../v0.43.1"):
        with pytest.raises(UsageError, match="not a kubo version"):
            kubo.normalize_version(bad)


def test_recipe_id_covers_flags_plugins_and_patches(monkeypatch: pytest.MonkeyPatch) -> None:
    base = kubo.recipe_id()
    assert base == kubo.recipe_id(VERSION_NUMBER)
    for attr, value in (("LDFLAGS", "-s"), ("GCFLAGS", ""), ("BUILD_TAGS", ()),
                        ("PRELOAD_PLUGINS", ("flatfs", "levelds", "pebbleds")),
                        ("SOURCE_FIXUPS", {}), ("SLIM_PATCHES", {}), ("RECIPE_REVISION", 99)):
        with monkeypatch.context() as m:
            m.setattr(kubo, attr, value)
            assert kubo.recipe_id() != base, attr
    assert kubo.recipe_id() == base


def test_preload_go_has_only_the_declared_plugins() -> None:
    text = kubo.preload_go()
    assert 'pluginflatfs "github.com/ipfs/kubo/plugin/plugins/flatfs"' in text
    assert "Preload(pluginlevelds.Plugins...)" in text
    for dropped in set(kubo.UPSTREAM_PLUGINS) - set(kubo.PRELOAD_PLUGINS):
        assert f"plugins/{dropped}\"" not in text
    assert "telemetry" not in kubo.PRELOAD_PLUGINS


def test_edit_step_must_match_exactly(tmp_path: Path) -> None:
    (tmp_path / "a.go").write_text("x := foo()\ny := foo()\n")
    kubo._apply(kubo.Edit("a.go", "foo()", "bar()", count=2), tmp_path, "v1.0.0", "T")
    assert (tmp_path / "a.go").read_text() == "x := bar()\ny := bar()\n"
    with pytest.raises(BuildError, match=r"expected 1 occurrence\(s\) of 'bar\(\)', found 2"):
        kubo._apply(kubo.Edit("a.go", "bar()", "baz()"), tmp_path, "v1.0.0", "T")
    with pytest.raises(BuildError, match=r"has no b\.go to patch"):
        kubo._apply(kubo.Edit("b.go", "x", "y"), tmp_path, "v1.0.0", "T")


def test_ensure_builds_once_then_hits_cache(cache: Path, fake_build: FakeBuilder) -> None:
    path = kubo.ensure(Arch.AARCH64)
    assert path == cache / "kubo" / KUBO_VERSION / "aarch64" / "ipfs"
    manifest = json.loads((path.parent / "ipfs.json").read_text())
    assert manifest["version"] == KUBO_VERSION and manifest["arch"] == "aarch64"
    assert manifest["size"] == path.stat().st_size
    assert manifest["sha256"] == kubo.sha256_file(path)
    assert manifest["recipe"] == kubo.recipe_id()
    assert kubo.ensure(Arch.AARCH64, "0.43.1") == path
    assert fake_build.calls == [Arch.AARCH64]
    kubo.ensure(Arch.AARCH64, rebuild=True)
    assert fake_build.calls == [Arch.AARCH64] * 2


def test_recipe_change_or_tampering_rebuilds(cache: Path, fake_build: FakeBuilder,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    path = kubo.ensure(Arch.X86)
    monkeypatch.setattr(kubo, "LDFLAGS", "-s")
    kubo.ensure(Arch.X86)
    assert len(fake_build.calls) == 2
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # same size, different content (and mtime)
    path.write_bytes(bytes(data))
    kubo.ensure(Arch.X86)
    assert len(fake_build.calls) == 3
    path.unlink()
    kubo.ensure(Arch.X86)
    assert len(fake_build.calls) == 4


def test_concurrent_callers_build_once(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeBuilder(delay=0.5)
    monkeypatch.setattr(kubo, "_build", fake)
    results: list[Path] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            results.append(kubo.ensure(Arch.ARMV7))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert fake.calls == [Arch.ARMV7]
    assert len(set(results)) == 1


def test_bad_build_output_is_not_cached(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def wrong_arch(arch: Arch, version: str, dest: Path) -> dict[str, Any]:
        make_elf(dest, Arch.X86_64)
        return {"source": "built", "recipe": kubo.recipe_id(version)}

    monkeypatch.setattr(kubo, "_build", wrong_arch)
    with pytest.raises(ElfMismatch, match="ipfs is x86_64, expected aarch64"):
        kubo.ensure(Arch.AARCH64)
    assert not kubo.binary_path(Arch.AARCH64).exists()
    assert kubo.load(Arch.AARCH64) is None


def test_from_path_foreign_arch(cache: Path, fake_build: FakeBuilder, tmp_path: Path) -> None:
    given = make_elf(tmp_path / "ipfs-arm64", Arch.AARCH64)
    path = kubo.ensure(Arch.AARCH64, from_path=given)
    assert path.read_bytes() == given.read_bytes()
    m = kubo.load(Arch.AARCH64)
    assert m is not None and m.source == "given" and m.raw["from"] == str(given.resolve())
    # later callers without --from get the given binary, no build
    assert kubo.ensure(Arch.AARCH64) == path
    assert fake_build.calls == []
    # a wrong-arch --from is refused and leaves the cache alone
    with pytest.raises(ElfMismatch, match="ipfs-arm64 is aarch64, expected x86_64"):
        kubo.ensure(Arch.X86_64, from_path=given)
    assert not kubo.binary_path(Arch.X86_64).exists()


def test_from_path_host_binary_version_checked(cache: Path, fake_build: FakeBuilder, tmp_path: Path) -> None:
    host = Arch.host()
    good = compile_c(tmp_path / "ipfs", static=True, version=VERSION_NUMBER)
    path = kubo.ensure(host, from_path=good)
    assert proc.output([path, "version", "--number"]) == VERSION_NUMBER
    old = compile_c(tmp_path / "old", static=True, version="0.30.0")
    with pytest.raises(UsageError, match=r"old is kubo 0.30.0, expected v0.43.1"):
        kubo.ensure(host, from_path=old)
    dynamic = compile_c(tmp_path / "dyn", static=False, version=VERSION_NUMBER)
    with pytest.raises(ElfMismatch, match="dyn is dynamically linked"):
        kubo.ensure(host, from_path=dynamic)
    assert kubo.sha256_file(path) == kubo.sha256_file(good)
    assert fake_build.calls == []


def test_cli_build(cache: Path, fake_build: FakeBuilder, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["kubo", "build", "--arch", "armhf"]) == 0
    out = capsys.readouterr().out
    path = kubo.binary_path(Arch.ARMV7)
    assert out.splitlines()[0] == str(path)
    assert f"sha256: {kubo.sha256_file(path)}" in out and "size:" in out
    assert main(["kubo", "build", "--json", "--arch", "armv7"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["path"] == str(path) and data["size"] == path.stat().st_size
    assert main(["kubo", "build", "--arch", "sparc"]) == UsageError.exit_code
    assert main(["kubo", "build", "--arch", "x86", "--version", "latest"]) == UsageError.exit_code
    assert fake_build.calls == [Arch.ARMV7]


# --- real builds (Go + module proxy; minutes the first time, then cached) ----------------------------

@pytest.mark.kubo
@pytest.mark.parametrize("arch", list(Arch), ids=str)
def test_real_build_is_static_and_cached(arch: Arch) -> None:
    path = kubo.ensure(arch)
    info = elf.validate(path, arch)
    assert info.static and info.arch is arch
    m = kubo.load(arch)
    assert m is not None and m.sha256 == kubo.sha256_file(path)
    if m.source == "built":
        assert m.recipe == kubo.recipe_id()
        assert m.raw["build"]["plugins"] == list(kubo.PRELOAD_PLUGINS)
        # the slim recipe: losing a patch or the plugin trim shows up as ~+10 MB
        assert m.size < 52_000_000, f"kubo for {arch} grew to {m.size} bytes"
    started = time.monotonic()
    assert kubo.ensure(arch) == path
    assert time.monotonic() - started < 2.0


@pytest.mark.kubo
def test_real_host_kubo_runs(tmp_path: Path) -> None:
    """The slim binary still does init / config (incl. a dropped plugin's keys) / add / cat."""
    path = kubo.ensure(Arch.host())
    env = {"IPFS_PATH": str(tmp_path / "repo")}
    assert proc.output([path, "version", "--number"], env=env) == VERSION_NUMBER
    assert proc.output([path, "version"], env=env) == f"ipfs version {VERSION_NUMBER}"
    proc.run([path, "init", "--empty-repo"], env=env)
    # telemetry is not compiled in; its config keys (which node/agent code sets) must still be accepted
    proc.run([path, "config", "Plugins.Plugins.telemetry.Config.Mode", "off"], env=env)
    proc.run([path, "config", "--json", "Plugins.Plugins.nopfs.Disabled", "true"], env=env)
    (tmp_path / "hello.txt").write_text("hello tiny core\n")
    cid = proc.output([path, "add", "-q", "--cid-version", "1", str(tmp_path / "hello.txt")], env=env)
    assert cid.startswith("bafk")
    assert proc.output([path, "cat", cid], env=env) == "hello tiny core"
