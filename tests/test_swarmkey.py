"""Private swarm keys: the file format go-libp2p reads, the boot code value, installing into a repo."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest

from tce_ipfs.errors import UsageError
from tce_ipfs.ipfs import swarmkey


def test_generate_is_64_hex_and_random() -> None:
    keys = {swarmkey.generate() for _ in range(20)}
    assert len(keys) == 20
    for key in keys:
        assert re.fullmatch(r"[0-9a-f]{64}", key), key


def test_format_is_pnet_v1_base16() -> None:
    key = "ab" * 32
    assert swarmkey.format_key(key) == f"/key/swarm/psk/1.0.0/\n/base16/\n{key}\n"


def test_parse_roundtrip_and_case() -> None:
    key = swarmkey.generate()
    assert swarmkey.parse(swarmkey.format_key(key.upper())) == key
    # CRLF and surrounding blank lines are tolerated (a key copied from elsewhere)
    assert swarmkey.parse("\r\n/key/swarm/psk/1.0.0/\r\n/base16/\r\n" + key + "\r\n\r\n") == key


@pytest.mark.parametrize("bad", ["", "ab" * 31, "ab" * 33, "zz" * 32, "ab" * 31 + " a",
                                 "0x" + "ab" * 31])
def test_check_hex_rejects(bad: str) -> None:
    with pytest.raises(UsageError, match="not a swarm key"):
        swarmkey.check_hex(bad)


@pytest.mark.parametrize("text", ["/key/swarm/psk/1.0.0/\n/base64/\nAAAA\n",
                                  "/key/swarm/psk/2.0.0/\n/base16/\n" + "ab" * 32,
                                  "ab" * 32])
def test_parse_rejects_other_formats(text: str) -> None:
    with pytest.raises(UsageError):
        swarmkey.parse(text)


def test_boot_value() -> None:
    key = "0f" * 32
    assert swarmkey.boot_value(key) == "ipfs.swarmkey=" + key


def test_install_and_read(tmp_path: Path) -> None:
    assert swarmkey.read(tmp_path) is None
    key = swarmkey.generate()
    path = swarmkey.install(tmp_path, key)
    assert path.name == "swarm.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert swarmkey.read(tmp_path) == key
    key2 = swarmkey.generate()
    swarmkey.install(tmp_path, key2)
    assert swarmkey.read(tmp_path) == key2
    assert not list(path.parent.glob("*.tmp"))
