"""TC-layout test guests built from Debian packages: ``ensure_base(arch) -> GuestBase``.

A guest base is a Debian kernel for the arch plus a ``core.gz``-style initrd (a gzip'd newc cpio)
holding the TC-layout test base of ``qemu/tc-base/rootfs`` (TC's boot scripts re-implemented in
miniature: ``/init``, ``rcS``, ``tc-config``, ``tce-setup``, ``tce-load``, ...), a static busybox with
its applet links, and the few kernel modules a virtio guest with squashfs loop mounts needs.

Steps (each cached under ``cache_dir()/guest/<arch>/<kver>+<hash>/``, keyed by arch, kernel version and
the profile's module lists; the .debs stay in ``cache_dir()/debs``):

1. ``build.debian`` makes apt know the arch's packages (``dpkg --add-architecture``, ``apt-get
   update``: needs root the first time) and names the kernel the arch's index has
   (``linux-image-<flavour>`` -> its versioned package), never assuming the host's;
2. the kernel and ``busybox-static`` .debs are downloaded and unpacked, then ``depmod -b`` and the
   module closure with ``modinfo -b DIR -k KVER -F depends`` (foreign arches too);
3. the initrd, rebuilt only when its content changes (its name carries a content hash).

``GuestBase.kernel`` is the kernel as Debian ships it (bzImage/zImage/Image.gz: what ISOs and
pxelinux boot); ``GuestBase.qemu_kernel`` is what QEMU boots fastest (the uncompressed ``vmlinux``
through PVH for x86_64 under TCG, else the same file).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import lzma
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tce_ipfs import proc, settings
from tce_ipfs.arch import Arch
from tce_ipfs.build import debian
from tce_ipfs.errors import BuildError, CommandFailed
from tce_ipfs.media.cpio import CpioWriter, compress
from tce_ipfs.testbed import qemu

log = logging.getLogger(__name__)

BUSYBOX_PACKAGE = "busybox-static"
# Files of the test base that must not be world-readable.
PRIVATE_FILES = {"etc/shadow": 0o600, "etc/sudoers": 0o440}
# Applets linked to the setuid copy /bin/busybox.suid (TC has the same split); all others -> busybox.
SUID_APPLETS = ("su",)
AUTOLOAD_LIST = "test-base.autoload"  # in /lib/modules/<kver>/: module paths, load order


def base_dir() -> Path:
    """qemu/tc-base: the test base's guest files (``rootfs/``) and the busybox applet list."""
    return settings.qemu_dir() / "tc-base"


@dataclass(frozen=True)
class GuestBase:
    arch: Arch
    kver: str  # `uname -r` in the guest
    kernel: Path  # as shipped by Debian (bzImage, zImage, Image.gz)
    qemu_kernel: Path  # what qemu.boot() should get (vmlinux on x86_64, else == kernel)
    initrd: Path  # gzip'd newc cpio, like core.gz
    modules: tuple[str, ...]  # module files loaded at boot, in order (relative to /lib/modules/<kver>)
    kernel_package: str  # Debian package and version the kernel came from
    busybox_package: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "arch": self.arch.info.name, "kver": self.kver, "kernel": str(self.kernel),
            "qemu_kernel": str(self.qemu_kernel), "initrd": str(self.initrd),
            "initrd_bytes": self.initrd.stat().st_size, "kernel_bytes": self.kernel.stat().st_size,
            "modules": list(self.modules), "kernel_package": self.kernel_package,
            "busybox_package": self.busybox_package,
        }


# --------------------------------------------------------------------------------------------- modules
def module_closure(root: Path, kver: str, names: Sequence[str]) -> list[str]:
    """Module files (relative to ``lib/modules/<kver>``) for ``names`` and their dependencies, in load
    order (dependencies first, each once). Built-in modules are skipped; an unknown one is an error."""
    moddir = root / "lib" / "modules" / kver
    order: list[str] = []
    seen: set[str] = set()

    def info(name: str, field_name: str) -> str:
        done = proc.run(["modinfo", "-b", root, "-k", kver, "-F", field_name, name], check=False)
        if done.returncode != 0:
            raise BuildError(f"kernel {kver} has no module {name!r}",
                             hint=(done.stderr or b"").decode(errors="replace").strip() or None)
        return (done.stdout or b"").decode().strip()

    def visit(name: str, stack: tuple[str, ...]) -> None:
        key = name.replace("-", "_")
        if key in seen or key in stack:
            return
        filename = info(name, "filename")
        if filename in ("(builtin)", ""):
            seen.add(key)
            return
        for dep in filter(None, info(name, "depends").split(",")):
            visit(dep.strip(), (*stack, key))
        seen.add(key)
        order.append(str(Path(filename).resolve().relative_to(moddir.resolve())))

    for name in names:
        visit(name, ())
    return order


def extract_vmlinux(bzimage: Path, out: Path) -> Path:
    """The uncompressed ELF kernel inside an xz-compressed x86 bzImage (what extract-vmlinux does)."""
    data = bzimage.read_bytes()
    start = data.find(b"\xfd7zXZ\x00")
    if start < 0:
        raise BuildError(f"{bzimage.name}: no xz payload found")
    try:
        elf = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(data[start:])
    except lzma.LZMAError as exc:
        raise BuildError(f"{bzimage.name}: xz payload does not decompress: {exc}") from exc
    if not elf.startswith(b"\x7fELF"):
        raise BuildError(f"{bzimage.name}: the xz payload is not an ELF kernel")
    tmp = out.with_suffix(".tmp")
    tmp.write_bytes(elf)
    tmp.replace(out)
    return out


# ------------------------------------------------------------------------------------------ kernel kit
def _guest_dir(arch: Arch) -> Path:
    path = settings.cache_dir() / "guest" / arch.info.name
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def _locked(arch: Arch) -> Iterator[None]:
    with (_guest_dir(arch) / ".lock").open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


KIT_FILE = "kit.json"


def _boot_kernel(arch: Arch, flavour: str | None) -> str:
    """What QEMU boots: the profile's choice for the arch's own flavour; another flavour's bzImage as
    it is (extract_vmlinux reads xz payloads only, and Debian's cloud kernel is lz4)."""
    return qemu.profile(arch).boot_kernel if flavour is None else "vmlinuz"


def _build_kit(arch: Arch, kpkg: debian.KernelPackage, kit: Path, flavour: str | None = None) -> None:
    """Unpack the kernel and busybox .debs into ``kit``: kernel, vmlinux (x86_64), module subset."""
    prof = qemu.profile(arch)
    boot_kernel = _boot_kernel(arch, flavour)
    deb = arch.info.debian
    bb_version = debian.package_version(BUSYBOX_PACKAGE, deb)
    kdeb, bdeb = debian.download([(kpkg.package, kpkg.version), (BUSYBOX_PACKAGE, bb_version)], deb)
    staging = Path(tempfile.mkdtemp(prefix=f".kit-{kpkg.kver}-", dir=kit.parent))
    try:
        tree = staging / "deb"
        log.info("unpacking %s", kdeb.name)
        debian.unpack([kdeb], tree)
        vmlinuz = tree / "boot" / f"vmlinuz-{kpkg.kver}"
        if not vmlinuz.is_file():
            raise BuildError(f"{kdeb.name} has no boot/vmlinuz-{kpkg.kver}")
        proc.run(["depmod", "-b", tree, kpkg.kver], what=f"depmod {kpkg.kver}")
        autoload = module_closure(tree, kpkg.kver, prof.autoload)
        shipped = module_closure(tree, kpkg.kver, [*prof.autoload, *prof.modules])
        out = staging / "kit"
        moddir = out / "lib" / "modules" / kpkg.kver
        moddir.mkdir(parents=True)
        src_moddir = tree / "lib" / "modules" / kpkg.kver
        for rel in shipped:
            (moddir / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src_moddir / rel, moddir / rel)
        if (src_moddir / "modules.builtin").is_file():
            shutil.copy2(src_moddir / "modules.builtin", moddir / "modules.builtin")
        (moddir / "modules.order").write_text("".join(f"{rel}\n" for rel in shipped))
        proc.run(["depmod", "-b", out, kpkg.kver], what=f"depmod (module subset) {kpkg.kver}")
        (moddir / AUTOLOAD_LIST).write_text("".join(f"{rel}\n" for rel in autoload))
        shutil.copy2(vmlinuz, out / "vmlinuz")
        if boot_kernel == "vmlinux":
            extract_vmlinux(out / "vmlinuz", out / "vmlinux")
        bb_tree = staging / "busybox"
        debian.unpack([bdeb], bb_tree)
        bb = bb_tree / "bin" / "busybox"
        if not bb.is_file():
            raise BuildError(f"{bdeb.name} has no bin/busybox")
        shutil.copy2(bb, out / "busybox")
        meta = {"arch": arch.info.name, "kver": kpkg.kver, "autoload": autoload, "shipped": shipped,
                "kernel_package": f"{kpkg.package} {kpkg.version}",
                "busybox_package": f"{BUSYBOX_PACKAGE} {bb_version}", "boot_kernel": boot_kernel,
                "profile_modules": _profile_modules(arch)}
        (out / KIT_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        if kit.exists():
            shutil.rmtree(kit)
        out.rename(kit)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _profile_modules(arch: Arch) -> list[str]:
    """What the profile asks for; part of the kit's cache key, so editing the lists rebuilds it."""
    prof = qemu.profile(arch)
    return [*prof.autoload, "|", *prof.modules]


def _kit_name(arch: Arch, kver: str, flavour: str | None = None) -> str:
    """The kit's directory: the kernel version plus a hash of what the profile asks for. Checkouts with
    other module lists share the cache; each gets its own kit instead of rebuilding one in turn."""
    key = json.dumps([_boot_kernel(arch, flavour), _profile_modules(arch)]).encode()
    return f"{kver}+{hashlib.sha256(key).hexdigest()[:8]}"


def _kit_ok(kit: Path, arch: Arch, flavour: str | None = None) -> bool:
    try:
        meta = json.loads((kit / KIT_FILE).read_text())
    except (OSError, ValueError):
        return False
    return bool(meta.get("boot_kernel") == _boot_kernel(arch, flavour)
                and meta.get("profile_modules") == _profile_modules(arch)
                and (kit / "vmlinuz").is_file() and (kit / "busybox").is_file())


# ---------------------------------------------------------------------------------------------- initrd
def applets() -> list[str]:
    """The busybox applet paths (``bin/sh``, ``sbin/udhcpc``, ...) from the fixed list: a foreign-arch
    busybox cannot run here to list its own."""
    path = base_dir() / "busybox-applets.txt"
    out = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            out.append(line)
    return out


# Directories of the RAM root; modes as on TC (tmp sticky, root private).
ROOT_DIRS: tuple[tuple[str, int], ...] = (
    ("bin", 0o755), ("dev", 0o755), ("etc", 0o755), ("etc/init.d", 0o755), ("etc/sysconfig", 0o755),
    ("etc/udhcpc", 0o755), ("home", 0o755), ("lib", 0o755), ("lib/modules", 0o755), ("mnt", 0o755),
    ("opt", 0o775), ("proc", 0o755), ("root", 0o700), ("run", 0o755), ("sbin", 0o755), ("sys", 0o755),
    ("tmp", 0o1777), ("usr", 0o755), ("usr/bin", 0o755), ("usr/sbin", 0o755), ("usr/local", 0o755),
    ("usr/local/bin", 0o755), ("usr/local/sbin", 0o755), ("usr/local/lib", 0o755),
    ("usr/local/share", 0o755), ("usr/share", 0o755), ("var", 0o755), ("var/log", 0o755),
    ("var/run", 0o755), ("var/tmp", 0o1777),
)


# Directories tc-config creates at boot (root:staff 775). An overlay cpio that carries one must keep
# that mode: the kernel, and tce-setup's `cpio -idmu` for /tmp/builtin/*.gz, apply an archive's
# directory mode to an existing directory.
STAFF_GID = 50
OVERLAY_DIRS = {"usr/local/tce.installed": 0o775, "tmp/tce": 0o775, "tmp/tce/optional": 0o775,
                "tmp/tcloop": 0o775}


def _cpio() -> CpioWriter:
    """The guest's newc layout: inodes from 0x1001, no block padding (kept: the cached base initrds are
    named by the hash of these bytes)."""
    return CpioWriter(first_ino=0x1001, pad_to=4)


def _initrd_bytes(arch: Arch, kit: Path, meta: dict[str, Any]) -> bytes:
    kver = meta["kver"]
    cpio = _cpio()
    dirs: set[str] = set()

    def ensure_dir(rel: str, mode: int = 0o755) -> None:
        parts = Path(rel).parts
        for i in range(1, len(parts) + 1):
            sub = "/".join(parts[:i])
            if sub not in dirs:
                dirs.add(sub)
                cpio.add_dir(sub, mode if i == len(parts) else 0o755)

    cpio.add_dir(".", 0o755)
    for rel, mode in ROOT_DIRS:
        ensure_dir(rel, mode)
    cpio.add_device("dev/console", "c", 5, 1, 0o600)  # the kernel opens it before /init runs
    cpio.add_device("dev/null", "c", 1, 3, 0o666)

    # The test base's own files, then the overlay of the profile's loader (piCore's tce-bootload).
    trees = [base_dir() / "rootfs"]
    overlay = qemu.LOADERS[qemu.profile(arch).loader]
    if overlay:
        trees.append(base_dir() / overlay)
    files: dict[str, Path] = {}
    for tree in trees:
        files.update({p.relative_to(tree).as_posix(): p for p in tree.rglob("*")})
    for rel, path in sorted(files.items()):
        if path.is_dir():
            ensure_dir(rel)
        elif path.is_symlink():
            ensure_dir(str(Path(rel).parent))
            cpio.add_symlink(rel, os.readlink(path))
        else:
            ensure_dir(str(Path(rel).parent))
            mode = 0o755 if os.access(path, os.X_OK) else 0o644
            cpio.add_file(rel, path.read_bytes(), PRIVATE_FILES.get(rel, mode))
    cpio.add_symlink("etc/mtab", "/proc/mounts")
    # Debian's busybox looks for /etc/udhcpc/default.script where TC's looks in /usr/share/udhcpc.
    cpio.add_symlink("etc/udhcpc/default.script", "/usr/share/udhcpc/default.script")
    # What TC's getBuild (and piCore's) looks for to tell a 64-bit userland: a placeholder, the test
    # base has no C library (everything is the static busybox).
    ld_so = arch.info.ld_so.lstrip("/")
    ensure_dir(str(Path(ld_so).parent))
    cpio.add_file(ld_so, b"", 0o755)

    # busybox, its setuid twin (for su: the sudo shim goes through it) and the applet links.
    bb = (kit / "busybox").read_bytes()
    cpio.add_file("bin/busybox", bb, 0o755)
    cpio.add_file("bin/busybox.suid", bb, 0o4755)
    for rel in applets():
        if rel in cpio:
            continue
        ensure_dir(str(Path(rel).parent))
        target = "/bin/busybox.suid" if Path(rel).name in SUID_APPLETS else "/bin/busybox"
        cpio.add_symlink(rel, target)

    # Kernel modules (subset, with its own modules.dep) and the boot load list.
    kit_mods = kit / "lib" / "modules" / kver
    for path in sorted(kit_mods.rglob("*")):
        rel = "lib/modules/" + kver + "/" + path.relative_to(kit_mods).as_posix()
        if path.is_dir():
            ensure_dir(rel)
        else:
            ensure_dir(str(Path(rel).parent))
            cpio.add_file(rel, path.read_bytes(), 0o644)
    return cpio.finish()


INITRD_KEEP_S = 2 * 86400  # base initrds of other test-base versions unused this long are removed


def _write_initrd(arch: Arch, kit: Path, meta: dict[str, Any]) -> Path:
    """The gzip'd initrd, named by the hash of its (uncompressed) content: built only when it changes.

    The cache is shared by every checkout on the machine, each possibly with its own version of the test
    base: another version's initrd may be in use by a test right now, so it is only removed once it has
    not been used for INITRD_KEEP_S (each use touches the file)."""
    data = _initrd_bytes(arch, kit, meta)
    digest = hashlib.sha256(data).hexdigest()[:16]
    out = kit / f"tc-base-{digest}.gz"
    if out.is_file():
        out.touch()
    else:
        tmp = out.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(compress(data))
        tmp.replace(out)
    now = time.time()
    for old in [*kit.glob("tc-base-*.gz"), *kit.glob("core-*.gz")]:
        with contextlib.suppress(OSError):
            if old != out and now - old.stat().st_mtime > INITRD_KEEP_S:
                old.unlink()
    return out


def write_overlay(out: Path, files: Mapping[str, bytes | tuple[bytes, int]]) -> Path:
    """An extra initrd (gzip'd newc cpio) holding ``files`` (guest path -> data or (data, mode)).

    Parent directories are added with the modes the test base (and TC) give them -- the kernel applies
    a directory entry's mode to an existing directory, so a plain 0755 ``tmp`` would strip /tmp's
    sticky world-writable mode. Deterministic: same input, same bytes.
    """
    modes = {**dict(ROOT_DIRS), **OVERLAY_DIRS}
    cpio = _cpio()
    dirs: set[str] = set()
    for name in sorted(files):
        rel = name.strip("/")
        parts = Path(rel).parts
        for i in range(1, len(parts)):
            sub = "/".join(parts[:i])
            if sub not in dirs:
                dirs.add(sub)
                cpio.add_dir(sub, modes.get(sub, 0o755), gid=STAFF_GID if sub in OVERLAY_DIRS else 0)
        value = files[name]
        data, mode = value if isinstance(value, tuple) else (value, 0o644)
        cpio.add_file(rel, data, mode)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(compress(cpio.finish()))
    return out


# ------------------------------------------------------------------------------------------------- API
def ensure_base(arch: Arch, *, refresh: bool = False, flavour: str | None = None) -> GuestBase:
    """The guest base for ``arch``, built once and cached.

    Without ``refresh`` a cached kernel for the arch is reused without asking apt; with it, apt names the
    kernel version again (a newer one gets its own cache entry). The initrd is rebuilt whenever the test
    base's files change. ``flavour``: another Debian kernel flavour than the arch's own (``cloud-amd64``
    for the small-RAM guests, see qemu/tc-base/README.md), same test base.
    """
    gdir = _guest_dir(arch)
    current = gdir / ("current" if flavour is None else f"current-{flavour}")
    with _locked(arch):
        kit: Path | None = None
        if not refresh and current.is_file():
            candidate = gdir / _kit_name(arch, current.read_text().strip(), flavour)
            if _kit_ok(candidate, arch, flavour):
                kit = candidate
        if kit is None:
            try:
                debian.ensure_apt(arch)
                kpkg = debian.resolve_kernel(arch, flavour)
            except CommandFailed as exc:
                raise BuildError(f"cannot find a Debian kernel for {arch}: {exc}") from exc
            kit = gdir / _kit_name(arch, kpkg.kver, flavour)
            if not _kit_ok(kit, arch, flavour):
                log.info("building the %s guest kernel kit (%s)", arch, kpkg.kver)
                _build_kit(arch, kpkg, kit, flavour)
            current.write_text(kpkg.kver + "\n")
        meta = json.loads((kit / KIT_FILE).read_text())
        initrd = _write_initrd(arch, kit, meta)
    vmlinuz = kit / "vmlinuz"
    qemu_kernel = kit / "vmlinux" if meta["boot_kernel"] == "vmlinux" else vmlinuz
    return GuestBase(arch=arch, kver=meta["kver"], kernel=vmlinuz, qemu_kernel=qemu_kernel, initrd=initrd,
                     modules=tuple(meta["autoload"]), kernel_package=meta["kernel_package"],
                     busybox_package=meta["busybox_package"])
