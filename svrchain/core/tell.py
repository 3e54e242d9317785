"""The commands and files a message tells the user about, named as this run's user has them.

Run as the installed ``svrchain`` command (pipx, pip), a message names ``svrchain TASK``, and the
example inventory and the docs as the command gives them (``svrchain init FILE``, ``svrchain docs
NAME``): such a user has no checkout. Run with ``fab`` in a checkout, it names ``fab TASK`` and the
checkout's files. The task wrapper (:mod:`svrchain.cli`) sets the program at the start of every run.
"""

from __future__ import annotations

PROGRAMS = ("fab", "svrchain")
EXAMPLE = "inventory/example.yaml"  # the commented example inventory, in the checkout
# The docs a message may point to: the name ``svrchain docs NAME`` takes, and the checkout's file.
DOCS = {"output": "docs/output.md", "schema": "docs/output.schema.json"}

_program = "fab"


def use(program: str) -> None:
    """Name ``program`` (``fab`` or ``svrchain``) in this run's messages."""
    global _program
    if program not in PROGRAMS:
        raise ValueError(f"unknown program {program!r}; one of {', '.join(PROGRAMS)}")
    _program = program


def program() -> str:
    """The program this run's messages name."""
    return _program


def command(args: str) -> str:
    """The command line ``args`` (``push-key``, ``trust-hosts --yes``) as this run's user types it, quoted."""
    return f"`{_program} {args}`"


def example() -> str:
    """Where the commented example inventory (every key explained) is for this run's user."""
    return EXAMPLE if _program == "fab" else "the example inventory `svrchain init FILE` writes"


def doc(name: str) -> str:
    """Where the doc ``name`` (a key of :data:`DOCS`) is for this run's user."""
    return DOCS[name] if _program == "fab" else f"`svrchain docs {name}`"
