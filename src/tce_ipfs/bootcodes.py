"""The boot codes the tce-ipfs hook reads from the kernel command line: one table, host side.

The hook itself is POSIX sh (``initrd-hooks/lib/parse.sh``: parse first, act later) and documents its
codes in ``initrd-hooks/README.md``. ``CODES`` is the host's copy of that contract -- name, kind with
its range, default, one line of doc -- from which ``media.bootcfg`` checks every ``--boot-code`` before
it is written into boot media, so a typo is refused on the build host instead of being ignored at boot.
``tests/test_bootcodes.py`` reads parse.sh and the README and runs the hook's parser on the same values,
so the three cannot drift apart.

Names in the ``ipfs`` namespace belong to tce-ipfs: one not in the table is refused. Other names
(``console=``, ``loglevel=``, ``base``, ...) are the kernel's or Tiny Core's and pass unchecked.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass

from tce_ipfs.errors import UsageError

KINDS = ("tce", "name", "peers", "seconds", "url", "bool", "hex", "port", "flag", "car", "choice")


@dataclass(frozen=True)
class BootCode:
    name: str
    kind: str  # one of KINDS: how the value is read (see check())
    default: str | None  # what the hook uses without the code; None: none / off
    doc: str
    low: int | None = None  # numbers: the range
    high: int | None = None
    max_len: int | None = None  # longest value (peers: each multiaddr)
    max_count: int | None = None  # peers: most entries
    choices: tuple[str, ...] = ()  # choice: the values taken
    tc: bool = False  # Tiny Core's own code, which the hook reads with TC's meaning

    def check(self, value: str | None) -> str | None:
        """Why ``value`` (None: the bare word) is not what the hook takes for this code, or None."""
        return _CHECKS[self.kind](self, value)


CODES: tuple[BootCode, ...] = (
    BootCode("tce", "tce", None, "the repo: ipfs:<CID>[/sub/path], ipns:<name>[/sub/path] or "
             "http://host[:port]/path (remaster and netboot write it from --cid)", max_len=512, tc=True),
    BootCode("lst", "name", "onboot.lst", "the list to fetch and to write to /tmp/builtin/<lst>",
             max_len=64, tc=True),
    BootCode("ipfs.peers", "peers", None, "peers to dial and keep (comma-separated multiaddrs ending "
             "in /p2p/<peer id>), usually just the seed; LAN peers are found by mDNS", max_len=300,
             max_count=16),
    BootCode("ipfs.timeout", "seconds", "120", "bound on the whole hook, in seconds (a trailing s is "
             "allowed)", low=2, high=3600),
    BootCode("ipfs.mirror", "url", None, "plain HTTP repo with the same flat layout, the fallback",
             max_len=512),
    BootCode("ipfs.gateway", "url", None, "a seed's trustless HTTP gateway (tce-ipfs seed serve "
             "--gateway-port): each file's blocks come as one CAR, checked by kubo against their CIDs; "
             "bitswap when it fails", max_len=512),
    BootCode("ipfs.seed", "bool", "1", "keep kubo running after boot, serving what it fetched"),
    BootCode("ipfs.onecopy", "bool", "1",
             "serve each placed extension from its file in optional/ (kubo's filestore), not a copy"),
    BootCode("ipfs.mdns", "bool", "1", "LAN discovery (mDNS): machines booting together find each other "
             "and trade blocks; 0 turns it off"),
    BootCode("ipfs.swarmkey", "hex", None, "private swarm key (64 hex digits)", max_len=64),
    BootCode("ipfs.net", "choice", "public", "network mode: public (the IPFS network: bootstrap, DHT, NAT "
             "traversal, announce what is seeded), lan (named peers and mDNS only) or private (the "
             "swarm of ipfs.swarmkey); default public, lan when ipfs.peers is given, private with "
             "ipfs.swarmkey", choices=("public", "lan", "private")),
    BootCode("ipfs.bootstrap", "peers", None, "bootstrap peers for ipfs.net=public instead of kubo's "
             "defaults (comma-separated multiaddrs ending in /p2p/<peer id>)", max_len=300, max_count=16),
    BootCode("ipfs.port", "port", "4001", "TCP port kubo listens on for LAN peers (0: any)", low=0,
             high=65535),
    BootCode("ipfs.debug", "bool", "0", "every log line on the console; scratch files kept"),
    BootCode("ipfs.car", "car", None, "a CAR file (tce-ipfs car export) on a disk, imported before "
             "fetching: <sdb1, LABEL=name or UUID=id>:<path> (USB seeding)", max_len=256),
    BootCode("nodhcp", "flag", None, "no udhcpc: wait for an address configured otherwise", tc=True),
)

BY_NAME = {c.name: c for c in CODES}


def ours(name: str) -> bool:
    """Is ``name`` in tce-ipfs's namespace (``ipfs.*``, also misspelt as ``ipfs_*``/``ipfs-*``)?"""
    return re.match(r"ipfs[._-]", name, re.IGNORECASE) is not None


def check(name: str, value: str | None) -> None:
    """Raise ``UsageError`` unless the hook would take ``name[=value]`` as meant.

    A code of the table gets its value checked; an unknown name in the ``ipfs`` namespace is refused,
    naming the known codes; any other name is not tce-ipfs's and passes.
    """
    item = name if value is None else f"{name}={value}"
    code = BY_NAME.get(name)
    if code is None:
        if not ours(name):
            return
        close = difflib.get_close_matches(name, BY_NAME, n=1)
        guess = f" (did you mean {close[0]}?)" if close else ""
        known = ", ".join(c.name for c in CODES if c.name != "tce")
        raise UsageError(f"unknown boot code {item!r}{guess}",
                         hint=f"tce-ipfs's boot codes are {known} (tce= comes from --cid)")
    problem = code.check(value)
    if problem is not None:
        raise UsageError(f"bad boot code {item!r}: {problem}", hint=f"{code.name}: {code.doc}")


# --------------------------------------------------------------------------- the hook's value rules
# Each mirrors a validator of initrd-hooks/lib/parse.sh (same name there, in sh); the tests run both.

_BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def _uint(text: str) -> bool:
    return text.isascii() and text.isdigit() and len(text) <= 9


def _only(text: str, alphabet: str) -> bool:
    return bool(text) and all(ch in alphabet for ch in text)


def is_peerid(text: str) -> bool:
    if not 40 <= len(text) <= 100:
        return False
    if text.startswith(("Qm", "1")):
        return _only(text, _BASE58)
    if text.startswith("b"):
        return _only(text[1:], "abcdefghijklmnopqrstuvwxyz234567")
    if text.startswith("k"):
        return _only(text[1:], "0123456789abcdefghijklmnopqrstuvwxyz")
    return False


def is_ip4(text: str) -> bool:
    parts = text.split(".")
    return len(parts) == 4 and all(p.isdigit() and len(p) <= 3 and int(p) <= 255 for p in parts)


def is_multiaddr(text: str, max_len: int) -> bool:
    """/ip4|ip6|dns|dns4|dns6/<addr>/tcp|udp/<port>[/quic-v1|/quic|/ws]/p2p/<peer id>, or
    /dnsaddr/<domain>/p2p/<peer id> (``ipfs swarm connect`` needs the peer id)."""
    if len(text) > max_len or not re.fullmatch(r"/[A-Za-z0-9./:_-]*", text) or "//" in text:
        return False
    if text.endswith("/"):
        return False
    parts = text[1:].split("/")
    if len(parts) < 4:
        return False
    proto, addr, rest = parts[0], parts[1], parts[2:]
    if proto == "ip4":
        if not is_ip4(addr):
            return False
    elif proto == "ip6":
        if not re.fullmatch(r"[0-9a-fA-F:]+", addr):
            return False
    elif proto in ("dns", "dns4", "dns6", "dnsaddr"):
        if not re.fullmatch(r"[A-Za-z0-9.-]+", addr):
            return False
    else:
        return False
    if proto != "dnsaddr":
        if len(rest) < 2 or rest[0] not in ("tcp", "udp") or not _uint(rest[1]):
            return False
        if not 1 <= int(rest[1]) <= 65535:
            return False
        rest = rest[2:]
        if rest and rest[0] in ("quic-v1", "quic", "ws"):
            rest = rest[1:]
    return len(rest) == 2 and rest[0] in ("p2p", "ipfs") and is_peerid(rest[1])


def is_safe_path(text: str) -> bool:
    """a/b/c of [A-Za-z0-9._+-], no '.' or '..' component, no '//', not absolute."""
    if not text or text.startswith("/") or text.endswith("/") or "//" in text:
        return False
    return all(re.fullmatch(r"[A-Za-z0-9._+-]+", p) and p not in (".", "..") for p in text.split("/"))


def is_safe_name(text: str) -> bool:
    return re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+-]*", text) is not None and ".." not in text


def is_http_url(text: str, max_len: int) -> bool:
    """http://host[:port][/path]: no credentials, query, '..' or odd characters."""
    if len(text) > max_len or not text.startswith("http://"):
        return False
    rest = text[len("http://"):]
    host, sep, path = rest.partition("/")
    name, colon, port = host.rpartition(":") if ":" in host else (host, "", "")
    if not re.fullmatch(r"[A-Za-z0-9.-]+", name) or name.startswith((".", "-")):
        return False
    if colon and not (_uint(port) and 1 <= int(port) <= 65535):
        return False
    path = path.removesuffix("/")
    return not sep or not path or is_safe_path(path)


def _needs_value(value: str | None) -> str | None:
    return "it needs a value (NAME=VALUE); the hook ignores it bare" if value is None else None


def _tce(code: BootCode, value: str | None) -> str | None:
    if value is None:
        return _needs_value(value)
    assert code.max_len is not None
    if len(value) > code.max_len:
        return f"at most {code.max_len} characters"
    scheme, _, rest = value.partition(":")
    if scheme in ("ipfs", "ipns"):
        ident, _, sub = rest.partition("/")
        sub = sub.removesuffix("/")
        if sub and (len(sub) > 256 or not is_safe_path(sub)):
            return "the sub-path must be a/b/c of [A-Za-z0-9._+-] (no '.', '..' or '//')"
        if scheme == "ipns":
            domain = re.fullmatch(r"[a-z0-9.-]+", ident) and "." in ident and ".." not in ident and \
                not ident.startswith((".", "-")) and not ident.endswith((".", "-"))
            return None if len(ident) <= 253 and (is_peerid(ident) or domain) else "not an IPNS name"
        v0 = ident.startswith("Qm") and len(ident) == 46 and _only(ident, _BASE58)
        v1 = ident.startswith("b") and 10 <= len(ident) <= 128 and \
            _only(ident[1:], "abcdefghijklmnopqrstuvwxyz234567")
        return None if v0 or v1 else "not a CID (Qm... or b... base32)"
    if value.startswith("http://"):
        return None if is_http_url(value, 512) else "not a plain http://host[:port]/path URL"
    return "the scheme must be ipfs:, ipns: or http://"


def _name(code: BootCode, value: str | None) -> str | None:
    if value is None:
        return _needs_value(value)
    assert code.max_len is not None
    if len(value) > code.max_len or not is_safe_name(value):
        return f"a plain file name (at most {code.max_len} of [A-Za-z0-9._+-])"
    return None


def _peers(code: BootCode, value: str | None) -> str | None:
    if value is None:
        return _needs_value(value)
    assert code.max_len is not None and code.max_count is not None
    addrs = [a for a in value.split(",") if a]
    if not addrs:
        return "it is empty"
    if len(addrs) > code.max_count:
        return f"at most {code.max_count} peers"
    bad = [a for a in addrs if not is_multiaddr(a, code.max_len)]
    if bad:
        return (f"{bad[0][:60]!r} is not a multiaddr with a peer id "
                "(/ip4/A.B.C.D/tcp/PORT/p2p/ID)")
    return None


def _range(code: BootCode, value: str | None, *, suffix: str = "") -> str | None:
    if value is None:
        return _needs_value(value)
    assert code.low is not None and code.high is not None
    number = value.removesuffix(suffix) if suffix else value
    if not _uint(number) or not code.low <= int(number) <= code.high:
        return f"a whole number between {code.low} and {code.high}"
    return None


def _seconds(code: BootCode, value: str | None) -> str | None:
    return _range(code, value, suffix="s")


def _port(code: BootCode, value: str | None) -> str | None:
    return _range(code, value)


def _url(code: BootCode, value: str | None) -> str | None:
    if value is None:
        return _needs_value(value)
    assert code.max_len is not None
    return None if is_http_url(value, code.max_len) else "not a plain http://host[:port]/path URL"


def _bool(code: BootCode, value: str | None) -> str | None:
    ok = value is None or value in ("1", "yes", "on", "true", "0", "no", "off", "false")
    return None if ok else "0 or 1 (also yes/no, on/off, true/false; bare means 1)"


def _hex(code: BootCode, value: str | None) -> str | None:
    if value is None:
        return _needs_value(value)
    ok = len(value) == code.max_len and _only(value, "0123456789abcdefABCDEF")
    return None if ok else f"{code.max_len} hex digits"


def _car(code: BootCode, value: str | None) -> str | None:
    if value is None:
        return _needs_value(value)
    assert code.max_len is not None
    device, colon, path = value.partition(":")
    labelled = device.startswith(("LABEL=", "UUID="))
    ident = device.partition("=")[2] if labelled else device.removeprefix("/dev/")
    if not colon or len(value) > code.max_len or not is_safe_name(ident) or \
            not is_safe_path(path.removeprefix("/")):
        return "<device, LABEL=name or UUID=id>:<path> (e.g. LABEL=TCE:/repo.car)"
    return None


def _flag(code: BootCode, value: str | None) -> str | None:
    return None  # present or not: any value counts as present, as in TC


def _choice(code: BootCode, value: str | None) -> str | None:
    if value is None:
        return _needs_value(value)
    return None if value in code.choices else f"one of {', '.join(code.choices)}"


def check_together(codes: Mapping[str, str | None]) -> None:
    """Raise ``UsageError`` for codes the hook refuses in combination (each may be fine alone)."""
    net = codes.get("ipfs.net")
    key = "ipfs.swarmkey" in codes
    if net == "public" and key:
        raise UsageError("bad boot codes: ipfs.net=public cannot go with ipfs.swarmkey",
                         hint="a private swarm stays private: drop one of them")
    if net == "private" and not key:
        raise UsageError("bad boot code 'ipfs.net=private': it needs ipfs.swarmkey")


_CHECKS = {"tce": _tce, "name": _name, "peers": _peers, "seconds": _seconds, "url": _url, "bool": _bool,
           "hex": _hex, "port": _port, "flag": _flag, "car": _car, "choice": _choice}
