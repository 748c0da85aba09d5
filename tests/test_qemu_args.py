"""The QEMU harness without a guest: profiles, command lines, private networking, initrd joining.

The boots themselves are in test_qemu.py (marked ``qemu``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tce_ipfs.arch import Arch
from tce_ipfs.errors import UsageError
from tce_ipfs.testbed import qemu


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


# ------------------------------------------------------------------ firmware boots: argv only

def test_firmware_command_line(tmp_path: Path) -> None:
    iso = tmp_path / "x.iso"
    argv = qemu.firmware_command(Arch.X86_64, ["-cdrom", str(iso), "-boot", "d"], serial_log=tmp_path / "log",
                                 memory=512, net=qemu.user_restricted({4001: 5001}))
    assert argv[0] == "qemu-system-x86_64"
    assert argv[argv.index("-cdrom") + 1] == str(iso) and argv[argv.index("-boot") + 1] == "d"
    assert argv[argv.index("-m") + 1] == "512"
    assert f"file,id=con0,path={tmp_path / 'log'}" in argv
    assert not {"-kernel", "-initrd", "-append"} & set(argv)
    assert "restrict=on" in argv[argv.index("-netdev") + 1].split(",")
    # the same argv as a direct kernel boot, but for what is booted
    kernel = qemu.command(Arch.X86_64, tmp_path / "k", None, "", serial_log=tmp_path / "log", memory=512,
                          net=qemu.user_restricted({4001: 5001}))
    assert kernel[:kernel.index("-kernel")] == argv[:argv.index("-cdrom")]


def test_firmware_command_refuses(tmp_path: Path) -> None:
    log = tmp_path / "log"
    for media, extra in ([["-kernel", "k"], []], [["-boot", "n"], ["-append", "x"]],
                         [["-boot", "n"], ["-netdev", "user,id=x"]], [["-boot", "n"], ["-nic", "user"]],
                         [["-boot", "n", "-net", "user"], []]):
        with pytest.raises(UsageError):
            qemu.firmware_command(Arch.X86_64, media, serial_log=log, extra_args=extra)
    with pytest.raises(UsageError):
        qemu.firmware_command(Arch.X86_64, "-boot n", serial_log=log)
    with pytest.raises(UsageError):
        qemu.boot_firmware(Arch.X86_64, media=["-boot", "n"], timeout=0)


def test_user_net_pxe_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tftp").mkdir()
    net = qemu.user_restricted({4001: 5001}, tftp=Path("tftp"), bootfile="pxelinux.0")
    assert net.tftp == tmp_path / "tftp"  # made absolute: QEMU may run elsewhere
    assert net.netdev().split(",") == [
        "user", "id=n0", "restrict=on", "guestfwd=tcp:10.0.2.100:4001-cmd:busybox nc 127.0.0.1 5001",
        f"tftp={tmp_path / 'tftp'}", "bootfile=pxelinux.0"]
    assert qemu.user_restricted().netdev() == "user,id=n0,restrict=on"
    for bad in ({"tftp": tmp_path / "a,b"}, {"bootfile": "x,restrict=off"}, {"bootfile": ""}):
        with pytest.raises(UsageError):
            qemu.user_restricted(**bad)
    with pytest.raises(UsageError):
        qemu.user_restricted(tftp=tmp_path / "missing").qemu_args(Arch.X86_64)
