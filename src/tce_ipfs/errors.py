"""Typed exceptions. Library code raises these; only the CLI turns them into text and exit codes.

Every error carries a one-line ``message`` (what went wrong, naming the object) and an optional
``hint`` (what the user can do about it). Exit codes group errors by who has to act.
"""

from __future__ import annotations


class TceIpfsError(Exception):
    """Base class: a failure we understand and can explain to the user."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class UsageError(TceIpfsError):
    """The user asked for something that cannot be done as asked (bad argument, bad name)."""

    exit_code = 2


class ToolMissing(TceIpfsError):
    """An external program is not installed (exit 127 from ``run()``)."""

    exit_code = 3


class CommandFailed(TceIpfsError):
    """An external program ran and failed."""

    exit_code = 4

    def __init__(self, message: str, hint: str | None = None, *, returncode: int = 1,
                 stderr: str = "") -> None:
        super().__init__(message, hint)
        self.returncode = returncode
        self.stderr = stderr


class BuildError(TceIpfsError):
    """Building kubo, an extension, an initrd or a guest failed."""

    exit_code = 5


class ElfMismatch(TceIpfsError):
    """A binary is not what the target arch needs (wrong machine, class, endianness, or dynamic)."""

    exit_code = 6


class TczError(TceIpfsError):
    """A .tcz could not be packed: bad name, empty tree, unsafe symlink, ..."""

    exit_code = 7


class RepoError(TceIpfsError):
    """A Tiny Core repository directory is inconsistent; ``problems`` names every bad file."""

    exit_code = 8

    def __init__(self, message: str, problems: list[str] | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint)
        self.problems = list(problems or [])

    def __str__(self) -> str:
        if not self.problems:
            return self.message
        return self.message + "\n" + "\n".join(f"  - {p}" for p in self.problems)


class NodeError(TceIpfsError):
    """The local kubo node cannot be started, reached, or used."""

    exit_code = 9


class IsolationError(NodeError):
    """A kubo configuration would let the node talk to the public network."""


class CidError(UsageError):
    """A string is not a valid CID (or IPNS name) where one is required."""


class QemuError(TceIpfsError):
    """A guest failed to boot, timed out, or did not print its sentinel."""

    exit_code = 10


class RemasterError(TceIpfsError):
    """An ISO, boot partition or netboot tree cannot be remastered as asked."""

    exit_code = 11
