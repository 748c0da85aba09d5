"""Private-swarm keys (libp2p PSK v1): generate, format, parse, install into a kubo repo.

A kubo node whose repo holds ``swarm.key`` only talks to peers holding the same key: the handshake
with anyone else fails before any protocol runs. The file format is fixed by go-libp2p's pnet::

    /key/swarm/psk/1.0.0/
    /base16/
    <64 lowercase hex digits = 32 random bytes>

The boot code ``ipfs.swarmkey=`` carries just the 64 hex digits (``boot_value``); the hook on the guest
rebuilds the file with the same three lines. ``LIBP2P_FORCE_PNET=1`` in a node's environment makes
kubo refuse to start *without* a key, so a typo in the path cannot silently join an open swarm.
"""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path

from tce_ipfs.errors import UsageError

HEADER = "/key/swarm/psk/1.0.0/"
ENCODING = "/base16/"
FILENAME = "swarm.key"
# Environment for a kubo that must run in a private swarm (refuses to start without swarm.key).
FORCE_PNET_ENV = {"LIBP2P_FORCE_PNET": "1"}
BOOT_CODE = "ipfs.swarmkey"

_HEX64 = re.compile(r"[0-9a-f]{64}")


def generate() -> str:
    """A fresh key as 64 lowercase hex digits (32 bytes from the OS CSPRNG)."""
    return secrets.token_hex(32)


def check_hex(value: str) -> str:
    """Return ``value`` normalised to lowercase; raise ``UsageError`` unless it is 64 hex digits."""
    key = value.strip().lower()
    if not _HEX64.fullmatch(key):
        raise UsageError(f"not a swarm key: {value[:80]!r}",
                         hint="a swarm key is exactly 64 hex digits (32 bytes); "
                              "make one with `tce-ipfs swarmkey` or swarmkey.generate()")
    return key


def format_key(key_hex: str) -> str:
    """The ``swarm.key`` file text for ``key_hex``."""
    return f"{HEADER}\n{ENCODING}\n{check_hex(key_hex)}\n"


def parse(text: str) -> str:
    """The 64 hex digits inside a ``swarm.key`` file's text (only the base16 encoding is accepted)."""
    lines = [line.strip() for line in text.strip().splitlines()]
    if len(lines) != 3 or lines[0] != HEADER or lines[1] != ENCODING:
        raise UsageError("not a swarm.key file",
                         hint=f"expected three lines: {HEADER!r}, {ENCODING!r}, 64 hex digits")
    return check_hex(lines[2])


def boot_value(key_hex: str) -> str:
    """The kernel command line word that hands ``key_hex`` to the boot hook."""
    return f"{BOOT_CODE}={check_hex(key_hex)}"


def install(repo: Path, key_hex: str) -> Path:
    """Write ``swarm.key`` into the kubo repo ``repo`` (mode 0600); return its path.

    Do this before the daemon starts; start it with ``FORCE_PNET_ENV`` so it cannot come up open.
    """
    path = repo / FILENAME
    tmp = path.with_name(FILENAME + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(format_key(key_hex))
    os.replace(tmp, path)
    return path


def read(repo: Path) -> str | None:
    """The key installed in ``repo``, or None when the node is not in a private swarm."""
    path = repo / FILENAME
    if not path.exists():
        return None
    return parse(path.read_text())
