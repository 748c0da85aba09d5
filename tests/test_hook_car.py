"""USB seeding at boot (``ipfs.car=``, lib/car.sh) on the host, with the fake root and fake tools:
the CAR is imported before any peer is dialled, the boot then needs no peer; anything wrong with the
disk or the CAR is one console line and the normal fetch path goes on."""

from __future__ import annotations

import shutil

import pytest

from hookfakes.harness import CID, PEER, HookEnv, Repo

LABEL_LINE = '/dev/sdb1: LABEL="TCEUSB" UUID="1234-ABCD" TYPE="vfat"\n'


def usb_stick(env: HookEnv, car_text: str, *, name: str = "sdb1", path: str = "repo.car") -> Repo:
    """A disk /dev/<name> (label TCEUSB) holding a fake CAR of CID at <path>; returns the repo the CAR
    holds (what `dag import` puts into the fake kubo)."""
    (env.root / "dev" / name).write_text("")
    env.knob("blkid", LABEL_LINE.replace("sdb1", name))
    disk = env.state / "usb" / name
    (disk / path).parent.mkdir(parents=True, exist_ok=True)
    (disk / path).write_text(car_text)
    repo = Repo(env.state / "cars" / CID)
    repo.ext("libhello.tcz")
    repo.ext("hello.tcz", ["libhello.tcz"])
    repo.lst("hello.tcz\n")
    return repo


COMPLETE = f"fakecar {CID}\nend\n"


def car_lines(lines: list[str]) -> list[str]:
    return [ln for ln in lines if "ipfs.car" in ln or "CAR" in ln or "imported" in ln]


@pytest.mark.parametrize("disk", ["LABEL=TCEUSB", "sdb1", "/dev/sdb1", "UUID=1234-ABCD"])
def test_a_car_boots_with_no_peer_reachable(env: HookEnv, disk: str) -> None:
    usb_stick(env, COMPLETE, path="tce/repo.car")
    res = env.run(f"quiet tce=ipfs:{CID} ipfs.peers={PEER} ipfs.car={disk}:/tce/repo.car ipfs.timeout=30")
    assert res.rc == 0, res.stderr
    assert env.builtin_list() == ["ipfs.tcz", "libhello.tcz", "hello.tcz"]
    assert res.final.startswith(f"loaded 2 extensions from ipfs:{CID} (CAR {disk}:/tce/repo.car) in ")
    assert res.status["car"] == "ok" and res.status["result"] == "ok"
    assert not [c for c in res.calls if "swarm/connect" in c or "swarm connect" in c]  # no peer waited for
    assert f"ipfs --offline pin add --progress=false /ipfs/{CID}" in res.calls
    assert any(c.startswith("umount ") for c in res.calls)  # the stick may be pulled out afterwards
    assert res.errors() == []


def test_a_truncated_car_is_one_line_and_the_peers_are_used(env: HookEnv) -> None:
    usb_stick(env, f"fakecar {CID}\n")  # no "end": cut off in the middle of a block
    peers_repo = env.ipfs_repo(CID)
    peers_repo.ext("hello.tcz")
    peers_repo.lst("hello.tcz\n")
    env.peers_ok(PEER)
    res = env.run(f"quiet tce=ipfs:{CID} ipfs.peers={PEER} ipfs.car=LABEL=TCEUSB:/repo.car ipfs.timeout=30")
    assert res.rc == 0, res.stderr
    assert car_lines(res.lines) == [
        "error: ipfs.car=LABEL=TCEUSB:/repo.car: import failed (truncated or not a CAR?): unexpected EOF; "
        "fetching as usual"]
    assert res.final.startswith(f"loaded 1 extensions from ipfs:{CID} in ")
    assert res.status["car"] == "failed"


def test_a_car_missing_blocks_fails_fast_and_the_boot_goes_on(env: HookEnv) -> None:
    usb_stick(env, f"fakecar {CID}\npartial\nend\n")  # whole blocks, but not all of them
    res = env.run(f"quiet tce=ipfs:{CID} ipfs.peers={PEER} ipfs.car=sdb1:/repo.car ipfs.timeout=8")
    assert res.rc == 0, res.stderr
    lines = car_lines(res.lines)
    assert len(lines) == 1 and f"it does not hold all of {CID}" in lines[0], res.lines
    assert res.final.startswith("FAILED: ") and "no peer reachable" in res.final
    assert "hello.tcz" not in env.builtin_list()


@pytest.mark.parametrize(("knob", "why"), [("nofile", "no such file on /dev/sdb1"),
                                            ("notcar", "import failed (truncated or not a CAR?)"),
                                            ("nomount", "cannot mount /dev/sdb1")])
def test_other_problems_are_one_line_each(env: HookEnv, knob: str, why: str) -> None:
    usb_stick(env, "PK\x03\x04 a zip, not a CAR" if knob == "notcar" else COMPLETE,
              path="other.car" if knob == "nofile" else "repo.car")
    if knob == "nomount":  # a disk with no file system the kernel knows
        shutil.rmtree(env.state / "usb" / "sdb1")
    res = env.run(f"quiet tce=ipfs:{CID} ipfs.peers={PEER} ipfs.car=sdb1:/repo.car ipfs.timeout=8")
    assert res.rc == 0, res.stderr
    lines = car_lines(res.lines)
    assert len(lines) == 1 and why in lines[0], res.lines
    assert res.final.startswith("FAILED: ")


def test_without_the_code_nothing_is_touched(env: HookEnv) -> None:
    usb_stick(env, COMPLETE)
    res = env.run(f"quiet tce=ipfs:{CID} ipfs.peers={PEER} ipfs.timeout=4")
    assert not [c for c in res.calls if c.startswith(("blkid", "umount", "ipfs dag", "ipfs --offline"))]
    assert "car" not in res.status


def test_a_bad_code_is_refused_before_anything(env: HookEnv) -> None:
    res = env.run(f"quiet tce=ipfs:{CID} ipfs.car=sdb1:/../etc/shadow")
    assert res.final == "FAILED: bad boot code: ipfs.car=sdb1:/../etc/shadow is not <device, LABEL=name or " \
        "UUID=id>:<path> (e.g. LABEL=TCE:/repo.car)"
