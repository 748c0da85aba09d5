"""bootcodes.CODES agrees with the hook: the codes parse.sh reads, its limits and defaults, the table in
initrd-hooks/README.md, and -- run on the same values -- what parse.sh accepts. And the CLI refuses a
code the hook would ignore (initrd-hooks/ is only read here).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from support.media import CID, PEER
from tce_ipfs import bootcodes, cli, settings
from tce_ipfs.errors import UsageError
from tce_ipfs.media import bootcfg

LIB = settings.hooks_dir() / "lib"
PARSE_SH = LIB / "parse.sh"
README = settings.hooks_dir() / "README.md"
PEER_ID = PEER.rsplit("/", 1)[1]


# ------------------------------------------------------------------------------- parse.sh, as text

def parse_sh_constants() -> dict[str, str]:
    """``NAME=value`` assignments at the top level of parse.sh (MAX_*, MIN_*, DEFAULT_*)."""
    return dict(re.findall(r"^([A-Z_]+)=(\S+)$", PARSE_SH.read_text(), re.MULTILINE))


def parse_sh_reads() -> dict[str, str | None]:
    """Every code parse.sh reads -> the default it gives ``getargbool`` (None for getarg/hasarg)."""
    text = PARSE_SH.read_text()
    reads: dict[str, str | None] = {}
    for name in re.findall(r"\b(?:getarg|url_arg)\s+([a-z][\w.]*)", text):  # url_arg CODE: a getarg CODE
        reads.setdefault(name, None)
    for default, name in re.findall(r"\bgetargbool\s+(\S+)\s+([\w.]+)", text):
        reads[name] = default
    for name in re.findall(r"\bhasarg\s+([\w.]+)", text):
        reads.setdefault(name, None)
    return reads


def test_parse_sh_reads_exactly_the_table() -> None:
    reads = parse_sh_reads()
    assert sorted(reads) == sorted(bootcodes.BY_NAME)
    for name, default in reads.items():
        code = bootcodes.BY_NAME[name]
        if default is not None:  # getargbool DEFAULT NAME
            assert code.kind == "bool" and code.default == default, name


def test_parse_sh_limits_and_defaults_are_the_table() -> None:
    const = parse_sh_constants()
    codes = bootcodes.BY_NAME
    assert codes["tce"].max_len == int(const["MAX_TCE"])
    assert codes["lst"].max_len == int(const["MAX_LST"])
    assert codes["lst"].default == const["DEFAULT_LST"]
    assert codes["ipfs.peers"].max_count == int(const["MAX_PEERS"])
    assert codes["ipfs.peers"].max_len == int(const["MAX_MA"])
    assert codes["ipfs.mirror"].max_len == int(const["MAX_URL"])
    assert codes["ipfs.gateway"].max_len == int(const["MAX_URL"])
    assert (codes["ipfs.timeout"].low, codes["ipfs.timeout"].high) == (int(const["MIN_TIMEOUT"]),
                                                                       int(const["MAX_TIMEOUT"]))
    assert codes["ipfs.timeout"].default == const["DEFAULT_TIMEOUT"]
    assert codes["ipfs.port"].default == const["DEFAULT_PORT"]
    assert codes["ipfs.car"].max_len == int(const["MAX_CAR"])
    assert codes["ipfs.net"].default == const["DEFAULT_NET"]
    assert codes["ipfs.bootstrap"].max_count == int(const["MAX_BOOTSTRAP"])
    assert codes["ipfs.bootstrap"].max_len == int(const["MAX_MA"])


# ----------------------------------------------------------------------------- README.md, as text

def readme_rows() -> dict[str, str]:
    """The README's boot-code table: code name -> its 'default' cell (first row of a name wins)."""
    text = README.read_text()
    section = text.split("\n## Boot codes\n", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, str] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        if len(cells) < 2 or not cells[0].startswith("`"):
            continue  # the header, its rule line, prose
        name = re.split(r"[=`\[]", cells[0].strip("`"), maxsplit=1)[0]
        rows.setdefault(name, cells[1])
    return rows


def readme_default(cell: str, kind: str) -> str | None:
    """A 'default' cell as the table writes defaults: `120` -> "120"; none, off, a dash -> None
    (off is "0" for a 0/1 code)."""
    m = re.fullmatch(r"`([^`]+)`", cell)
    if m:
        return m.group(1)
    if cell == "off" and kind == "bool":
        return "0"
    assert cell in ("—", "-", "off") or cell.startswith("none"), f"unexpected default cell {cell!r}"
    return None


def test_readme_documents_exactly_the_table() -> None:
    rows = readme_rows()
    assert sorted(rows) == sorted(bootcodes.BY_NAME)
    for name, cell in rows.items():
        code = bootcodes.BY_NAME[name]
        assert readme_default(cell, code.kind) == code.default, name


# ------------------------------------------------------------------- the same values through parse.sh

def hook_refuses(cmdline: str) -> str | None:
    """The hook's verdict on a command line: its PARSE_ERRORS (None when it takes everything), or
    "not ours" when tce= has no scheme it handles."""
    busybox = shutil.which("busybox")
    shell = [busybox, "sh"] if busybox else ["sh"]
    code = (f'TCE_IPFS_LIB={LIB}; . "$TCE_IPFS_LIB/lib.sh"; . "$TCE_IPFS_LIB/parse.sh"; set -f\n'
            'CMDLINE=$1; parse_scheme || { echo "not ours"; exit 0; }\n'
            'parse_codes; printf %s "$PARSE_ERRORS"')
    done = subprocess.run([*shell, "-c", code, "sh", cmdline], capture_output=True, text=True, timeout=20,
                          check=True, env={"PATH": "/usr/bin:/bin", "ROOT": "/nonexistent"})
    return done.stdout.strip() or None


HEX = "0123456789abcdef" * 4
SAMPLES: dict[str, list[str | None]] = {
    "lst": ["onboot.lst", "lab.lst", "a" * 64, "a" * 65, "../etc", ".hidden", "x..y", "a/b", ""],
    "ipfs.peers": [PEER, f"{PEER},{PEER}", f"{PEER},", ",".join([PEER] * 16), ",".join([PEER] * 17),
                   f"/ip4/10.0.0.1/udp/4001/quic-v1/p2p/{PEER_ID}", f"/dnsaddr/lab.example/p2p/{PEER_ID}",
                   f"/ip6/fe80::1/tcp/1/p2p/{PEER_ID}", f"/ip4/256.0.0.1/tcp/1/p2p/{PEER_ID}",
                   f"/ip4/10.0.0.1/tcp/0/p2p/{PEER_ID}", "/ip4/10.0.0.1/tcp/4001", "/ip4/1.2.3.4/tcp/1/p2p/X",
                   "x", ",", ""],
    "ipfs.timeout": ["2", "1", "3600", "3601", "60s", "60ss", "abc", "-5", "", "1234567890", None],
    "ipfs.mirror": ["http://10.0.2.100:8080/tcz", "http://mirror/", "http://m:0/", "https://m/",
                    "http://user@m/", "http://m/../x", "http://m/a//b", "http://-m/", "ftp://m", ""],
    "ipfs.gateway": ["http://10.0.2.100:8081", "http://seed:8081/", "http://10.0.2.100/gw", "https://s/",
                     "http://s:0", "http://user@s/", "http://s/../x", "ftp://s", ""],
    "ipfs.seed": [None, "1", "0", "yes", "off", "true", "maybe", ""],
    "ipfs.onecopy": [None, "1", "0", "no", "on", "2", ""],
    "ipfs.mdns": [None, "1", "0", "off", "sometimes", ""],
    "ipfs.swarmkey": [HEX, HEX.upper(), HEX[:-1], HEX + "0", "g" * 64, ""],
    "ipfs.port": ["0", "4001", "65535", "65536", "-1", "80x", ""],
    # (private alone is refused by both: it needs ipfs.swarmkey -- test_net_codes_together)
    "ipfs.net": ["public", "lan", "Public", "wan", "", None],
    "ipfs.bootstrap": [PEER, f"{PEER},{PEER}", ",".join([PEER] * 16), ",".join([PEER] * 17),
                       f"/dnsaddr/bootstrap.example/p2p/{PEER_ID}", "/ip4/10.0.0.1/tcp/4001", "x", ""],
    "ipfs.debug": [None, "1", "0", "2", "no"],
    "ipfs.car": ["sdb1:/repo.car", "/dev/sdb1:tce/repo.car", "LABEL=TCE:/repo.car", "UUID=1234-ABCD:r.car",
                 "sdb1", "sdb1:", "sdb1:/", "LABEL=:/r.car", "LABEL=a b:/r", "sdb1:/../etc/x", ":/repo.car",
                 "sdb1:/a//b", "x" * 250 + ":/r.car", ""],
    "nodhcp": [None],
}
TCE_SAMPLES = [f"ipfs:{CID}", f"ipfs:{CID}/sub/dir", f"ipfs:{CID}/../x", "ipfs:bafy1bad", "ipfs:" + "b" * 200,
               "ipns:k51qzi5uqu5dlvj2baxnqndepeb86cbk3ng7n3i46uzyxzyqj2xjonzllnv0v8", "ipns:lab.example",
               "ipns:nodots", "http://10.0.2.100:8080/tcz", "http://m/a?b=1", "/tce", "sda1"]


def _cases() -> list[tuple[str, str | None]]:
    return [(name, value) for name, values in SAMPLES.items() for value in values]


def test_samples_cover_every_code() -> None:
    assert sorted([*SAMPLES, "tce"]) == sorted(bootcodes.BY_NAME)


@pytest.mark.parametrize(("name", "value"), _cases())
def test_table_and_hook_take_the_same_values(name: str, value: str | None) -> None:
    word = name if value is None else f"{name}={value}"
    hook = hook_refuses(f"quiet tce=ipfs:{CID} {word}")
    ours = bootcodes.BY_NAME[name].check(value)
    if value is None and bootcodes.BY_NAME[name].kind not in ("bool", "flag"):
        # The hook ignores a bare NAME it expects a value for; the host refuses it rather than
        # write a code that does nothing.
        assert hook is None and ours is not None
        return
    assert (hook is None) == (ours is None), f"hook: {hook!r}; table: {ours!r}"


@pytest.mark.parametrize("value", TCE_SAMPLES)
def test_tce_values_agree(value: str) -> None:
    hook = hook_refuses(f"quiet tce={value}")
    ours = bootcodes.BY_NAME["tce"].check(value)
    assert (hook is None) == (ours is None), f"hook: {hook!r}; table: {ours!r}"


@pytest.mark.parametrize(("words", "refused"), [
    ("ipfs.net=private", True), (f"ipfs.net=private ipfs.swarmkey={HEX}", False),
    (f"ipfs.net=public ipfs.swarmkey={HEX}", True), (f"ipfs.net=lan ipfs.swarmkey={HEX}", False),
    (f"ipfs.peers={PEER} ipfs.net=public", False), (f"ipfs.bootstrap={PEER} ipfs.net=lan", False),
])
def test_net_codes_together(words: str, refused: bool) -> None:
    """The combinations the hook refuses, the host refuses too (``bootcodes.check_together``)."""
    hook = hook_refuses(f"quiet tce=ipfs:{CID} {words}")
    codes = dict(w.partition("=")[::2] for w in words.split())
    try:
        bootcodes.check_together(codes)
        ours = None
    except UsageError as exc:
        ours = exc.message
    assert (hook is not None) == refused and (ours is not None) == refused, (hook, ours)


# ------------------------------------------------------------------------------- the host refuses

def test_unknown_code_in_our_namespace_is_refused_naming_the_known_ones() -> None:
    typo = r"unknown boot code 'ipfs.tiemout=60' \(did you mean ipfs.timeout\?\)"
    with pytest.raises(UsageError, match=typo) as info:
        bootcfg.parse_codes(["ipfs.tiemout=60"])
    assert info.value.hint is not None
    assert all(c.name in info.value.hint for c in bootcodes.CODES)
    for typo in ("ipfs_timeout=60", "IPFS.peers=x", "ipfs-debug"):
        with pytest.raises(UsageError, match="unknown boot code"):
            bootcfg.parse_codes([typo])
    # Not ours: the kernel's and Tiny Core's codes pass as they are.
    assert bootcfg.parse_codes(["console=ttyS0,115200", "base", "loglevel=3", "ipfsx=1"]) == {
        "console": "ttyS0,115200", "base": None, "loglevel": "3", "ipfsx": "1"}


def test_bad_values_are_refused_with_the_codes_doc() -> None:
    with pytest.raises(UsageError, match=r"'ipfs.timeout=1': a whole number between 2 and 3600") as info:
        bootcfg.parse_codes(["ipfs.timeout=1"])
    assert info.value.hint == f"ipfs.timeout: {bootcodes.BY_NAME['ipfs.timeout'].doc}"
    with pytest.raises(UsageError, match="not a multiaddr with a peer id"):
        bootcfg.check_codes({"ipfs.peers": "/ip4/1.2.3.4/tcp/4001/p2p/X"})
    assert bootcfg.check_codes({"ipfs.peers": PEER, "ipfs.seed": None, "lst": "lab.lst"}) == {
        "ipfs.peers": PEER, "ipfs.seed": None, "lst": "lab.lst"}


def test_cli_refuses_a_misspelt_code_before_touching_anything(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "in.iso"
    src.write_bytes(b"never read")
    out = tmp_path / "out.iso"
    for argv in (["remaster", str(src), "--cid", CID, "-o", str(out)],
                 ["netboot", "--cid", CID, "-o", str(tmp_path / "tftp"), "--from-iso", str(src)]):
        assert cli.main([*argv, "--boot-code", "ipfs.tiemout=60"]) == UsageError.exit_code
        err = capsys.readouterr().err
        assert "unknown boot code 'ipfs.tiemout=60' (did you mean ipfs.timeout?)" in err
        assert "ipfs.peers, ipfs.timeout, ipfs.mirror" in err
    assert not out.exists() and not (tmp_path / "tftp").exists()


def test_hook_gateway_code_is_normalised_and_ignored_for_http() -> None:
    """ipfs.gateway=: the trailing / dropped (the hook appends /ipfs/<CID>/...); with tce=http:// a
    warning and no gateway (nothing of IPFS runs there)."""
    busybox = shutil.which("busybox")
    shell = [busybox, "sh"] if busybox else ["sh"]
    code = (f'TCE_IPFS_LIB={LIB}; . "$TCE_IPFS_LIB/lib.sh"; . "$TCE_IPFS_LIB/parse.sh"; set -f\n'
            'CMDLINE=$1; parse_scheme; parse_codes\n'
            'printf "%s|%s|%s" "$GW_URL" "$PARSE_ERRORS" "$PARSE_WARNINGS"')

    def parse(cmdline: str) -> list[str]:
        done = subprocess.run([*shell, "-c", code, "sh", cmdline], capture_output=True, text=True, timeout=20,
                              check=True, env={"PATH": "/usr/bin:/bin", "ROOT": "/nonexistent"})
        return done.stdout.split("|")

    assert parse(f"tce=ipfs:{CID} ipfs.gateway=http://10.0.0.1:8081/") == ["http://10.0.0.1:8081", "", ""]
    url, errors, warnings = parse("tce=http://10.0.0.1/tcz ipfs.gateway=http://10.0.0.1:8081")
    assert url == "" and errors == "" and "ipfs.gateway is ignored" in warnings
