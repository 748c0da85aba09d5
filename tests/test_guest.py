"""The guest base builder, the TC-layout test base's files, and the QEMU harness's pure parts.

Fast tests run everywhere; those marked ``qemu`` need the Debian .debs (built once into the cache) and
boot guests.
"""

from __future__ import annotations

import gzip
import shutil
import subprocess
from pathlib import Path

import pytest

from tce_ipfs import guest, proc, qemu
from tce_ipfs.arch import Arch
from tce_ipfs.errors import BuildError, QemuError, UsageError

ROOTFS = guest.base_dir() / "rootfs"
SCRIPTS = ["init", "etc/init.d/rcS", "etc/init.d/tc-config", "etc/init.d/tc-functions",
           "etc/init.d/dhcp.sh", "usr/bin/tce-setup", "usr/bin/tce-load", "usr/bin/sudo",
           "usr/bin/sethostname", "usr/share/udhcpc/default.script", "opt/bootsync.sh", "opt/bootlocal.sh",
           "../picore/usr/bin/tce-bootload"]


def _cpio_list(gz: Path) -> list[str]:
    """`cpio -itv` of a gzip'd newc archive (GNU cpio validates the format as it goes)."""
    out = proc.output(["cpio", "-itvn", "--quiet"], input=gzip.decompress(gz.read_bytes()))
    return out.splitlines()


# ---------------------------------------------------------------------------------------- test base
def test_base_scripts_exist_and_are_executable() -> None:
    for rel in SCRIPTS:
        path = ROOTFS / rel
        assert path.is_file(), rel
        if rel != "etc/init.d/tc-functions":  # sourced, like TC's
            assert path.stat().st_mode & 0o111, f"{rel} is not executable"
        first = path.read_text().splitlines()[:3]
        assert any("test base" in line for line in first) or rel.startswith("opt/"), \
            f"{rel} does not say what it emulates"


def test_base_scripts_pass_shellcheck() -> None:
    if shutil.which("shellcheck") is None:
        pytest.fail("shellcheck not found: run bootstrap/setup", pytrace=False)
    # SC3043: `local` (busybox ash has it); SC2013: word-splitting /proc/cmdline on purpose, as TC does.
    done = proc.run(["shellcheck", "-s", "sh", "-x", "-e", "SC3043,SC2013,SC1091",
                     *[ROOTFS / rel for rel in SCRIPTS]], check=False)
    assert done.returncode == 0, (done.stdout or b"").decode()


def test_applet_list_covers_what_the_base_uses() -> None:
    applets = {Path(a).name: a for a in guest.applets()}
    for name, where in {"sh": "bin/sh", "init": "sbin/init", "su": "bin/su", "mount": "bin/mount",
                        "insmod": "sbin/insmod", "udhcpc": "sbin/udhcpc", "id": "usr/bin/id",
                        "cpio": "bin/cpio", "wget": "usr/bin/wget", "md5sum": "usr/bin/md5sum",
                        "cttyhack": "bin/cttyhack", "login": "bin/login", "realpath": "usr/bin/realpath",
                        "depmod": "sbin/depmod", "losetup": "sbin/losetup", "awk": "usr/bin/awk"}.items():
        assert applets.get(name) == where, name
    # the tools TC has and this busybox lacks must not sneak in as applets
    for absent in ("sudo", "adduser", "blkid", "udevadm", "ldconfig"):
        assert absent not in applets


def _sh(script: str) -> str:
    busybox = shutil.which("busybox")
    if busybox is None:
        pytest.fail("busybox not found: run bootstrap/setup", pytrace=False)
    done = subprocess.run([busybox, "sh", "-c", script], capture_output=True, text=True, check=False,
                          timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_tc_functions_bootparams() -> None:
    out = _sh(f""". {ROOTFS}/etc/init.d/tc-functions
CMDLINE=" quiet tce=ipfs:bafyX/sub lst=my.lst nodhcp user=bob tce.peers=a,b"
getbootparam tce; getbootparam lst; getbootparam tce.peers
getbootparam missing || echo missing-absent
checkbootparam nodhcp && echo nodhcp-set
checkbootparam base || echo base-unset
""")
    assert out.split() == ["ipfs:bafyX/sub", "my.lst", "a,b", "missing-absent", "nodhcp-set", "base-unset"]


def test_tce_setup_tce_value_splitting_matches_tc() -> None:
    """tce=<dev>[/dir]: device before the first '/', dir after it or 'tce' (process_normal_tcedir)."""
    out = _sh(r"""for TCE in ipfs:bafyX ipfs:bafyX/sub sda1 sda1/my/dir UUID=ab12; do
	TCE_DEVICE="${TCE%%/*}"; TCE_DIR="${TCE#*/}"
	[ "$TCE_DEVICE" = "$TCE_DIR" ] && TCE_DIR="tce"
	echo "$TCE_DEVICE|$TCE_DIR"
done""")
    assert out.split() == ["ipfs:bafyX|tce", "ipfs:bafyX|sub", "sda1|tce", "sda1|my/dir", "UUID=ab12|tce"]
    text = (ROOTFS / "usr/bin/tce-setup").read_text()
    assert 'TCE_DEVICE="${TCE%%/*}"' in text and 'TCE_DIR="${TCE#*/}"' in text


# ----------------------------------------------------------------------------------------- cpio
def test_overlay_is_valid_deterministic_and_keeps_dir_modes(tmp_path: Path) -> None:
    files: dict[str, bytes | tuple[bytes, int]] = {
        "tmp/builtin/onboot.lst": b"hello\n",
        "usr/local/tce.installed/x": (b"#!/bin/sh\n", 0o755),
        "opt/bootsync.sh": (b"#!/bin/sh\n", 0o755),
    }
    a = guest.write_overlay(tmp_path / "a.gz", files)
    b = guest.write_overlay(tmp_path / "b.gz", dict(reversed(list(files.items()))))
    assert a.read_bytes() == b.read_bytes()
    listing = {line.split()[-1]: line.split() for line in _cpio_list(a)}
    assert listing["tmp"][0] == "drwxrwxrwt"  # a plain 0755 would strip /tmp's mode at unpack
    assert listing["usr/local/tce.installed"][0] == "drwxrwxr-x"
    assert listing["usr/local/tce.installed"][3] == "50"  # gid staff
    assert listing["usr/local/tce.installed/x"][0] == "-rwxr-xr-x"
    assert listing["tmp/builtin/onboot.lst"][0] == "-rw-r--r--"


def test_extract_vmlinux_rejects_non_xz(tmp_path: Path) -> None:
    bogus = tmp_path / "vmlinuz"
    bogus.write_bytes(b"MZ" + b"\0" * 100)
    with pytest.raises(BuildError, match="no xz payload"):
        guest.extract_vmlinux(bogus, tmp_path / "vmlinux")


def test_resolve_kernel_reads_the_versioned_dependency(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = {
        "linux-image-arm64:arm64": "Package: linux-image-arm64\nVersion: 6.1.176-1\n"
                                   "Depends: linux-image-6.1.0-50-arm64 (= 6.1.176-1)\n",
        "linux-image-6.1.0-50-arm64:arm64": "Package: linux-image-6.1.0-50-arm64\nVersion: 6.1.176-1\n",
    }

    def fake_output(args: list[str], **_: object) -> str:
        return answers[str(args[-1])]

    monkeypatch.setattr(proc, "output", fake_output)
    k = guest.resolve_kernel(Arch.AARCH64)
    assert (k.package, k.version, k.kver) == ("linux-image-6.1.0-50-arm64", "6.1.176-1", "6.1.0-50-arm64")


# ---------------------------------------------------------------------------------------- harness
@pytest.mark.parametrize("arch", list(Arch), ids=str)
def test_profiles(arch: Arch) -> None:
    prof = qemu.profile(arch)
    assert prof.binary == arch.info.qemu_binary and prof.console == arch.info.console
    assert prof.memory >= 256 and prof.boot_kernel in ("vmlinuz", "vmlinux")
    assert "virtio_net" in prof.autoload and "squashfs" in prof.autoload and "loop" in prof.autoload
    args = prof.base_args()
    assert args[args.index("-accel") + 1] == "tcg"
    assert "-no-reboot" in args and "-nodefaults" in args
    assert prof.loader == ("tce-bootload" if arch is Arch.AARCH64 else "tce-load")


def test_user_net_is_restricted_with_cmd_forwards() -> None:
    net = qemu.user_restricted({8080: 41234, 4001: 40001})
    args = net.qemu_args(Arch.AARCH64)
    netdev = args[args.index("-netdev") + 1]
    opts = netdev.split(",")
    assert opts[0] == "user" and "restrict=on" in opts
    assert "guestfwd=tcp:10.0.2.100:8080-cmd:busybox nc 127.0.0.1 41234" in opts
    assert "guestfwd=tcp:10.0.2.100:4001-cmd:busybox nc 127.0.0.1 40001" in opts
    assert args[args.index("-device") + 1] == "virtio-net-pci,netdev=n0"
    assert isinstance(net, qemu.NetSpec)
    with pytest.raises(UsageError):
        qemu.user_restricted({0: 80})
    with pytest.raises(UsageError):
        qemu.user_restricted({80: 70000})


def test_command_refuses_unrestricted_networking(tmp_path: Path) -> None:
    k = tmp_path / "k"
    for bad in (["-netdev", "user,id=x"], ["-nic", "user"], ["-net", "user"]):
        with pytest.raises(UsageError):
            qemu.command(Arch.X86_64, k, None, "", serial_log=tmp_path / "log", extra_args=bad)


def test_command_line(tmp_path: Path) -> None:
    argv = qemu.command(Arch.AARCH64, tmp_path / "k", tmp_path / "i", "quiet nodhcp",
                        serial_log=tmp_path / "log", memory=512)
    assert argv[0] == "qemu-system-aarch64"
    assert argv[argv.index("-append") + 1] == "console=ttyAMA0 panic=-1 quiet nodhcp"
    assert argv[argv.index("-m") + 1] == "512"
    assert argv[argv.index("-initrd") + 1] == str(tmp_path / "i")
    assert f"file,id=con0,path={tmp_path / 'log'}" in argv
    argv = qemu.command(Arch.X86_64, tmp_path / "k", None, "console=tty0 panic=5",
                        serial_log=tmp_path / "log")
    assert argv[argv.index("-append") + 1] == "console=tty0 panic=5"
    assert "-initrd" not in argv


def test_initrds_are_concatenated(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"first")
    b.write_bytes(b"second")
    with qemu._initrd([a, b], tmp_path) as joined:
        assert joined is not None and joined.read_bytes() == b"firstsecond"
    with qemu._initrd([a], tmp_path) as single:
        assert single == a
    with pytest.raises(UsageError), qemu._initrd([tmp_path / "missing"], tmp_path):
        pass


# ----------------------------------------------------------------------- real bases (Debian .debs)
@pytest.mark.qemu
@pytest.mark.parametrize("arch", [Arch.X86_64, Arch.AARCH64], ids=str)
def test_base_initrd_contents(arch: Arch) -> None:
    base = guest.ensure_base(arch)
    assert base.kver.endswith(arch.info.kernel_flavour)
    assert base.kernel.is_file() and base.qemu_kernel.is_file()
    again = guest.ensure_base(arch)  # cached: same files
    assert again.initrd == base.initrd
    listing = {}
    for line in _cpio_list(base.initrd):
        parts = line.split()
        name = parts[parts.index("->") - 1] if "->" in parts else parts[-1]
        listing[name] = line
    for name in ("init", "etc/inittab", "etc/init.d/tc-config", "usr/bin/tce-setup", "usr/bin/tce-load",
                 "usr/share/udhcpc/default.script", "opt/bootsync.sh", "bin/busybox", "sbin/udhcpc"):
        assert name in listing, name
    assert listing["dev/console"].startswith("c")
    assert listing["tmp"].startswith("drwxrwxrwt")
    assert listing["bin/busybox.suid"].startswith("-rwsr-xr-x")
    assert listing["etc/shadow"].startswith("-rw-------")
    assert listing["etc/sudoers"].startswith("-r--r-----")
    assert "etc/skel/.profile" in listing
    # the piCore flavour (aarch64) brings piCore's loader; tce-setup hands its lists to it
    assert ("usr/bin/tce-bootload" in listing) == (qemu.profile(arch).loader == "tce-bootload")
    assert "-> /bin/busybox.suid" in listing["bin/su"]
    assert "-> /proc/mounts" in listing["etc/mtab"]
    moddir = f"lib/modules/{base.kver}"
    assert f"{moddir}/modules.dep" in listing
    assert all(f"{moddir}/{m}" in listing for m in base.modules)
    names = [Path(m).stem for m in base.modules]
    assert names.index("net_failover") < names.index("virtio_net")  # dependencies first
    if arch is Arch.X86_64:
        assert names.index("virtio_ring") < names.index("virtio")
    assert f"{moddir}/kernel/fs/overlayfs/overlay.ko" in listing  # shipped, not autoloaded
    assert "overlay" not in names


@pytest.mark.qemu
def test_boot_timeout_and_stop_on_sentinel(tmp_path: Path) -> None:
    arch = Arch.AARCH64
    base = guest.ensure_base(arch)
    lines: list[str] = []
    # The stock bootsync.sh does not power off: the guest sits at its shell.
    stopped = qemu.boot(arch, base.qemu_kernel, [base.initrd], "quiet nodhcp", timeout=120,
                        sentinel="Loading extensions", stop_on_sentinel=True, stream=lines.append,
                        log_path=tmp_path / "a.log")
    assert stopped.ok and not stopped.timed_out and stopped.exit_code == -1
    assert any("Loading extensions" in line for line in lines)
    assert (tmp_path / "a.log").read_text().count("Booting") == 1
    hung = qemu.boot(arch, base.qemu_kernel, [base.initrd], "quiet nodhcp", timeout=8,
                     sentinel="never printed", log_path=tmp_path / "b.log")
    assert not hung.ok and hung.timed_out and hung.exit_code == -1
    with pytest.raises(QemuError, match="timed out"):
        hung.require()
