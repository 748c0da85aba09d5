"""The boot hook end to end on the host: fake root, fake kubo/network, real busybox sh and dash.

Every boot code of initrd-hooks/README.md is exercised here (see test_readme_codes_are_tested).
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any

import pytest

from hookfakes.harness import CID, CID_V1, KREL, PEER, PEER_ID, HookEnv, Repo, Result, md5
from tce_ipfs import settings
from test_hook_parse import awk

FINAL_OK = re.compile(r"^loaded (\d+) extensions from (\S+.*) in (\d+\.\d) s$")
MIRROR = "http://10.0.2.100:8080/tcz"
KEY = "0f" * 32
FAKE_PEER_ID = "12D3KooWFakeFakeFakeFakeFakeFakeFakeFakeFakeFakeFake"  # Identity.PeerID of the fake init
GATEWAY_URL = "http://127.0.0.1:48080/"


def sample_repo(repo: Repo) -> None:
    """The shape the E2E repo has: a chain of 3, a -KERNEL dep, duplicates, a cycle, no-.dep leaves."""
    repo.ext("libhello.tcz")
    repo.ext("hello-core.tcz", ["libhello.tcz"])
    repo.ext(f"hello-mod-{KREL}.tcz")
    repo.ext("hello.tcz", dep_text="hello-core.tcz\n# a comment\n\nhello-mod-KERNEL.tcz\nlibhello\n")
    repo.ext("greeter.tcz")
    repo.ext("ping.tcz", ["pong.tcz"])
    repo.ext("pong.tcz", ["ping.tcz"])
    repo.ext("bigdata.tcz", size=200_000)
    repo.lst("# onboot\nhello.tcz\ngreeter\n\nhello.tcz\nping.tcz\nbigdata.tcz   # big\n")


CLOSURE = [
    "libhello.tcz",
    "hello-core.tcz",
    f"hello-mod-{KREL}.tcz",
    "hello.tcz",
    "greeter.tcz",
    "pong.tcz",
    "ping.tcz",
    "bigdata.tcz",
]


def kubo_config(env: HookEnv) -> dict[str, Any]:
    """The config the (fake) daemon started with."""
    return json.loads((env.state / "config.seen").read_text())  # type: ignore[no-any-return]


def ipfs_ready(env: HookEnv, cid: str = CID, sub: str = "") -> Repo:
    repo = env.ipfs_repo(cid, sub)
    env.peers_ok(PEER)
    return repo


def assert_clean_exit(result: Result) -> None:
    assert result.rc == 0, result.stderr
    assert not list(result.env.optional().glob("*.part"))


# ------------------------------------------------------------------------------------------ happy path


def test_happy_path(env: HookEnv) -> None:
    sample_repo(ipfs_ready(env))
    result = env.run(f"quiet console=ttyS0 tce=ipfs:{CID} ipfs.peers={PEER}")
    assert_clean_exit(result)
    m = FINAL_OK.match(result.final)
    assert m, result.console
    assert m.group(1) == str(len(CLOSURE)) and m.group(2) == f"ipfs:{CID}"
    # kubo first (the hook mounted it), then the closure, deps first, each once.
    assert env.builtin_list() == ["ipfs.tcz", *CLOSURE]
    opt = env.optional()
    for name in CLOSURE:
        data = (env.http / "ipfs" / CID / name).read_bytes()
        assert (opt / name).read_bytes() == data
        assert (opt / f"{name}.md5.txt").read_text() == f"{md5(data)}  {name}\n"
    # .dep files next to the extensions are normalised: plain names, -KERNEL resolved, no comments.
    assert (opt / "hello.tcz.dep").read_text().split() == [
        "hello-core.tcz",
        f"hello-mod-{KREL}.tcz",
        "libhello.tcz",
    ]
    assert not (opt / "greeter.tcz.dep").exists()
    assert "dependency loop through" in result.console
    # coexistence: tce-setup will derive /tce from the value; it must point at TC's RAM tce dir.
    assert os.readlink(env.root / "tce") == "/tmp/tce"
    assert (env.root / "tmp/tce/onboot.lst").read_text() == ""
    # status file for tests and the demo
    st = result.status
    assert st["result"] == "ok" and st["cid"] == CID and st["loaded"] == str(len(CLOSURE))
    assert st["extensions"].split(",") == CLOSURE
    assert int(st["bytes"]) == sum(len(env.http.joinpath("ipfs", CID, n).read_bytes()) for n in CLOSURE)
    for key in ("t_net", "t_kubo_start", "t_kubo_ready", "t_list", "t_first_byte", "t_total"):
        assert re.fullmatch(r"\d+\.\d", st[key]), (key, st)
    assert st["gateway"] == "http://127.0.0.1:48080" and st["peers_connected"] == "1"
    # network: udhcpc with our script and TC's pid file
    udhcpc = [c for c in result.calls if c.startswith("udhcpc ")]
    assert udhcpc and f"-s {env.root}/usr/local/lib/tce-ipfs/udhcpc.script" in udhcpc[0]
    assert f"-p {env.root}/var/run/udhcpc.eth0.pid" in udhcpc[0]
    # kubo: mounted like tce-load would, configured, private by default, kept running to seed
    assert (
        f"mount -t squashfs -o loop,ro {env.root}/tmp/builtin/optional/ipfs.tcz {env.root}/tmp/tcloop/ipfs"
        in result.calls
    )
    # one kubo start: the daemon makes the repo (test,lowpower + the hook's keys), no `ipfs init`
    kubo_calls = [c for c in result.calls if c.startswith("ipfs ")]
    assert kubo_calls[0] == (f"ipfs daemon --init --init-profile=test,lowpower "
                             f"--init-config={env.root}/tmp/tce-ipfs/kubo-init.json"), kubo_calls
    assert not [c for c in kubo_calls if c.startswith("ipfs init")]
    config = kubo_config(env)
    assert config["Addresses"]["Swarm"] == ["/ip4/0.0.0.0/tcp/4001"]
    # mDNS stays on next to ipfs.peers: the other machines booting on the LAN are found that way
    assert config["Routing"]["Type"] == "none" and config["Discovery"]["MDNS"]["Enabled"] is True
    assert config["Peering"]["Peers"] == [{"ID": PEER_ID, "Addrs": ["/ip4/10.0.2.100/tcp/4001"]}]
    assert config["Bootstrap"] == [] and config["AutoConf"]["Enabled"] is False
    assert config["Swarm"]["Transports"]["Security"] == {"TLS": False}  # Noise only: cheaper, still secure
    assert not (env.state / "config.log").exists()  # edited in place: no `ipfs config` runs
    assert f"wget http://127.0.0.1:45001/api/v0/swarm/connect?arg={PEER}" in result.calls
    daemon_env = (env.state / "daemon.env").read_text()
    assert "IPFS_TELEMETRY=off" in daemon_env and "GOMEMLIMIT=100MiB" in daemon_env  # no meminfo
    assert "GOGC=off" in daemon_env
    assert "LIBP2P_FORCE_PNET=\n" in daemon_env
    assert (env.state / "daemon.running").exists() and st["kubo_pid"]
    # everything went to the log too
    assert "loaded 8 extensions" in result.log


@pytest.mark.parametrize(("mem_kib", "limit", "gogc"), [(262144, "42MiB", "50"), (131072, "32MiB", "50"),
                                                      (4194304, "100MiB", "off")])
def test_go_heap_cap_follows_the_ram(env: HookEnv, mem_kib: int, limit: str, gogc: str) -> None:
    """GOGC=off with GOMEMLIMIT a fifth of the RAM, up to 100 MiB: the GC runs only near the cap; below
    512 MiB GOGC=50 with a sixth, at least 32 MiB (the heap must not take the RAM the seeding needs)."""
    sample_repo(ipfs_ready(env))
    (env.root / "proc/meminfo").write_text(f"MemTotal:       {mem_kib} kB\nMemFree:  1000 kB\n")
    result = env.run(f"tce=ipfs:{CID} ipfs.peers={PEER}")
    assert FINAL_OK.match(result.final), result.console
    daemon_env = (env.state / "daemon.env").read_text()
    assert f"GOMEMLIMIT={limit}\n" in daemon_env and f"GOGC={gogc}\n" in daemon_env


def test_console_lines_stand_alone(env: HookEnv) -> None:
    """Each console line starts on a line of its own (tc-config's spinner shares the console)."""
    ipfs_ready(env).lst("")
    result = env.run(f"tce=ipfs:{CID} ipfs.peers={PEER}")
    assert result.console.startswith("\ntce-ipfs: ")
    assert result.final == f"loaded 0 extensions from ipfs:{CID} in " + result.final.split(" in ")[1]
    assert env.builtin_list() == ["ipfs.tcz"]


@pytest.mark.parametrize(
    "cmdline",
    [
        "quiet",
        "tce=sda1",
        "tce=UUID=1234-abcd/tce",
        "tce=LABEL=x tce=nfs",
        "tce=ipfs:x tce=sdb1",
        "tce=IPFS:" + CID,
        "tce=https://h/x",
        "ipfs.peers=x",
    ],
)
def test_not_our_tce_does_nothing(env: HookEnv, cmdline: str) -> None:
    result = env.run(cmdline)
    assert result.rc == 0 and result.console == "" and result.stderr == ""
    assert result.calls == [] and result.log == ""
    assert not (env.root / "tce").exists() and not (env.root / "tmp/tce-ipfs").exists()


@pytest.mark.parametrize("cmdline", ["", None])
def test_no_cmdline_does_nothing(env: HookEnv, cmdline: str | None) -> None:
    result = env.run(cmdline)
    assert result.rc == 0 and result.console == "" and result.calls == []


# ------------------------------------------------------------------------------------------ bad codes


BAD_CODES = [
    ("tce=ipfs:", "is not a CID (it is empty)"),
    ("tce=ipfs:QmBAD", "is not a CID (a CIDv0 (Qm...) is 46 base58 characters)"),
    (f"tce=ipfs:{CID[:-1]}0", "is not a CID"),
    (f"tce=ipfs:{CID_V1.upper()}", "lower-case base32"),
    ("tce=ipfs:zdj7WWeQ43G6JJvLWQWZpyHuAMq6uYWRjkBXFad11vE2LHhQ7", "starts with Qm"),
    (f"tce=ipfs:{CID}/../../etc", "subpath '../../etc'"),
    (f"tce=ipfs:{CID}/a//b", "is unsafe"),
    (f"tce=ipfs:{CID}/a/./b", "is unsafe"),
    ("tce=ipfs:" + "Q" * 3000, "tce= is 3005 characters long (at most 512)"),
    ("tce=ipns:NOT_A_NAME", "is not an IPNS name"),
    ("tce=http://user@h/x", "is not a plain http://"),
    ("tce=http://h/../x", "is not a plain http://"),
    (f"tce=ipfs:{CID} lst=../onboot.lst", "lst=../onboot.lst is not a plain file name"),
    (f"tce=ipfs:{CID} lst=" + "a" * 100, "is not a plain file name"),
    (f"tce=ipfs:{CID} lst=", "lst= is not a plain file name"),
    (f"tce=ipfs:{CID} ipfs.timeout=abc", "ipfs.timeout=abc must be whole seconds"),
    (f"tce=ipfs:{CID} ipfs.timeout=0", "must be whole seconds between 2 and 3600"),
    (f"tce=ipfs:{CID} ipfs.timeout=99999", "must be whole seconds"),
    (f"tce=ipfs:{CID} ipfs.timeout=-5", "must be whole seconds"),
    (f"tce=ipfs:{CID} ipfs.peers=garbage", "ipfs.peers: 'garbage' is not a multiaddr"),
    (f"tce=ipfs:{CID} ipfs.peers=/ip4/10.0.2.100/tcp/4001", "is not a multiaddr with a peer id"),
    (f"tce=ipfs:{CID} ipfs.peers=/ip4/300.1.1.1/tcp/1/p2p/{PEER_ID}", "is not a multiaddr"),
    (f"tce=ipfs:{CID} ipfs.peers=" + ",".join([PEER] * 17), "more than 16 peers"),
    (f"tce=ipfs:{CID} ipfs.peers=", "ipfs.peers= is empty"),
    (f"tce=ipfs:{CID} ipfs.peers=/ip4/" + "9" * 2000, "is not a multiaddr"),
    (f"tce=ipfs:{CID} ipfs.mirror=ftp://h/x", "ipfs.mirror=ftp://h/x is not a plain http://"),
    (f"tce=ipfs:{CID} ipfs.mirror=http://h/a/../b", "ipfs.mirror="),
    (f"tce=ipfs:{CID} ipfs.swarmkey=xyz", "ipfs.swarmkey= must be 64 hex digits"),
    (f"tce=ipfs:{CID} ipfs.swarmkey=" + "a" * 63, "must be 64 hex digits (got 63)"),
    (f"tce=ipfs:{CID} ipfs.seed=maybe", "ipfs.seed= must be 0 or 1"),
    (f"tce=ipfs:{CID} ipfs.debug=loud", "ipfs.debug= must be 0 or 1"),
    (f"tce=ipfs:{CID} ipfs.mdns=sometimes", "ipfs.mdns= must be 0 or 1"),
    (f"tce=ipfs:{CID} ipfs.port=70000", "ipfs.port=70000 must be a TCP port"),
    (f"tce=ipfs:{CID} ipfs.port=http", "must be a TCP port"),
    # issue 11: a long lst= is refused before any file is named after it (it killed the shell)
    (f"tce=ipfs:{CID} lst=" + "a" * 300, "lst=" + "a" * 60 + "... is not a plain file name"),
    # issue 11: a list named like a directory or file the hook or TC uses
    (f"tce=ipfs:{CID} lst=optional", "lst=optional names a file or directory TC or the hook uses"),
    (f"tce=ipfs:{CID} lst=ondemand", "lst=ondemand names a file or directory"),
    (f"tce=ipfs:{CID} lst=copy2fs.flg", "lst=copy2fs.flg names a file or directory"),
    (f"tce=ipfs:{CID} lst=tce-ipfs.gz", "lst=tce-ipfs.gz names a file or directory"),
    # issue 11: the value is echoed as given
    (f"tce=ipfs:{CID} ipfs.timeout=10ss", "ipfs.timeout=10ss must be whole seconds"),
]


@pytest.mark.parametrize(("cmdline", "message"), BAD_CODES)
def test_bad_boot_code(env: HookEnv, cmdline: str, message: str) -> None:
    result = env.run(cmdline)
    assert_clean_exit(result)
    assert result.final.startswith("FAILED: bad boot code: "), result.console
    assert message in result.final
    assert len(result.final) < 1200  # an absurd value is never echoed back whole
    # parse first: nothing acted (no network, no kubo, no list)
    assert result.calls == []
    assert env.builtin_list() == []
    assert result.status["result"] == "failed"


def test_bad_code_is_one_console_line(env: HookEnv) -> None:
    result = env.run(f"tce=ipfs:{CID} lst=" + "b" * 300)
    assert result.rc == 0 and result.stderr == ""
    assert len(result.lines) == 1, result.console
    assert result.final.startswith("FAILED: bad boot code: lst=bbb")
    assert not [p for p in env.base.rglob("b" * 100 + "*")]  # no file was ever named after it


def test_lst_colliding_with_an_existing_directory(env: HookEnv) -> None:
    (env.root / "tmp/tce/mine").mkdir()
    result = env.run(f"tce=ipfs:{CID} lst=mine")
    assert result.final == ("FAILED: bad boot code: lst=mine names a file or directory TC or the hook uses"
                            " (optional, ondemand, copy2fs.*, *.gz, or an existing non-file)")
    assert (env.root / "tmp/tce/mine").is_dir() and not list((env.root / "tmp/tce/mine").iterdir())


def test_lst_optional_hands_nothing_into_optional(env: HookEnv) -> None:
    repo = ipfs_ready(env)
    sample_repo(repo)
    repo.lst("greeter.tcz\n", name="optional")
    result = env.run(f"tce=ipfs:{CID} lst=optional ipfs.peers={PEER}")
    assert result.final.startswith("FAILED: bad boot code: lst=optional"), result.console
    opt = env.optional()
    assert opt.is_dir() and sorted(p.name for p in opt.iterdir()) == ["ipfs.tcz"]


def test_all_bad_codes_reported_at_once(env: HookEnv) -> None:
    result = env.run("tce=ipfs:QmX ipfs.timeout=x ipfs.port=-1 lst=a/b")
    problems = result.final.removeprefix("FAILED: bad boot code: ").split("; ")
    assert len(problems) == 4, result.final


def test_absurdly_long_cmdline(env: HookEnv) -> None:
    sample_repo(ipfs_ready(env))
    filler = " ".join(f"x{i}=" + "y" * 40 for i in range(60))
    result = env.run(f"{filler} tce=ipfs:{CID} ipfs.peers={PEER} {filler}")
    assert FINAL_OK.match(result.final), result.console


def test_bad_cid_still_keeps_tcedir_valid(env: HookEnv) -> None:
    env.run("tce=ipfs:QmBAD")
    assert os.readlink(env.root / "tce") == "/tmp/tce"


# ------------------------------------------------------------------------------------------ coexistence


def test_subpath_is_fetched_and_shimmed(env: HookEnv) -> None:
    repo = ipfs_ready(env, CID, "16.x/x86_64/tcz")
    repo.ext("a.tcz")
    repo.lst("a.tcz\n")
    result = env.run(f"tce=ipfs:{CID}/16.x/x86_64/tcz ipfs.peers={PEER}")
    assert FINAL_OK.match(result.final) and f"ipfs:{CID}/16.x/x86_64/tcz" in result.final
    # tce-setup derives "/16.x/x86_64/tcz" from this value
    assert os.readlink(env.root / "16.x/x86_64/tcz") == "/tmp/tce"
    assert env.builtin_list() == ["ipfs.tcz", "a.tcz"]


def test_existing_directory_is_left_alone(env: HookEnv) -> None:
    (env.root / "srvdata").mkdir(parents=True)
    ipfs_ready(env, CID, "srvdata").lst("")
    result = env.run(f"tce=ipfs:{CID}/srvdata ipfs.peers={PEER}")
    assert "it exists and is not one; leaving it alone" in result.console
    assert not (env.root / "srvdata/optional").exists() and not (env.root / "srvdata").is_symlink()


@pytest.mark.parametrize("sub", ["etc/newfile", "usr/local/bin/x", "tmp/builtin/x", "dev/x", "proc/x"])
def test_shim_never_writes_into_a_system_directory(env: HookEnv, sub: str) -> None:
    ipfs_ready(env, CID, sub).lst("")
    result = env.run(f"tce=ipfs:{CID}/{sub} ipfs.peers={PEER}")
    refusal = f"warning: tce-setup will use /{sub} as the tce dir: inside a system directory, not creating it"
    assert refusal in " ".join(result.lines), result.console
    assert not os.path.lexists(env.root / sub)
    assert FINAL_OK.match(result.final)


def test_bad_cid_with_a_new_directory_is_parsed_first(env: HookEnv) -> None:
    result = env.run("tce=ipfs:notacid/newdir lst=" + "c" * 300)
    assert result.final.startswith("FAILED: bad boot code: tce=ipfs:notacid is not a CID"), result.console
    assert "lst=ccc" in result.final  # every problem found before anything was written
    # TC will still use /newdir as its tce dir: it is made (only it), so tce-load works after boot
    assert os.readlink(env.root / "newdir") == "/tmp/tce"
    assert not [p for p in env.base.rglob("c" * 100 + "*")]


def test_system_directory_is_refused(env: HookEnv) -> None:
    (env.root / "etc/x").mkdir(parents=True)
    ipfs_ready(env, CID, "etc").lst("")
    result = env.run(f"tce=ipfs:{CID}/etc ipfs.peers={PEER}")
    assert "warning: tce-setup will use /etc as the tce dir: inside a system directory, not creating it" in (
        result.console
    )
    assert not (env.root / "etc/optional").exists() and not (env.root / "etc").is_symlink()


def test_existing_builtin_list_is_kept(env: HookEnv) -> None:
    (env.root / "tmp/builtin/onboot.lst").write_text("embedded.tcz\ngreeter.tcz\n")
    sample_repo(ipfs_ready(env))
    env.run(f"tce=ipfs:{CID} ipfs.peers={PEER}")
    names = env.builtin_list()
    assert names[:2] == ["embedded.tcz", "greeter.tcz"] and names.count("greeter.tcz") == 1
    assert names[2] == "ipfs.tcz"


def test_rerun_reuses_placed_files(env: HookEnv) -> None:
    sample_repo(ipfs_ready(env))
    env.run(f"tce=ipfs:{CID} ipfs.peers={PEER}")
    env.cleanup()
    (env.state / "calls.log").unlink()
    (env.root / "proc/mounts").write_text("")
    result = env.run(f"tce=ipfs:{CID} ipfs.peers={PEER}")
    assert FINAL_OK.match(result.final)
    assert not [c for c in result.calls if c.startswith(f"wget {GATEWAY_URL}") and c.endswith("bigdata.tcz")]
    assert env.builtin_list().count("hello.tcz") == 1


# ------------------------------------------------------------------------------------------ lst=


def test_lst_code(env: HookEnv) -> None:
    repo = ipfs_ready(env)
    sample_repo(repo)
    repo.lst("greeter.tcz\n", name="lab.lst")
    result = env.run(f"tce=ipfs:{CID} lst=lab.lst ipfs.peers={PEER}")
    assert FINAL_OK.match(result.final) and result.final.startswith("loaded 1 ")
    assert env.builtin_list("lab.lst") == ["ipfs.tcz", "greeter.tcz"]
    assert env.builtin_list("onboot.lst") == []
    assert (env.root / "tmp/tce/lab.lst").exists()


def test_missing_list(env: HookEnv) -> None:
    ipfs_ready(env).ext("a.tcz")
    result = env.run(f"tce=ipfs:{CID} ipfs.peers={PEER}")
    assert result.final == f"FAILED: onboot.lst from ipfs:{CID}: not found"
    assert env.builtin_list() == ["ipfs.tcz"]  # mounted kubo stays consistent with the list
    assert not (env.state / "daemon.running").exists()  # nothing fetched: kubo stopped


# ------------------------------------------------------------------------------------------ bad repo data


def test_bad_names_in_list(env: HookEnv) -> None:
    repo = ipfs_ready(env)
    repo.ext("good.tcz")
    repo.lst("good.tcz\n../../etc/passwd\nsub/dir.tcz\n" + "z" * 5000 + "\n/abs.tcz\nx..y.tcz\n")
    result = env.run(f"tce=ipfs:{CID} ipfs.peers={PEER}")
    assert_clean_exit(result)
    errors = result.errors()
    assert len(errors) == 5, errors
    assert any(
        "onboot.lst line 2: not a plain extension name: '../../etc/passwd.tcz'" in e
        or "onboot.lst line 2: not a plain extension name: '../../etc/passwd'" in e
        for e in errors
    ), errors
    assert any("line 4: line too long" in e for e in errors)
    assert result.final.startswith("FAILED: 5 problem(s), first: onboot.lst line 2")
    assert result.final.endswith(" s") and "loaded 1 extensions" in result.final
    assert env.builtin_list() == ["ipfs.tcz", "good.tcz"]
    assert not any("passwd" in c or "dir.tcz" in c for c in result.calls)
    assert result.status["result"] == "partial"


def test_nul_byte_in_list_keeps_line_numbers(env: HookEnv) -> None:
    repo = ipfs_ready(env)
    repo.ext("good.tcz")
    repo.ext("ba.tcz")
    repo.ext("d.tcz")
    (repo.path / "onboot.lst").write_bytes(b"good.tcz\nba\0d.tcz\nthird/x\n")
    result = env.run(f"tce=ipfs:{CID} ipfs.peers={PEER}")
    assert_clean_exit(result)
    assert result.errors() == [
        "error: onboot.lst line 2: not a plain extension name: 'ba?d.tcz'",
        "error: onboot.lst line 3: not a plain extension name: 'third/x'",
    ], result.console
    assert env.builtin_list() == ["ipfs.tcz", "good.tcz"]  # neither ba.tcz nor d.tcz


def test_name_too_long_after_kernel_substitution(env: HookEnv) -> None:
    repo = ipfs_ready(env)
    long_base = "m" * 110
    repo.ext(f"{long_base}-{KREL}.tcz")
    repo.ext("app.tcz", dep_text=f"{long_base}-KERNEL.tcz\n")
    repo.ext("ok.tcz")
    repo.lst(f"ok.tcz\n{long_base}-KERNEL\n")
    result = env.run(f"tce=ipfs:{CID} ipfs.peers={PEER}")
    assert_clean_exit(result)
    assert any("onboot.lst line 2: name too long: 'mmmm" in e for e in result.errors()), result.console
    assert env.builtin_list() == ["ipfs.tcz", "ok.tcz"]
    assert not [c for c in result.calls if long_base in c]  # never asked for, never written


def test_console_flood_is_bounded(env: HookEnv) -> None:
    repo = ipfs_ready(env)
    repo.ext("good.tcz")
    (repo.path / "onboot.lst").write_text("good.tcz\n" + "x/\n" * 200_000)  # 600 KB, under the 1 MiB cap
    result = env.run(f"tce=ipfs:{CID} ipfs.peers={PEER} ipfs.timeout=5", timeout=120)
    assert_clean_exit(result)
    errors = result.errors()
    assert len(errors) == 6, errors[:10]  # the first five, then the count
    # 199995 more (one more if good.tcz itself ran out of time on a loaded machine)
    m = re.fullmatch(r"error: \.\.\. and (\d+) more problem\(s\), not shown \(all in /var/log/tce-ipfs.log\)",
                     errors[-1])
    assert m and int(m.group(1)) >= 199995, errors[-1]
    # "nothing loaded: " when good.tcz itself ran out of the 5 s on a loaded machine
    assert re.match(r"FAILED: (nothing loaded: )?2000\d\d problem\(s\), first: onboot.lst line 2: ",
                    result.final), result.final
    assert len(result.console) < 4000  # a few lines, not 15 MB of console (env.run's timeout bounds the time)


def test_dependency_loops_warn_a_few_times(env: HookEnv) -> None:
    repo = ipfs_ready(env)
    names = []
    for i in range(8):
        repo.ext(f"p{i}.tcz", [f"q{i}.tcz"])
        repo.ext(f"q{i}.tcz", [f"p{i}.tcz"])
        names.append(f"p{i}.tcz")
    repo.lst("".join(f"{n}\n" for n in names))
    result = env.run(f"tce=ipfs:{CID} ipfs.peers={PEER}")
    assert FINAL_OK.match(result.final), result.console
    loops = [ln for ln in result.lines if "dependency loop" in ln]
    assert len(loops) == 4 and loops[-1] == "warning: 5 more dependency loops (see the log)", loops


@pytest.mark.parametrize("shell", ["busybox"])  # TC's shell; 3000 fake fetches per run, one run is enough
def test_closure_limit_never_lists_an_unfetched_extension(env: HookEnv) -> None:
    """1000 extensions in the list, the first of them needs one more: the 1001st is never fetched, so
    neither it nor what needs it may be handed to TC (~40 s: 3000 fake fetches)."""
    repo = ipfs_ready(env)
    repo.ext("y.tcz", size=10)
    repo.ext("x1.tcz", ["y.tcz"], size=10)
    for i in range(2, 1001):
        repo.ext(f"x{i}.tcz", size=10)
    repo.lst("".join(f"x{i}.tcz\n" for i in range(1, 1001)))
    result = env.run(f"tce=ipfs:{CID} ipfs.peers={PEER} ipfs.timeout=900", timeout=900)
    assert_clean_exit(result)
    # breadth first: x1..x1000 are the thousand; y (x1's dependency) would be the 1001st
    assert result.final.startswith(
        "FAILED: 3 problem(s), first: the closure has more than 1000 extensions; stopped there; loaded 999 "
    ), result.final
    listed = env.builtin_list()
    assert len(listed) == 1000 and listed[0] == "ipfs.tcz"
    assert "y.tcz" not in listed and "x1.tcz" not in listed
    assert not (env.optional() / "y.tcz").exists() and not (env.optional() / "x1.tcz").exists()
    assert "error: y.tcz: not fetched: the closure has more than 1000 extensions" in result.lines
    assert "error: x1.tcz: not loaded: its dependency y.tcz failed" in result.lines


def test_bad_names_in_dep(env: HookEnv) -> None:
    repo = ipfs_ready(env)
    repo.ext("lib.tcz")
    repo.ext("evil.tcz", dep_text="lib.tcz\n../../../bin/sh\n")
    repo.ext("app.tcz", ["evil.tcz"])
    repo.ext("other.tcz", ["lib.tcz"])
    repo.lst("app.tcz\nother.tcz\n")
    result = env.run(f"tce=ipfs:{CID} ipfs.peers={PEER}")
    assert_clean_exit(result)
    assert "error: evil.tcz: bad evil.tcz.dep: line 2: not a plain extension name" in result.console
    assert "error: app.tcz: not loaded: its dependency evil.tcz failed" in result.console
    assert env.builtin_list() == ["ipfs.tcz", "lib.tcz", "other.tcz"]
    assert not (env.optional() / "evil.tcz").exists() and not (env.optional() / "app.tcz").exists()


def test_md5_mismatch_is_not_placed(env: HookEnv) -> None:
    repo = ipfs_ready(env)
    repo.ext("lib.tcz", md5_text="0123456789abcdef0123456789abcdef  lib.tcz\n")
    repo.ext("app.tcz", ["lib.tcz"])
    repo.ext("ok.tcz")
    repo.lst("app.tcz\nok.tcz\n")
    result = env.run(f"tce=ipfs:{CID} ipfs.peers={PEER}")
    assert_clean_exit(result)
    assert (
        f"error: lib.tcz: md5 mismatch from ipfs:{CID} (expected 0123456789abcdef0123456789abcdef, got "
        f"{md5(repo.data['lib.tcz'])})"
    ) in result.console
    assert not (env.optional() / "lib.tcz").exists() and not (env.optional() / "app.tcz").exists()
    assert env.builtin_list() == ["ipfs.tcz", "ok.tcz"]
    assert result.final.startswith("FAILED: 2 problem(s), first: lib.tcz: md5 mismatch")


@pytest.mark.parametrize("md5_text", ["", "not-a-digest  x.tcz\n", "abc\n", "z" * 5000])
def test_malformed_md5_txt(env: HookEnv, md5_text: str) -> None:
    repo = ipfs_ready(env)
    repo.ext("x.tcz", md5_text=md5_text)
    repo.lst("x.tcz\n")
    result = env.run(f"tce=ipfs:{CID} ipfs.peers={PEER}")
    assert "error: x.tcz: malformed x.tcz.md5.txt" in result.console
    assert result.final.startswith("FAILED: nothing loaded")
    assert not (env.optional() / "x.tcz").exists()


def test_missing_md5_and_missing_tcz(env: HookEnv) -> None:
    repo = ipfs_ready(env)
    repo.ext("nomd5.tcz")
    (repo.path / "nomd5.tcz.md5.txt").unlink()
    repo.lst("nomd5.tcz\nabsent.tcz\n")
    result = env.run(f"tce=ipfs:{CID} ipfs.peers={PEER}")
    assert f"error: nomd5.tcz: no nomd5.tcz.md5.txt at ipfs:{CID}" in result.console
    assert f"error: absent.tcz: no absent.tcz.md5.txt at ipfs:{CID}" in result.console
    assert env.builtin_list() == ["ipfs.tcz"]


# ------------------------------------------------------------------------------------------ failures


def test_peers_unreachable(env: HookEnv) -> None:
    sample_repo(env.ipfs_repo())
    result = env.run(f"tce=ipfs:{CID} ipfs.peers={PEER} ipfs.timeout=6")
    assert_clean_exit(result)
    assert result.final.startswith(f"FAILED: ipfs:{CID}: no peer reachable (1 tried")
    assert "connection refused" in result.final
    assert result.seconds < 12
    assert not (env.state / "daemon.running").exists()  # kubo stopped again
    assert env.builtin_list() == ["ipfs.tcz"]


def test_peer_hangs_bounded_by_timeout(env: HookEnv) -> None:
    env.knob("peers_hang")
    result = env.run(f"tce=ipfs:{CID} ipfs.peers={PEER} ipfs.timeout=3")
    assert "no peer reachable" in result.final and "timed out" in result.final
    assert result.seconds < 10


def test_one_of_two_peers_is_enough(env: HookEnv) -> None:
    sample_repo(env.ipfs_repo())
    other = f"/ip4/10.0.2.101/tcp/4001/p2p/{PEER_ID}"
    env.peers_ok(other)
    result = env.run(f"tce=ipfs:{CID} ipfs.peers={PEER},{other}")
    assert FINAL_OK.match(result.final) and result.status["peers_connected"] == "1"


LAB_PEER = f"/ip4/10.0.2.101/tcp/4001/p2p/{PEER_ID}"  # a second machine to trade blocks with


def test_blocks_of_a_big_file_are_fetched_in_this_machines_order(env: HookEnv) -> None:
    """With someone to trade with (here: two peers named), a file of several blocks: its block list
    from one `ls` per level, every block asked for once, in the order lib/order.awk gives this
    machine's peer ID (not the file's own order), all before the file is read from kubo into
    optional/."""
    sample_repo(ipfs_ready(env))
    env.peers_ok(PEER, LAB_PEER)
    result = env.run(f"tce=ipfs:{CID} ipfs.peers={PEER},{LAB_PEER}")
    assert FINAL_OK.match(result.final), result.console
    blocks = (env.state / "blocks.log").read_text().split()
    in_file_order = [f"bafkfakebigdatatczx{i}" for i in range(13)]  # 200 000 bytes, 16 KiB blocks
    assert sorted(blocks) == sorted(in_file_order)
    # FETCH_BLOCK_JOBS requests at once, each walking its share of this machine's order
    mine = awk("order.awk", "".join(f"{b}\n" for b in in_file_order), key=f"{FAKE_PEER_ID}/bigdata.tcz")
    assert mine != in_file_order
    shares = [mine[w::4] for w in range(4)]
    for share in shares:
        assert [b for b in blocks if b in share] == share
    calls = result.calls
    last_refs = max(i for i, c in enumerate(calls) if "/api/v0/refs?" in c)
    read = calls.index(f"wget {GATEWAY_URL}ipfs/{CID}/bigdata.tcz")
    assert last_refs < read
    # one ls per level of the closure (two here), for every name of that level at once
    assert len([c for c in calls if "/api/v0/ls?" in c]) == 2
    want = (env.http / f"ipfs/{CID}/bigdata.tcz").read_bytes()
    assert (env.optional() / "bigdata.tcz").read_bytes() == want


def test_block_lists_or_block_requests_failing_only_cost_the_order(env: HookEnv) -> None:
    sample_repo(ipfs_ready(env))
    env.peers_ok(PEER, LAB_PEER)
    env.knob("refs_fail", "")
    result = env.run(f"tce=ipfs:{CID} ipfs.peers={PEER},{LAB_PEER}")
    assert FINAL_OK.match(result.final), result.console
    assert result.status["loaded"] == str(len(CLOSURE))
    assert (env.state / "blocks.log").exists() is False  # every refs call failed


@pytest.mark.parametrize("mdns", ["", " ipfs.mdns=0"])
def test_no_block_order_when_only_the_seed_can_have_blocks(env: HookEnv, mdns: str) -> None:
    """One peer named and nobody else found by LAN discovery (or none): nobody to trade with, so no
    block lists and no block requests (they would only cost time); files are read in order."""
    sample_repo(ipfs_ready(env))
    result = env.run(f"tce=ipfs:{CID} ipfs.peers={PEER}{mdns}")
    assert FINAL_OK.match(result.final), result.console
    assert not [c for c in result.calls if "/api/v0/ls?" in c or "/api/v0/refs?" in c]
    asked = [c for c in result.calls if "/api/v0/swarm/peers" in c]
    assert len(asked) == (0 if mdns else 1)  # asked once, and only with LAN discovery on


def test_block_order_when_lan_discovery_found_another_machine(env: HookEnv) -> None:
    """One peer named, and mDNS found another booting machine: blocks in this machine's order."""
    sample_repo(ipfs_ready(env))
    env.knob("lan_peers", "12D3KooWLanLanLanLanLanLanLanLanLanLanLanLanLanLanLan\n")
    result = env.run(f"tce=ipfs:{CID} ipfs.peers={PEER}")
    assert FINAL_OK.match(result.final), result.console
    assert [c for c in result.calls if "/api/v0/ls?" in c] and (env.state / "blocks.log").exists()


def test_timeout_when_no_peer_has_the_cid(env: HookEnv) -> None:
    env.peers_ok(PEER)  # connected, but nobody has this CID: the gateway just waits
    result = env.run(f"tce=ipfs:{CID} ipfs.peers={PEER} ipfs.timeout=3")
    assert_clean_exit(result)
    assert result.final.startswith(f"FAILED: onboot.lst from ipfs:{CID}: timed out after")
    assert result.seconds < 10


def test_gateway_error_stops_asking(env: HookEnv) -> None:
    repo = ipfs_ready(env)
    sample_repo(repo)
    env.knob("wget_500", "hello.tcz.dep\n")  # fetched first, next to the other .dep files of its level
    result = env.run(f"tce=ipfs:{CID} ipfs.peers={PEER}")
    assert "not asking this source again" in result.log
    assert "500 Internal Server Error" in result.console
    # after the failure no new request went to the gateway: at most the level's other .dep and
    # .md5.txt files, asked for in parallel with it, were still under way
    wgets = [c for c in result.calls if c.startswith(f"wget {GATEWAY_URL}")]
    failed_at = next(i for i, c in enumerate(wgets) if c.endswith("/hello.tcz.dep"))
    later = {c.rsplit("/", 1)[1] for c in wgets[failed_at + 1:]}
    level = ("hello.tcz", "greeter.tcz", "ping.tcz", "bigdata.tcz")
    assert later <= {f"{n}{x}" for n in level for x in (".dep", ".md5.txt")} - {"hello.tcz.dep"}, later
    assert "error: hello.tcz: cannot fetch hello.tcz.dep: " in result.console
    assert result.status["result"] == "failed" and result.status["loaded"] == "0"


def gateway_gets(result: Result, suffix: str) -> list[str]:
    """The downloads of a file through kubo's gateway: not the RPC calls that name it too (the
    after-boot job's ``api/v0/resolve?arg=.../NAME``, which may already have run)."""
    return [c for c in result.calls if c.startswith(f"wget {GATEWAY_URL}") and c.endswith(suffix)]


def test_transfer_cut_off_half_way_is_asked_again(env: HookEnv) -> None:
    """A seed paging hard makes kubo's gateway close a response half-way: the source is slow, not
    gone. The file is asked for again (the blocks that came are local by then), the boot completes
    from the same source, and the console says what happened."""
    sample_repo(ipfs_ready(env))
    env.knob("wget_cut", "/bigdata.tcz 2\n")
    result = env.run(f"tce=ipfs:{CID} ipfs.peers={PEER}")
    assert_clean_exit(result)
    assert FINAL_OK.match(result.final), result.console
    said = "bigdata.tcz: connection closed prematurely after 100000 bytes; asking again"
    assert result.console.count(said) == 2
    assert "not asking this source again" not in result.log
    assert result.status["fetch_again"] == "2" and result.status["loaded"] == str(len(CLOSURE))
    assert len(gateway_gets(result, "/bigdata.tcz")) == 3


def test_transfer_cut_off_every_time_gives_up_on_the_source(env: HookEnv) -> None:
    """Cut off on every try: after FETCH_AGAIN more tries the source is down as for any failure, and
    the machine boots with what it has."""
    sample_repo(ipfs_ready(env))
    env.knob("wget_cut", "/bigdata.tcz 9\n")
    result = env.run(f"tce=ipfs:{CID} ipfs.peers={PEER}")
    assert_clean_exit(result)
    assert len(gateway_gets(result, "/bigdata.tcz")) == 3
    assert "error: bigdata.tcz: " in result.console and "connection closed prematurely" in result.final
    assert result.status["fetch_again"] == "2" and "bigdata.tcz" not in result.status["extensions"]


@pytest.mark.parametrize(("avail_kib", "named"), [(20480, True), (409600, False)])
def test_failed_fetch_names_ram_when_it_is_short(env: HookEnv, avail_kib: int, named: bool) -> None:
    """kubo alive, the transfer dropped, and little RAM available (a 320 MiB guest with a 210 MiB
    closure fails this way, with no OOM kill and the file system not full): the line names RAM. With
    RAM to spare, the same failure does not blame it."""
    sample_repo(ipfs_ready(env))
    (env.root / "proc").mkdir(exist_ok=True)
    (env.root / "proc/meminfo").write_text(f"MemTotal: 327680 kB\nMemAvailable: {avail_kib} kB\n")
    env.knob("wget_cut", "/bigdata.tcz 9\n")
    result = env.run(f"tce=ipfs:{CID} ipfs.peers={PEER}")
    assert_clean_exit(result)
    ram = f"only {avail_kib // 1024} MiB of RAM available (RAM too small for the extensions?)"
    assert (ram in result.final) is named, result.console
    assert "bigdata.tcz" not in result.status["extensions"]


@pytest.mark.parametrize(
    ("knob", "reason"),
    [
        ("fail_init", "ipfs init failed: fake init failure"),
        ("daemon_exit", "kubo daemon exited: fake daemon cannot start"),
        ("mount_fail", "cannot mount ipfs.tcz: mount: mounting /dev/loop0"),
    ],
)
def test_kubo_failures(env: HookEnv, knob: str, reason: str) -> None:
    env.knob(knob)
    result = env.run(f"tce=ipfs:{CID} ipfs.peers={PEER}")
    assert_clean_exit(result)
    assert result.final.startswith(f"FAILED: ipfs:{CID}: ") and reason.removeprefix("Error: ") in result.final


def test_kubo_never_ready(env: HookEnv) -> None:
    env.knob("daemon_hang")
    result = env.run(f"tce=ipfs:{CID} ipfs.peers={PEER} ipfs.timeout=3")
    assert result.final == f"FAILED: ipfs:{CID}: kubo daemon not ready in time"
    assert result.seconds < 10


def test_no_ipfs_tcz_uses_ipfs_on_path(env: HookEnv) -> None:
    (env.optional() / "ipfs.tcz").unlink()
    sample_repo(ipfs_ready(env))
    result = env.run(f"tce=ipfs:{CID} ipfs.peers={PEER}")
    assert FINAL_OK.match(result.final)
    assert not [c for c in result.calls if c.startswith("mount ")]
    assert env.builtin_list() == CLOSURE  # not ours to list


def test_no_kubo_at_all(env: HookEnv, tmp_path: Path) -> None:
    (env.optional() / "ipfs.tcz").unlink()
    (env.tools / "ipfs").unlink()
    result = env.run(f"tce=ipfs:{CID} ipfs.peers={PEER}")
    assert "FAILED" in result.final and "no kubo" in result.final


def test_network_no_lease(env: HookEnv) -> None:
    env.knob("dhcp_fail")
    result = env.run(f"tce=ipfs:{CID} ipfs.peers={PEER} ipfs.timeout=2")
    assert result.final == "FAILED: network: no DHCP lease on eth0 within 2 s"
    # kubo's settings are prepared while DHCP runs, but kubo never starts without a network
    assert not [c for c in result.calls if c.startswith("ipfs ")]


def test_network_no_interface(env: HookEnv) -> None:
    env.set_ifaces()
    result = env.run(f"tce=ipfs:{CID} ipfs.timeout=2")
    assert result.final == "FAILED: network: no network interface (eth*/en*) appeared within 2 s"


def test_network_slow_lease_and_two_nics(env: HookEnv) -> None:
    env.set_ifaces("eth0", "eth1", "wlan0")
    env.knob("dhcp_delay", "1")
    sample_repo(ipfs_ready(env))
    result = env.run(f"tce=ipfs:{CID} ipfs.peers={PEER}")
    assert FINAL_OK.match(result.final)
    started = [c.split(" -i ")[1].split()[0] for c in result.calls if c.startswith("udhcpc ")]
    assert sorted(started) == ["eth0", "eth1"]  # once each (in the background: any order), never wlan0


def test_without_ip_applet_uses_ifconfig(env: HookEnv) -> None:
    env.knob("ip_missing")
    sample_repo(ipfs_ready(env))
    result = env.run(f"tce=ipfs:{CID} ipfs.peers={PEER}")
    assert FINAL_OK.match(result.final), result.console
    assert "ifconfig eth0 up" in result.calls and "ifconfig lo up" in result.calls
    assert "network: eth0 has 10.0.2.15" in result.log


def test_nodhcp_uses_existing_address(env: HookEnv) -> None:
    (env.state / "addr.eth0").write_text("192.168.1.5/24\n")
    sample_repo(ipfs_ready(env))
    result = env.run(f"nodhcp tce=ipfs:{CID} ipfs.peers={PEER}")
    assert FINAL_OK.match(result.final)
    assert not [c for c in result.calls if c.startswith("udhcpc ")]


def test_nodhcp_without_address(env: HookEnv) -> None:
    result = env.run(f"nodhcp tce=ipfs:{CID} ipfs.timeout=2")
    assert result.final == "FAILED: network: no IPv4 address on eth0 (nodhcp is set) within 2 s"
    assert not [c for c in result.calls if c.startswith("udhcpc ")]


# ------------------------------------------------------------------------------------------ ipns, http


def test_ipns(env: HookEnv) -> None:
    name = "k51qzi5uqu5dlvj2baxnqndepeb86cbk3ng7n3i46uzyxzyqj2xjonzllnv0v8"
    sample_repo(ipfs_ready(env, CID, "repo"))
    (env.state / "ipns").mkdir()
    (env.state / "ipns" / name).write_text(f"/ipfs/{CID}\n")
    result = env.run(f"tce=ipns:{name}/repo ipfs.peers={PEER}")
    assert FINAL_OK.match(result.final) and f"from ipfs:{CID}/repo in" in result.final
    assert kubo_config(env)["Routing"]["Type"] == "dhtclient"
    assert result.status["ipns"] == name and result.status["cid"] == CID
    assert os.readlink(env.root / "repo") == "/tmp/tce"


def test_ipns_unresolvable(env: HookEnv) -> None:
    env.peers_ok(PEER)
    result = env.run(f"tce=ipns:docs.example.org ipfs.peers={PEER}")
    assert (
        result.final
        == "FAILED: ipns:docs.example.org: cannot resolve ipns:docs.example.org: could not resolve name"
    )


def test_ipns_resolving_to_garbage(env: HookEnv) -> None:
    env.peers_ok(PEER)
    (env.state / "ipns").mkdir()
    (env.state / "ipns" / "lab.example").write_text("/ipfs/../../etc\n")
    result = env.run(f"tce=ipns:lab.example ipfs.peers={PEER}")
    assert "resolved to '/ipfs/../../etc', not /ipfs/<CID>" in result.final


def test_http_repo_needs_no_kubo(env: HookEnv) -> None:
    sample_repo(env.http_repo("10.0.2.100:8080", "tcz"))
    result = env.run("tce=http://10.0.2.100:8080/tcz")
    assert FINAL_OK.match(result.final) and "from http://10.0.2.100:8080/tcz in" in result.final
    assert not [c for c in result.calls if c.startswith(("ipfs ", "mount "))]
    assert env.builtin_list() == CLOSURE
    assert os.readlink(env.root / "10.0.2.100:8080/tcz") == "/tmp/tce"


def test_mirror_fallback_when_ipfs_fails(env: HookEnv) -> None:
    sample_repo(env.http_repo("10.0.2.100:8080", "tcz"))
    result = env.run(f"tce=ipfs:{CID} ipfs.peers={PEER} ipfs.mirror={MIRROR} ipfs.timeout=6")
    assert_clean_exit(result)
    assert f"error: ipfs:{CID}: no peer reachable" in result.console
    assert f"falling back to mirror {MIRROR}" in result.console
    assert FINAL_OK.match(result.final) and f"from mirror {MIRROR} in" in result.final
    assert env.builtin_list() == ["ipfs.tcz", *CLOSURE]
    st = result.status
    assert st["bytes_primary"] == "0" and int(st["bytes_mirror"]) > 0 and st["mirror"] == MIRROR


def test_mirror_per_file_after_md5_mismatch(env: HookEnv) -> None:
    repo = ipfs_ready(env)
    sample_repo(repo)
    (repo.path / "greeter.tcz").write_bytes(b"corrupted")
    sample_repo(env.http_repo("10.0.2.100:8080", "tcz"))
    result = env.run(f"tce=ipfs:{CID} ipfs.peers={PEER} ipfs.mirror={MIRROR}")
    assert FINAL_OK.match(result.final), result.console
    assert f"from ipfs:{CID} and mirror {MIRROR} in" in result.final
    # The refused bytes are reported although the mirror had the right ones (issue 11).
    assert f"warning: greeter.tcz: refused md5 mismatch from ipfs:{CID} (expected " in result.console
    assert f"; taken from mirror {MIRROR}" in result.console
    assert (env.optional() / "greeter.tcz").read_bytes() == (
        env.http / "http/10.0.2.100:8080/tcz/greeter.tcz"
    ).read_bytes()
    result.wait_status("pinned")
    assert f"/ipfs/{CID}/greeter.tcz recursive" not in result.pins
    assert f"/ipfs/{CID}/greeter.tcz.md5.txt recursive" in result.pins  # that one did come via kubo
    assert f"/ipfs/{CID}/hello.tcz recursive" in result.pins


def test_mirror_after_cid_timeout_keeps_a_share_of_the_time(env: HookEnv) -> None:
    env.peers_ok(PEER)  # nobody has the CID
    sample_repo(env.http_repo("10.0.2.100:8080", "tcz"))
    result = env.run(f"tce=ipfs:{CID} ipfs.peers={PEER} ipfs.mirror={MIRROR} ipfs.timeout=12")
    assert FINAL_OK.match(result.final), result.console
    assert f"from mirror {MIRROR}" in result.final
    assert "timed out after" in result.console and "using the mirror from now on" in result.console
    assert 6 <= result.seconds < 16  # ipfs gets 2/3 of the time, the mirror the rest


def test_mirror_down_too(env: HookEnv) -> None:
    result = env.run(f"tce=ipfs:{CID} ipfs.peers={PEER} ipfs.mirror={MIRROR} ipfs.timeout=4")
    assert result.final.startswith(f"FAILED: onboot.lst from mirror {MIRROR}: can't connect")


# ------------------------------------------------------------------------------------------ kubo codes


def test_swarmkey_private_swarm(env: HookEnv) -> None:
    sample_repo(ipfs_ready(env))
    env.knob("peer_key", KEY)
    result = env.run(f"tce=ipfs:{CID} ipfs.peers={PEER} ipfs.swarmkey={KEY.upper()}")
    assert FINAL_OK.match(result.final), result.console
    assert (env.state / "swarm.key.seen").read_text() == f"/key/swarm/psk/1.0.0/\n/base16/\n{KEY}\n"
    assert "LIBP2P_FORCE_PNET=1" in (env.state / "daemon.env").read_text()
    key_file = env.root / "tmp/tce-ipfs/repo/swarm.key"
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"


def test_swarmkey_mismatch(env: HookEnv) -> None:
    sample_repo(ipfs_ready(env))
    env.knob("peer_key", KEY)
    result = env.run(f"tce=ipfs:{CID} ipfs.peers={PEER} ipfs.swarmkey={'1' * 64} ipfs.timeout=8")
    assert "no peer reachable" in result.final and "privnet" in result.final
    assert "does ipfs.swarmkey match the peers' key?" in result.final


def test_seed_0_stops_kubo(env: HookEnv) -> None:
    sample_repo(ipfs_ready(env))
    result = env.run(f"tce=ipfs:{CID} ipfs.peers={PEER} ipfs.seed=0")
    assert FINAL_OK.match(result.final)
    assert not (env.state / "daemon.running").exists()
    assert result.status["kubo_pid"] == "" and result.status["seed"] == "0"
    assert env.builtin_list()[0] == "ipfs.tcz"  # still mounted: tce-load links it
    time.sleep(0.5)  # a pin job (there must be none) would have asked by now
    assert result.pins == [] and not [c for c in result.calls if "/api/v0/pin/" in c]
    assert "pinned" not in result.status and "seeding:" not in result.log
    assert not (env.root / "tmp/tce-ipfs/repo").exists()  # kubo's RAM repo goes too (issue 12)


@pytest.mark.parametrize(("codes", "filestore"), [("", True), (" ipfs.onecopy=0", False),
                                                  (" ipfs.seed=0", False)])
def test_onecopy_turns_kubos_filestore_on(env: HookEnv, codes: str, filestore: bool) -> None:
    """ipfs.onecopy (default 1) with seeding: kubo runs with its filestore, through the /tmp link."""
    sample_repo(ipfs_ready(env))
    result = env.run(f"tce=ipfs:{CID} ipfs.peers={PEER}{codes}")
    assert FINAL_OK.match(result.final), result.console
    init = json.loads((env.root / "tmp/tce-ipfs/kubo-init.json").read_text())
    assert init["Experimental"] == {"FilestoreEnabled": filestore}
    assert (env.root / "tmp/.tce-ipfs-repo").is_symlink() == filestore
    assert result.status["onecopy"] == "0"  # the fake kubo cannot resolve: nothing switched
    env.cleanup()


# ------------------------------------------------------------------------------------------ seeding


def expected_pins(repo: Repo, base: str, names: list[str], lst: str = "onboot.lst") -> list[str]:
    """What the pin job must pin: the list and every placed extension's files (recursive)."""
    pins = [f"{base}/{lst} recursive"]
    for name in names:
        pins += [f"{base}/{name}.md5.txt recursive", f"{base}/{name} recursive"]
        if (repo.path / f"{name}.dep").exists():
            pins.append(f"{base}/{name}.dep recursive")
    return pins


def test_seed_pins_every_placed_file(env: HookEnv) -> None:
    repo = ipfs_ready(env)
    sample_repo(repo)
    result = env.run(f"tce=ipfs:{CID} ipfs.peers={PEER}")
    assert FINAL_OK.match(result.final), result.console
    st = result.wait_status("pinned")
    want = [f"/ipfs/{CID} direct", *expected_pins(repo, f"/ipfs/{CID}", CLOSURE)]
    assert sorted(result.pins) == sorted(want)
    assert result.pins[0] == f"/ipfs/{CID} direct"  # the root node only, never the whole repo
    assert not [p for p in result.pins if "ipfs.tcz" in p]  # kubo came from the initrd
    assert st["pinned"] == str(len(want)) and "pin_failed" not in st
    assert st["peer_id"] == FAKE_PEER_ID and st["seed"] == "1"
    # the status was rewritten whole, atomically: every key still there, reason last
    lines = (env.root / "tmp/tce-ipfs/status").read_text().splitlines()
    assert lines[-1].startswith("reason=") and st["result"] == "ok" and st["kubo_pid"]
    assert not (env.root / "tmp/tce-ipfs/status.part").exists()
    assert re.search(rf"seeding: pinned {len(want)} path\(s\) in \d+\.\d s$", result.env_log(), re.M)
    assert (env.state / "daemon.running").exists()  # kubo keeps seeding
    # every pin went to kubo's RPC API as a POST; nothing was fetched again through the gateway
    assert all("127.0.0.1:45001/api/v0/pin/add?arg=" in c for c in result.calls if "/pin/" in c)
    # two calls: the directory node (direct), then every file (recursive)
    assert len([c for c in result.calls if "/pin/add?" in c]) == 2


def test_seed_pins_wait_until_tce_setup_is_done(env: HookEnv) -> None:
    """At boot the hook's parent is tce-setup, which loads the list after the hook returns: the pin
    job must not compete with that for the CPU, so it waits until tce-setup has exited."""
    sample_repo(ipfs_ready(env))
    parent = env.root / f"proc/{os.getpid()}/cmdline"  # the hook runs as a child of this process
    parent.parent.mkdir(parents=True)
    parent.write_bytes(b"/bin/sh\0/usr/bin/tce-setup\0booting\0")
    result = env.run(f"tce=ipfs:{CID} ipfs.peers={PEER}")
    assert FINAL_OK.match(result.final), result.console
    time.sleep(2)
    assert result.pins == [] and "pinned" not in result.status  # tce-setup still running
    parent.unlink()
    st = result.wait_status("pinned")
    assert st["pinned"] == str(len(result.pins)) and len(result.pins) > 10


def test_seed_pins_subpath_nodes_and_only_what_was_placed(env: HookEnv) -> None:
    sub = "16.x/x86_64/tcz"
    repo = ipfs_ready(env, CID, sub)
    repo.ext("lib.tcz", md5_text="0123456789abcdef0123456789abcdef  lib.tcz\n")  # md5 mismatch
    repo.ext("app.tcz", ["lib.tcz"])
    repo.ext("c++lib.tcz")
    repo.ext("ok.tcz", ["c++lib.tcz"])
    repo.lst("app.tcz\nok.tcz\n")
    result = env.run(f"tce=ipfs:{CID}/{sub} ipfs.peers={PEER}")
    assert result.status["result"] == "partial"
    st = result.wait_status("pinned")
    base = f"/ipfs/{CID}/{sub}"
    dirs = [
        f"/ipfs/{CID} direct",
        f"/ipfs/{CID}/16.x direct",
        f"/ipfs/{CID}/16.x/x86_64 direct",
        f"{base} direct",
    ]
    want = [*dirs, *expected_pins(repo, base, ["c++lib.tcz", "ok.tcz"])]
    assert result.pins[:4] == dirs and sorted(result.pins) == sorted(want)
    assert st["pinned"] == str(len(want))
    # "+" is escaped in the query (a "+" there would be a space)
    assert any("arg=/ipfs/" in c and "c%2B%2Blib.tcz" in c for c in result.calls)


def test_seed_pin_failures_are_counted_and_logged(env: HookEnv) -> None:
    sample_repo(ipfs_ready(env))
    env.knob("pin_fail", "bigdata\n")
    result = env.run(f"tce=ipfs:{CID} ipfs.peers={PEER}")
    assert FINAL_OK.match(result.final), result.console
    st = result.wait_status("pinned")
    assert st["pin_failed"] == "2" and int(st["pinned"]) > 0
    log = result.env_log()
    assert f"seeding: cannot pin /ipfs/{CID}/bigdata.tcz: " in log and ", 2 failed" in log
    assert "seeding" not in (env.root / "dev/console").read_text()  # after the boot: log only


def test_seed_pins_do_not_delay_the_boot_and_are_bounded(env: HookEnv) -> None:
    sample_repo(ipfs_ready(env))
    env.knob("wget_hang", "/api/v0/pin/add\n")  # kubo never answers a pin
    result = env.run(f"tce=ipfs:{CID} ipfs.peers={PEER} ipfs.timeout=5")
    assert FINAL_OK.match(result.final), result.console
    assert "pinned" not in result.status  # the hook returned while the pin job still waits
    st = result.wait_status("pinned", timeout=15)  # bounded by ipfs.timeout
    assert st["pinned"] == "0" and int(st["pin_failed"]) > 0
    assert "no answer in time" in result.env_log()


def test_http_scheme_pins_nothing(env: HookEnv) -> None:
    sample_repo(env.http_repo("10.0.2.100:8080", "tcz"))
    result = env.run("tce=http://10.0.2.100:8080/tcz")
    assert FINAL_OK.match(result.final)
    time.sleep(0.5)
    assert result.pins == [] and "pinned" not in result.status and "peer_id" not in result.status


def test_debug(env: HookEnv) -> None:
    sample_repo(ipfs_ready(env))
    result = env.run(f"tce=ipfs:{CID} ipfs.peers={PEER} ipfs.debug")
    assert re.search(r"tce-ipfs: debug: \[\d+\.\d\] closure: ", result.console)
    assert (env.root / "tmp/tce-ipfs/dep").is_dir()  # scratch kept for inspection
    quiet = [ln for ln in result.lines if not ln.startswith("debug:")]
    assert FINAL_OK.match(quiet[-1])


def test_port(env: HookEnv) -> None:
    sample_repo(ipfs_ready(env))
    env.run(f"tce=ipfs:{CID} ipfs.peers={PEER} ipfs.port=4101")
    assert kubo_config(env)["Addresses"]["Swarm"] == ["/ip4/0.0.0.0/tcp/4101"]


def test_kubo_without_settings_only_init_config_gets_ipfs_init(env: HookEnv) -> None:
    """An upstream kubo refuses `daemon --init --init-config` with a file of settings only: the hook
    makes the repo with `ipfs init` + its config edit, starts the daemon again and boots the same."""
    sample_repo(ipfs_ready(env))
    env.knob("old_kubo")
    result = env.run(f"tce=ipfs:{CID} ipfs.peers={PEER}")
    assert FINAL_OK.match(result.final), result.console
    kubo_calls = [c for c in result.calls if c.startswith("ipfs ")]
    assert kubo_calls[:3] == [
        f"ipfs daemon --init --init-profile=test,lowpower --init-config={env.root}/tmp/tce-ipfs/"
        "kubo-init.json",
        "ipfs init --empty-repo --profile=test,lowpower",
        "ipfs daemon",
    ], kubo_calls
    config = kubo_config(env)
    assert config["Addresses"]["Swarm"] == ["/ip4/0.0.0.0/tcp/4001"]
    assert config["Routing"]["Type"] == "none" and config["Discovery"]["MDNS"]["Enabled"] is True
    assert config["Peering"]["Peers"] == [{"ID": PEER_ID, "Addrs": ["/ip4/10.0.2.100/tcp/4001"]}]
    assert config["Swarm"]["Transports"]["Security"] == {"TLS": False}
    assert not (env.state / "config.log").exists()  # edited in place
    assert result.status["peer_id"] == FAKE_PEER_ID


def test_unrecognised_config_falls_back_to_ipfs_config(env: HookEnv) -> None:
    sample_repo(ipfs_ready(env))
    env.knob("old_kubo")
    env.knob("odd_config")
    result = env.run(f"tce=ipfs:{CID} ipfs.peers={PEER} ipfs.port=4101")
    assert FINAL_OK.match(result.final), result.console
    assert (env.state / "config.log").read_text().splitlines() == [
        '--json Routing.Type "none"',
        '--json Addresses.Swarm ["/ip4/0.0.0.0/tcp/4101"]',
        "--json Discovery.MDNS.Enabled true",
        '--json Swarm.Transports.Security {"TLS": false}',
        "--json Swarm.ConnMgr.LowWater 20",
        "--json Swarm.ConnMgr.HighWater 40",
        "--json Experimental.FilestoreEnabled true",
        f'--json Peering.Peers [{{"ID": "{PEER_ID}", "Addrs": ["/ip4/10.0.2.100/tcp/4001"]}}]',
    ]


def test_wget_without_post_dials_with_the_cli(env: HookEnv) -> None:
    sample_repo(ipfs_ready(env))
    env.knob("wget_nopost")
    result = env.run(f"tce=ipfs:{CID} ipfs.peers={PEER}")
    assert FINAL_OK.match(result.final), result.console
    assert f"ipfs swarm connect {PEER}" in result.calls


def test_no_peers_relies_on_mdns(env: HookEnv) -> None:
    sample_repo(env.ipfs_repo())
    result = env.run(f"tce=ipfs:{CID} ipfs.net=lan")
    assert FINAL_OK.match(result.final)
    config = kubo_config(env)
    assert config["Discovery"]["MDNS"]["Enabled"] is True and config["Peering"]["Peers"] is None
    assert not [c for c in result.calls if "swarm connect" in c]


@pytest.mark.parametrize("off", ["ipfs.mdns=0", "ipfs.mdns=off"])
def test_mdns_code_turns_discovery_off(env: HookEnv, off: str) -> None:
    sample_repo(ipfs_ready(env))
    result = env.run(f"tce=ipfs:{CID} ipfs.peers={PEER} {off}")
    assert FINAL_OK.match(result.final), result.console
    config = kubo_config(env)
    assert config["Discovery"]["MDNS"]["Enabled"] is False
    assert config["Peering"]["Peers"] == [{"ID": PEER_ID, "Addrs": ["/ip4/10.0.2.100/tcp/4001"]}]
    assert "ipfs.mdns=0 without ipfs.peers" not in result.console


def test_mdns_off_without_peers_warns(env: HookEnv) -> None:
    """On a LAN, ipfs.mdns=0 without ipfs.peers leaves no way to find a peer; in public mode (the
    default without ipfs.peers) routing finds them, so no warning there."""
    env.ipfs_repo().lst("")
    result = env.run(f"tce=ipfs:{CID} ipfs.mdns=0 ipfs.net=lan")
    assert "ipfs.mdns=0 without ipfs.peers: no peer can be found" in result.console
    config = json.loads((env.root / "tmp/tce-ipfs/repo/config").read_text())
    assert config["Discovery"]["MDNS"]["Enabled"] is False


def test_mdns_off_in_public_mode_does_not_warn(env: HookEnv) -> None:
    env.ipfs_repo().lst("")
    result = env.run(f"tce=ipfs:{CID} ipfs.mdns=0 ipfs.timeout=3")
    assert "ipfs.mdns=0 without ipfs.peers" not in result.console
    assert result.status["net"] == "public"


def test_timeout_code_default_and_value(env: HookEnv) -> None:
    ipfs_ready(env).lst("")
    assert "timeout 120 s" in env.run(f"tce=ipfs:{CID} ipfs.peers={PEER}").console
    env.cleanup()
    assert "timeout 45 s" in env.run(f"tce=ipfs:{CID} ipfs.peers={PEER} ipfs.timeout=45s").console


# ------------------------------------------------------------------------------------------ README


def test_readme_codes_are_tested() -> None:
    """Every boot code in initrd-hooks/README.md's table appears in a test of this file."""
    readme = (settings.hooks_dir() / "README.md").read_text()
    section = readme.split("## Boot codes", 1)[1].split("\n## ", 1)[0]
    table = [line for line in section.splitlines() if line.startswith("| `")]
    codes = {re.match(r"\| `([a-z.]+)[=`]", line).group(1) for line in table}  # type: ignore[union-attr]
    assert {
        "tce",
        "lst",
        "ipfs.peers",
        "ipfs.timeout",
        "ipfs.mirror",
        "ipfs.seed",
        "ipfs.mdns",
        "ipfs.swarmkey",
        "ipfs.debug",
        "ipfs.port",
        "nodhcp",
    } <= codes
    source = Path(__file__).read_text()
    for code in codes:
        assert re.search(rf"[ \"']{re.escape(code)}[=:\s\"]", source), f"boot code {code} has no test"


def test_car_code_is_checked_before_anything(env: HookEnv) -> None:
    """ipfs.car= (USB seeding, lib/car.sh; the rest is in test_hook_car.py): a path trick is refused."""
    result = env.run(f"tce=ipfs:{CID} ipfs.car=sdb1:/../etc/shadow")
    assert result.final.startswith("FAILED: bad boot code: ipfs.car=sdb1:/../etc/shadow is not <device")
    assert not [c for c in result.calls if c.startswith(("blkid", "ipfs dag"))]


def test_gateway_code_is_checked_before_anything(env: HookEnv) -> None:
    """ipfs.gateway= (lib/gateway.sh; with a real kubo: test_hook_kubo.py): only a plain http URL."""
    result = env.run(f"tce=ipfs:{CID} ipfs.peers={PEER} ipfs.gateway=https://10.0.0.9:8081")
    assert result.final.startswith("FAILED: bad boot code: ipfs.gateway=https://10.0.0.9:8081 is not a plain")
    assert not [c for c in result.calls if c.startswith(("wget", "ipfs"))]


def test_gateway_unreachable_one_warning_then_peers(env: HookEnv) -> None:
    """A gateway nobody answers at: <lst>'s CAR (asked for while kubo starts) fails, one warning line,
    and the boot goes on over the peers as without the code."""
    sample_repo(ipfs_ready(env))
    result = env.run(f"tce=ipfs:{CID} ipfs.peers={PEER} ipfs.gateway=http://10.0.0.9:8081/")
    assert_clean_exit(result)
    assert FINAL_OK.match(result.final), result.console
    assert f"wget http://10.0.0.9:8081/ipfs/{CID}/onboot.lst?format=car" in result.calls
    warned = [ln for ln in result.lines if "ipfs.gateway=" in ln]
    assert len(warned) == 1
    assert warned[0].startswith("warning: ipfs.gateway=http://10.0.0.9:8081: onboot.lst: ")
    assert warned[0].endswith("; fetching over bitswap")
    assert not [c for c in result.calls if "10.0.0.9" in c and "onboot.lst" not in c]  # asked once only
    assert result.status["ipfs_gateway"] == "failed" and result.status["ipfs_gateway_cars"] == "0"


# ------------------------------------------------------------------------------------------ ipfs.net

BOOT_ID = "12D3KooWBootBootBootBootBootBootBootBootBootBootBoot"
BOOT = f"/ip4/192.0.2.7/tcp/4001/p2p/{BOOT_ID}"
PROV_ID = "12D3KooWProvProvProvProvProvProvProvProvProvProvProv"
RELAYED = f"/ip4/192.0.2.8/tcp/4001/p2p/{BOOT_ID}/p2p-circuit"


def public_ready(env: HookEnv, *, direct: bool = True) -> Repo:
    """A fake public network: the bootstrap peer connects, the DHT names PROV_ID as the provider, and
    a dial reaches it (directly, or only through a relay)."""
    repo = env.ipfs_repo()
    env.knob("providers", f"{PROV_ID}\n")
    env.peers_ok(f"/p2p/{PROV_ID}")
    prov_addr = "/ip4/192.0.2.9/tcp/4001" if direct else RELAYED
    env.knob("swarm_peers", f"{BOOT_ID} /ip4/192.0.2.7/tcp/4001\n{PROV_ID} {prov_addr}\n")
    return repo


@pytest.mark.parametrize(("codes", "net"), [
    ("", "public"), (f"ipfs.peers={PEER}", "lan"), (f"ipfs.swarmkey={KEY} ipfs.peers={PEER}", "private"),
    (f"ipfs.net=public ipfs.peers={PEER} ipfs.bootstrap={BOOT}", "public"), ("ipfs.net=lan", "lan"),
])
def test_net_mode_default_and_choice(env: HookEnv, codes: str, net: str) -> None:
    """ipfs.net: public for a bare tce=ipfs: (a machine at home), lan when ipfs.peers names the peers,
    private with ipfs.swarmkey. Only public mode dials from the listening port (hole punching needs
    it); elsewhere two machines that find each other by mDNS would dial each other into one TCP
    connection (simultaneous open) and fail."""
    env.ipfs_repo().lst("")
    env.peers_ok(PEER)
    env.run(f"tce=ipfs:{CID} ipfs.timeout=3 {codes}")
    status = (env.root / "tmp/tce-ipfs/status").read_text()
    assert f"\nnet={net}\n" in status
    reuseport = "" if net == "public" else "false"
    assert f"LIBP2P_TCP_REUSEPORT={reuseport}\n" in (env.state / "daemon.env").read_text()


def test_public_mode_config_with_kubos_defaults(env: HookEnv) -> None:
    """On a real machine: kubo's own bootstrap list ("auto", AutoConf on) and its delegated routers;
    the DHT as a client; UPnP; libp2p limits from the heap cap; only the pinned roots announced."""
    sample_repo(public_ready(env))
    result = env.run(f"tce=ipfs:{CID}")
    assert FINAL_OK.match(result.final), result.console
    config = kubo_config(env)
    assert config["Bootstrap"] == ["auto"] and config["AutoConf"] == {"Enabled": True}
    assert config["Routing"]["Type"] == "autoclient" and config["Routing"]["DelegatedRouters"] == ["auto"]
    assert config["Ipns"]["DelegatedPublishers"] == ["auto"]
    assert config["Swarm"]["DisableNatPortMap"] is False
    assert config["Swarm"]["ResourceMgr"] == {"MaxMemory": "100MiB"}
    assert config["Provide"] == {"Enabled": True, "Strategy": "roots",
                                 "DHT": {"Interval": "22h", "MaxWorkers": 4, "SweepEnabled": False}}
    # kubo's own defaults stay: relay client, hole punching, the relay transport, AutoNAT client
    assert "EnableHolePunching" not in config["Swarm"] and config["Swarm"]["RelayClient"] == {}
    assert not [c for c in result.calls if c.startswith("ipfs config")]  # all in one awk pass
    st = result.status
    assert st["net"] == "public" and st["providers"] == PROV_ID and st["route"] == "direct"
    assert float(st["t_provider"]) <= float(st["t_first_byte"])
    assert f"swarm/connect?arg=/p2p/{PROV_ID}" in "\n".join(result.calls)


@pytest.mark.parametrize("old_kubo", [False, True])
def test_public_mode_starts_kubo_once(env: HookEnv, old_kubo: bool) -> None:
    """Public mode's keys go into the daemon's --init-config like every other mode's: one kubo start,
    no `ipfs init`. A kubo that refuses a settings-only --init-config (upstream's) gets `ipfs init`, the
    same keys set in the config it wrote, and a second start."""
    sample_repo(public_ready(env))
    if old_kubo:
        env.knob("old_kubo")
    result = env.run(f"tce=ipfs:{CID} ipfs.bootstrap={BOOT}")
    assert FINAL_OK.match(result.final), result.console
    inits = [c for c in result.calls if c.startswith("ipfs init")]
    assert len(inits) == (1 if old_kubo else 0), result.calls
    config = kubo_config(env)
    assert config["Bootstrap"] == [BOOT] and config["AutoConf"] == {"Enabled": False}
    assert config["Routing"]["Type"] == "dhtclient" and config["Routing"]["DelegatedRouters"] == []
    assert config["Routing"]["LoopbackAddressesOnLanDHT"] is False
    assert config["Ipns"]["DelegatedPublishers"] == [] and config["Swarm"]["DisableNatPortMap"] is True
    assert config["Swarm"]["ResourceMgr"] == {"MaxMemory": "100MiB"}
    assert config["Swarm"]["ConnMgr"]["HighWater"] == 40  # kubo_prepare's keys kept next to them
    assert config["Provide"]["Strategy"] == "roots"


def test_public_mode_with_bootstrap_code(env: HookEnv) -> None:
    """ipfs.bootstrap= replaces kubo's list, and AutoConf and the delegated routers go with it."""
    sample_repo(public_ready(env))
    result = env.run(f"tce=ipfs:{CID} ipfs.bootstrap={BOOT},{PEER}")
    assert FINAL_OK.match(result.final), result.console
    config = kubo_config(env)
    assert config["Bootstrap"] == [BOOT, PEER] and config["AutoConf"] == {"Enabled": False}
    assert config["Routing"]["Type"] == "dhtclient" and config["Routing"]["DelegatedRouters"] == []
    assert config["Swarm"]["DisableNatPortMap"] is True


def test_seed_off_announces_nothing(env: HookEnv) -> None:
    sample_repo(public_ready(env))
    result = env.run(f"tce=ipfs:{CID} ipfs.seed=0 ipfs.bootstrap={BOOT}")
    assert FINAL_OK.match(result.final), result.console
    assert kubo_config(env)["Provide"]["Enabled"] is False  # (merged into kubo's Provide, as kubo does)


@pytest.mark.parametrize(("setup", "stage"), [
    ("nobody", "no route to bootstrap: none of the 1 ipfs.bootstrap peers answered"),
    ("rt_empty", "no route to bootstrap: the DHT routing table stayed empty"),
    ("no_providers", f"no providers found for {CID} (DHT lookup"),
    ("relayed", "providers unreachable: 1 found, reached only through a relay and hole punching did not"),
    ("refused", "providers unreachable: 1 found, none answered"),
])
def test_public_mode_failure_names_the_stage(env: HookEnv, setup: str, stage: str) -> None:
    """Each routing stage has its own bound inside ipfs.timeout; the console line names the one that
    failed, and the base system boots on."""
    sample_repo(public_ready(env, direct=setup != "relayed"))
    if setup == "nobody":
        (env.state / "swarm_peers").unlink()
    elif setup == "rt_empty":
        env.knob("rt_empty")
    elif setup == "no_providers":
        (env.state / "providers").unlink()
    elif setup == "refused":
        (env.state / "peers_ok").unlink()
        env.knob("swarm_peers", f"{BOOT_ID} /ip4/192.0.2.7/tcp/4001\n")
    result = env.run(f"tce=ipfs:{CID} ipfs.bootstrap={BOOT} ipfs.timeout=8", timeout=60)
    assert result.final.startswith(f"FAILED: ipfs:{CID}: {stage}"), result.console
    # bounded by the hook's own clock (the harness's wall clock also counts the loaded host's forks)
    assert float(result.status["t_total"]) < 8 + 5, result.status
    assert_clean_exit(result)


def test_public_mode_relayed_only_gets_a_second_round(env: HookEnv) -> None:
    """DCUtR runs once per relayed connection: when the first round stays relayed, the hook drops
    the connection and dials again (with time for it inside ROUTE_DIRECT_MAX), then names the stage."""
    sample_repo(public_ready(env, direct=False))
    result = env.run(f"tce=ipfs:{CID} ipfs.bootstrap={BOOT} ipfs.timeout=50", timeout=120)
    assert result.final.startswith(f"FAILED: ipfs:{CID}: providers unreachable: 1 found, reached only"), \
        result.console
    # only the relayed connection is closed (a direct one may be coming up next to it)
    closed = (env.state / "disconnects.log").read_text().split()
    assert closed == [f"api/v0/swarm/disconnect?arg={RELAYED}/p2p/{PROV_ID}"]
    assert "only relayed after round 1; dialling again" in result.log
    assert "\n".join(result.calls).count(f"swarm/connect?arg=/p2p/{PROV_ID}") >= 2


def test_public_mode_without_a_public_address_of_its_own(env: HookEnv) -> None:
    """Behind a symmetric NAT kubo never learns a public address of its own: the routing stage waits
    for one a bounded time only, then dials the providers regardless."""
    sample_repo(public_ready(env))
    env.knob("no_public_addr")
    result = env.run(f"tce=ipfs:{CID} ipfs.bootstrap={BOOT} ipfs.timeout=30", timeout=90)
    assert FINAL_OK.match(result.final), result.console
    assert "no public address of our own yet" in result.console + result.log
    assert result.status["route"] == "direct"


SELF_ID = "12D3KooWFakeFakeFakeFakeFakeFakeFakeFakeFakeFakeFake"  # the fake kubo's own id


def test_public_mode_announces_once_peers_can_reach_it(env: HookEnv) -> None:
    """kubo announces a pin at once, with the addresses it has then, and the DHT keeps them with the
    record: the pin job waits until AutoNAT has decided. While its addresses still hold the home
    router's outside address next to a relay one (AutoNAT: unknown), nothing is pinned; once only the
    relay address is left, everything is."""
    sample_repo(public_ready(env))
    outside = f"/ip4/192.0.2.50/tcp/4001/p2p/{SELF_ID}"
    relayed = f"/ip4/192.0.2.7/tcp/4001/p2p/{BOOT_ID}/p2p-circuit/p2p/{SELF_ID}"
    lan = f"/ip4/10.0.2.15/tcp/4001/p2p/{SELF_ID}"
    env.knob("autonat", "Unknown")
    env.knob("id_addrs", f"{lan}\n{outside}\n{relayed}\n")
    result = env.run(f"tce=ipfs:{CID} ipfs.bootstrap={BOOT} ipfs.timeout=60", timeout=90)
    assert FINAL_OK.match(result.final), result.console
    time.sleep(3)
    assert result.pins == [] and "pinned" not in result.status  # not announced with the outside address
    env.knob("autonat", "Private")
    env.knob("id_addrs", f"{lan}\n{relayed}\n")
    st = result.wait_status("pinned", timeout=30)
    assert int(st["pinned"]) > 10 and "pin_failed" not in st
    assert re.search(r"seeding: announcing after \d+\.\d s: reachable through a relay$", result.env_log(),
                     re.M)


def test_public_mode_announce_wait_is_bounded(env: HookEnv) -> None:
    """AutoNAT never decides: the pins (and with them the records) go out at the bound anyway."""
    sample_repo(public_ready(env))
    env.knob("autonat", "Unknown")
    result = env.run(f"tce=ipfs:{CID} ipfs.bootstrap={BOOT} ipfs.timeout=5", timeout=60)
    assert FINAL_OK.match(result.final), result.console
    st = result.wait_status("pinned", timeout=30)
    assert int(st["pinned"]) > 10
    assert re.search(r"seeding: announcing after \d+\.\d s: reachability still unknown$", result.env_log(),
                     re.M)


def test_public_mode_announces_at_once_when_public(env: HookEnv) -> None:
    sample_repo(public_ready(env))
    result = env.run(f"tce=ipfs:{CID} ipfs.bootstrap={BOOT}")
    assert FINAL_OK.match(result.final), result.console
    result.wait_status("pinned")
    assert re.search(r"seeding: announcing after \d+\.\d s: reachable directly \(AutoNAT: public\)$",
                     result.env_log(), re.M)


LAN_ID = "12D3KooWLanLanLanLanLanLanLanLanLanLanLanLanLanLanLan"


@pytest.mark.parametrize("internet", [False, True])
def test_public_mode_is_satisfied_by_a_lan_peer(env: HookEnv, internet: bool) -> None:
    """A machine at home next to one that has the repo (found by mDNS, connected at a LAN address)
    boots from it in public mode without waiting for the open network: with no route to any bootstrap
    peer (internet=False: the routing stage alone would fail after ROUTE_BOOT_MAX), and with one (no DHT
    lookup at all)."""
    sample_repo(env.ipfs_repo())
    env.knob("lan_peers", f"{LAN_ID}\n")
    env.knob("lan_root")
    if internet:
        env.knob("providers", f"{PROV_ID}\n")
        env.knob("swarm_peers", f"{BOOT_ID} /ip4/192.0.2.7/tcp/4001\n{LAN_ID} /ip4/10.0.2.9/tcp/4001\n")
    started = time.monotonic()
    result = env.run(f"tce=ipfs:{CID} ipfs.bootstrap={BOOT} ipfs.timeout=60", timeout=120)
    elapsed = time.monotonic() - started
    assert FINAL_OK.match(result.final), result.console + result.log
    st = result.status
    assert st["net"] == "public" and st["route"] == "lan" and st["providers"] == LAN_ID, st
    calls = "\n".join(result.calls)
    assert f"block/stat?arg={CID}" in calls and f"bitswap/ledger?arg={LAN_ID}" in calls
    assert "routing/findprovs" not in calls and "swarm/connect" not in calls
    assert "LAN peer(s) " + LAN_ID + " have the root" in result.log
    assert elapsed < 20, elapsed  # well inside ROUTE_BOOT_MAX (20 s): the wait ended at once


def test_public_mode_lan_peer_without_the_root_goes_on_to_routing(env: HookEnv) -> None:
    """A LAN peer that lacks the root (a neighbour booted from another repo) is asked once; routing
    then finds the provider on the open network."""
    sample_repo(public_ready(env))
    env.knob("swarm_peers", f"{BOOT_ID} /ip4/192.0.2.7/tcp/4001\n{PROV_ID} /ip4/192.0.2.9/tcp/4001\n"
                            f"{LAN_ID} /ip4/10.0.2.9/tcp/4001\n")
    result = env.run(f"tce=ipfs:{CID} ipfs.bootstrap={BOOT} ipfs.timeout=60", timeout=120)
    assert FINAL_OK.match(result.final), result.console + result.log
    assert result.status["route"] == "direct" and result.status["providers"] == PROV_ID
    assert "\n".join(result.calls).count("block/stat?arg=") == 1
    assert f"LAN peer(s) {LAN_ID}: no root block from them" in result.log


def test_public_mode_failure_falls_back_to_the_mirror(env: HookEnv) -> None:
    sample_repo(public_ready(env))
    (env.state / "providers").unlink()
    sample_repo(env.http_repo("10.0.2.100:8080", "tcz"))
    # the mirror gets the last third of ipfs.timeout: 6 s for 8 fake fetches, enough on a loaded machine
    result = env.run(f"tce=ipfs:{CID} ipfs.bootstrap={BOOT} ipfs.timeout=18 ipfs.mirror={MIRROR}", timeout=90)
    assert f"error: ipfs:{CID}: no providers found for {CID}" in result.console
    assert result.final.startswith(f"loaded 8 extensions from mirror {MIRROR}"), result.console
