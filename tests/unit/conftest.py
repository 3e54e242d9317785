"""The ``program`` fixture: the fab or svrchain command line run in this process, as a subprocess would
run it (the same argv, environment, working directory and stdin; its exit code, stdout and stderr).

Starting Python and importing Fabric costs about 0.4 s of CPU a run; the command-line tests make about
forty runs. What a separate process would add is kept: the environment, the working directory, stdin,
``sys.path`` and the loaded fabfile are set for the run and put back after it; stdout and stderr are
captured at the file descriptors (what threads and child processes write too); logging has no handler
but Python's last resort (stderr), as in a fresh interpreter; the one module global of a run (the
program ``tell`` names) is put back; a crash is a traceback on stderr and exit 1;
and a run that takes longer than ``timeout`` fails the test. What only a real process shows (the
console scripts, what is printed while importing) is left to the tests that run ``fab`` and
``svrchain`` as subprocesses (``tests/unit/test_cli.py``, ``test_cli_flags.py``).
"""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
import threading
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path

import fabric.main
import pytest

import svrchain.program
from svrchain.core import tell
from svrchain.program import make_program
from svrchain.remote import early as remote_early

REPO = Path(__file__).resolve().parents[2]

Program = Callable[..., subprocess.CompletedProcess]


@pytest.fixture
def program(capfd) -> Program:
    """``program(tool, *args, cwd=REPO, env=None, stdin="", timeout=60, early=False)``: run ``tool``
    (``"fab"`` or ``"svrchain"``) with ``args`` in this process; ``env`` is the whole environment
    (``os.environ`` when None). With ``early`` (svrchain only), the run is the console script's
    :func:`svrchain.program.run` (a connecting task's connections started early, then the program;
    any left untaken are closed after it). Returns a CompletedProcess, as
    ``subprocess.run(..., capture_output=True, text=True)``."""

    def run(tool: str, *args: str, cwd: Path = REPO, env: dict[str, str] | None = None, stdin: str = "",
            timeout: float = 60, early: bool = False) -> subprocess.CompletedProcess:
        assert tool == "svrchain" or not early, "only the svrchain command connects early"
        argv = [tool, *args]
        before = capfd.readouterr()
        saved = _State()
        os.environ.clear()
        os.environ.update(saved.environ if env is None else env)
        os.chdir(cwd)
        sys.stdin = io.StringIO(stdin)
        if early:
            sys.argv = list(argv)  # what svrchain.program.run reads
        logging.root.handlers = []  # a fresh interpreter's: none (warnings and errors go to stderr)
        result: dict[str, int] = {}

        def main() -> None:
            try:
                if early:  # the console script's run: it reads sys.argv and os.environ
                    raise SystemExit(svrchain.program.run())
                (make_program() if tool == "svrchain" else fabric.main.make_program()).run(argv)
                result["code"] = 0
            except SystemExit as exc:
                if exc.code is None or isinstance(exc.code, int):
                    result["code"] = exc.code or 0
                else:
                    print(exc.code, file=sys.stderr)
                    result["code"] = 1
            except BaseException:
                traceback.print_exc()
                result["code"] = 1

        try:
            with warnings.catch_warnings():
                _python_default_warning_filters()
                warnings.showwarning = _show_on_stderr  # as a fresh interpreter: at once, on stderr
                thread = threading.Thread(target=main, name=f"in-process {tool}", daemon=True)
                thread.start()
                thread.join(timeout)
            if thread.is_alive():
                raise subprocess.TimeoutExpired(argv, timeout)
        finally:
            if early:
                remote_early.discard()
            saved.restore()
            got = capfd.readouterr()
            sys.stdout.write(before.out + got.out)  # kept for the test's report (-rP)
            sys.stderr.write(before.err + got.err)
        return subprocess.CompletedProcess(argv, result["code"], got.out, got.err)

    return run


def _python_default_warning_filters() -> None:
    """The warning filters of a fresh interpreter (no -W, no PYTHONWARNINGS): pytest's are wider."""
    warnings.resetwarnings()
    for category in (ResourceWarning, ImportWarning, PendingDeprecationWarning, DeprecationWarning):
        warnings.filterwarnings("ignore", category=category)
    warnings.filterwarnings("default", category=DeprecationWarning, module="__main__")


def _show_on_stderr(message, category, filename, lineno, file=None, line=None) -> None:
    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


class _State:
    """What one in-process run may change, saved to be put back after it."""

    def __init__(self) -> None:
        self.environ = dict(os.environ)
        self.cwd = os.getcwd()
        self.stdin = sys.stdin
        self.argv = list(sys.argv)
        self.path = list(sys.path)
        self.fabfile = sys.modules.get("fabfile")
        self.handlers = list(logging.root.handlers)
        self.program = tell.program()

    def restore(self) -> None:
        os.environ.clear()
        os.environ.update(self.environ)
        os.chdir(self.cwd)
        sys.stdin = self.stdin
        sys.argv = self.argv
        sys.path[:] = self.path
        if self.fabfile is None:
            sys.modules.pop("fabfile", None)
        else:
            sys.modules["fabfile"] = self.fabfile
        logging.root.handlers = self.handlers
        tell.use(self.program)


# The modules whose tests wait longest (each test's wall time, make unit on two processes, 2 December
# 2026): first in the collection, so that pytest-xdist's worksteal hands them out first and a worker's
# last tests are short ones (the other worker, out of tests, waited for one of them up to 1.4 s).
# Only the order changes: no test depends on another's.
SLOWEST_FIRST = ("test_trigger.py", "test_early.py", "test_cli_surprises.py", "test_cli_flags.py",
                 "test_trigger_role.py", "test_shell_values.py", "test_gate.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tests of SLOWEST_FIRST's modules first, in that order; the others after, as collected."""
    rank = {name: i for i, name in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))
