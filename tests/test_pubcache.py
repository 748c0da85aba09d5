"""The publish cache (``ipfs/pubcache``): what it keeps, and that an old or damaged file is never trusted
wrongly (a format-1 file is read without texts; anything else it cannot read gives an empty cache: a
full publish, not a crash). No kubo."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from tce_ipfs.ipfs.pubcache import Entry, PublishCache

NODE = "12D3KooWnode"


def saved(tmp_path: Path) -> tuple[Path, Path]:
    """A cache file with one .tcz entry (md5) and one sidecar entry (text), and its source."""
    source = tmp_path / "repo"
    cache = PublishCache(tmp_path / "c.json", str(source), NODE, root="bafyroot", published_at="t")
    cache.files = {"a.tcz": Entry((10, 1, 2, 3), "bafya", md5="0" * 32),
                   "a.tcz.md5.txt": Entry((44, 1, 2, 4), "bafym", text=f"{'0' * 32}  a.tcz\n")}
    cache.save()
    return tmp_path / "c.json", source


def test_entries_and_texts_round_trip(tmp_path: Path) -> None:
    path, source = saved(tmp_path)
    back = PublishCache.load(path, source, NODE)
    assert back.root == "bafyroot" and back.files["a.tcz"].md5 == "0" * 32
    assert back.files["a.tcz.md5.txt"].text == f"{'0' * 32}  a.tcz\n"
    assert back.files["a.tcz"].text is None
    # Another node or another source: not this cache.
    assert PublishCache.load(path, source, "other").files == {}
    assert PublishCache.load(path, tmp_path / "elsewhere", NODE).files == {}


def test_a_format_1_cache_is_read_without_texts(tmp_path: Path) -> None:
    """Format 1 (before the texts) has the same six fields: its entries hold, the texts are read."""
    path, source = saved(tmp_path)
    data = json.loads(path.read_text())
    data["format"] = 1
    data["files"] = {rel: entry[:6] for rel, entry in data["files"].items()}
    path.write_text(json.dumps(data))
    back = PublishCache.load(path, source, NODE)
    assert back.root == "bafyroot" and back.files["a.tcz"].cid == "bafya"
    assert back.files["a.tcz.md5.txt"].text is None
    back.save()
    assert json.loads(path.read_text())["format"] == 2


@pytest.mark.parametrize("damage", [
    "truncated", "not-json", "a-list", "files-a-list", "short-entry", "long-entry", "text-not-a-string",
    "cid-not-a-string", "unknown-format"])
def test_a_damaged_cache_is_ignored_with_a_warning(tmp_path: Path, damage: str,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    path, source = saved(tmp_path)
    text = path.read_text()
    data = json.loads(text)
    entry = data["files"]["a.tcz.md5.txt"]
    bad = {
        "truncated": text[: len(text) // 2],
        "not-json": "\x00\xff garbage",
        "a-list": "[]",
        "files-a-list": json.dumps({**data, "files": []}),
        "short-entry": json.dumps({**data, "files": {"a.tcz.md5.txt": entry[:5]}}),
        "long-entry": json.dumps({**data, "files": {"a.tcz.md5.txt": [*entry, "x"]}}),
        "text-not-a-string": json.dumps({**data, "files": {"a.tcz.md5.txt": [*entry[:6], 7]}}),
        "cid-not-a-string": json.dumps({**data, "files": {"a.tcz.md5.txt": [*entry[:4], 5, None, None]}}),
        "unknown-format": json.dumps({**data, "format": 3}),
    }[damage]
    path.write_text(bad)
    with caplog.at_level(logging.WARNING):
        back = PublishCache.load(path, source, NODE)
    assert back.files == {} and back.root is None  # a full publish follows
    if damage != "unknown-format":  # a newer tce-ipfs's cache: silently not ours
        assert "ignoring the publish cache" in caplog.text
