"""CID syntax checks (pure, no kubo): CIDv0 (base58btc ``Qm...``) and CIDv1 in base32 (``b...``).

Only the text is checked -- multibase prefix, alphabet, varints, and that the multihash digest has the
length it declares -- so a typo is caught before an ISO or netboot tree is built around it. Whether the
CID can be fetched is the boot hook's business.
"""

from __future__ import annotations

import re

from tce_ipfs.errors import CidError

_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B32 = "abcdefghijklmnopqrstuvwxyz234567"

# Multicodec content types a UnixFS / IPLD root can have (name for messages only).
CODECS = {0x70: "dag-pb", 0x55: "raw", 0x71: "dag-cbor", 0x0129: "dag-json", 0x72: "libp2p-key"}
# Multihash functions with a fixed digest length (None: any length, e.g. identity).
HASHES: dict[int, int | None] = {
    0x00: None,  # identity
    0x12: 32,  # sha2-256
    0x13: 64,  # sha2-512
    0x16: 32,  # sha3-256
    0x1B: 32,  # keccak-256
    0x1E: 32,  # blake3 (default length)
    0xB220: 32,  # blake2b-256
}
HINT = ("a CID looks like Qm... (46 characters, CIDv0) or bafy... (CIDv1, base32); "
        "get it from `tce-ipfs publish`")


def _b58decode(text: str) -> bytes:
    num = 0
    for ch in text:
        idx = _B58.find(ch)
        if idx < 0:
            raise ValueError(f"character {ch!r} is not base58btc")
        num = num * 58 + idx
    body = num.to_bytes((num.bit_length() + 7) // 8, "big") if num else b""
    pad = len(text) - len(text.lstrip("1"))
    return b"\x00" * pad + body


def _b32decode(text: str) -> bytes:
    bits = 0
    nbits = 0
    out = bytearray()
    for ch in text:
        idx = _B32.find(ch)
        if idx < 0:
            raise ValueError(f"character {ch!r} is not base32 (lower case, RFC 4648, no padding)")
        bits = (bits << 5) | idx
        nbits += 5
        if nbits >= 8:
            nbits -= 8
            out.append((bits >> nbits) & 0xFF)
    if nbits >= 5 or bits & ((1 << nbits) - 1):
        raise ValueError("base32 text has trailing bits")
    return bytes(out)


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = 0
    for shift in range(0, 63, 7):
        if pos >= len(data):
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
    raise ValueError("varint too long")


def _check_multihash(data: bytes, pos: int) -> None:
    code, pos = _varint(data, pos)
    length, pos = _varint(data, pos)
    if code not in HASHES:
        raise ValueError(f"unknown multihash function 0x{code:x}")
    want = HASHES[code]
    if want is not None and length != want:
        raise ValueError(f"multihash 0x{code:x} declares a {length}-byte digest (expected {want})")
    if len(data) - pos != length:
        raise ValueError(f"digest is {len(data) - pos} bytes, the multihash declares {length}")


def _check(text: str) -> None:
    if text.startswith("Qm"):
        if len(text) != 46:
            raise ValueError(f"a CIDv0 is 46 characters, this one has {len(text)}")
        raw = _b58decode(text)
        if raw[:2] != b"\x12\x20" or len(raw) != 34:
            raise ValueError("not a sha2-256 multihash")
        return
    if text.startswith("b"):
        raw = _b32decode(text[1:])
        version, pos = _varint(raw, 0)
        if version != 1:
            raise ValueError(f"CID version {version} (only 1 has a multibase prefix)")
        codec, pos = _varint(raw, pos)
        if codec not in CODECS:
            raise ValueError(f"unknown content codec 0x{codec:x}")
        _check_multihash(raw, pos)
        return
    raise ValueError("it starts neither with Qm (CIDv0) nor with b (CIDv1 base32)")


def is_cid(text: str) -> bool:
    try:
        _check(text)
    except ValueError:
        return False
    return True


_SEGMENT = re.compile(r"[A-Za-z0-9._+-]+")


def validate(text: str, *, allow_path: bool = False) -> str:
    """Return ``text`` (stripped, ``/ipfs/`` and ``ipfs://`` prefixes removed) if it is a valid CID.

    With ``allow_path``, ``CID/sub/path`` is accepted too (what the boot hook takes after
    ``tce=ipfs:``): segments of ``[A-Za-z0-9._+-]``, no ``.`` or ``..``. Raises ``CidError``.
    """
    cid = text.strip()
    for prefix in ("/ipfs/", "ipfs://", "ipfs:"):
        if cid.startswith(prefix):
            cid = cid[len(prefix):]
    cid = cid.rstrip("/")
    cid, _, path = cid.partition("/")
    if not cid:
        raise CidError("empty CID", hint=HINT)
    try:
        _check(cid)
    except ValueError as exc:
        raise CidError(f"invalid CID {text.strip()!r}: {exc}", hint=HINT) from None
    if path:
        if not allow_path:
            raise CidError(f"invalid CID {text.strip()!r}: a CID has no '/' (give the root CID)")
        for seg in path.split("/"):
            if seg in ("", ".", "..") or not _SEGMENT.fullmatch(seg):
                raise CidError(f"invalid path {path!r} after the CID: segments are [A-Za-z0-9._+-], "
                               "no '.', '..' or '//'")
        return f"{cid}/{path}"
    return cid


def from_bytes(data: bytes) -> str:
    """The text of a binary CID (as in a CAR file): CIDv0 in base58btc, CIDv1 in base32 (``b...``)."""
    import base64

    if len(data) == 34 and data[:2] == b"\x12\x20":  # CIDv0: a bare sha2-256 multihash
        num = int.from_bytes(data, "big")
        out = ""
        while num:
            num, rem = divmod(num, 58)
            out = _B58[rem] + out
        return "1" * (len(data) - len(data.lstrip(b"\0"))) + out
    text = "b" + base64.b32encode(data).decode().lower().rstrip("=")
    _check(text)
    return text
