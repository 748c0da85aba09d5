"""The systemd unit that runs ``tce-ipfs seed serve`` as a service (``tce-ipfs seed install-unit``).

The seed runs in the foreground (``Type=exec``) and logs to the journal (the boot line included).
``systemctl stop`` sends SIGTERM to the seed process only (``KillMode=mixed``): it stops its kubo
cleanly, and whatever is left after ``TimeoutStopSec`` is killed. ``systemctl reload`` sends SIGHUP:
the repo directory is published again. A seed that dies is restarted (``Restart=on-failure``); the
state directory keeps the peer ID, so the boot line stays valid.

The unit is checked by ``systemd-analyze verify`` in the tests (tests/test_seed.py).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from tce_ipfs.errors import UsageError

UNIT_NAME = "tce-ipfs-seed.service"
UNIT_DIR = Path("/etc/systemd/system")

_PLAIN = re.compile(r"[A-Za-z0-9_@%+=:,./-]+")


def quote(word: str) -> str:
    """One ``ExecStart=`` word as systemd reads it back: ``%`` and ``$`` escaped, quoted if needed."""
    if "\n" in word or "\0" in word:
        raise UsageError(f"cannot put {word!r} into a systemd unit (newline or NUL)")
    word = word.replace("%", "%%").replace("$", "$$")
    if _PLAIN.fullmatch(word):
        return word
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _in_tmp(path: str) -> bool:
    return any(path == d or path.startswith(d + "/") for d in ("/tmp", "/var/tmp"))


def unit_text(argv: Sequence[str], *, user: str, state: Path, description: str) -> str:
    """The unit file: ``argv`` (absolute program first) as the service, run as ``user``. Only ``state``
    is writable (``ProtectSystem=strict``); /home and /root stay readable (a venv or kubo there).
    The service gets a private /tmp unless one of its paths is in /tmp (it would not see it)."""
    if not argv or not Path(argv[0]).is_absolute():
        raise UsageError("the service's program must be an absolute path")
    if not re.fullmatch(r"[a-z_][a-z0-9_-]*[$]?", user):
        raise UsageError(f"{user!r} is not a user name systemd takes")
    exec_start = " ".join(quote(w) for w in argv)
    lines = [
        "# Written by `tce-ipfs seed install-unit`; run it again to change this file.",
        "[Unit]",
        f"Description={description}",
        "Documentation=https://github.com/tce-ipfs/tce-ipfs#the-lab-seed",
        # The listen address must exist before kubo binds it.
        "Wants=network-online.target",
        "After=network-online.target",
        "",
        "[Service]",
        "Type=exec",
        f"User={user}",
        f"ExecStart={exec_start}",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "KillMode=mixed",
        "TimeoutStopSec=45",
        "Restart=on-failure",
        "RestartSec=5",
        "Environment=PYTHONUNBUFFERED=1",
        # kubo holds a socket per peer and a file per open block.
        "LimitNOFILE=65536",
        "NoNewPrivileges=yes",
        *([] if any(_in_tmp(w) for w in [*argv, str(state)]) else ["PrivateTmp=yes"]),
        "ProtectSystem=strict",
        "ProtectHome=read-only",
        f"ReadWritePaths={quote(str(state))}",
        "ProtectKernelTunables=yes",
        "ProtectKernelModules=yes",
        "ProtectControlGroups=yes",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "",
    ]
    return "\n".join(lines)
