"""svrchain's lab: real hosts (network namespaces, real sshd, PostgreSQL, Apache+PHP) on this machine."""

from __future__ import annotations

import sys
from collections.abc import Callable


class LabError(Exception):
    """The lab cannot do what was asked; the message says why and what to do (one line, no traceback)."""


def entry(main: Callable[[], int]) -> None:
    """Run a command line's ``main`` and exit with its code; a LabError is one line on stderr, exit 1."""
    try:
        code = main()
    except LabError as exc:
        print(exc, file=sys.stderr)
        code = 1
    sys.exit(code)
