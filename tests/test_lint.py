"""Static checks are part of the suite, so CI keeps the tree ruff-, mypy- and shellcheck-clean."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from support import REPO_ROOT, need_tool


def shell_scripts() -> list[Path]:
    """Every POSIX-sh file we ship or boot: hooks, recipe scripts, the test base's guest scripts."""
    found = []
    for top in ("initrd-hooks", "tcz-build", "qemu", "bootstrap"):
        for path in sorted((REPO_ROOT / top).rglob("*")):
            if not path.is_file() or path.suffix in (".toml", ".md", ".txt", ".awk", ".lock", ".json"):
                continue
            head = path.read_bytes()[:200]
            first = head.split(b"\n", 1)[0]
            posix_shebang = first.startswith(b"#!") and first.endswith((b"/sh", b" sh"))
            if posix_shebang or path.suffix == ".sh" or b"shellcheck shell=sh" in head:
                found.append(path)
    return found


def test_shellcheck_posix_sh() -> None:
    need_tool("shellcheck")
    scripts = shell_scripts()
    assert len(scripts) > 5, scripts
    proc = subprocess.run(["shellcheck", "-s", "sh", "-x", *map(str, scripts)], capture_output=True,
                          text=True, cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_shellcheck_bash() -> None:
    need_tool("shellcheck")
    scripts = [REPO_ROOT / "bootstrap/setup", REPO_ROOT / ".ci/run"]
    proc = subprocess.run(["shellcheck", *map(str, scripts)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ruff() -> None:
    proc = subprocess.run([sys.executable, "-m", "ruff", "check", "src", "tests"], capture_output=True,
                          text=True, cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_mypy_strict() -> None:
    proc = subprocess.run([sys.executable, "-m", "mypy"], capture_output=True, text=True, cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
