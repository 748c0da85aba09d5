"""The real boot hook, run on the build host against a fake Tiny Core root: one per simulated machine.

The fetch-link benchmark and the LAN tests use it so that their clients are configured by exactly the
code that configures a booting machine's kubo (``initrd-hooks/lib/kubo.sh``) and fetch exactly as it
does (``fetch.sh``): nothing is re-implemented here. Per machine:

* a root directory laid out like TC at the moment ``tce-setup`` runs the hook (``/tmp/builtin``,
  ``/etc/sysconfig``, ``/usr/local/tce.installed``, ...), the hook unpacked into it from the same
  inner archive the P2P initrd carries (``initrd.hook_cpio``), ``/proc/cmdline`` written by us;
* ``/proc/net`` is a link to the real one: the hook, started inside the machine's network namespace
  (``testbed.lan.SwitchedLan``), sees that namespace's ``eth0`` and its address (boot code ``nodhcp``: the
  address is configured before, as the kernel's ``ip=`` would);
* no ``ipfs.tcz`` in ``/tmp/builtin/optional``: the hook takes kubo from ``PATH`` (its documented
  fallback), so nothing is loop-mounted on the host; busybox applets come first on ``PATH``, as on TC.

``HookMachine.spawn(lab, go)`` starts the hook inside ``lab``'s namespace; it waits for the file ``go``
to appear (so N machines start within a few milliseconds of each other) and records its exit time.
kubo keeps running after the hook (seeding, as at boot) until the lab stops it.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tce_ipfs import proc
from tce_ipfs.arch import Arch
from tce_ipfs.errors import NodeError, ToolMissing
from tce_ipfs.media import initrd
from tce_ipfs.testbed.lab import Lab, LabProcess

# The applets the hook and tce-setup's environment rely on (initrd-hooks/README.md lists the hook's).
APPLETS = ("sh", "ash", "awk", "sed", "grep", "egrep", "md5sum", "timeout", "sleep", "wget", "cat", "mv",
           "mkdir", "ln", "head", "tail", "tr", "cut", "rm", "rmdir", "wc", "kill", "chown", "chmod", "cp",
           "touch", "dirname", "basename", "ls", "env", "readlink", "date", "id", "printf", "echo", "test",
           "[", "true", "false", "sort", "uniq", "expr", "ip", "ifconfig", "uname", "usleep", "seq", "xargs")
_FAKE_ROOT_DIRS = ("proc", "dev", "tmp/tce/optional", "tmp/tcloop", "tmp/builtin/optional", "etc/sysconfig",
                   "var/log", "var/run", "usr/local/tce.installed")


def busybox() -> str:
    path = shutil.which("busybox")
    if path is None:
        raise ToolMissing("busybox not found", hint="install busybox-static (or run bootstrap/setup)")
    return path


def applet_dir(path: Path) -> Path:
    """A directory of busybox applet links (made once)."""
    if not (path / "sh").exists():
        path.mkdir(parents=True, exist_ok=True)
        bb = busybox()
        for name in APPLETS:
            link = path / name
            if not link.is_symlink():
                link.symlink_to(bb)
    return path


def read_status(path: Path) -> dict[str, str]:
    """The hook's status file (``key=value`` lines); empty when there is none (yet)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


@dataclass
class HookMachine:
    """One simulated machine: a fake TC root the hook runs in; ``spawn`` it inside a namespace."""

    root: Path
    arch: Arch
    kubo: Path
    applets: Path
    process: LabProcess | None = None
    started: float | None = None
    ended: float | None = None

    def prepare(self, cmdline: str) -> None:
        """A fresh root (anything from an earlier run removed) with the hook and ``cmdline``."""
        if self.root.exists():
            shutil.rmtree(self.root)
        for d in _FAKE_ROOT_DIRS:
            (self.root / d).mkdir(parents=True, exist_ok=True)
        (self.root / "etc/sysconfig/tcuser").write_text("tc\n")
        (self.root / "dev/console").write_text("")
        (self.root / "proc/mounts").write_text("rootfs / rootfs rw 0 0\n")
        (self.root / "proc/net").symlink_to("/proc/net")  # the namespace's own interfaces
        (self.root / "proc/cmdline").write_text(cmdline + "\n")
        proc.run([busybox(), "cpio", "-idmu"], input=initrd.hook_cpio(self.arch), cwd=self.root,
                 timeout=60, what="unpacking the hook into a fake root")
        self.process = None
        self.started = self.ended = None

    def env(self) -> dict[str, str]:
        """The hook's environment; ``HOOK_PATH`` becomes its ``PATH`` (the launcher, ``ip netns exec``,
        is still looked up on the normal one)."""
        return {"HOOK_PATH": f"{self.applets}:{self.kubo.parent}", "ROOT": str(self.root), "LC_ALL": "C",
                "HOME": str(self.root / "tmp")}

    def spawn(self, lab: Lab, name: str, go: Path) -> LabProcess:
        """Start the hook in ``lab``'s namespace; it begins when ``go`` exists."""
        entry = self.root / initrd.HOOK_ENTRY
        script = ('while [ ! -e "$1" ]; do usleep 10000; done; PATH=$HOOK_PATH; unset HOOK_PATH; '
                  'export PATH; exec sh "$2"')
        self.process = lab.spawn(name, [busybox(), "sh", "-c", script, "hook", go, entry], env=self.env(),
                                 cwd=self.root)
        return self.process

    def wait(self, started: float, deadline: float) -> None:
        """Wait for the hook to exit (``started``: when ``go`` appeared, monotonic). Its kubo may
        run on (seeding); only the hook's own exit counts."""
        assert self.process is not None
        self.started = started
        left = deadline - time.monotonic()
        try:
            self.process.popen.wait(timeout=max(left, 0.01))
        except subprocess.TimeoutExpired:
            raise NodeError(f"the hook in {self.root} did not finish in time; "
                            f"console: {self.console()[-400:]}") from None
        self.ended = time.monotonic()

    def poll(self) -> bool:
        """Has the hook exited? Records the exit time the first time it sees it."""
        assert self.process is not None
        if self.ended is None and self.process.popen.poll() is not None:
            self.ended = time.monotonic()
        return self.ended is not None

    @property
    def status(self) -> dict[str, str]:
        return read_status(self.root / "tmp/tce-ipfs/status")

    def console(self) -> str:
        path = self.root / "dev/console"
        return path.read_text(errors="replace") if path.exists() else ""

    def log(self) -> str:
        """The hook's log (``/var/log/tce-ipfs.log``)."""
        path = self.root / "var/log/tce-ipfs.log"
        return path.read_text(errors="replace") if path.exists() else ""

    @property
    def ipfs_path(self) -> Path:
        return self.root / "tmp/tce-ipfs/repo"
