"""Errors meant for humans: one clear line each, no traceback, and a documented exit code.

=====  ==============================================================
code   meaning
=====  ==============================================================
0      ok
1      any other failure (:class:`SvrchainError`)
2      a gap found: verify (or bootstrap's verify) found something missing or wrong (:class:`GapFound`)
3      a host could not be reached or refused the connection (:class:`Unreachable`)
4      a bad inventory, or a bad command line (:class:`BadInventory`, :class:`UsageError`)
5      a confirmation was declined (or not given: no --yes and no terminal): nothing changed (:class:`Declined`)
130    interrupted by Ctrl-C (SIGINT); the reports are written, marked interrupted (:class:`Interrupted`)
143    interrupted by SIGTERM (e.g. a CI job's timeout); likewise
=====  ==============================================================
"""

from __future__ import annotations


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
    """The command line asks for something svrchain does not do (a flag it cannot honour, an unknown
    task or flag)."""

    code = 4


class Declined(SvrchainError):
    """A confirmation was declined at the prompt, or could not be asked (no --yes, no terminal)."""

    code = 5


class Interrupted(SvrchainError):
    """The run was stopped by a signal: Ctrl-C (SIGINT, exit 130) or SIGTERM (exit 143)."""

    code = 130

    def __init__(self, signum: int = 2) -> None:
        name = "SIGTERM" if signum == 15 else "Ctrl-C (SIGINT)"
        super().__init__(f"interrupted by {name}: stopped; connections closed; see the recap for what was done")
        self.code = 128 + signum


def exit_code(exc: BaseException) -> int:
    """The exit code for an error: its class's ``code``, 1 for anything that is not svrchain's."""
    return getattr(exc, "code", 1) if isinstance(exc, SvrchainError) else 1
