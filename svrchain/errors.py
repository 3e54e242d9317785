"""Errors meant for humans: one clear line each, no traceback, and a documented exit code.

=====  ==============================================================
code   meaning
=====  ==============================================================
0      ok
1      any other failure (:class:`SvrchainError`)
2      a gap found: verify (or bootstrap's verify) found something missing or wrong (:class:`GapFound`)
3      a host could not be reached or refused the connection (:class:`Unreachable`)
4      a bad inventory, or a bad command line (:class:`BadInventory`, :class:`UsageError`)
=====  ==============================================================
"""

from __future__ import annotations

EXIT_OK = 0


class SvrchainError(Exception):
    """A problem the user can fix; its message is printed as is, and the task exits with ``code``."""

    code = 1


class GapFound(SvrchainError):
    """verify found a gap: something svrchain should have set up is missing or differs."""

    code = 2


class Unreachable(SvrchainError):
    """A host could not be reached: no route, refused, timed out, no SSH banner, unknown host key."""

    code = 3


class BadInventory(SvrchainError):
    """The inventory is missing, unreadable or invalid, or names local files that do not exist."""

    code = 4


class HostError(SvrchainError):
    """Something failed on one host; the message names the host."""


class HostUnreachable(HostError, Unreachable):
    """The SSH session to one host could not be opened (network, sshd, host key, login): exit 3."""


class UsageError(SvrchainError):
    """The command line asks for something svrchain does not do (a flag it cannot honour, no --yes)."""

    code = 4


def exit_code(exc: BaseException) -> int:
    """The exit code for an error: its class's ``code``, 1 for anything that is not svrchain's."""
    return getattr(exc, "code", 1) if isinstance(exc, SvrchainError) else 1
