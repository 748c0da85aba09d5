"""Where things are on a booted Tiny Core machine, and how the agent runs TC's own tools.

Every path is taken relative to ``Machine.root`` (``/`` on a real machine; a scratch directory in the
tests, also settable as ``$TCE_IPFS_AGENT_ROOT``), so the agent's logic runs unchanged against a fake
TC tree.

* tce dir: the target of the ``/etc/sysconfig/tcedir`` symlink (what ``tce-load`` uses);
* tc user: ``/etc/sysconfig/tcuser`` (``tc`` by default) -- ``tce-load`` refuses to run as root;
* the booted repo: the boot hook's status file (``/tmp/tce-ipfs/status``: ``cid=``, ``subpath=``), else
  ``tce=ipfs:<CID>[/path]`` on ``/proc/cmdline``;
* kubo's API: the status file's ``api=`` (the hook's kubo picks a free port), else ``<repo>/api``;
* the onboot list: ``lst=`` on the command line, else ``onboot.lst`` (as tce-load does).

Programs run through ``tce_ipfs.proc.run()`` (shipped in the agent extension: pure stdlib), as
everywhere else in tce-ipfs.
"""

from __future__ import annotations

import logging
import os
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tce_ipfs import proc
from tce_ipfs.errors import CommandFailed, ToolMissing, UsageError

log = logging.getLogger(__name__)

STATUS_FILE = "/tmp/tce-ipfs/status"
DEFAULT_TCEDIR = "/tmp/tce"
HOOK_REPO = "/tmp/tce-ipfs/repo"  # the hook's kubo repo (IPFS_PATH); kubo writes its API address to api
DEFAULT_API = "/ip4/127.0.0.1/tcp/5001/http"  # kubo's default, when nothing says otherwise
# Keys of the hook's status file that may carry the repo CID (first found wins).
CID_KEYS = ("cid", "repo_cid", "root", "repo", "tce")


def parse_status(text: str) -> dict[str, str]:
    """The boot hook's status file: ``key=value`` (or ``key: value``) lines; ``#`` comments ignored."""
    out: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        sep = "=" if "=" in line and (":" not in line or line.index("=") < line.index(":")) else ":"
        key, found, value = line.partition(sep)
        if found:
            out[key.strip().lower()] = value.strip()
    return out


def cid_from_cmdline(cmdline: str) -> str | None:
    """``tce=ipfs:<CID>[/path]`` -> ``<CID>[/path]``; None without it."""
    for word in cmdline.split():
        if word.startswith("tce=ipfs:"):
            value = word[len("tce=ipfs:"):]
            return value.removeprefix("/ipfs/").strip("/") or None
    return None


def bootparam(cmdline: str, name: str) -> str | None:
    for word in cmdline.split():
        key, sep, value = word.partition("=")
        if key == name and sep:
            return value
    return None


@dataclass
class Machine:
    """A Tiny Core system rooted at ``root``."""

    # $TCE_IPFS_AGENT_ROOT moves the whole machine under a directory (tests of the CLI on the host).
    root: Path = field(default_factory=lambda: Path(os.environ.get("TCE_IPFS_AGENT_ROOT") or "/"))
    kernel: str = field(default_factory=lambda: os.uname().release)

    def path(self, absolute: str) -> Path:
        return self.root / absolute.lstrip("/")

    # --- facts ---------------------------------------------------------------------------------
    def cmdline(self) -> str:
        try:
            return self.path("/proc/cmdline").read_text()
        except OSError:
            return ""

    def status(self) -> dict[str, str]:
        """The boot hook's status (empty when the machine did not boot with ``tce=ipfs:``)."""
        try:
            return parse_status(self.path(STATUS_FILE).read_text(errors="replace"))
        except OSError:
            return {}

    def booted_repo(self) -> str | None:
        """``<CID>`` or ``<CID>/<subpath>``: the repo this machine booted with (hook status file, else
        ``tce=ipfs:`` on ``/proc/cmdline``); None when it did not boot from IPFS."""
        status = self.status()
        for key in CID_KEYS:
            value = status.get(key, "")
            value = value.removeprefix("ipfs:").removeprefix("/ipfs/").strip("/")
            if value:
                sub = status.get("subpath", "").strip("/") if key == "cid" else ""
                return f"{value}/{sub}" if sub else value
        return cid_from_cmdline(self.cmdline())

    def booted_cid(self) -> str | None:
        repo = self.booted_repo()
        return repo.split("/", 1)[0] if repo else None

    def repo_root(self, given: str | None) -> str:
        """The repo to use: ``given`` (``CID[/path]``, ``/ipfs/`` optional) or the booted one."""
        root = (given or "").strip().removeprefix("/ipfs/").strip("/") or self.booted_repo()
        if not root:
            raise UsageError("no repository CID: this machine did not boot with tce=ipfs:<CID>",
                             hint="pass one with --cid CID")
        cid, _, sub = root.partition("/")
        if not cid.isalnum() or not all(p and p not in (".", "..") for p in sub.split("/") if sub):
            raise UsageError(f"not a CID[/path]: {root!r}")
        return root

    def api(self) -> str:
        """kubo's RPC API: ``$TCE_IPFS_API``, the hook's status file, ``<repo>/api``, else the default."""
        env = os.environ.get("TCE_IPFS_API")
        if env:
            return env
        status = self.status()
        if status.get("api"):
            return status["api"]
        repo = status.get("ipfs_path") or HOOK_REPO
        try:
            text = self.path(repo + "/api").read_text().strip()
        except OSError:
            text = ""
        return text or DEFAULT_API

    def tcedir(self) -> Path:
        """The tce directory (``readlink /etc/sysconfig/tcedir``), mapped under ``root``."""
        link = self.path("/etc/sysconfig/tcedir")
        try:
            target = os.readlink(link)
        except OSError:  # not a symlink (or absent): TC's default
            return link if link.is_dir() else self.path(DEFAULT_TCEDIR)
        return self.path(target) if os.path.isabs(target) else link.parent / target

    def optional(self) -> Path:
        return self.tcedir() / "optional"

    def onboot_list(self) -> Path:
        return self.tcedir() / (bootparam(self.cmdline(), "lst") or "onboot.lst")

    def tcuser(self) -> str:
        try:
            name = self.path("/etc/sysconfig/tcuser").read_text().strip()
        except OSError:
            name = ""
        return name or "tc"

    def installed(self, name: str) -> bool:
        """Is ``NAME.tcz`` loaded already (``/usr/local/tce.installed/NAME`` is tce-load's marker)?"""
        return self.path("/usr/local/tce.installed/" + name.removesuffix(".tcz")).exists()

    # --- TC's loader ---------------------------------------------------------------------------
    def tce_load(self, names: Sequence[str], *, timeout: float = 600) -> str:
        """``tce-load -i NAME...`` (from ``<tcedir>/optional``) as the tc user; return its output.

        tce-load must not run as root: as root we go through ``su <tcuser> -c`` like TC's tce-setup.
        Names were validated (``tcrepo.check_name``), so quoting them for ``su -c`` is safe.
        """
        bare = [n.removesuffix(".tcz") for n in names]
        if os.geteuid() == 0:
            argv = ["su", self.tcuser(), "-c", shlex.join(["tce-load", "-i", *bare])]
        else:
            argv = ["tce-load", "-i", *bare]
        what = "tce-load -i " + " ".join(bare)
        try:
            # in the caller's environment, as TC's loader expects (proc.run keeps a clean one otherwise)
            res = proc.run(argv, env=dict(os.environ), timeout=timeout, check=False, what=what)
        except ToolMissing as exc:  # proc's hint names a Debian package, which means nothing on TC
            raise ToolMissing(exc.message,
                              hint="is this a Tiny Core system (or the tce-ipfs test base)?") from None
        out, err = ((b or b"").decode(errors="replace") for b in (res.stdout, res.stderr))
        if res.returncode != 0:  # tce-load reports on stdout, so the message quotes its output too
            tail = "\n".join((err or out).strip().splitlines()[-10:])
            raise CommandFailed(f"{what} failed (exit {res.returncode})" + (f":\n{tail}" if tail else ""),
                                returncode=res.returncode, stderr=err)
        return out + err
