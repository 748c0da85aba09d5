"""The guest base builder and the TC-layout test base's files, without booting anything.

The real bases (Debian .debs) and their boots are in test_qemu.py; QEMU command lines in test_qemu_args.py.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from support.media import cpio_listing
from tce_ipfs import proc
from tce_ipfs.arch import Arch
from tce_ipfs.build import debian
from tce_ipfs.errors import BuildError
from tce_ipfs.testbed import guest

ROOTFS = guest.base_dir() / "rootfs"
SCRIPTS = ["init", "etc/init.d/rcS", "etc/init.d/tc-config", "etc/init.d/tc-functions",
           "etc/init.d/dhcp.sh", "usr/bin/tce-setup", "usr/bin/tce-load", "usr/bin/sudo",
           "usr/bin/sethostname", "usr/share/udhcpc/default.script", "opt/bootsync.sh", "opt/bootlocal.sh",
           "../picore/usr/bin/tce-bootload"]


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
    listing = {line.split()[-1]: line.split() for line in cpio_listing(a)}
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
    k = debian.resolve_kernel(Arch.AARCH64)
    assert (k.package, k.version, k.kver) == ("linux-image-6.1.0-50-arm64", "6.1.176-1", "6.1.0-50-arm64")


def test_another_kernel_flavour_gets_its_own_package_and_kit(monkeypatch: pytest.MonkeyPatch) -> None:
    """The small-RAM guests' cloud-amd64 kernel: its own apt package, its own kit directory, booted as
    the bzImage it is (lz4: extract_vmlinux reads xz only)."""
    answers = {
        "linux-image-cloud-amd64:amd64": "Package: linux-image-cloud-amd64\nVersion: 6.1.192-3\n"
                                         "Depends: linux-image-6.1.0-57-cloud-amd64 (= 6.1.192-3)\n",
        "linux-image-6.1.0-57-cloud-amd64:amd64": "Package: linux-image-6.1.0-57-cloud-amd64\n"
                                                  "Version: 6.1.192-3\n",
    }

    def fake_output(args: list[str], **_: object) -> str:
        return answers[str(args[-1])]

    monkeypatch.setattr(proc, "output", fake_output)
    k = debian.resolve_kernel(Arch.X86_64, "cloud-amd64")
    assert (k.package, k.kver) == ("linux-image-6.1.0-57-cloud-amd64", "6.1.0-57-cloud-amd64")
    assert guest._boot_kernel(Arch.X86_64, None) == "vmlinux"
    assert guest._boot_kernel(Arch.X86_64, "cloud-amd64") == "vmlinuz"
    kver = "6.1.0-57-amd64"
    assert guest._kit_name(Arch.X86_64, kver) != guest._kit_name(Arch.X86_64, kver, "cloud-amd64")
