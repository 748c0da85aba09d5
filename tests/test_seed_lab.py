"""The lab admin's two commands, end to end (issue 16 acceptance), on a private lab LAN.

1. inside the lab namespace, the CLI serves a repo: ``ip netns exec NS tce-ipfs seed serve REPO
   --listen <bridge address> --state STATE`` (it prints the boot line);
2. on the host, ``tce-ipfs netboot --seed STATE`` writes a PXE tree whose command line carries the CID
   and the seed's peer address -- nothing is copied from the first command's output by hand;
3. a QEMU guest on the lab LAN PXE-boots from that tree (dnsmasq's TFTP in the namespace), its hook
   fetches the onboot set from the seed and the guest check prints the sentinel;
4. ``seed status`` shows the guest among the peers with what it was sent; SIGTERM stops the seed
   cleanly.

The namespace has no link out (``Lab``), the seed listens on the bridge address only.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from support.seed import BOOT_TIMEOUT, assert_booted, check_overlay
from tce_ipfs import cli
from tce_ipfs.arch import Arch
from tce_ipfs.ipfs import isolation
from tce_ipfs.testbed import guest, qemu, samplerepo
from tce_ipfs.testbed.lab import Lab, LabProcess

pytestmark = [pytest.mark.qemu, pytest.mark.kubo, pytest.mark.root]

SRC = Path(__file__).resolve().parents[1] / "src"


def tce_ipfs_cli() -> list[str]:
    """The installed `tce-ipfs` command (bootstrap/setup's venv), else this Python's module."""
    script = Path(sys.executable).parent / "tce-ipfs"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "tce_ipfs"]


def wait_for_boot_line(process: LabProcess, timeout: float = 300) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = process.log_path.read_text(errors="replace")
        lines = [ln for ln in text.splitlines() if ln.startswith("tce=ipfs:")]
        if lines:
            return lines[-1]
        assert process.alive(), f"seed serve exited ({process.popen.returncode}):\n{text[-3000:]}"
        time.sleep(0.3)
    raise AssertionError(f"no boot line within {timeout:g} s:\n{process.log_path.read_text()[-3000:]}")


def test_cli_seed_then_netboot_then_pxe_boot_on_the_lab_lan(work: Path, host_kubo: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    base = guest.ensure_base(Arch.X86_64)
    sample = samplerepo.build(work / "repo", [base.kver])
    core = work / "core+check.gz"
    core.write_bytes(base.initrd.read_bytes() + check_overlay(sample))
    tftp = work / "tftp"
    state = work / "seed-state"
    with Lab(work / "lab", tftp_root=tftp) as lab:
        # 1. The seed, as the admin runs it (here inside the lab namespace: its only network).
        serve = lab.spawn("seed-serve", [*tce_ipfs_cli(), "seed", "serve", sample.path, "--listen",
                                         lab.bridge_ip, "--state", state, "--kubo", host_kubo],
                          env={"PYTHONPATH": str(SRC)})
        line = wait_for_boot_line(serve)
        words = dict(w.split("=", 1) for w in line.split())
        cid = words["tce"].removeprefix("ipfs:")
        assert words["ipfs.peers"].startswith(f"/ip4/{lab.bridge_ip}/tcp/4001/p2p/12D3Koo")
        listening = {ln.split()[3] for ln in lab.exec(["ss", "-H", "-tln"]).stdout.decode().splitlines()}
        assert f"{lab.bridge_ip}:4001" in listening
        assert not [a for a in listening if a.startswith(("0.0.0.0:", "*:", "[::]:"))], listening
        config = json.loads((state / "repo/config").read_text())
        assert config["Swarm"]["AddrFilters"] == isolation.blocked_networks(isolation.PRIVATE_NETS)
        assert config["Discovery"]["MDNS"]["Enabled"] is False and config["Bootstrap"] == []

        # 2. The netboot tree from the seed's state: CID and peers filled in by the command.
        rc = cli.main(["netboot", "--seed", str(state), "-o", str(tftp), "--kernel", str(base.kernel),
                       "--initrd", str(core), "--arch", "x86_64", "--serial",
                       "--cmdline", "loglevel=3 console=ttyS0,115200 panic=-1",
                       "--boot-code", "ipfs.timeout=600", "--json"])
        out = capsys.readouterr()
        assert rc == 0, out.err
        cmdline = json.loads(out.out)["cmdline"]
        assert f"tce=ipfs:{cid}" in cmdline and f"ipfs.peers={words['ipfs.peers']}" in cmdline
        assert cmdline in (tftp / "pxelinux.cfg/default").read_text()

        # 3. A machine on the lab LAN PXE-boots it and loads the onboot set from the seed.
        res = qemu.boot_firmware(Arch.X86_64, media=["-boot", "n"], timeout=BOOT_TIMEOUT,
                                 log_path=work / "pxe-lab.log", net=lab.tap())
        assert "PXELINUX" in res.log_text, res.tail()
        assert_booted(res)

        # 4. The seed saw it: the guest is a peer it sent the onboot set to.
        assert cli.main(["seed", "status", "--state", str(state), "--json"]) == 0
        st = json.loads(capsys.readouterr().out)
        assert st["running"] and st["root"] == cid
        assert st["bytes_sent"] >= sample.payload_bytes, st
        # SIGTERM (as systemd stops it): a clean exit, kubo stopped with it.
        kubo_pid = json.loads((state / "seed.json").read_text())["kubo_pid"]
        assert serve.stop(grace=60) == 0, serve.log_path.read_text()[-2000:]
        assert kubo_pid not in lab.pids()
        assert not (state / "serve.pid").exists() and not (state / "repo/repo.lock").exists()
