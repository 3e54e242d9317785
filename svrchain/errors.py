"""Errors meant for humans: one clear line each, no traceback, and a documented exit code.

Exit codes (docs/output.md): 0 all ok, 1 a step failed (or another error), 2 a gap found (verify,
smoke, bootstrap's final verify), 3 a host unreachable (connection, host key, login), 4 a bad
inventory or admin-side setup (nothing was tried on any host).
"""

from __future__ import annotations


class SvrchainError(Exception):
    """A problem the user can fix; its message is printed as is, and the task exits non-zero."""

    exit_code = 1


class GapFound(SvrchainError):
    """verify (or smoke) found the chain incomplete or unsafe somewhere."""

    exit_code = 2


class Unreachable(SvrchainError):
    """A host could not be reached or logged in to (TCP, SSH handshake, host key, authentication)."""

    exit_code = 3


class BadInventory(SvrchainError):
    """The inventory, or what it names on the admin's side (key, known_hosts, ssh config), is unusable."""

    exit_code = 4


def exit_code(exc: SvrchainError) -> int:
    """The process exit code for ``exc``."""
    return exc.exit_code
