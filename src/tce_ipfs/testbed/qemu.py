"""The one place that knows how to boot a guest under QEMU, per arch.

A ``Profile`` per arch comes from ``tce_ipfs.arch.Arch`` (binary, machine, cpu, console) plus
``qemu/<arch>.toml`` (memory, NIC model, extra arguments, which kernel image boots fastest, the guest
modules), where any ``Arch`` value can also be overridden.

Two entry points share one launcher (``_launch``): ``boot()`` is a direct kernel boot (``-kernel``,
initrds, ``-append``); ``boot_firmware()`` boots through the guest firmware from whatever boot media it
is given (``-cdrom X -boot d`` through isolinux, ``-boot n`` for PXE, ...). Either runs QEMU through
``proc.run()`` with a timeout. The serial console goes to a log file (a QEMU ``file`` chardev); a reader
thread follows that file, feeds an optional ``stream`` callback line by line and notes the first line
holding the sentinel, with the time it appeared. Acceleration is always TCG:
``/dev/kvm`` on the machines we run on is not usable for full guests (see qemu-facts), and we never
assume KVM without a successful probe boot.

Networking stays private. ``NetSpec`` is anything with ``qemu_args(arch)`` and ``wrap(argv)``:
``UserNet`` (from ``user_restricted()``) is QEMU user networking with ``restrict=on`` whose only way out
is a set of ``guestfwd`` forwards from ``10.0.2.100:PORT`` to ``127.0.0.1:HOSTPORT`` on the host, each
connection served by a fresh ``busybox nc``, plus optionally QEMU's built-in TFTP server and DHCP boot
file for PXE (both inside QEMU: nothing leaves the machine); ``tce_ipfs.testbed.lab.TapNet`` (a tap on a
private bridge in a network namespace) fits the same protocol.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import signal
import tempfile
import threading
import time
import tomllib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Protocol, TypedDict, Unpack, runtime_checkable

from tce_ipfs import proc, settings
from tce_ipfs.arch import Arch
from tce_ipfs.errors import CommandFailed, QemuError, UsageError

log = logging.getLogger(__name__)

SENTINEL = "TCE-IPFS-SENTINEL"
GUESTFWD_ADDR = "10.0.2.100"  # where guests reach forwarded host services (user networking)
ACCEL = "tcg"
_POLL = 0.05  # seconds between reads of the serial log


# TC's boot-time loaders the test base can emulate -> the qemu/tc-base/ overlay that adds it (None:
# the base rootfs as it is). tce-bootload is piCore's (tce-setup hands it the lists, not to tce-load).
LOADERS: dict[str, str | None] = {"tce-load": None, "tce-bootload": "picore"}


@dataclass(frozen=True)
class Profile:
    """How to run QEMU for one arch, and what its test-base guest needs."""

    arch: Arch
    binary: str
    machine: str
    cpu: str
    console: str
    memory: int  # MiB
    smp: int
    nic: str  # QEMU device model for a guest NIC
    extra: tuple[str, ...]  # extra QEMU arguments
    boot_kernel: str  # "vmlinuz" (as shipped) or "vmlinux" (uncompressed, x86_64 PVH: faster under TCG)
    autoload: tuple[str, ...]  # kernel modules the test base loads at boot (dependencies resolved)
    modules: tuple[str, ...]  # further modules shipped in the test base, not loaded
    loader: str = "tce-load"  # TC's boot-time loader the test base emulates ("tce-bootload": piCore's)

    def base_args(self) -> list[str]:
        return [self.binary, "-accel", ACCEL, "-M", self.machine, "-cpu", self.cpu,
                "-m", str(self.memory), "-smp", str(self.smp), "-display", "none", "-nodefaults",
                "-no-reboot", *self.extra]


def _str_list(value: Any, key: str, path: Path) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise UsageError(f"{path}: {key} must be a list of strings")
    return tuple(value)


@cache
def profile(arch: Arch) -> Profile:
    """The profile for ``arch``: ``Arch`` values, overridden and completed by ``qemu/<arch>.toml``."""
    path = settings.qemu_dir() / f"{arch.info.name}.toml"
    data: dict[str, Any] = {}
    if path.is_file():
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    q: dict[str, Any] = data.get("qemu", {})
    g: dict[str, Any] = data.get("guest", {})
    i = arch.info
    boot_kernel = str(g.get("boot_kernel", "vmlinuz"))
    if boot_kernel not in ("vmlinuz", "vmlinux"):
        raise UsageError(f"{path}: guest.boot_kernel must be \"vmlinuz\" or \"vmlinux\"")
    loader = str(g.get("loader", "tce-load"))
    if loader not in LOADERS:
        raise UsageError(f"{path}: guest.loader must be one of {', '.join(sorted(LOADERS))}")
    return Profile(
        arch=arch,
        binary=str(q.get("binary", i.qemu_binary)),
        machine=str(q.get("machine", i.qemu_machine)),
        cpu=str(q.get("cpu", i.qemu_cpu)),
        console=str(q.get("console", i.console)),
        memory=int(q.get("memory", 1024)),
        smp=int(q.get("smp", 1)),
        nic=str(q.get("nic", "virtio-net-pci")),
        extra=_str_list(q.get("extra", []), "qemu.extra", path),
        boot_kernel=boot_kernel,
        autoload=_str_list(g.get("autoload", ["virtio_pci", "virtio_net", "loop", "squashfs"]),
                           "guest.autoload", path),
        modules=_str_list(g.get("modules", []), "guest.modules", path),
        loader=loader,
    )


# ---------------------------------------------------------------------------------------------- networks
@runtime_checkable
class NetSpec(Protocol):
    """A guest NIC: the QEMU arguments for it, and how QEMU must be started for it to work."""

    def qemu_args(self, arch: Arch) -> list[str]: ...

    def wrap(self, argv: Sequence[str]) -> list[str]: ...


@dataclass(frozen=True)
class UserNet:
    """QEMU user networking, always ``restrict=on``: DHCP gives the guest 10.0.2.15/24 with no router
    and no DNS; the guest reaches exactly the forwarded services at ``10.0.2.100:<guest_port>``, each
    connection relayed by a fresh ``busybox nc 127.0.0.1 <host_port>`` on the host. 10.0.2.2 (the host)
    and everything beyond are refused.

    For PXE, ``tftp`` is a host directory served read-only by QEMU's own TFTP server (at 10.0.2.2, which
    slirp answers itself even with ``restrict=on``) and ``bootfile`` is the file name DHCP offers; the
    NIC's default option ROM (iPXE) does the PXE boot."""

    forwards: tuple[tuple[int, int], ...] = ()  # (guest port on 10.0.2.100, host port on 127.0.0.1)
    mac: str | None = None
    netdev_id: str = "n0"
    tftp: Path | None = None  # directory served by QEMU's TFTP server
    bootfile: str | None = None  # DHCP boot file name (BOOTP filename)

    def __post_init__(self) -> None:
        for gport, hport in self.forwards:
            for port in (gport, hport):
                if not (isinstance(port, int) and 0 < port < 65536):
                    raise UsageError(f"bad port in guest forward {gport} -> {hport}")
        if self.mac is not None and not re.fullmatch(r"(?:[0-9a-f]{2}:){5}[0-9a-f]{2}", self.mac):
            raise UsageError(f"bad MAC address {self.mac!r}")
        # QEMU splits -netdev values at commas: refuse them rather than escape them.
        for what, value in (("TFTP directory", self.tftp), ("bootfile", self.bootfile)):
            if value is not None and (not str(value) or any(c in str(value) for c in ",\n")):
                raise UsageError(f"bad {what} {str(value)!r}: must be non-empty, without ',' or newlines")

    def netdev(self) -> str:
        # No commas inside the cmd: QEMU would split the option there.
        parts = [f"user,id={self.netdev_id}", "restrict=on"]
        parts += [f"guestfwd=tcp:{GUESTFWD_ADDR}:{g}-cmd:busybox nc 127.0.0.1 {h}" for g, h in self.forwards]
        if self.tftp is not None:
            parts.append(f"tftp={self.tftp}")
        if self.bootfile is not None:
            parts.append(f"bootfile={self.bootfile}")
        return ",".join(parts)

    def qemu_args(self, arch: Arch) -> list[str]:
        if self.tftp is not None and not Path(self.tftp).is_dir():
            raise UsageError(f"TFTP directory {self.tftp}: no such directory")
        device = f"{profile(arch).nic},netdev={self.netdev_id}"
        if self.mac:
            device += f",mac={self.mac}"
        return ["-netdev", self.netdev(), "-device", device]

    def wrap(self, argv: Sequence[str]) -> list[str]:
        return list(argv)


def user_restricted(forwards: Mapping[int, int] | None = None, *, mac: str | None = None,
                    tftp: Path | None = None, bootfile: str | None = None) -> UserNet:
    """Private user networking; ``forwards`` maps guest ports on 10.0.2.100 to host ports on 127.0.0.1.
    ``tftp`` (made absolute) and ``bootfile``: QEMU's TFTP server and DHCP boot file, for PXE boots."""
    return UserNet(forwards=tuple(sorted((forwards or {}).items())), mac=mac,
                   tftp=Path(tftp).absolute() if tftp is not None else None, bootfile=bootfile)


def _check_private(args: Sequence[str]) -> None:
    """Refuse any user-mode netdev without restrict=on, whoever built the arguments."""
    for i, arg in enumerate(args):
        if arg in ("-netdev", "-nic") and i + 1 < len(args):
            value = args[i + 1]
            if value.startswith("user") and "restrict=on" not in value.split(","):
                raise UsageError(f"refusing unrestricted user networking: {value!r}",
                                 hint="use qemu.user_restricted(...) (restrict=on)")
        if arg == "-net" or arg.startswith("-net,") or arg.startswith("-netdev=") or arg.startswith("-nic="):
            raise UsageError(f"refusing QEMU network option {arg!r}: use a NetSpec")


# ------------------------------------------------------------------------------------------------ boot
@dataclass
class BootResult:
    ok: bool  # the sentinel was seen
    sentinel_line: str | None
    log_text: str  # the whole serial console
    seconds: float  # QEMU start to sentinel (or to the end, without one)
    exit_code: int  # QEMU's exit code; -1 when killed (timeout or stop_on_sentinel)
    timed_out: bool = False
    total_seconds: float = 0.0
    log_path: Path | None = None
    qemu_stderr: str = ""
    argv: list[str] = field(default_factory=list)
    # QEMU's own CPU time (user + system) up to the sentinel (or its last reading): the guest's work,
    # which a busy host stretches in wall time much less than it stretches ``seconds``.
    cpu_seconds: float | None = None

    @property
    def panicked(self) -> bool:
        return "Kernel panic" in self.log_text

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text.splitlines()[-lines:])

    def require(self) -> BootResult:
        """Raise ``QemuError`` (with the end of the console) unless the sentinel was seen."""
        if not self.ok:
            why = ("timed out" if self.timed_out else "kernel panic" if self.panicked
                   else f"QEMU exited {self.exit_code}")
            raise QemuError(f"guest did not print its sentinel ({why} after {self.total_seconds:.1f} s)"
                            + (f"; QEMU: {self.qemu_stderr.strip()}" if self.qemu_stderr.strip() else "")
                            + f"\n--- console (last lines) ---\n{self.tail()}",
                            hint=f"full console log: {self.log_path}" if self.log_path else None)
        return self


def _cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process from /proc (None once it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) ": state is fields[0]
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class _Follower(threading.Thread):
    """Follows the serial log file; streams whole lines; notes the first sentinel line, its time and
    QEMU's CPU time by then (read from ``pidfile``'s process at every poll)."""

    def __init__(self, path: Path, sentinel: str, t0: float, stream: Callable[[str], None] | None,
                 on_sentinel: Callable[[], None] | None, pidfile: Path | None = None) -> None:
        super().__init__(daemon=True, name="qemu-serial")
        self.path, self.sentinel, self.t0 = path, sentinel, t0
        self.stream, self.on_sentinel = stream, on_sentinel
        self.pidfile = pidfile
        self.stop_event = threading.Event()
        self.sentinel_line: str | None = None
        self.sentinel_at: float | None = None
        self.cpu: float | None = None  # at the sentinel once seen, else the last reading
        self._pid: int | None = None
        self._partial = b""
        self._pos = 0

    def _read_cpu(self) -> None:
        if self.pidfile is None or (self.sentinel_line is not None and self.cpu is not None):
            return
        if self._pid is None:
            with contextlib.suppress(OSError, ValueError):
                self._pid = int(self.pidfile.read_text().strip())
        if self._pid is not None:
            cpu = _cpu_seconds(self._pid)
            if cpu is not None:
                self.cpu = cpu

    def _lines(self, data: bytes, final: bool) -> Iterator[str]:
        self._partial += data
        *whole, self._partial = self._partial.split(b"\n")
        if final and self._partial:
            whole.append(self._partial)
            self._partial = b""
        for raw in whole:
            yield raw.decode("utf-8", errors="replace").rstrip("\r")

    def poll(self, final: bool = False) -> None:
        try:
            with self.path.open("rb") as fh:
                fh.seek(self._pos)
                data = fh.read()
        except FileNotFoundError:
            return
        self._read_cpu()
        self._pos += len(data)
        for line in self._lines(data, final):
            if self.stream is not None:
                self.stream(line)
            if self.sentinel_line is None and self.sentinel in line:
                self._read_cpu()
                self.sentinel_line = line.strip()
                self.sentinel_at = time.monotonic() - self.t0
                if self.on_sentinel is not None:
                    self.on_sentinel()

    def run(self) -> None:
        while not self.stop_event.wait(_POLL):
            self.poll()


@contextlib.contextmanager
def _initrd(initrds: Sequence[Path], tmp: Path) -> Iterator[Path | None]:
    """One initrd file for QEMU: the only one given, or the given ones concatenated (the kernel
    unpacks concatenated compressed cpio archives in order, later files overwriting earlier ones)."""
    if not initrds:
        yield None
        return
    for path in initrds:
        if not Path(path).is_file():
            raise UsageError(f"initrd {path}: no such file")
    if len(initrds) == 1:
        yield Path(initrds[0])
        return
    joined = tmp / "initrd.joined"
    with joined.open("wb") as out:
        for path in initrds:
            with Path(path).open("rb") as src:
                shutil.copyfileobj(src, out, 1 << 20)
    yield joined


_KERNEL_OPTIONS = ("-kernel", "-initrd", "-append", "-dtb")


def _argv(arch: Arch, media: Sequence[str], *, serial_log: Path, net: NetSpec | None,
          extra_args: Sequence[str], memory: int | None, pidfile: Path | None) -> list[str]:
    """The QEMU argv: the arch profile, the serial console in ``serial_log``, ``media`` (what to boot),
    the NIC and ``extra_args``; checked for private networking, then wrapped by ``net``."""
    argv = profile(arch).base_args()
    if memory is not None:
        argv[argv.index("-m") + 1] = str(memory)
    argv += ["-chardev", f"file,id=con0,path={serial_log}", "-serial", "chardev:con0", *media]
    if pidfile is not None:
        argv += ["-pidfile", str(pidfile)]
    if net is not None:
        argv += net.qemu_args(arch)
    argv += list(extra_args)
    _check_private(argv)
    return net.wrap(argv) if net is not None else argv


def _kernel_media(arch: Arch, kernel: Path, initrd: Path | None, append: str) -> list[str]:
    words = append.split()
    prefix = [] if any(w.startswith("console=") for w in words) else [f"console={profile(arch).console}"]
    if not any(w.startswith("panic=") for w in words):
        prefix.append("panic=-1")  # with -no-reboot a panic ends QEMU instead of hanging
    media = ["-kernel", str(kernel)]
    if initrd is not None:
        media += ["-initrd", str(initrd)]
    return [*media, "-append", " ".join([*prefix, *words])]


def command(arch: Arch, kernel: Path, initrd: Path | None, append: str, *, serial_log: Path,
            net: NetSpec | None = None, extra_args: Sequence[str] = (), memory: int | None = None,
            pidfile: Path | None = None) -> list[str]:
    """The QEMU argv for a direct kernel boot with the serial console in ``serial_log``."""
    return _argv(arch, _kernel_media(arch, kernel, initrd, append), serial_log=serial_log, net=net,
                 extra_args=extra_args, memory=memory, pidfile=pidfile)


def _check_firmware_media(media: Sequence[str], extra_args: Sequence[str]) -> None:
    if isinstance(media, str):
        raise UsageError("media must be a sequence of QEMU arguments, not one string")
    for arg in (*media, *extra_args):
        if arg in _KERNEL_OPTIONS:
            raise UsageError(f"{arg} is a direct kernel boot option: use qemu.boot(), not a firmware boot")


def firmware_command(arch: Arch, media: Sequence[str], *, serial_log: Path, net: NetSpec | None = None,
                     extra_args: Sequence[str] = (), memory: int | None = None,
                     pidfile: Path | None = None) -> list[str]:
    """The QEMU argv for a firmware boot from ``media`` (e.g. ``["-cdrom", iso, "-boot", "d"]`` or
    ``["-boot", "n"]``), serial console in ``serial_log``. Direct-kernel options belong to ``command()``."""
    _check_firmware_media(media, extra_args)
    return _argv(arch, media, serial_log=serial_log, net=net, extra_args=extra_args, memory=memory,
                 pidfile=pidfile)


class BootOptions(TypedDict, total=False):
    """The keyword options ``boot()`` and ``boot_firmware()`` share (defaults as in ``_launch``)."""

    sentinel: str  # the line prefix that means "the guest check finished" (SENTINEL)
    net: NetSpec | None  # the NIC and its networking (none)
    extra_args: Sequence[str]  # more QEMU arguments (checked for private networking)
    log_path: Path | None  # where the serial console goes (a temporary file)
    stream: Callable[[str], None] | None  # gets each console line as it arrives
    stop_on_sentinel: bool  # kill QEMU once the sentinel appears (False: wait for it to exit)
    memory: int | None  # guest RAM in MiB (the arch profile's)


def _launch(arch: Arch, media: Sequence[str], *, tmp: Path, timeout: float, what: str,
            sentinel: str = SENTINEL, net: NetSpec | None = None, extra_args: Sequence[str] = (),
            log_path: Path | None = None, stream: Callable[[str], None] | None = None,
            stop_on_sentinel: bool = False, memory: int | None = None) -> BootResult:
    """Run QEMU booting ``media`` under TCG and wait for it to exit (or be killed after ``timeout``
    seconds, or at the sentinel with ``stop_on_sentinel``), following the serial console meanwhile.
    Work files go in ``tmp``; the console in ``log_path`` when given."""
    if timeout <= 0:
        raise UsageError("timeout must be positive")
    serial = Path(log_path) if log_path is not None else tmp / "console.log"
    serial.parent.mkdir(parents=True, exist_ok=True)
    serial.unlink(missing_ok=True)
    pidfile = tmp / "qemu.pid"
    argv = _argv(arch, media, serial_log=serial, net=net, extra_args=extra_args, memory=memory,
                 pidfile=pidfile)
    killed = threading.Event()

    def stop() -> None:
        killed.set()
        with contextlib.suppress(OSError, ValueError):
            os.kill(int(pidfile.read_text().strip()), signal.SIGKILL)

    t0 = time.monotonic()
    follower = _Follower(serial, sentinel, t0, stream, stop if stop_on_sentinel else None, pidfile)
    follower.start()
    timed_out = False
    stderr = ""
    try:
        done = proc.run(argv, timeout=timeout, check=False, input=b"", what=what)
        code = done.returncode
        stderr = (done.stderr or b"").decode(errors="replace")
    except CommandFailed as exc:
        if exc.returncode != -1:
            raise
        timed_out, code = True, -1
    finally:
        follower.stop_event.set()
        follower.join()
    total = time.monotonic() - t0
    follower.poll(final=True)
    if killed.is_set():
        code = -1
    log_text = serial.read_text(errors="replace") if serial.exists() else ""
    if stderr.strip():
        log.debug("QEMU stderr: %s", stderr.strip())
    seen = follower.sentinel_line is not None
    return BootResult(
        ok=seen,
        sentinel_line=follower.sentinel_line,
        log_text=log_text,
        seconds=follower.sentinel_at if follower.sentinel_at is not None else total,
        exit_code=code,
        timed_out=timed_out and not (seen and stop_on_sentinel),
        total_seconds=total,
        log_path=Path(log_path) if log_path is not None else None,
        qemu_stderr=stderr,
        argv=argv,
        cpu_seconds=follower.cpu,
    )


def boot(arch: Arch, kernel: Path, initrds: Sequence[Path], append: str = "", *, timeout: float,
         **opts: Unpack[BootOptions]) -> BootResult:
    """Boot ``kernel`` with ``initrds`` (concatenated) and ``append`` under TCG; wait for QEMU to exit.

    QEMU is killed after ``timeout`` seconds (``timed_out``), or as soon as the sentinel appears with
    ``stop_on_sentinel``. ``console=`` and ``panic=-1`` are added to ``append`` unless present. The
    serial console is written to ``log_path`` (a temporary file when not given) and each line is passed
    to ``stream`` as it arrives. Never raises for a failed guest: check ``ok`` or call ``require()``.
    """
    if not Path(kernel).is_file():
        raise UsageError(f"kernel {kernel}: no such file")
    with tempfile.TemporaryDirectory(prefix="tce-ipfs-qemu-") as tmp_name:
        tmp = Path(tmp_name)
        with _initrd(initrds, tmp) as initrd:
            return _launch(arch, _kernel_media(arch, Path(kernel), initrd, append), tmp=tmp, timeout=timeout,
                           what=f"QEMU ({arch.info.name} guest)", **opts)


def boot_firmware(arch: Arch, *, media: Sequence[str], timeout: float,
                  **opts: Unpack[BootOptions]) -> BootResult:
    """Boot through the guest firmware (no ``-kernel``) from ``media``, QEMU arguments such as
    ``["-cdrom", iso, "-boot", "d"]`` (isolinux) or ``["-boot", "n"]`` (PXE, with a ``net`` such as
    ``user_restricted(tftp=..., bootfile="pxelinux.0")``). Otherwise exactly as ``boot()``: timeout,
    serial console in ``log_path`` and to ``stream``, sentinel, private networking; never raises for a
    failed guest. The kernel command line is the boot media's business (``console=``, ``panic=``)."""
    _check_firmware_media(media, opts.get("extra_args", ()))
    with tempfile.TemporaryDirectory(prefix="tce-ipfs-qemu-") as tmp_name:
        return _launch(arch, media, tmp=Path(tmp_name), timeout=timeout,
                       what=f"QEMU ({arch.info.name} firmware boot)", **opts)
