"""CID syntax validation (pure)."""

from __future__ import annotations

import pytest

from tce_ipfs import cidtext
from tce_ipfs.errors import CidError

V0 = "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn"  # the empty UnixFS directory
V1 = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"  # dag-pb, sha2-256
RAW = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"  # raw leaf


@pytest.mark.parametrize("cid", [V0, V1, RAW])
def test_valid(cid: str) -> None:
    assert cidtext.is_cid(cid)
    assert cidtext.validate(cid) == cid


@pytest.mark.parametrize("text", [f"/ipfs/{V1}", f"ipfs://{V1}", f"ipfs:{V1}/", f"  {V1}\n"])
def test_prefixes_are_removed(text: str) -> None:
    assert cidtext.validate(text) == V1


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "empty"),
        ("hello", "starts neither"),
        (V0[:-1], "46 characters"),
        (V0[:-1] + "0", "not base58btc"),  # 0 is not in the base58 alphabet
        (V1[:-1], "trailing bits"),  # truncated
        (V1.upper(), "starts neither"),  # upper-case base32 has the prefix B, not supported
        ("b" + "a" * 58, "version 0"),
        (V1[:10] + "1" + V1[11:], "not base32"),
        ("bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdiaa", "digest"),
        ("zdj7WWeQ43G6JJvLWQWZpyHuAMq6uYWRjkBXFad11vE2LHhQ7", "starts neither"),  # base58 CIDv1
    ],
)
def test_invalid(text: str, why: str) -> None:
    assert not cidtext.is_cid(text.strip())
    with pytest.raises(CidError) as info:
        cidtext.validate(text)
    assert why in str(info.value)
    assert info.value.hint and "bafy" in info.value.hint


def test_subpath() -> None:
    assert cidtext.validate(f"{V1}/x86_64/tcz", allow_path=True) == f"{V1}/x86_64/tcz"
    assert cidtext.validate(f"/ipfs/{V1}/tcz/", allow_path=True) == f"{V1}/tcz"
    with pytest.raises(CidError, match="has no '/'"):
        cidtext.validate(f"{V1}/tcz")
    for bad in ("a//b", "../etc", "a/./b", "sp ace"):
        with pytest.raises(CidError, match="invalid path"):
            cidtext.validate(f"{V1}/{bad}", allow_path=True)
