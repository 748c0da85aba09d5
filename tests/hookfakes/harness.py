"""Run the tce-ipfs boot hook on the host against a fake TC root.

The hook is installed the way TC does it: ``tce_ipfs.media.initrd.hook_cpio`` builds the inner archive,
busybox ``cpio -idmu`` unpacks it into the fake root, and the entry point runs with a real shell
(busybox ``sh`` or ``dash``). PATH holds only the fakes in ``hookfakes/bin`` (ipfs, wget, udhcpc, ip,
mount, uname, modprobe) followed by busybox applets -- so the hook is also checked to use nothing
but busybox.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tce_ipfs.media import initrd

FAKES = Path(__file__).resolve().parent / "bin"
BUSYBOX = shutil.which("busybox") or "/bin/busybox"
SHELLS = {"busybox": [BUSYBOX, "sh"], "dash": [shutil.which("dash") or "/bin/dash"]}
APPLETS = [
    "sh",
    "nc",
    "mkfifo",
    "ash",
    "awk",
    "sed",
    "grep",
    "egrep",
    "md5sum",
    "timeout",
    "sleep",
    "wget",
    "cat",
    "mv",
    "mkdir",
    "ln",
    "head",
    "tail",
    "tr",
    "cut",
    "rm",
    "rmdir",
    "wc",
    "kill",
    "chown",
    "chmod",
    "cp",
    "touch",
    "dirname",
    "basename",
    "ls",
    "env",
    "readlink",
    "cpio",
    "zcat",
    "gzip",
    "date",
    "id",
    "printf",
    "echo",
    "test",
    "[",
    "true",
    "false",
    "sort",
    "uniq",
    "expr",
    "dmesg",
    "stat",
]
CID = "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG"
CID_V1 = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"
PEER_ID = "12D3KooWGzxzKZYveHXtpG6AsrUJBcWxHBFS2HsEoGTxrMLvKXtf"
PEER = f"/ip4/10.0.2.100/tcp/4001/p2p/{PEER_ID}"
KREL = "6.12.11-tinycore64"
GATEWAY = "127.0.0.1:48080"
ALL_FAKES = ("ipfs", "wget", "udhcpc", "ip", "mount", "uname", "modprobe", "ifconfig", "route", "blkid",
             "umount")


# The fakes when the hook's kubo is the real one (real_kubo_hook): only DHCP, ip, uname and modprobe.
REAL_KUBO_FAKES = ("udhcpc", "ip", "ifconfig", "uname", "modprobe")


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def _hook_cpio() -> bytes:
    global _HOOK_CACHE
    if _HOOK_CACHE is None:
        _HOOK_CACHE = initrd.hook_cpio("x86_64")
    return _HOOK_CACHE


_HOOK_CACHE: bytes | None = None


def applet_dir(base: Path) -> Path:
    """A directory of busybox applet symlinks (created once per base)."""
    bb = base / "busybox-bin"
    if not bb.exists():
        bb.mkdir(parents=True)
        for name in APPLETS:
            (bb / name).symlink_to(BUSYBOX)
    return bb


class Repo:
    """A flat TC repo (``NAME.tcz`` + ``.md5.txt`` + ``.dep`` + lists) served at some URL by the fakes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        self.data: dict[str, bytes] = {}

    def ext(
        self,
        name: str,
        deps: list[str] | tuple[str, ...] = (),
        *,
        size: int = 100,
        md5_text: str | None = None,
        dep_text: str | None = None,
        data: bytes | None = None,
    ) -> bytes:
        """Add ``name`` with its ``.md5.txt`` (and ``.dep``): ``size`` bytes derived from the name, or
        ``data`` as given (random bytes make every chunk its own block)."""
        if data is None:
            data = (hashlib.sha256(name.encode()).digest() * (size // 32 + 1))[:size]
        self.data[name] = data
        (self.path / name).write_bytes(data)
        (self.path / f"{name}.md5.txt").write_text(
            md5_text if md5_text is not None else f"{md5(data)}  {name}\n"
        )
        if dep_text is not None:
            (self.path / f"{name}.dep").write_text(dep_text)
        elif deps:
            (self.path / f"{name}.dep").write_text("".join(f"{d}\n" for d in deps))
        return data

    def lst(self, text: str, name: str = "onboot.lst") -> None:
        (self.path / name).write_text(text)


@dataclass
class Result:
    rc: int
    stdout: str
    stderr: str
    console: str
    log: str
    seconds: float
    env: HookEnv

    @property
    def lines(self) -> list[str]:
        """The hook's console lines (without the "tce-ipfs: " prefix)."""
        return [ln[len("tce-ipfs: ") :] for ln in self.console.splitlines() if ln.startswith("tce-ipfs: ")]

    @property
    def final(self) -> str:
        return self.lines[-1] if self.lines else ""

    @property
    def status(self) -> dict[str, str]:
        path = self.env.root / "tmp/tce-ipfs/status"
        if not path.exists():
            return {}
        return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)

    def wait_status(self, key: str, timeout: float = 20) -> dict[str, str]:
        """The status once it has ``key`` (the seeding pin job adds ``pinned=`` after the hook exits)."""
        deadline = time.monotonic() + timeout
        while key not in (status := self.status):
            assert time.monotonic() < deadline, f"no {key}= in the status file: {status}"
            time.sleep(0.05)
        return status

    def env_log(self) -> str:
        """The hook log as it is now (the pin job appends to it after the hook has exited)."""
        path = self.env.root / "var/log/tce-ipfs.log"
        return path.read_text() if path.exists() else ""

    @property
    def pins(self) -> list[str]:
        """The fake kubo API's pin/add calls: "PATH recursive" or "PATH direct"."""
        path = self.env.state / "pins.log"
        return path.read_text().splitlines() if path.exists() else []

    @property
    def calls(self) -> list[str]:
        path = self.env.state / "calls.log"
        return path.read_text().splitlines() if path.exists() else []

    def errors(self) -> list[str]:
        return [ln for ln in self.lines if ln.startswith("error: ")]


HOST_TOOLS = {t: shutil.which(t) or f"/usr/sbin/{t}" for t in ("unshare", "chroot", "mount")}
BOOT_DIR = ".hosttest"  # in a boot root: the fakes, their state and the HTTP tree


def _copy_with_libs(binary: str, root: Path) -> None:
    """Copy a dynamically linked ``binary`` and the libraries ``ldd`` names to the same paths in ``root``."""
    paths = [binary]
    out = subprocess.run(["ldd", binary], capture_output=True, text=True, check=False).stdout
    for line in out.splitlines():
        words = line.split()
        paths += [w for w in words if w.startswith("/")][:1]
    for path in paths:
        dest = root / path.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        if not dest.exists():
            shutil.copy2(Path(path).resolve(), dest)


@dataclass
class HookEnv:
    """A fake TC root plus the fakes' state; ``run(cmdline)`` boots the hook once.

    ``boot_root=True`` runs the hook as it runs at boot: ``ROOT`` empty, in a chroot of the fake root
    inside a private mount namespace (``unshare -m``), so every path the hook builds ("/tce", "/a/b")
    is a real one. The chroot holds a static busybox (applets in /bin), dash with its libraries, and
    the fakes under /.hosttest; /proc/uptime and /dev/null are bind-mounted from the host.
    """

    base: Path
    shell: str = "busybox"
    fakes: tuple[str, ...] = ALL_FAKES
    extra_path: tuple[str, ...] = ()
    boot_root: bool = False
    launcher: tuple[str, ...] = ()  # prefixes the hook's argv, e.g. ``ip netns exec NS`` (fault tests)
    root: Path = field(init=False)
    state: Path = field(init=False)
    http: Path = field(init=False)

    def __post_init__(self) -> None:
        self.root = self.base / "root"
        inner = self.root / BOOT_DIR if self.boot_root else self.base
        self.state = inner / "state"
        self.http = inner / "http"
        for d in (
            "proc",
            "dev",
            "tmp/tce/optional",
            "tmp/tcloop",
            "tmp/builtin/optional",
            "etc/sysconfig",
            "var/log",
            "var/run",
            "usr/local/tce.installed",
        ):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        self.state.mkdir(parents=True, exist_ok=True)
        self.http.mkdir(parents=True, exist_ok=True)
        self.tools = inner / "tools"
        self.tools.mkdir(parents=True, exist_ok=True)
        for name in self.fakes:
            if self.boot_root:  # a symlink out of the chroot would not resolve inside it
                shutil.copy2(FAKES / name, self.tools / name)
            else:
                (self.tools / name).symlink_to(FAKES / name)
        if self.boot_root:
            self._make_boot_root(inner)
        (self.root / "etc/sysconfig/tcuser").write_text("tc\n")
        (self.root / "dev/console").write_text("")
        (self.root / "proc/mounts").write_text("rootfs / rootfs rw 0 0\n")
        (self.root / "proc/net").mkdir(exist_ok=True)
        self.set_ifaces("eth0")
        # kubo as shipped: any squashfs-looking file is fine for the fake mount.
        (self.root / "tmp/builtin/optional/ipfs.tcz").write_bytes(b"hsqs" + b"\0" * 60)
        subprocess.run(
            [BUSYBOX, "cpio", "-idmu"], input=_hook_cpio(), cwd=self.root, check=True, capture_output=True
        )

    def _make_boot_root(self, inner: Path) -> None:
        for json_file in FAKES.parent.glob("*.json"):  # the fake ipfs finds it next to its bin/
            shutil.copy2(json_file, inner / json_file.name)
        bin_dir = self.root / "bin"
        bin_dir.mkdir(exist_ok=True)
        shutil.copy2(BUSYBOX, bin_dir / "busybox")
        for name in APPLETS:
            if not (bin_dir / name).exists():
                (bin_dir / name).symlink_to("busybox")
        _copy_with_libs(SHELLS["dash"][0], self.root)
        (self.root / "bin/dash").unlink(missing_ok=True)
        (self.root / "bin/dash").symlink_to("/" + str(Path(SHELLS["dash"][0]).relative_to("/")))
        (self.root / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\ntc:x:1001:50::/home/tc:/bin/sh\n")
        (self.root / "etc/group").write_text("root:x:0:\nstaff:x:50:tc\n")
        for stub in ("proc/uptime", "dev/null"):  # bind-mount targets
            (self.root / stub).write_text("")

    def inner_path(self, path: Path) -> str:
        """``path`` (under the fake root) as the hook sees it: with the ROOT prefix, or from the chroot."""
        return "/" + str(path.relative_to(self.root)) if self.boot_root else str(path)

    # ------------------------------------------------------------------ fixtures of a scenario
    def set_ifaces(self, *names: str) -> None:
        head = (
            "Inter-|   Receive                            |  Transmit\n"
            " face |bytes    packets errs drop fifo frame compressed multicast|bytes ...\n"
        )
        rows = "".join(f"{n:>6}: 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n" for n in ("lo", *names))
        (self.root / "proc/net/dev").write_text(head + rows)

    def knob(self, name: str, text: str = "") -> None:
        (self.state / name).write_text(text)

    def ipfs_repo(self, cid: str = CID, sub: str = "") -> Repo:
        """A repo published under /ipfs/<cid>[/sub], reachable once a peer connects."""
        (self.http / "ipfs" / cid).mkdir(parents=True, exist_ok=True)
        return Repo(self.http / "ipfs" / cid / sub if sub else self.http / "ipfs" / cid)

    def http_repo(self, hostport: str, path: str = "") -> Repo:
        return Repo(self.http / "http" / hostport / path)

    def peers_ok(self, *mas: str) -> None:
        self.knob("peers_ok", "".join(f"{m}\n" for m in mas))

    # ------------------------------------------------------------------ running
    def env(self) -> dict[str, str]:
        if self.boot_root:
            return {
                "PATH": f"/{BOOT_DIR}/tools:/bin",
                "FAKE_STATE": f"/{BOOT_DIR}/state",
                "FAKE_ROOT": "",
                "FAKE_HTTP": f"/{BOOT_DIR}/http",
                "FAKE_KREL": KREL,
                "TCE_IPFS_TOOLDIR": f"/{BOOT_DIR}/tools",
                "LC_ALL": "C",
                "HOME": "/",
            }
        path = ":".join([*self.extra_path, str(self.tools), str(applet_dir(self.base.parent))])
        return {
            "PATH": path,
            "ROOT": str(self.root),
            "FAKE_STATE": str(self.state),
            "FAKE_ROOT": str(self.root),
            "FAKE_HTTP": str(self.http),
            "FAKE_KREL": KREL,
            "FAKE_PYTHON": sys.executable,  # for fakes that edit JSON (the fake kubo's daemon --init)
            "TCE_IPFS_TOOLDIR": str(self.tools),
            "LC_ALL": "C",
            "HOME": str(self.base),
        }

    def run(self, cmdline: str | None, *, timeout: float = 60) -> Result:
        """Run the hook once with ``cmdline`` as /proc/cmdline (None: no /proc/cmdline at all)."""
        cmdline_file = self.root / "proc/cmdline"
        if cmdline is None:
            cmdline_file.unlink(missing_ok=True)
        else:
            cmdline_file.write_text(cmdline + "\n")
        start = time.monotonic()
        entry = self.root / initrd.HOOK_ENTRY
        if self.boot_root:
            shell = ["/bin/busybox", "sh"] if self.shell == "busybox" else ["/bin/dash"]
            root = shlex.quote(str(self.root))
            mount, chroot = HOST_TOOLS["mount"], HOST_TOOLS["chroot"]
            binds = " && ".join(f"{mount} --bind /{f} {root}/{f}" for f in ("proc/uptime", "dev/null"))
            setup = f"{binds} && exec {chroot} {root} " + shlex.join([*shell, "/" + initrd.HOOK_ENTRY])
            argv = [HOST_TOOLS["unshare"], "-m", "--propagation", "private", "/bin/sh", "-c", setup]
        else:
            argv = [*SHELLS[self.shell], str(entry)]
        argv = [*self.launcher, *argv]
        proc = subprocess.run(
            [*self.launcher, *argv],
            env=self.env(),
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        seconds = time.monotonic() - start
        log_path = self.root / "var/log/tce-ipfs.log"
        return Result(
            rc=proc.returncode,
            stdout=proc.stdout,
            stderr=proc.stderr,
            console=(self.root / "dev/console").read_text(),
            log=log_path.read_text() if log_path.exists() else "",
            seconds=seconds,
            env=self,
        )

    def optional(self) -> Path:
        return self.root / "tmp/builtin/optional"

    def builtin_list(self, name: str = "onboot.lst") -> list[str]:
        path = self.root / "tmp/builtin" / name
        return path.read_text().split() if path.exists() else []

    def stop_kubo(self) -> None:
        """Stop the kubo the hook left seeding (its ``kubo_pid`` in the status file), if any."""
        status = self.root / "tmp/tce-ipfs/status"
        if status.exists():
            fields = dict(ln.split("=", 1) for ln in status.read_text().splitlines() if "=" in ln)
            if pid := fields.get("kubo_pid"):
                kill_and_wait(int(pid))

    def cleanup(self) -> None:
        """Stop a fake daemon the hook left running (it is meant to keep seeding)."""
        (self.state / "stop").write_text("")
        pid_file = self.state / "daemon.pid"
        if not pid_file.exists():
            return
        try:
            pid = int(pid_file.read_text().strip())
            os.kill(pid, signal.SIGTERM)
        except (ProcessLookupError, ValueError):
            return
        wait_gone(pid, 5, poll=0.05)
        (self.state / "stop").unlink(missing_ok=True)


def real_kubo_hook(base: Path, kubo_dir: Path, *, launcher: tuple[str, ...] = ()) -> HookEnv:
    """A busybox-sh HookEnv whose ``ipfs`` is the real kubo in ``kubo_dir`` (on PATH, not ipfs.tcz);
    only REAL_KUBO_FAKES are faked. Stop what it leaves seeding with ``stop_kubo()``."""
    env = HookEnv(base, shell="busybox", fakes=REAL_KUBO_FAKES, extra_path=(str(kubo_dir),),
                  launcher=launcher)
    (env.optional() / "ipfs.tcz").unlink()  # kubo comes from PATH here
    return env


def kill_and_wait(pid: int) -> None:
    """SIGTERM ``pid``, wait up to 10 s for it to go, then SIGKILL."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    if not wait_gone(pid, 10):
        os.kill(pid, signal.SIGKILL)


def wait_gone(pid: int, timeout: float, *, poll: float = 0.1) -> bool:
    """Whether ``pid`` is gone within ``timeout`` seconds (looked at every ``poll``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(poll)
    return False
