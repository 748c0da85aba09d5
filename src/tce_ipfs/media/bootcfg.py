"""Boot loader configuration: read and edit syslinux (isolinux/pxelinux), Raspberry Pi ``config.txt`` /
``cmdline.txt``; write iPXE scripts. Pure text in, text out (no file system access).

Edits are idempotent and reversible:

* syslinux: every line we add sits between ``# tce-ipfs begin`` and ``# tce-ipfs end``; every original
  line we disable is kept as ``# tce-ipfs was: <line>``. ``strip_ours`` removes the blocks and restores
  the originals, so re-editing starts from the user's file (one P2P entry, never two). Syslinux has no
  trailing comments (``APPEND x # y`` would pass ``#`` to the kernel), hence the whole-line markers.
* ``config.txt``: our initramfs file is appended to every ``initramfs`` list (removed first if there).
* ``cmdline.txt``: one line; ``tce=``, every ``ipfs.*`` code and the codes we set are replaced.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from tce_ipfs import bootcodes
from tce_ipfs.errors import RemasterError, UsageError

MARK = "# tce-ipfs"
BEGIN = "# tce-ipfs begin (written by `tce-ipfs remaster`; re-run it to change this block)"
END = "# tce-ipfs end"
WAS = "# tce-ipfs was: "
LABEL = "tce-ipfs"

# Syslinux keywords that name what a label boots.
_KERNEL_KEYS = ("kernel", "linux", "boot", "bss", "pxe", "fdimage", "comboot", "com32", "config")


# --------------------------------------------------------------------------------------------- codes

def parse_codes(items: Sequence[str]) -> dict[str, str | None]:
    """``["ipfs.peers=/ip4/..", "base"]`` -> ``{"ipfs.peers": "/ip4/..", "base": None}``, each item
    checked as ``check_codes`` does (a code given twice: the last one wins, as at boot)."""
    codes: dict[str, str | None] = {}
    for item in items:
        key, sep, value = item.partition("=")
        codes[key] = _check_code(key, value if sep else None)
    bootcodes.check_together(codes)
    return codes


def check_codes(codes: Mapping[str, str | None]) -> dict[str, str | None]:
    """Refuse boot codes that would not reach the hook as meant; return them as a new dict.

    A name is letters, digits, ``.``, ``_`` and ``-``; a value may not contain white space or quotes
    (the kernel command line has no quoting TC honours). ``tce=`` comes from the CID, ``initrd=`` from
    the medium: neither may be passed as a code. tce-ipfs's own codes (``bootcodes.CODES``) must be
    known and their values what the hook takes.
    """
    checked = {key: _check_code(key, value) for key, value in codes.items()}
    bootcodes.check_together(checked)
    return checked


def _check_code(key: str, value: str | None) -> str | None:
    item = key if value is None else f"{key}={value}"
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*", key):
        raise UsageError(f"bad boot code {item!r}: the name must be letters, digits, '.', '_' or '-'",
                         hint="pass codes as KEY=VALUE or a bare FLAG, e.g. --boot-code ipfs.timeout=120")
    if value is not None and re.search(r"[\s\"']", value):
        raise UsageError(f"bad boot code {item!r}: the value contains white space or a quote")
    if key == "tce":
        raise UsageError("pass the CID with --cid, not as a tce= boot code")
    if key == "initrd":
        raise UsageError("initrd= is managed by tce-ipfs; do not pass it as a boot code")
    bootcodes.check(key, value)
    return value


def p2p_codes(cid: str, codes: Mapping[str, str | None]) -> list[str]:
    """The boot codes of a P2P boot: ``tce=ipfs:<CID>`` first, then the user's codes in order."""
    out = [f"tce=ipfs:{cid}"]
    out += [k if v is None else f"{k}={v}" for k, v in codes.items()]
    return out


def _code_key(token: str) -> str:
    return token.split("=", 1)[0]


def edit_cmdline(cmdline: str, cid: str, codes: Mapping[str, str | None]) -> str:
    """Drop ``tce=``, ``ipfs.*`` and the codes being set from a kernel command line; append ours."""
    drop = {"tce", *codes}
    kept = [t for t in cmdline.split() if _code_key(t) not in drop and not _code_key(t).startswith("ipfs.")]
    return " ".join([*kept, *p2p_codes(cid, codes)])


def split_initrd(cmdline: str) -> tuple[list[str], str]:
    """``initrd=`` values (comma lists, all occurrences, in order) and the command line without them."""
    initrds: list[str] = []
    rest: list[str] = []
    for token in cmdline.split():
        if token.lower().startswith("initrd="):
            initrds += [p for p in token.split("=", 1)[1].split(",") if p]
        else:
            rest.append(token)
    return initrds, " ".join(rest)


# ------------------------------------------------------------------------------------------ syslinux

@dataclass
class Entry:
    label: str
    start: int  # index of the LABEL line
    kernel: str | None = None
    initrds: list[str] = field(default_factory=list)
    append: str | None = None  # None: no APPEND of its own (the global one applies)
    menu_default: bool = False


@dataclass
class Syslinux:
    """A parsed syslinux config (after ``strip_ours``)."""

    lines: list[str]
    entries: list[Entry]
    default: str | None  # first word of the last DEFAULT
    global_append: str
    has_menu: bool

    def entry(self, label: str) -> Entry | None:
        for entry in self.entries:
            if entry.label == label:
                return entry
        return None

    def default_entry(self) -> Entry:
        """The entry a timeout boots: DEFAULT's label, or ``MENU DEFAULT``, or the first LABEL."""
        if self.default is not None:
            found = self.entry(self.default)
            if found is not None:
                return found
        for entry in self.entries:
            if entry.menu_default:
                return entry
        if not self.entries:
            raise RemasterError("the syslinux config has no LABEL entry to base the P2P entry on")
        return self.entries[0]


def _split(line: str) -> tuple[str, str]:
    stripped = line.strip()
    if not stripped or stripped.startswith("#"):
        return "", ""
    parts = stripped.split(None, 1)
    return parts[0].lower(), (parts[1].strip() if len(parts) > 1 else "")


def strip_ours(text: str) -> str:
    """Remove every block we added and restore every line we disabled."""
    out: list[str] = []
    inside = False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith(MARK + " begin"):
            inside = True
            continue
        if inside:
            if stripped.startswith(END):
                inside = False
            continue
        if stripped.startswith(WAS):
            indent = line[: len(line) - len(line.lstrip())]
            out.append(indent + stripped[len(WAS):])
            continue
        out.append(line)
    if inside:
        raise RemasterError("a '# tce-ipfs begin' block has no '# tce-ipfs end'",
                            hint="restore the config from the original ISO and remaster again")
    return "\n".join(out) + ("\n" if text.endswith("\n") or not text else "")


def parse_syslinux(text: str, *, ours: bool = False) -> Syslinux:
    """Parse the user's config (our blocks stripped), or with ``ours`` what syslinux itself sees."""
    lines = (text if ours else strip_ours(text)).splitlines()
    entries: list[Entry] = []
    default: str | None = None
    global_append = ""
    has_menu = False
    current: Entry | None = None
    in_text = False
    for idx, line in enumerate(lines):
        key, value = _split(line)
        if in_text:
            if key == "endtext":
                in_text = False
            continue
        if not key:
            continue
        if key == "label":
            current = Entry(label=value, start=idx)
            entries.append(current)
        elif key in ("ui",) or (key == "menu" and current is None):
            has_menu = True
        elif key == "default":
            default = value.split()[0] if value else None
        elif current is None:
            if key == "append":
                global_append = "" if value == "-" else value
        elif key in _KERNEL_KEYS:
            current.kernel = value
        elif key == "initrd":
            current.initrds += [p for p in value.split(",") if p]
        elif key == "append":
            current.append = "" if value == "-" else value
        elif key == "menu":
            has_menu = True
            if value.lower().split()[:1] == ["default"]:
                current.menu_default = True
        elif key == "text":
            in_text = True
    return Syslinux(lines=lines, entries=entries, default=default, global_append=global_append,
                    has_menu=has_menu)


def add_p2p_entry(
    text: str,
    *,
    cid: str,
    codes: Mapping[str, str | None],
    initrds: Sequence[str] | None = None,
    extra_initrds: Sequence[str] = (),
    make_default: bool = False,
    base_label: str | None = None,
    label: str = LABEL,
) -> str:
    """Return ``text`` with one P2P entry (replacing any earlier one), based on the default entry.

    The entry boots the base entry's kernel with its initrds plus ``extra_initrds`` (or exactly
    ``initrds`` when given) and its command line with ``tce=ipfs:<cid>`` and ``codes``.
    ``make_default`` points DEFAULT / ONTIMEOUT / MENU DEFAULT at it; otherwise they are the user's.
    """
    cfg = parse_syslinux(text)
    if cfg.entry(label) is not None:
        raise RemasterError(f"the config already has a LABEL {label} that tce-ipfs did not write",
                            hint="rename that entry or remove it, then remaster again")
    base = cfg.entry(base_label) if base_label else cfg.default_entry()
    if base is None:
        raise RemasterError(f"no LABEL {base_label} in the syslinux config",
                            hint="labels: " + ", ".join(e.label for e in cfg.entries))
    if not base.kernel:
        raise RemasterError(f"entry {base.label!r} has no KERNEL/LINUX line to boot")
    append = cfg.global_append if base.append is None else base.append
    in_append, append = split_initrd(append)
    base_initrds = [*base.initrds, *in_append]
    if initrds is None:
        if not base_initrds:
            raise RemasterError(f"entry {base.label!r} boots no initrd; a Tiny Core entry needs core.gz")
        initrds = [*base_initrds, *extra_initrds]
    cmdline = edit_cmdline(append, cid, codes)

    lines = list(cfg.lines)
    if make_default:
        for idx, line in enumerate(lines):
            key, value = _split(line)
            if key in ("default", "ontimeout") or (key == "menu" and value.lower() == "default"):
                indent = line[: len(line) - len(line.lstrip())]
                lines[idx] = indent + WAS + line.strip()
    block = [BEGIN]
    if make_default:
        block += ["DEFAULT " + label]
    block += [f"LABEL {label}"]
    if cfg.has_menu:
        block += ["\tMENU LABEL Boot with extensions from IPFS (tce=ipfs:)"]
        if make_default:
            block += ["\tMENU DEFAULT"]
    block += [f"\tKERNEL {base.kernel}", "\tINITRD " + ",".join(initrds), f"\tAPPEND {cmdline}", END]
    # After everything: syslinux scopes label keywords to the last LABEL, globals stay global.
    return "\n".join([*lines, *block]) + "\n"


def p2p_entry(text: str, label: str = LABEL) -> Entry | None:
    """The P2P entry of an edited config (None if there is none)."""
    lines = text.splitlines()
    entries = []
    inside = False
    for idx, line in enumerate(lines):
        if line.strip().startswith(MARK + " begin"):
            inside = True
        elif line.strip().startswith(END):
            inside = False
        elif inside:
            key, value = _split(line)
            if key == "label":
                entries.append(Entry(label=value, start=idx))
            elif entries and key in _KERNEL_KEYS:
                entries[-1].kernel = value
            elif entries and key == "initrd":
                entries[-1].initrds = value.split(",")
            elif entries and key == "append":
                entries[-1].append = value
    found = [e for e in entries if e.label == label]
    if len(found) > 1:
        raise RemasterError(f"{len(found)} P2P entries in one config")
    return found[0] if found else None


def syslinux_netboot(kernel: str, initrds: Sequence[str], cmdline: str, *, serial: bool = False) -> str:
    """A ``pxelinux.cfg/default`` that boots straight into the P2P entry."""
    head = ["SERIAL 0 115200"] if serial else []
    return "\n".join([
        *head,
        "# pxelinux config written by `tce-ipfs netboot`",
        "DEFAULT " + LABEL,
        "PROMPT 0",
        "TIMEOUT 10",
        f"LABEL {LABEL}",
        f"\tKERNEL {kernel}",
        f"\tINITRD {','.join(initrds)}",
        f"\tAPPEND {cmdline}",
        "",
    ])


# ---------------------------------------------------------------------------------------------- iPXE

def ipxe_script(kernel: str, initrds: Sequence[str], cmdline: str) -> str:
    """An iPXE script; relative names resolve against the script's own URL (TFTP or HTTP)."""
    names = [i.rsplit("/", 1)[-1] for i in initrds]
    args = " ".join([*(f"initrd={n}" for n in names), cmdline])
    return "\n".join([
        "#!ipxe",
        "# written by `tce-ipfs netboot`: Tiny Core with extensions from IPFS",
        f"kernel {kernel} {args}",
        *(f"initrd {i}" for i in initrds),
        "boot",
        "",
    ])


# ------------------------------------------------------------------------------- Raspberry Pi files

_INITRAMFS = re.compile(r"^(\s*initramfs\s+)(\S+)(.*)$", re.IGNORECASE)


@dataclass
class PiConfig:
    initramfs: list[list[str]]  # each `initramfs` line's file list, in file order
    kernels: list[str]  # every `kernel` value
    cmdlines: list[str]  # every `cmdline` value (default cmdline.txt)


def parse_config_txt(text: str) -> PiConfig:
    lists: list[list[str]] = []
    kernels: list[str] = []
    cmdlines: list[str] = []
    for line in text.splitlines():
        body = line.split("#", 1)[0]
        m = _INITRAMFS.match(body)
        if m:
            lists.append([p for p in m.group(2).split(",") if p])
            continue
        key, _, value = body.strip().partition(" ")
        if not value and "=" in key:
            key, _, value = key.partition("=")
        key = key.lower()
        if key == "kernel" and value.strip():
            kernels.append(value.strip())
        elif key == "cmdline" and value.strip():
            cmdlines.append(value.strip())
    return PiConfig(initramfs=lists, kernels=kernels, cmdlines=cmdlines or ["cmdline.txt"])


def edit_config_txt(text: str, name: str) -> str:
    """Append ``name`` to every ``initramfs`` list (moving it to the end if already listed)."""
    if not parse_config_txt(text).initramfs:
        raise RemasterError("config.txt has no `initramfs FILE[,FILE...] followkernel` line",
                            hint="piCore's config.txt lists rootfs and modules there; add it first")
    out = []
    for line in text.splitlines(keepends=True):
        code, hash_, comment = line.partition("#")
        m = _INITRAMFS.match(code.rstrip("\r\n"))
        if m:
            files = [p for p in m.group(2).split(",") if p and p != name] + [name]
            newline = line[len(line.rstrip("\r\n")):] if not hash_ else ""
            line = m.group(1) + ",".join(files) + m.group(3) + hash_ + comment + newline
        out.append(line)
    return "".join(out)
