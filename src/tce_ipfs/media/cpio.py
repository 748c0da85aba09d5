"""Initrd images: a deterministic newc cpio writer, compressors and readers.

* ``CpioWriter`` writes the "new ASCII" (newc, ``070701``) cpio format the kernel's initramfs loader and
  TC's ``cpio -i`` read: uid 0, gid 0 unless given, mtime 0, inode numbers in insertion order, device
  numbers only for device nodes -- the same input always gives the same bytes.
* ``compress`` / ``read_initrd`` handle gzip, xz (CRC32 check, as the kernel's XZ decoder needs) and zstd,
  including several archives concatenated (``core.gz`` is ``rootfs.gz`` + ``modules.gz``) with NUL
  padding between them; ``parse_cpio`` reads the result back.

What goes into the P2P initrd is ``media.initrd``'s business; the test base's initrds are
``testbed.guest``'s.
"""

from __future__ import annotations

import gzip
import io
import lzma
import stat
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tce_ipfs.errors import BuildError, UsageError

COMPRESSIONS: tuple[str, ...] = ("gzip", "zstd", "xz")

NEWC_MAGIC = b"070701"
NEWC_CRC_MAGIC = b"070702"
TRAILER = "TRAILER!!!"
_HEADER_LEN = 110

GZIP_MAGIC = b"\x1f\x8b"
XZ_MAGIC = b"\xfd7zXZ\x00"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


# ---------------------------------------------------------------------------------------------- cpio


@dataclass(frozen=True)
class CpioEntry:
    """One member of a newc archive."""

    name: str
    mode: int
    uid: int = 0
    gid: int = 0
    nlink: int = 1
    mtime: int = 0
    data: bytes = b""
    ino: int = 0
    devmajor: int = 0
    devminor: int = 0
    rdevmajor: int = 0
    rdevminor: int = 0

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)

    @property
    def is_file(self) -> bool:
        return stat.S_ISREG(self.mode)

    @property
    def is_symlink(self) -> bool:
        return stat.S_ISLNK(self.mode)

    @property
    def target(self) -> str:
        """A symlink's target."""
        return self.data.decode()

    @property
    def perms(self) -> int:
        return stat.S_IMODE(self.mode)


def _clean_name(name: str, *, root_ok: bool = False) -> str:
    """Member names are relative, normalised POSIX paths ("tmp/builtin"; never "/tmp", "a/../b", "a//b").

    "." (the archive's root, whose mode the kernel gives to /) only where ``root_ok``.
    """
    if root_ok and name == ".":
        return name
    parts = name.split("/")
    if not name or any(p in ("", ".", "..") for p in parts) or "\x00" in name:
        raise UsageError(
            f"bad cpio member name {name!r}",
            hint="use a relative path without a leading '/', '.', '..' or '//'",
        )
    return name


def _pad4(n: int) -> bytes:
    return b"\x00" * (-n % 4)


class CpioWriter:
    """Build a newc archive in memory, deterministically.

    Entries are written in the order added; parents are not added implicitly (the caller decides the
    modes of directories, which matters: the kernel chmods an existing directory to the archive's mode).
    Inodes count up from ``first_ino``; ``finish`` pads the archive to a multiple of ``pad_to`` bytes.
    """

    def __init__(self, *, first_ino: int = 1, pad_to: int = 512) -> None:
        self._chunks: list[bytes] = []
        self._names: set[str] = set()
        self._ino = first_ino - 1
        self._pad_to = pad_to
        self._closed = False

    def __contains__(self, name: str) -> bool:
        return _clean_name(name) in self._names

    @property
    def names(self) -> list[str]:
        return sorted(self._names)

    def _header(self, name: str, mode: int, nlink: int, size: int, gid: int = 0,
                rdev: tuple[int, int] = (0, 0)) -> bytes:
        self._ino += 1
        encoded = name.encode() + b"\x00"
        fields = (self._ino, mode, 0, gid, nlink, 0, size, 0, 0, *rdev, len(encoded), 0)
        head = NEWC_MAGIC + b"".join(b"%08x" % f for f in fields)
        return head + encoded + _pad4(_HEADER_LEN + len(encoded))

    def _add(self, name: str, mode: int, nlink: int, data: bytes, *, gid: int = 0,
             rdev: tuple[int, int] = (0, 0), root_ok: bool = False) -> None:
        if self._closed:
            raise UsageError("cpio archive already finished")
        clean = _clean_name(name, root_ok=root_ok)
        if clean in self._names:
            raise UsageError(f"duplicate cpio member {clean!r}")
        self._names.add(clean)
        self._chunks.append(self._header(clean, mode, nlink, len(data), gid, rdev))
        self._chunks.append(data + _pad4(len(data)))

    def add_dir(self, name: str, mode: int = 0o755, *, gid: int = 0) -> None:
        """A directory; "." is the archive's root."""
        self._add(name, stat.S_IFDIR | (mode & 0o7777), 2, b"", gid=gid, root_ok=True)

    def add_file(self, name: str, data: bytes, mode: int = 0o644, *, gid: int = 0) -> None:
        self._add(name, stat.S_IFREG | (mode & 0o7777), 1, data, gid=gid)

    def add_symlink(self, name: str, target: str, *, gid: int = 0) -> None:
        if not target:
            raise UsageError(f"symlink {name!r} needs a target")
        self._add(name, stat.S_IFLNK | 0o777, 1, target.encode(), gid=gid)

    def add_device(self, name: str, kind: Literal["c", "b"], major: int, minor: int, mode: int = 0o600,
                   *, gid: int = 0) -> None:
        """A character ("c") or block ("b") device node, as ``mknod NAME KIND MAJOR MINOR``."""
        if kind not in ("c", "b"):
            raise UsageError(f"device {name!r}: kind must be 'c' or 'b', not {kind!r}")
        ftype = stat.S_IFCHR if kind == "c" else stat.S_IFBLK
        self._add(name, ftype | (mode & 0o7777), 1, b"", gid=gid, rdev=(major, minor))

    def add_tree(self, src: Path, prefix: str, *, exec_names: Iterable[str] = ()) -> None:
        """Add the regular files under ``src`` (sorted) below ``prefix``, with their directories.

        Modes are fixed, not taken from the checkout (so umask and git settings cannot change the bytes):
        0755 for directories and for files named in ``exec_names``, else 0644.
        """
        if not src.is_dir():
            raise BuildError(f"{src} is not a directory")
        execs = set(exec_names)
        for path in sorted(src.rglob("*")):
            rel = path.relative_to(src).as_posix()
            name = f"{prefix.strip('/')}/{rel}" if prefix.strip("/") else rel
            if path.is_symlink():
                raise BuildError(f"{path}: symlinks are not allowed in the hook tree")
            if path.is_dir():
                self.add_dir(name)
            elif path.is_file():
                self.add_file(name, path.read_bytes(), 0o755 if path.name in execs else 0o644)

    def finish(self) -> bytes:
        """Append the trailer and return the archive (padded to ``pad_to``: 512 by default, like cpio -o)."""
        if not self._closed:
            self._chunks.append(self._header(TRAILER, 0, 1, 0))
            self._closed = True
        data = b"".join(self._chunks)
        return data + b"\x00" * (-len(data) % self._pad_to)


def parse_cpio(data: bytes) -> list[CpioEntry]:
    """Every entry of one or more concatenated newc archives (trailers and NUL padding skipped)."""
    entries: list[CpioEntry] = []
    pos = 0
    size = len(data)
    while pos < size:
        if data[pos] == 0:  # padding between archives
            pos += 1
            continue
        magic = data[pos : pos + 6]
        if magic not in (NEWC_MAGIC, NEWC_CRC_MAGIC):
            raise BuildError(f"not a newc cpio archive at offset {pos} (magic {magic!r})")
        if pos + _HEADER_LEN > size:
            raise BuildError(f"truncated cpio header at offset {pos}")
        try:
            f = [int(data[pos + 6 + 8 * i : pos + 14 + 8 * i], 16) for i in range(13)]
        except ValueError as exc:
            raise BuildError(f"corrupt cpio header at offset {pos}") from exc
        ino, mode, uid, gid, nlink, mtime, filesize, dmaj, dmin, rmaj, rmin, namesize, _check = f
        name_start = pos + _HEADER_LEN
        name_end = name_start + namesize
        if namesize < 1 or name_end > size:
            raise BuildError(f"truncated cpio name at offset {pos}")
        name = data[name_start : name_end - 1].decode("utf-8", errors="surrogateescape")
        data_start = name_end + (-(name_end - pos) % 4)
        data_end = data_start + filesize
        if data_end > size:
            raise BuildError(f"truncated cpio member {name!r}")
        pos = data_end + (-filesize % 4)
        if name == TRAILER:
            continue
        entries.append(
            CpioEntry(
                name=name,
                mode=mode,
                uid=uid,
                gid=gid,
                nlink=nlink,
                mtime=mtime,
                data=bytes(data[data_start:data_end]),
                ino=ino,
                devmajor=dmaj,
                devminor=dmin,
                rdevmajor=rmaj,
                rdevminor=rmin,
            )
        )
    return entries


# ---------------------------------------------------------------------------------------- compression


def compress(data: bytes, method: str = "gzip") -> bytes:
    """Compress deterministically: gzip (mtime 0, no name, level 9), xz (CRC32 check for the kernel), zstd.

    gzip goes through ``GzipFile``: its header is the same on every Python (``gzip.compress(mtime=0)``
    takes zlib's since 3.11, with another OS byte).
    """
    if method == "gzip":
        out = io.BytesIO()
        with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=9, mtime=0, filename="") as gz:
            gz.write(data)
        return out.getvalue()
    if method == "xz":
        return lzma.compress(data, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32, preset=9)
    if method == "zstd":
        import zstandard

        return zstandard.ZstdCompressor(level=19, write_checksum=True).compress(data)
    raise UsageError(f"unknown compression {method!r}", hint=f"use one of: {', '.join(COMPRESSIONS)}")


def detect(data: bytes) -> str:
    """'gzip', 'xz', 'zstd' or 'cpio' from the magic bytes; raise ``BuildError`` otherwise."""
    if data.startswith(GZIP_MAGIC):
        return "gzip"
    if data.startswith(XZ_MAGIC):
        return "xz"
    if data.startswith(ZSTD_MAGIC):
        return "zstd"
    if data.startswith((NEWC_MAGIC, NEWC_CRC_MAGIC)):
        return "cpio"
    raise BuildError(
        f"unknown initrd format (first bytes {data[:6].hex()})",
        hint="expected gzip, xz, zstd or an uncompressed newc cpio",
    )


def _decompress_one(data: bytes, kind: str) -> tuple[bytes, bytes]:
    """Decompress the first stream of ``kind`` in ``data``; return (output, the bytes after it)."""
    if kind == "gzip":
        zd = zlib.decompressobj(wbits=31)
        out = zd.decompress(data)
        if not zd.eof:
            raise BuildError("truncated gzip stream")
        return out, zd.unused_data
    if kind == "xz":
        xd = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
        out = xd.decompress(data)
        if not xd.eof:
            raise BuildError("truncated xz stream")
        return out, xd.unused_data
    import zstandard

    zsd = zstandard.ZstdDecompressor().decompressobj()
    out = zsd.decompress(data)
    if not zsd.eof:
        raise BuildError("truncated zstd stream")
    return out, zsd.unused_data


def decompress_initrd(data: bytes) -> bytes:
    """The uncompressed cpio of an initrd made of one or more (compressed or plain) parts, in order."""
    out: list[bytes] = []
    rest = data
    while rest:
        stripped = rest.lstrip(b"\x00")
        if not stripped:
            break
        rest = stripped
        kind = detect(rest)
        if kind == "cpio":
            # A plain archive runs to its trailer; what follows may be another (compressed) part.
            end = _cpio_end(rest)
            out.append(rest[:end])
            rest = rest[end:]
            continue
        chunk, rest = _decompress_one(rest, kind)
        out.append(chunk)
    return b"".join(out)


def _cpio_end(data: bytes) -> int:
    """Offset just past the trailer of the first newc archive in ``data`` (and its 4-byte padding)."""
    pos = 0
    while True:
        if data[pos : pos + 6] not in (NEWC_MAGIC, NEWC_CRC_MAGIC):
            raise BuildError(f"not a newc cpio archive at offset {pos}")
        namesize = int(data[pos + 94 : pos + 102], 16)
        filesize = int(data[pos + 54 : pos + 62], 16)
        name_end = pos + _HEADER_LEN + namesize
        name = data[pos + _HEADER_LEN : name_end - 1]
        data_start = name_end + (-(name_end - pos) % 4)
        pos = data_start + filesize + (-filesize % 4)
        if name == TRAILER.encode():
            return pos


def read_initrd(path: Path) -> bytes:
    """The uncompressed cpio bytes of an initrd file (gzip/xz/zstd/plain, possibly concatenated)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BuildError(f"cannot read initrd {path}: {exc.strerror}") from exc
    try:
        return decompress_initrd(data)
    except (OSError, EOFError, lzma.LZMAError, zlib.error) as exc:
        raise BuildError(f"{path}: corrupt compressed data ({exc})") from exc
    except BuildError as exc:
        raise BuildError(f"{path}: {exc.message}", hint=exc.hint) from exc
