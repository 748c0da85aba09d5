"""The one way every external program runs: ``run()`` for a command, ``spawn()`` for a long-running child.

* arguments are a list (never a shell string);
* the environment is clean: a fixed PATH/LC_ALL plus only what the caller passes;
* the command line is logged under ``--debug``;
* exit 127 (or a missing executable) becomes ``ToolMissing`` naming the Debian package to install.
"""

from __future__ import annotations

import logging
import os
import shlex
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from tce_ipfs.errors import CommandFailed, ToolMissing

log = logging.getLogger(__name__)

# Which Debian package provides a tool we call. Used for the "install Y" hint.
TOOL_PACKAGES: dict[str, str] = {
    "mksquashfs": "squashfs-tools",
    "unsquashfs": "squashfs-tools",
    "xorriso": "xorriso",
    "isohybrid": "syslinux-utils",
    "cpio": "cpio",
    "go": "golang (or the Go toolchain from go.dev)",
    "qemu-system-x86_64": "qemu-system-x86",
    "qemu-system-i386": "qemu-system-x86",
    "qemu-system-aarch64": "qemu-system-arm",
    "qemu-system-arm": "qemu-system-arm",
    "shellcheck": "shellcheck",
    "busybox": "busybox-static",
    "depmod": "kmod",
    "modinfo": "kmod",
    "dpkg-deb": "dpkg",
    "apt-get": "apt",
    "ip": "iproute2",
    "mount": "mount",
    "zstd": "zstd",
    "xz": "xz-utils",
    "ipfs": "kubo (run `tce-ipfs kubo build`)",
    "mdir": "mtools",
    "mcopy": "mtools",
    "mformat": "mtools",
    "mkfs.vfat": "dosfstools",
    "systemd-analyze": "systemd",
}

BASE_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LC_ALL": "C.UTF-8",
    "LANG": "C.UTF-8",
}

# Variables a few tools legitimately need from the caller's environment (Go's caches, HOME for
# tools that insist on one). Everything else is dropped so builds are reproducible.
PASSTHROUGH = ("HOME", "TMPDIR", "GOPATH", "GOMODCACHE", "GOCACHE", "GOPROXY", "GOFLAGS",
               "GOTOOLCHAIN", "SOURCE_DATE_EPOCH", "TERM", "GOLOG_LOG_LEVEL")


def clean_env(extra: Mapping[str, str] | None = None, *, inherit_path: bool = True) -> dict[str, str]:
    env = dict(BASE_ENV)
    if inherit_path and os.environ.get("PATH"):
        # Keep the caller's PATH first so tools installed in a venv or /usr/local/go are found.
        env["PATH"] = os.environ["PATH"] + ":" + BASE_ENV["PATH"]
    for key in PASSTHROUGH:
        if key in os.environ:
            env[key] = os.environ[key]
    if extra:
        env.update(extra)
    return env


def _missing(tool: str) -> ToolMissing:
    name = Path(tool).name
    pkg = TOOL_PACKAGES.get(name, name)
    return ToolMissing(f"{name} not found", hint=f"install {pkg} (or run bootstrap/setup)")


def run(
    args: Sequence[str | os.PathLike[str]],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    input: bytes | None = None,
    capture: bool = True,
    check: bool = True,
    timeout: float | None = None,
    what: str | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run ``args``; return the CompletedProcess (stdout/stderr as bytes when ``capture``).

    ``what`` names the step in the error message ("building kubo for aarch64").
    """
    argv = [os.fspath(a) for a in args]
    log.debug("+ %s%s", shlex.join(argv), f"  (in {cwd})" if cwd else "")
    try:
        proc = subprocess.run(
            argv,
            env=clean_env(env),
            cwd=cwd,
            input=input,
            stdout=subprocess.PIPE if capture else None,
            stderr=subprocess.PIPE if capture else None,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError:
        raise _missing(argv[0]) from None
    except subprocess.TimeoutExpired as exc:
        raise CommandFailed(f"{what or argv[0]}: timed out after {timeout:g} s",
                            returncode=-1) from exc
    if proc.returncode == 127:
        raise _missing(argv[0])
    if check and proc.returncode != 0:
        stderr = (proc.stderr or b"").decode(errors="replace").strip()
        tail = "\n".join(stderr.splitlines()[-15:])
        raise CommandFailed(
            f"{what or Path(argv[0]).name} failed (exit {proc.returncode})" + (f":\n{tail}" if tail else ""),
            returncode=proc.returncode,
            stderr=stderr,
        )
    return proc


def output(args: Sequence[str | os.PathLike[str]], **kwargs: object) -> str:
    """Run and return stdout as stripped text."""
    proc = run(args, **kwargs)  # type: ignore[arg-type]
    return (proc.stdout or b"").decode().strip()


def spawn(
    args: Sequence[str | os.PathLike[str]],
    *,
    log_path: Path,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start a long-running child (kubo, dnsmasq, a helper) the ``run()`` way and return at once.

    Same rules as ``run()``: an argv list, the clean environment plus ``env``, the command logged under
    ``--debug``, a missing program raised as ``ToolMissing``. The child reads /dev/null (it must never
    prompt), appends stdout and stderr to ``log_path``, and gets its own session: Ctrl-C in the
    terminal does not reach it, and the caller can signal its whole process group. Waiting for it and
    stopping it are the caller's business.
    """
    argv = [os.fspath(a) for a in args]
    log.debug("+ %s%s  (background, log %s)", shlex.join(argv), f"  (in {cwd})" if cwd else "", log_path)
    with open(log_path, "ab") as out:
        try:
            return subprocess.Popen(argv, env=clean_env(env), cwd=cwd, stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        except FileNotFoundError:
            raise _missing(argv[0]) from None


def pid_alive(pid: int) -> bool:
    """True when ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # state is the field after the ")" that closes the command name
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def terminate(pid: int, *, timeout: float, what: str, reap: Callable[[], None] = lambda: None) -> None:
    """SIGTERM ``pid``, wait up to ``timeout`` seconds, then SIGKILL it and wait until it is gone.

    ``reap`` is called while waiting: a caller that started the process (``spawn()``) polls its
    ``Popen`` there, so our own child does not linger as a zombie that still looks alive.
    """
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while pid_alive(pid) and time.monotonic() < deadline:
        reap()
        time.sleep(0.05)
    if pid_alive(pid):
        log.warning("%s (pid %d) did not stop within %g s; killing it", what, pid, timeout)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        while pid_alive(pid):
            reap()
            time.sleep(0.05)
