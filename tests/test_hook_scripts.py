"""Static checks of the hook scripts (shellcheck, POSIX) and the udhcpc event script."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from hookfakes.harness import FAKES, SHELLS
from tce_ipfs import settings

HOOKS = settings.hooks_dir()
SCRIPTS = [HOOKS / "tce-ipfs", *sorted((HOOKS / "lib").glob("*.sh")), HOOKS / "lib/udhcpc.script"]


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_shellcheck_clean(script: Path) -> None:
    if shutil.which("shellcheck") is None:
        pytest.fail("shellcheck not found: run bootstrap/setup", pytrace=False)
    proc = subprocess.run(
        ["shellcheck", "-s", "sh", "-x", str(script)],
        capture_output=True,
        text=True,
        cwd=script.parent,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
@pytest.mark.parametrize("shell", sorted(SHELLS))
def test_parses_in_shell(script: Path, shell: str) -> None:
    proc = subprocess.run([*SHELLS[shell], "-n", str(script)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


BASHISMS = [
    r"\[\[\s",
    r"^\s*local\s",
    r"^\s*function\s",
    r"(^|[\s=])\$'",
    "<<<",
    r"\$\{!",
    r"^\s*declare\s",
    r"^\s*source\s",
    r"\$\{\w+:\d",
    r"\$\{\w+//",
    r"&>",
    r"\becho -e\b",
]


def test_no_bashisms() -> None:
    for script in SCRIPTS:
        for number, line in enumerate(script.read_text().splitlines(), 1):
            if line.lstrip().startswith("#"):
                continue
            for pattern in BASHISMS:
                assert not re.search(pattern, line), f"{script.name}:{number}: {line.strip()}"


def test_entry_point_is_executable() -> None:
    assert (HOOKS / "tce-ipfs").stat().st_mode & 0o111
    assert (HOOKS / "lib/udhcpc.script").stat().st_mode & 0o111


@pytest.mark.parametrize("shell", sorted(SHELLS))
def test_udhcpc_script_bound(tmp_path: Path, shell: str) -> None:
    (tmp_path / "etc").mkdir()
    state = tmp_path / "state"
    state.mkdir()
    tools = tmp_path / "tools"
    tools.mkdir()
    for name in ("ifconfig", "route"):
        (tools / name).symlink_to(FAKES / name)
    env = {
        "PATH": f"{tools}:/usr/bin:/bin",
        "FAKE_STATE": str(state),
        "ROOT": str(tmp_path),
        "interface": "eth0",
        "ip": "10.0.2.15",
        "subnet": "255.255.255.0",
        "broadcast": "10.0.2.255",
        "router": "10.0.2.2",
        "dns": "10.0.2.3 10.0.2.4",
        "domain": "lab",
    }
    script = str(HOOKS / "lib/udhcpc.script")
    if shell == "dash":  # busybox sh runs its own ifconfig/route applets: only dash can see the fakes
        subprocess.run([*SHELLS[shell], script, "bound"], env=env, check=True, timeout=20)
        calls = (state / "calls.log").read_text().splitlines()
        assert calls[0] == "ifconfig eth0 10.0.2.15 netmask 255.255.255.0 broadcast 10.0.2.255 up"
        assert "route add default gw 10.0.2.2 dev eth0 metric 0" in calls
        assert (
            tmp_path / "etc/resolv.conf"
        ).read_text() == "search lab\nnameserver 10.0.2.3\nnameserver 10.0.2.4\n"
        subprocess.run([*SHELLS[shell], script, "deconfig"], env=env, check=True, timeout=20)
        assert (state / "calls.log").read_text().splitlines()[-1] == "ifconfig eth0 0.0.0.0 up"
    else:
        proc = subprocess.run([*SHELLS[shell], "-n", script], capture_output=True, check=False)
        assert proc.returncode == 0
