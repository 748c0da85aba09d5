"""The shared core: run() wrapper, Arch table, CLI error handling."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time

import pytest

from tce_ipfs import cli, proc
from tce_ipfs.arch import Arch
from tce_ipfs.errors import CommandFailed, ToolMissing, UsageError


def test_run_returns_output_and_uses_clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOME_SECRET", "leak")
    out = proc.output(["sh", "-c", 'echo "${SOME_SECRET:-clean}"'])
    assert out == "clean"


def test_run_missing_tool_names_package() -> None:
    with pytest.raises(ToolMissing) as info:
        proc.run(["mksquashfs-does-not-exist"])
    assert "not found" in str(info.value)
    with pytest.raises(ToolMissing) as info:
        proc.run(["sh", "-c", "exit 127"])
    assert info.value.hint and "install" in info.value.hint


def test_run_exit_127_maps_known_tool_to_debian_package(tmp_path: pytest.TempPathFactory) -> None:
    err = proc._missing("/usr/bin/mksquashfs")
    assert err.message == "mksquashfs not found"
    assert err.hint and "squashfs-tools" in err.hint


def test_run_failure_carries_stderr_tail() -> None:
    with pytest.raises(CommandFailed) as info:
        proc.run(["sh", "-c", "echo boom >&2; exit 3"], what="exploding")
    assert info.value.returncode == 3
    assert "exploding failed (exit 3)" in str(info.value)
    assert "boom" in str(info.value)


def test_run_logs_command_under_debug(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="tce_ipfs.proc"):
        proc.run(["true", "a b"])
    assert "+ true 'a b'" in caplog.text


def test_run_timeout() -> None:
    with pytest.raises(CommandFailed, match="timed out"):
        proc.run(["sleep", "5"], timeout=0.2)


@pytest.mark.parametrize(
    ("text", "arch"),
    [("x86_64", Arch.X86_64), ("amd64", Arch.X86_64), ("arm64", Arch.AARCH64), ("aarch64", Arch.AARCH64),
     ("i686", Arch.X86), ("x86", Arch.X86), ("armhf", Arch.ARMV7), ("armv7l", Arch.ARMV7)],
)
def test_arch_aliases(text: str, arch: Arch) -> None:
    assert Arch.parse(text) is arch


def test_arch_table_is_consistent() -> None:
    assert Arch.ARMV7.go_env == {"GOOS": "linux", "GOARCH": "arm", "GOARM": "7", "CGO_ENABLED": "0"}
    assert Arch.X86.info.debian == "i386" and not Arch.X86.is_64bit
    assert Arch.AARCH64.info.console == "ttyAMA0"
    with pytest.raises(UsageError, match="unknown architecture 'sparc'"):
        Arch.parse("sparc")


def test_cli_version_and_help() -> None:
    out = subprocess.run([sys.executable, "-m", "tce_ipfs", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("tce-ipfs ")
    out = subprocess.run([sys.executable, "-m", "tce_ipfs", "--help"], capture_output=True, text=True)
    assert "examples:" in out.stdout


def test_cli_turns_errors_into_message_hint_and_code(capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(args: object) -> int:
        raise ToolMissing("xorriso not found", hint="install xorriso")

    parser = cli.build_parser()
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    parser.set_defaults(func=boom)
    code = cli.main([])
    err = capsys.readouterr().err
    assert code == ToolMissing.exit_code
    assert "tce-ipfs: error: xorriso not found" in err
    assert "tce-ipfs: hint: install xorriso" in err


def test_cli_sigterm_unwinds_like_ctrl_c(capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """`kill`/`timeout` of a command (a lab, a benchmark) must run its cleanup, not leave namespaces
    and daemons behind; the handler is put back afterwards."""
    cleaned: list[str] = []

    def long_job(args: object) -> int:
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
            return 0
        finally:
            cleaned.append("lab closed")

    parser = cli.build_parser()
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    parser.set_defaults(func=long_job)
    before = signal.getsignal(signal.SIGTERM)
    assert cli.main([]) == 143
    assert cleaned == ["lab closed"]
    assert "terminated (SIGTERM)" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGTERM) == before
