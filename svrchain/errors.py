"""Errors meant for humans: one clear line each, no traceback."""

from __future__ import annotations


class SvrchainError(Exception):
    """A problem the user can fix; its message is printed as is, and the task exits non-zero."""


class HostError(SvrchainError):
    """Something failed on one host; the message names the host."""
