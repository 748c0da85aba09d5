"""Pack a directory tree as a Tiny Core extension: ``NAME.tcz`` plus its sidecar files.

What TC expects (tinycore-facts section 3) and how we produce it:

* ``NAME.tcz``: squashfs 4 made by ``mksquashfs`` with TC's parameters -- 4 KiB blocks, gzip,
  no xattrs, every file owned by root. ``block_size``/``compression`` may be raised for big binaries
  (kubo); non-default values are written into the ``.info`` Comments.
* Reproducible: every timestamp (inodes and superblock) is the fixed ``epoch``
  (``SOURCE_DATE_EPOCH`` or 0), ownership and modes come from a generated pseudo file rather than
  from whoever built the tree, and mksquashfs 4.5's reproducible mode sorts and orders the data
  itself. Same tree contents and modes -> byte-identical image, whatever the mtimes.
* Ownership: everything is ``root:root`` except ``usr/local/tce.installed`` (``root:staff`` 775,
  as the TC book asks; tce-load's ``cp -ais`` copies that directory's owner and mode onto the live
  ``/usr/local/tce.installed``, where user tc must be able to create marker files) and the install
  script inside it (``root:staff`` 755). ``-all-root`` cannot express that one exception (it
  overrides the pseudo file), so the pseudo file sets uid/gid 0 on every entry instead -- same result.
* Directories get ``r-x`` for everyone: the image is mounted at ``/tmp/tcloop/NAME`` and reached
  through symlinks by user tc, so a 0700 directory (a build tree made under umask 077) would hide
  its contents.
* Sidecars: ``.md5.txt`` (``md5sum`` format), ``.list`` (files and symlinks, no leading ``/``,
  no directories, like TC's lists), ``.info`` (TC's fields, ``Size`` filled in), ``.dep`` only when
  there are dependencies (a stale one from an earlier pack is removed).

Refused, with the offending file named: an empty tree, a symlink that escapes the tree, device
nodes/fifos/sockets, file names with control characters, a name TC would not accept, bad deps.
"""

from __future__ import annotations

import logging
import math
import os
import posixpath
import re
import shutil
import stat
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tce_ipfs import __version__, proc, tcrepo
from tce_ipfs.errors import TczError, ToolMissing

log = logging.getLogger(__name__)

TC_BLOCK_SIZE = 4096
TC_COMPRESSION = "gzip"
COMPRESSIONS = ("gzip", "xz")
MIN_BLOCK_SIZE = 4096
MAX_BLOCK_SIZE = 1024 * 1024

# gid of `staff` on Tiny Core (/etc/group: staff:x:50:).
STAFF_GID = 50
INSTALLED_DIR = "usr/local/tce.installed"

MAX_NAME_LEN = 100  # NAME.tcz, including the suffix; TC's own names stay far below this
_NAME_RE = re.compile(r"^[A-Za-z0-9_+][A-Za-z0-9._+-]*$")
_KERNEL = "-KERNEL"

# .info fields in TC's order [CB part3/ch04]; keys are padded to this width, continuation lines too.
INFO_FIELDS = (
    "Title", "Description", "Version", "Author", "Original-site", "Copying-policy", "Size",
    "Extension_by", "Tags", "Comments", "Change-log", "Current",
)
_INFO_WIDTH = 16


@dataclass(frozen=True)
class TczResult:
    """What ``pack`` produced. ``files`` is the content of the ``.list`` (files and symlinks)."""

    name: str  # NAME.tcz
    tcz: Path
    md5: str
    size: int
    md5_file: Path
    list_file: Path
    info_file: Path
    dep_file: Path | None
    files: tuple[str, ...]
    deps: tuple[str, ...] = ()
    block_size: int = TC_BLOCK_SIZE
    compression: str = TC_COMPRESSION
    info: dict[str, str] = field(default_factory=dict)

    @property
    def sidecars(self) -> list[Path]:
        out = [self.md5_file, self.list_file, self.info_file]
        if self.dep_file is not None:
            out.append(self.dep_file)
        return out

    @property
    def paths(self) -> list[Path]:
        """The image and every sidecar, image first."""
        return [self.tcz, *self.sidecars]

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "tcz": str(self.tcz),
            "md5": self.md5,
            "size": self.size,
            "size_human": human_size(self.size),
            "block_size": self.block_size,
            "compression": self.compression,
            "deps": list(self.deps),
            "files": len(self.files),
            "outputs": {p.name: {"path": str(p), "size": p.stat().st_size} for p in self.paths},
        }


# ---------------------------------------------------------------------------------------- names


def check_name(name: str) -> str:
    """Validate an extension file name (``NAME.tcz``) as TC would use it; return it unchanged."""
    what = f"extension name {name!r}"
    if not name.endswith(".tcz"):
        raise TczError(f"{what} must end in .tcz")
    _check_base(name[: -len(".tcz")], what)
    if _KERNEL in name:
        raise TczError(f"{what} contains {_KERNEL}",
                       hint="-KERNEL is only valid in .dep lines; name the file after the real kernel "
                            "version (tce-load substitutes $(uname -r) for -KERNEL)")
    return name


def normalize_dep(dep: str) -> str:
    """``foo`` or ``foo.tcz`` -> ``foo.tcz``; ``-KERNEL`` is kept. Raises ``TczError`` if invalid."""
    text = dep.strip()
    name = text if text.endswith(".tcz") else text + ".tcz"
    _check_base(name[: -len(".tcz")], f"dependency {dep!r}")
    return name


def _check_base(base: str, what: str) -> None:
    if not base:
        raise TczError(f"{what} is empty")
    if len(base) + len(".tcz") > MAX_NAME_LEN:
        raise TczError(f"{what} is longer than {MAX_NAME_LEN} characters")
    if "/" in base:
        raise TczError(f"{what} contains '/'", hint="give the file name only")
    if any(c.isspace() for c in base):
        raise TczError(f"{what} contains whitespace")
    if base[0] in ".-":
        raise TczError(f"{what} starts with {base[0]!r}")
    if not _NAME_RE.match(base):
        bad = sorted({c for c in base if not re.match(r"[A-Za-z0-9._+-]", c)})
        raise TczError(f"{what} contains {''.join(bad)!r}", hint="allowed: letters, digits and . _ + -")


# ----------------------------------------------------------------------------------- parameters


def check_params(block_size: int, compression: str) -> None:
    if (isinstance(block_size, bool) or not isinstance(block_size, int)
            or block_size < MIN_BLOCK_SIZE or block_size > MAX_BLOCK_SIZE
            or block_size & (block_size - 1)):
        raise TczError(f"block size {block_size!r} is not a power of two from 4096 to 1048576",
                       hint="TC uses 4096; larger blocks shrink big binaries but cost page-cache RAM")
    if compression not in COMPRESSIONS:
        raise TczError(f"compression {compression!r} is not one of {', '.join(COMPRESSIONS)}")


def default_epoch() -> int:
    """``SOURCE_DATE_EPOCH`` when set (the reproducible-builds convention), else 0."""
    text = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if not text:
        return 0
    try:
        value = int(text)
    except ValueError:
        raise TczError(f"SOURCE_DATE_EPOCH={text!r} is not an integer") from None
    _check_epoch(value)
    return value


def _check_epoch(epoch: int) -> None:
    if not 0 <= epoch <= 0xFFFFFFFF:
        raise TczError(f"timestamp {epoch} does not fit squashfs' unsigned 32-bit time")


def human_size(n: int) -> str:
    """Size the way TC's .info files show it (``du -h`` style, rounded up): 296K, 1.2M, 18M."""
    value = float(max(n, 0))
    for unit in ("K", "M", "G", "T"):
        value /= 1024
        if value < 10:
            shown = math.ceil(value * 10) / 10
            if shown < 10:
                return f"{shown:.1f}{unit}"
            value = shown
        shown_int = math.ceil(value)
        if shown_int < 1024 or unit == "T":
            return f"{shown_int}{unit}"
    raise AssertionError("unreachable")


# --------------------------------------------------------------------------------- tree scanning


@dataclass(frozen=True)
class _Entry:
    rel: str  # path inside the image, no leading '/'
    mode: int  # permission bits to store
    gid: int
    is_dir: bool


def _entries(src: Path, name: str) -> Iterator[_Entry]:
    """Walk ``src`` in squashfs order (names sorted bytewise per directory), checking every entry."""
    base = name[: -len(".tcz")]
    root = str(src)

    def walk(dir_rel: str) -> Iterator[_Entry]:
        dir_abs = os.path.join(root, dir_rel) if dir_rel else root
        try:
            names = sorted(os.listdir(dir_abs), key=os.fsencode)
        except OSError as exc:
            raise TczError(f"{dir_abs}: cannot read directory: {exc.strerror}") from None
        for entry_name in names:
            rel = f"{dir_rel}/{entry_name}" if dir_rel else entry_name
            full = os.path.join(root, rel)
            _check_file_name(rel, full)
            st = os.lstat(full)
            perm = stat.S_IMODE(st.st_mode)
            if stat.S_ISDIR(st.st_mode):
                if rel == INSTALLED_DIR:
                    yield _Entry(rel, 0o775, STAFF_GID, True)
                else:
                    yield _Entry(rel, perm | 0o555, 0, True)
                yield from walk(rel)
            elif stat.S_ISREG(st.st_mode):
                if dir_rel == INSTALLED_DIR:
                    _check_install_script(full, entry_name, base)
                    yield _Entry(rel, 0o755, STAFF_GID, False)
                else:
                    yield _Entry(rel, perm, 0, False)
            elif stat.S_ISLNK(st.st_mode):
                if dir_rel == INSTALLED_DIR:
                    raise TczError(f"{full}: the install script must be a regular file, not a symlink")
                _check_symlink(src, rel, full)
                yield _Entry(rel, 0o777, 0, False)
            else:
                kind = ("a character device" if stat.S_ISCHR(st.st_mode) else
                        "a block device" if stat.S_ISBLK(st.st_mode) else
                        "a fifo" if stat.S_ISFIFO(st.st_mode) else
                        "a socket" if stat.S_ISSOCK(st.st_mode) else "a special file")
                raise TczError(f"{full} is {kind}; an extension may hold only files, directories and "
                               "symlinks", hint="create device nodes at run time (udev or an install script)")

    installed = src / INSTALLED_DIR
    if installed.is_symlink():
        raise TczError(f"{installed} must be a directory, not a symlink")
    yield from walk("")


def _check_file_name(rel: str, full: str) -> None:
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError:
        raise TczError(f"{full!r}: file name is not valid UTF-8") from None
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in rel):
        raise TczError(f"{full!r}: file name contains a control character (TC's .list is one path a line)")


def _check_install_script(full: str, entry_name: str, base: str) -> None:
    if entry_name != base:
        raise TczError(f"{full}: install scripts in {INSTALLED_DIR}/ must be named after the "
                       f"extension ({base}); tce-load would mark {entry_name!r} as installed")
    with open(full, "rb") as fh:
        head = fh.read(2)
    if head != b"#!":
        raise TczError(f"{full}: install script has no #! line", hint="start it with #!/bin/sh")


def _check_symlink(src: Path, rel: str, full: str) -> None:
    target = os.readlink(full)
    if not target:
        raise TczError(f"{full}: empty symlink")
    if target.startswith("/"):
        # On TC the image's root becomes `/`, so an absolute link is fine when it names something this
        # extension itself installs; anything else points at the build host (a classic DESTDIR leak)
        # or at files the extension does not provide.
        inside = posixpath.normpath(target).lstrip("/")
        if inside and os.path.lexists(os.path.join(str(src), inside)):
            return
        hint = "use a relative link"
        if target.startswith(str(src.resolve())) or target.startswith(str(src)):
            hint = "the link points into the build directory; use a relative link"
        raise TczError(f"{full}: absolute symlink to {target} escapes the extension tree", hint=hint)
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(rel), target))
    if resolved == ".." or resolved.startswith("../"):
        raise TczError(f"{full}: symlink to {target} escapes the extension tree")


def _pseudo_quote(rel: str) -> str:
    return '"' + rel.replace("\\", "\\\\").replace('"', '\\"') + '"'


# ------------------------------------------------------------------------------------ sidecars


def render_info(fields: Mapping[str, str]) -> str:
    """TC's ``.info`` layout: ``Key:`` padded to 16 columns, continuation lines indented as much."""
    lines: list[str] = []
    for key in INFO_FIELDS:
        value = fields.get(key, "")
        parts = str(value).splitlines() or [""]
        lines.append(f"{key + ':':<{_INFO_WIDTH}}{parts[0]}".rstrip())
        lines.extend((" " * _INFO_WIDTH + part).rstrip() for part in parts[1:])
    return "\n".join(lines) + "\n"


def _info_overrides(info: Mapping[str, str]) -> dict[str, str]:
    canonical = {k.lower(): k for k in INFO_FIELDS}
    overrides: dict[str, str] = {}
    for key, value in info.items():
        real = canonical.get(key.strip().lower())
        if real is None:
            raise TczError(f".info field {key!r} is not one of TC's fields",
                           hint="fields: " + ", ".join(INFO_FIELDS))
        if real == "Size":
            raise TczError(".info field 'Size' is computed from the image and cannot be set")
        overrides[real] = str(value)
    return overrides


def _info_fields(name: str, overrides: Mapping[str, str], size: int, block_size: int,
                 compression: str) -> dict[str, str]:
    base = name[: -len(".tcz")]
    fields = {
        "Title": name,
        "Description": base,
        "Version": "unknown",
        "Author": "unknown",
        "Original-site": "unknown",
        "Copying-policy": "unknown",
        "Extension_by": "tce-ipfs",
        "Tags": base,
        "Comments": "-",
        "Change-log": "-",
        "Current": f"packed by tce-ipfs {__version__}",
    }
    fields.update(overrides)
    fields["Size"] = human_size(size)
    if (block_size, compression) != (TC_BLOCK_SIZE, TC_COMPRESSION):
        note = (f"squashfs: {compression}, {block_size // 1024} KiB blocks "
                f"(TC default: {TC_COMPRESSION}, {TC_BLOCK_SIZE // 1024} KiB)")
        comments = fields["Comments"]
        fields["Comments"] = note if comments.strip() in ("", "-") else comments.rstrip("\n") + "\n" + note
    return fields


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------- pack


def _mksquashfs() -> str:
    found = shutil.which("mksquashfs", path=proc.clean_env()["PATH"])
    if found is None:
        raise ToolMissing("mksquashfs not found",
                          hint=f"install {proc.TOOL_PACKAGES['mksquashfs']} (or run bootstrap/setup)")
    return found


def pack(
    src: Path,
    out: Path,
    *,
    deps: Sequence[str] = (),
    info: Mapping[str, str] | None = None,
    block_size: int = TC_BLOCK_SIZE,
    compression: str = TC_COMPRESSION,
    epoch: int | None = None,
) -> TczResult:
    """Pack the tree ``src`` (relative to ``/``) into ``out`` (``DIR/NAME.tcz``) plus sidecars.

    ``deps``: direct dependencies, with or without ``.tcz``, ``-KERNEL`` allowed. ``info``: ``.info``
    overrides (TC field names, case-insensitive). ``epoch``: every timestamp in the image (default
    ``SOURCE_DATE_EPOCH`` or 0).
    """
    src = Path(src)
    out = Path(out)
    name = check_name(out.name)
    check_params(block_size, compression)
    overrides = _info_overrides(info or {})
    epoch = default_epoch() if epoch is None else epoch
    _check_epoch(epoch)
    dep_names: list[str] = []
    for dep in deps:
        normalized = normalize_dep(dep)
        if normalized == name:
            raise TczError(f"{name} cannot depend on itself")
        if normalized not in dep_names:
            dep_names.append(normalized)
    if not src.is_dir():
        raise TczError(f"{src}: not a directory")
    out_dir = out.parent if str(out.parent) else Path(".")
    if not out_dir.is_dir():
        raise TczError(f"{out_dir}: output directory does not exist")
    src_real, out_real = src.resolve(), out_dir.resolve()
    if out_real == src_real or src_real in out_real.parents:
        raise TczError(f"{out}: the output must not be inside the tree being packed ({src})")

    entries = list(_entries(src, name))
    files = tuple(e.rel for e in entries if not e.is_dir)
    if not files:
        raise TczError(f"{src}: nothing to pack (no files or symlinks in the tree)")

    mksquashfs = _mksquashfs()
    with tempfile.TemporaryDirectory(prefix=".tcz-", dir=out_dir) as tmp_name:
        tmp = Path(tmp_name)
        pseudo = tmp / "pseudo"
        pseudo.write_text("".join(f"{_pseudo_quote(e.rel)} m {e.mode:o} 0 {e.gid}\n" for e in entries),
                          encoding="utf-8")
        image = tmp / name
        # `env -u`: mksquashfs refuses -mkfs-time/-all-time when SOURCE_DATE_EPOCH is set, and
        # proc.run() passes that variable through; SOURCE_DATE_EPOCH alone only *clamps* newer times.
        args: list[str] = [
            "env", "-u", "SOURCE_DATE_EPOCH", mksquashfs, str(src_real), str(image),
            "-noappend", "-b", str(block_size), "-comp", compression, "-no-xattrs",
            "-mkfs-time", str(epoch), "-all-time", str(epoch),
            "-root-mode", "755", "-root-uid", "0", "-root-gid", "0",
            "-pf", str(pseudo), "-no-progress", "-quiet",
        ]
        proc.run(args, what=f"mksquashfs for {name}")
        md5 = tcrepo.md5_file(image)
        size = image.stat().st_size
        os.replace(image, out)

    md5_file = out.with_name(name + ".md5.txt")
    list_file = out.with_name(name + ".list")
    info_file = out.with_name(name + ".info")
    dep_file = out.with_name(name + ".dep")
    fields = _info_fields(name, overrides, size, block_size, compression)
    _write_text(md5_file, f"{md5}  {name}\n")
    _write_text(list_file, "".join(f"{f}\n" for f in files))
    _write_text(info_file, render_info(fields))
    if dep_names:
        _write_text(dep_file, "".join(f"{d}\n" for d in dep_names))
    else:
        dep_file.unlink(missing_ok=True)
    log.debug("packed %s: %d bytes, md5 %s, %d files", out, size, md5, len(files))
    return TczResult(
        name=name, tcz=out, md5=md5, size=size, md5_file=md5_file, list_file=list_file,
        info_file=info_file, dep_file=dep_file if dep_names else None, files=files,
        deps=tuple(dep_names), block_size=block_size, compression=compression, info=fields,
    )
