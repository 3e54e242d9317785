"""The ``svrchain`` command: Fabric's command line with svrchain's tasks built in.

``svrchain bootstrap -I prod.yaml`` works from any directory (no fabfile is looked for);
``svrchain --version`` names svrchain's version, then Fabric's, Paramiko's and Invoke's.

Importing this module is light: a task that connects to its hosts has its TCP connections started
(:mod:`svrchain.remote.early`) before Fabric and Paramiko are imported.
"""

from __future__ import annotations

import os
import sys
from typing import Any


def svrchain_version() -> str:
    """The installed distribution's version (the checkout's pyproject when run from source)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("svrchain")
    except PackageNotFoundError:
        return "unknown"


def program_class() -> type:
    """Fabric's program with svrchain's name, version and collection (Fabric imported here, not at start)."""
    from fabric.main import Fab

    class Svrchain(Fab):
        """Fabric's program with svrchain's name, version and collection."""

        def print_version(self) -> None:
            from fabric import __version__ as fabric
            from invoke import __version__ as invoke
            from paramiko import __version__ as paramiko

            print(f"svrchain {self.version}")
            print(f"Fabric {fabric}, Invoke {invoke}, Paramiko {paramiko}")

        def update_config(self) -> None:
            """Fabric's config, plus ``svrchain_program``: the tasks' messages then name ``svrchain TASK``
            (``fab TASK`` when run through fab in a checkout)."""
            super().update_config()
            self.config._overrides["svrchain_program"] = "svrchain"  # as Fabric adds its own overrides
            self.config.merge()

    return Svrchain


def make_program() -> Any:
    """The program, its namespace the task collection declared in tasks/ (installed as svrchain.tasks)."""
    from fabric import Config, Executor

    from svrchain.tasks import ns

    return program_class()(name="svrchain", binary="svrchain", binary_names=["svrchain"],
                           version=svrchain_version(), namespace=ns, executor_class=Executor, config_class=Config)


def main() -> None:
    """Entry point of the ``svrchain`` console script: :func:`run`, then :func:`leave` with its code."""
    leave(run())


def run() -> object:
    """Run the command line: a task that connects starts its connections first
    (:func:`svrchain.remote.early.start`), then the program is imported and run. Returns the exit
    code, as ``sys.exit`` takes it."""
    from svrchain.remote import early

    early.start(sys.argv[1:], os.environ)
    try:
        make_program().run()
    except SystemExit as exc:
        return exc.code
    return 0


def leave(code: object) -> None:
    """End the command with ``code`` (as ``sys.exit`` takes it) once its output is flushed, without
    the interpreter's teardown: freeing the ~450 modules a run imports took 0.13-0.17 s of an idle
    lab's 1 s no-op, after everything was done (every host's connection and lock closed, the results
    written). Under coverage (make coverage) it exits the usual way, so that its data is saved."""
    if isinstance(code, str):
        print(code, file=sys.stderr)
        code = 1
    status = 0 if code is None else code if isinstance(code, int) else 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (| head): nothing more can be said there
            status = status or 1
    if "coverage" in sys.modules:
        sys.exit(status)
    os._exit(status)
