"""The hook resolves tce=ipns: a few times when kubo fails right after the dial (the seed is not in its
DHT routing table until identify has run: kubo then answers "could not resolve name" at once)."""

from __future__ import annotations

from hookfakes.harness import CID, PEER, HookEnv

NAME = "k51qzi5uqu5dlvj2baxnqndepeb86cbk3ng7n3i46uzyxzyqj2xjonzllnv0v8"


def test_a_name_resolved_on_the_third_try(env: HookEnv) -> None:
    repo = env.ipfs_repo(CID)
    repo.ext("hello.tcz")
    repo.lst("hello.tcz\n")
    env.peers_ok(PEER)
    (env.state / "ipns").mkdir()
    (env.state / "ipns" / NAME).write_text(f"/ipfs/{CID}\n")
    env.knob("ipns_late", "2\n")
    res = env.run(f"tce=ipns:{NAME} ipfs.peers={PEER} ipfs.timeout=30")
    assert res.final.startswith(f"loaded 1 extensions from ipfs:{CID} in "), res.lines
    assert len([c for c in res.calls if c.startswith("ipfs name resolve")]) == 3


def test_a_name_nobody_has_gives_up_after_five_tries(env: HookEnv) -> None:
    env.peers_ok(PEER)
    res = env.run(f"tce=ipns:{NAME} ipfs.peers={PEER} ipfs.timeout=30")
    assert res.final == f"FAILED: ipns:{NAME}: cannot resolve ipns:{NAME}: could not resolve name"
    assert len([c for c in res.calls if c.startswith("ipfs name resolve")]) == 5
