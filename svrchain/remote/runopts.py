"""What one run works on: which inventory (always chosen explicitly), which web servers (--limit),
and the built-in lab's guard (its inventory never sends a packet out of this machine). A task's run
(these choices and its report) travels with Invoke's context: :func:`attach` and :func:`of`.

The inventory is, in this order: ``--inventory``/``-I``, ``$INVENTORY``, ``INVENTORY=`` in a ``.env``
in the current directory (or a parent), ``INVENTORY=`` in a ``.env`` next to the fabfile. There is no
default: without one of them a task stops with one line saying how to choose.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from dotenv import dotenv_values, find_dotenv
from invoke import Context

from svrchain.core import tell
from svrchain.core.errors import BadInventory, Declined, UsageError
from svrchain.core.inventory import Inventory
from svrchain.core.output import Results

# The lab's guard lives in svrchain.remote.labguard (the early connect runs it before this module is
# imported); its names are kept here for their callers.
from svrchain.remote.labguard import LAB_BRIDGE, check_lab, route_device, route_devices  # noqa: F401


def how_to_choose() -> str:
    """How to choose an inventory, as this run's user can (svrchain has no fabfile)."""
    where = "here or next to the fabfile" if tell.program() == "fab" else "here"
    return (f"pass --inventory FILE (-I FILE), set INVENTORY=FILE, or write INVENTORY=FILE in a .env {where} "
            f"(see {tell.example()})")


@dataclass
class RunOptions:
    """The command line's choices for this run (set by svr_task before the task's body runs)."""

    inventory: str | None = None  # --inventory / -I
    limit: tuple[str, ...] = ()  # --limit: web server names, empty for all
    project_dir: Path | None = None  # where the fabfile was found (its .env counts)
    env: dict[str, str] | None = field(default=None, repr=False)  # os.environ unless a test gives one
    log: str | None = None  # --log FILE: the run log (else the inventory's log, else none)
    verbose: bool = False  # -v/--verbose: show each remote command and its exit
    chain: str | None = None  # --chain NAME: one chain of an estate inventory (None: every chain)


@dataclass
class Run:
    """One task's run: the command line's choices and the report its steps write to. It travels with
    Invoke's context (:func:`attach`, :func:`of`), from the task wrapper to the task's session."""

    options: RunOptions
    results: Results

    def __copy__(self) -> Run:
        return self  # Invoke copies config values when it merges them; a run stays one object


def attach(c: Context, run: Run) -> None:
    """Give the task's context ``c`` its run (svrchain.cli does, before the task's body runs)."""
    c.config.svrchain_run = run


def of(c: Context) -> Run:
    """The run ``c`` carries (:func:`attach`)."""
    return c.config.svrchain_run


def _from_dotenv(path: str | Path | None) -> Path | None:
    """INVENTORY from a .env file, relative to the .env's own directory."""
    if not path or not Path(path).is_file():
        return None
    value = dotenv_values(path).get("INVENTORY")
    if not value:
        return None
    p = Path(os.path.expanduser(value))
    return p if p.is_absolute() else Path(path).parent / p


def inventory_choice(o: RunOptions) -> tuple[Path, str]:
    """The inventory a run with options ``o`` uses and what chose it; :class:`BadInventory` when nothing did."""
    env = os.environ if o.env is None else o.env
    if o.inventory:
        return Path(os.path.expanduser(o.inventory)), "--inventory"
    if env.get("INVENTORY"):
        return Path(os.path.expanduser(env["INVENTORY"])), "INVENTORY"
    for dotenv in (find_dotenv(".env", usecwd=True), o.project_dir and o.project_dir / ".env"):
        found = _from_dotenv(dotenv)
        if found is not None:
            return found, f"INVENTORY in {dotenv}"
    raise BadInventory(f"no inventory chosen: {how_to_choose()}")


def parse_limit(text: str | None) -> tuple[str, ...]:
    """``--limit web1,web3`` as a tuple of names (empty: every web server)."""
    names = tuple(n.strip() for n in (text or "").split(",") if n.strip())
    if text is not None and text.strip() and not names:
        raise UsageError("--limit: give web server names separated by commas, e.g. --limit web1,web3")
    return names


def parse_chain(text: str | None) -> str | None:
    """``--chain NAME`` as a name (None: every chain); an empty or multi-word value is one line."""
    if text is None:
        return None
    name = text.strip()
    if not name or any(ch.isspace() or not ch.isprintable() for ch in name):
        raise UsageError("--chain: give one chain's name, e.g. --chain shop")
    return name


def limited(names: list[str], db_name: str, limit: tuple[str, ...], source: Path) -> list[str]:
    """The web servers a run works on: all, or those named by --limit (each must exist)."""
    if not limit:
        return names
    for n in limit:
        if n == db_name:
            raise UsageError(f"--limit {n}: that is the DB server, which every task uses anyway; --limit "
                             f"names web servers ({', '.join(names)})")
        if n not in names:
            raise UsageError(f"--limit {n}: no web server of that name in {source}; its web servers are "
                             f"{', '.join(names)}")
    return [n for n in names if n in limit]


# A Match exec line of an ssh config: paramiko runs its command while looking a host up.
_MATCH_EXEC = re.compile(r"^\s*match\b.*\bexec\b", re.IGNORECASE | re.MULTILINE)


def check_lab_inventory(inv: Inventory) -> None:
    """The lab's guard, before anything reads the ssh config or connects: every inventory address and
    every health URL's host routed through the lab's bridge (a name is refused: resolving it would
    ask a DNS server), and no ``Match exec`` in connect.ssh_config (its command would run on lookup)."""
    hosts = [inv.db.address, *(s.address for s in inv.web.servers)]
    hosts += [urlsplit(s.health_url).hostname or s.health_url for s in inv.web.servers]
    check_lab(inv.source, hosts)
    if inv.connect.ssh_config is not None:
        path = inv.path(inv.connect.ssh_config)
        try:
            text = path.read_text(errors="replace")
        except OSError:
            return  # said in one line when the config is loaded
        if _MATCH_EXEC.search(text):
            raise BadInventory(f"{inv.source} is the built-in lab's inventory (lab: true): its connect.ssh_config "
                               f"{path} has a 'Match exec' line, whose command would run here; remove it")


def confirm(question: str, yes: bool) -> None:
    """Go on with --yes, or after 'y' at a prompt on a terminal; otherwise stop: :class:`Declined` (exit 5)."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise Declined(f"{question.rstrip('?')}: confirm with --yes (stdin is not a terminal)")
    try:
        answer = input(f"{question} [y/N] ")
    except EOFError:
        answer = ""
    if answer.strip().lower() not in ("y", "yes"):
        raise Declined("not confirmed; nothing was changed")
