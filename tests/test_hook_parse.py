"""Unit tests of the hook's validators (parse.sh) and awk programs, under busybox sh and dash."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from hookfakes.harness import BUSYBOX, CID, CID_V1, PEER, PEER_ID, SHELLS
from tce_ipfs import settings

LIB = settings.hooks_dir() / "lib"


def sh(shell: str, code: str, *args: str) -> subprocess.CompletedProcess[str]:
    prelude = f'TCE_IPFS_LIB={LIB}; . "$TCE_IPFS_LIB/lib.sh"; . "$TCE_IPFS_LIB/parse.sh"; set -f\n'
    return subprocess.run(
        [*SHELLS[shell], "-c", prelude + code, "sh", *args],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
        env={"PATH": "/usr/bin:/bin", "ROOT": "/nonexistent"},
    )


def ok(shell: str, func: str, value: str) -> bool:
    return sh(shell, f'{func} "$1"', value).returncode == 0


GOOD_CIDS = [CID, CID_V1, "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"]
BAD_CIDS = [
    "",
    "Qm",
    CID[:-1],
    CID + "a",
    CID[:-1] + "0",
    CID[:-1] + "l",
    "BAFYBEIGDYRZT5SFP7UDM7HU76UH7Y26NF3EFUYLQ",
    "bafy1bad",
    "b" * 200,
    "zdj7WWeQ43G6JJvLWQWZpyHuAMq6uYWRjkBXFad11vE2LHhQ7",
    "../etc",
    "Qm$(reboot)",
    "x" * 3000,
]
# Each validator of parse.sh: the values it accepts, then those it refuses.
VALIDATORS: dict[str, tuple[list[str], list[str]]] = {
    "is_cid": (GOOD_CIDS, BAD_CIDS),
    "is_multiaddr": (
        [
            PEER,
            "/ip4/127.0.0.1/tcp/4001/ipfs/" + PEER_ID,
            "/ip4/10.0.0.1/udp/4001/quic-v1/p2p/" + PEER_ID,
            "/dns4/seed.lab/tcp/4001/p2p/" + PEER_ID,
            "/ip6/fe80::1/tcp/1/p2p/" + PEER_ID,
            "/dnsaddr/lab.example/p2p/" + PEER_ID,
        ],
        [
            "",
            "garbage",
            "/ip4/10.0.2.100/tcp/4001",
            "/ip4/999.0.0.1/tcp/4001/p2p/" + PEER_ID,
            "/ip4/1.2.3/tcp/4001/p2p/" + PEER_ID,
            "/ip4/10.0.2.100/tcp/0/p2p/" + PEER_ID,
            "/ip4/10.0.2.100/tcp/70000/p2p/" + PEER_ID,
            "/ip4/10.0.2.100/tcp/x/p2p/" + PEER_ID,
            "/ip4/10.0.2.100/sctp/1/p2p/" + PEER_ID,
            "/ip4/10.0.2.100/tcp/4001/p2p/short",
            "/ip4/10.0.2.100//tcp/4001/p2p/" + PEER_ID,
            PEER + "/",
            PEER + "/extra/x",
            "ip4/10.0.2.100/tcp/4001/p2p/x",
            "/ip4/10.0.2.100/tcp/4001/p2p/" + PEER_ID + ";reboot",
            "/ip4/" + "1" * 400,
        ],
    ),
    "is_http_url": (
        [
            "http://10.0.2.100:8080/tcz",
            "http://mirror.lab/16.x/x86_64/tcz/",
            "http://h",
            "http://h:1/a/b-c/d_e.f",
        ],
        [
            "",
            "ftp://h/x",
            "https://h/x",
            "http://",
            "http://user@h/x",
            "http://h/../x",
            "http://h/a//b",
            "http://h:0/x",
            "http://h:99999/x",
            "http://h:x/",
            "http://h/?q=1",
            "http://-h/x",
            "http://h/" + "a" * 600,
            "http://h/a/./b",
        ],
    ),
    "is_safe_path": (
        [
            "a",
            "a/b/c",
            "16.x/x86_64/tcz",
        ],
        [
            "",
            "..",
            "a/../b",
            "a//b",
            "/a",
            "a/",
            "./a",
            "a/.",
            "a b",
            "a\\b",
            "a$b",
        ],
    ),
    "is_ipns_name": (
        [
            "k51qzi5uqu5dlvj2baxnqndepeb86cbk3ng7n3i46uzyxzyqj2xjonzllnv0v8",
            PEER_ID,
            "docs.ipfs.tech",
        ],
        [
            "localhost",
            "UPPER.example",
            "a..b",
            "-a.b",
            "",
        ],
    ),
}


@pytest.mark.parametrize(
    ("func", "value", "good"),
    [(func, value, good) for func, (goods, bads) in VALIDATORS.items()
     for good, values in ((True, goods), (False, bads)) for value in values],
)
def test_validator(shell: str, func: str, value: str, good: bool) -> None:
    assert ok(shell, func, value) is good


def test_getarg_last_wins_and_prefix_exact(shell: str) -> None:
    code = (
        'CMDLINE="tce=sda1 lst=a.lst tcefoo=x tce=ipfs:X ipfs.peersx=1 ipfs.debug"; getarg tce; getarg lst; '
        "getarg ipfs.peers || echo absent; getargbool 0 ipfs.debug; getargbool 1 ipfs.seed; "
        'CMDLINE="ipfs.seed=0 ipfs.debug=maybe"; getargbool 1 ipfs.seed; getargbool 0 ipfs.debug'
    )
    out = sh(shell, code).stdout.split()
    assert out == ["ipfs:X", "a.lst", "absent", "1", "1", "0", "?"]


def test_cmdline_globs_are_not_expanded(shell: str, tmp_path: object) -> None:
    out = sh(shell, 'CMDLINE="tce=ipfs:* lst=*"; getarg tce; getarg lst').stdout.split()
    assert out == ["ipfs:*", "*"]


def test_in_batches_calls_per_n_lines_then_the_rest(shell: str, tmp_path: Path) -> None:
    # lib.sh's in_batches (pin_list, onecopy_drop): CMD runs in this shell (its counters stay), gets
    # N lines a call, the rest last, nothing for an empty file; lines are not globbed
    (tmp_path / "five").write_text("a\nb\n*\nd\ne\n")
    (tmp_path / "four").write_text("a\nb\nc\nd\n")
    (tmp_path / "none").write_text("")
    code = ('CALLS=0; show() { CALLS=$((CALLS + 1)); echo "$*"; case "$*" in *d) return 1 ;; esac; }; '
            'in_batches 2 "$1/five" show x; echo "rc=$? calls=$CALLS"; '
            'in_batches 2 "$1/four" show y; echo "rc=$? calls=$CALLS"; '
            'in_batches 2 "$1/none" show z; echo "rc=$? calls=$CALLS"')
    out = sh(shell, code, str(tmp_path)).stdout.splitlines()
    assert out == ["x a b", "x * d", "x e", "rc=0 calls=3", "y a b", "y c d", "rc=1 calls=5", "rc=0 calls=5"]



def test_write_atomic_leaves_no_part_file_when_the_write_fails(shell: str, tmp_path: Path) -> None:
    # lib.sh's write_atomic: a write that fails half-way (here: stdin is a directory, as a full RAM
    # fails a write) removes FILE.part and returns 1; a good one renames it into place
    (tmp_path / "in").mkdir()
    code = ('printf ok | write_atomic "$1/good"; echo "rc=$?"; '
            'write_atomic "$1/bad" <"$1/in" 2>/dev/null; echo "rc=$?"')
    out = sh(shell, code, str(tmp_path)).stdout.splitlines()
    assert out == ["rc=0", "rc=1"]
    assert (tmp_path / "good").read_text() == "ok"
    assert not (tmp_path / "bad.part").exists() and not (tmp_path / "bad").exists()


# ------------------------------------------------------------------------------------------ awk


def awk(program: str, text: str, **variables: str) -> list[str]:
    args = [BUSYBOX, "awk"]
    for key, value in variables.items():
        args += ["-v", f"{key}={value}"]
    args += ["-f", str(LIB / program)]
    proc = subprocess.run(args, input=text, capture_output=True, text=True, timeout=20, check=True)
    return proc.stdout.splitlines()


def test_names_awk_normalises_like_tc() -> None:
    text = (
        "# comment\n\n  hello.tcz   extra words\nbare\r\nmod-KERNEL.tcz\nhello.tcz\n"
        "x.tcz # trailing comment\n\t tabbed.tcz\n;pi-comment\n"
    )
    out = awk("names.awk", text, kernel="6.1.0-tc", max="100")
    assert out == ["ok hello.tcz", "ok bare.tcz", "ok mod-6.1.0-tc.tcz", "ok x.tcz", "ok tabbed.tcz"]


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("../evil.tcz", "not a plain extension name"),
        ("a/b.tcz", "not a plain extension name"),
        ("/abs.tcz", "not a plain extension name"),
        ("a..b.tcz", "'..' in name"),
        (".hidden.tcz", "not a plain"),
        ("x" * 200 + ".tcz", "name too long"),
        ("y" * 2000, "line too long"),
        ("ümlaut.tcz", "not a plain"),
        ("$(reboot).tcz", "not a plain"),
        ("-rf.tcz", "not a plain"),
    ],
)
def test_names_awk_rejects(line: str, why: str) -> None:
    out = awk("names.awk", f"good.tcz\n{line}\n", kernel="k", max="10")
    assert out[0] == "ok good.tcz"
    assert out[1].startswith("bad 2 ") and why in out[1], out
    assert len(out[1]) < 200


def test_names_awk_kernel_unknown_and_too_many() -> None:
    assert awk("names.awk", "m-KERNEL.tcz\n", kernel="", max="5")[0].startswith("bad 1 -KERNEL")
    out = awk("names.awk", "".join(f"e{i}.tcz\n" for i in range(10)), kernel="k", max="3")
    assert out == ["ok e0.tcz", "ok e1.tcz", "ok e2.tcz", "toomany 3"]


def test_names_awk_prints_a_few_bad_lines_and_counts_the_rest() -> None:
    out = awk("names.awk", "ok.tcz\n" + "x/\n" * 1000 + "last.tcz\n", kernel="k", max="10", maxbad="3")
    assert out[0] == "ok ok.tcz" and out[-2:] == ["ok last.tcz", "morebad 997"]
    assert [line.split()[1] for line in out if line.startswith("bad ")] == ["2", "3", "4"]


def test_names_awk_length_is_checked_after_kernel() -> None:
    name = "m" * 110 + "-KERNEL.tcz"  # 121 characters as written, 133 once the release is in
    out = awk("names.awk", f"{name}\n", kernel="6.12.11-tinycore64", max="10")
    assert out[0].startswith("bad 1 name too long: 'mmm"), out


def test_closure_awk_deps_first_dedupe_cycles() -> None:
    edges = "hello a\nhello b\na c\nb c\nc a\nx y\n"
    out = awk("closure.awk", edges, roots="hello x c")
    assert [line for line in out if line.startswith("cycle")] == ["cycle a"]
    order = [line[3:] for line in out if line.startswith("ok ")]
    assert order == ["c", "a", "b", "hello", "y", "x"]


def test_closure_awk_no_edges() -> None:
    assert awk("closure.awk", "", roots="a b a") == ["ok a", "ok b"]


def test_order_awk_is_a_stable_per_key_shuffle() -> None:
    """Each machine its own order: a permutation, the same for the same key, another for another key
    (and the same in every awk: busybox's here, gawk and mawk on the host)."""
    items = [f"b{i}" for i in range(40)]
    text = "".join(f"{i}\n" for i in items)
    a = awk("order.awk", text, key="12D3KooWErvaPS1o8jkY93Xmdmow2WmRXLCS2oja7VRpPFb3A1La")
    b = awk("order.awk", text, key="12D3KooWSiqB8qiuNW28GfdB5yMcKrRU7eyLLyJWi3TJ3gr8EKnz")
    assert sorted(a) == sorted(b) == sorted(items)
    assert a != items and b != items and a != b
    assert a == awk("order.awk", text, key="12D3KooWErvaPS1o8jkY93Xmdmow2WmRXLCS2oja7VRpPFb3A1La")
    # two machines booting together start on different blocks: their first quarters barely overlap
    assert len(set(a[:10]) & set(b[:10])) <= 5
    for other in ("gawk", "mawk"):
        if shutil.which(other):
            out = subprocess.run([other, "-v", "key=12D3KooWErvaPS1o8jkY93Xmdmow2WmRXLCS2oja7VRpPFb3A1La",
                                  "-f", str(LIB / "order.awk")], input=text, capture_output=True,
                                 text=True, check=True).stdout.splitlines()
            assert out == a, other
    assert awk("order.awk", "", key="k") == [] and awk("order.awk", "x\n", key="k") == ["x"]


def test_blocks_awk_lists_blocks_of_multi_block_files(tmp_path: Path) -> None:
    answer = ('{"Objects":[{"Hash":"/ipfs/bafyroot/16.x/big.tcz","Links":[{"Name":"","Hash":"bafkreia",'
              '"Size":262144,"Type":2,"Target":""},{"Name":"","Hash":"bafkreib","Size":5,"Type":2}]},'
              '{"Hash":"/ipfs/bafyroot/16.x/small.tcz","Links":[]},'
              '{"Hash":"/ipfs/bafyroot/one.tcz","Links":[{"Hash":"bafkreic"}]},'
              '{"Hash":"/ipfs/bafyroot/evil.tcz","Links":[{"Hash":"../x"},{"Hash":"bafkreid"},'
              '{"Hash":"e f"}]},'
              '{"Hash":"/ipfs/bafyroot/..","Links":[{"Hash":"bafkreie"},{"Hash":"bafkreif"}]}]}\n')
    awk("blocks.awk", answer, dir=str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.tcz"]
    assert (tmp_path / "big.tcz").read_text() == "bafkreia\nbafkreib\n"
