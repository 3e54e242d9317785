"""What a run's first connections need, read before Fabric, Paramiko and the inventory's models are
imported (issue 23, "Start fast"): the task the command line runs, and the hosts it will connect to,
from the inventory's raw YAML data. :mod:`svrchain.remote.early` opens those connections.

Strict by design: anything this does not fully understand (another task, an unknown or combined flag,
--help, an address that is not an IP address, a name with a blank or a newline, a port out of range,
too many hosts, an ssh config, an Ansible inventory) gives None, and the run then connects as it
always did, after the whole inventory is validated. Pure: no file, no socket.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

# The tasks that connect to every host of their run (the DB server and the web servers, or --limit's),
# and each task's flags: whether the flag takes a value. tests/unit/test_early.py checks these against
# the tasks' real flags.
_COMMON = {"--inventory": True, "-I": True, "--log": True, "--verbose": False, "-v": False,
           "--json": False, "-j": False, "--junit": True, "-u": True, "--chain": True}
EARLY_TASKS: dict[str, dict[str, bool]] = {
    "bootstrap": {**_COMMON, "--dry-run": False, "-d": False, "--adopt": False, "-a": False},
    "verify": {**_COMMON, "--attacks": False, "-a": False, "--limit": True, "-l": True},
}
# More hosts than this are connected the usual way (at most connect.max_parallel at once).
MAX_HOSTS = 512
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")  # as svrchain.core.inventory.NAME_RE
DEFAULT_PORT = 22
# The inventory's top-level keys (svrchain.core.inventory.Inventory's): another key (a typo of ``lab``, say)
# means no early connection, since the full check refuses the file.
TOP_KEYS = frozenset({"connect", "db", "web", "key", "trigger", "harden", "lab", "log"})


@dataclass(frozen=True)
class Wanted:
    """What the command line asks: the task, the inventory given with it (None: $INVENTORY), --limit."""

    task: str
    inventory: str | None
    limit: tuple[str, ...]


@dataclass(frozen=True)
class Target:
    """One host to connect to: its inventory name, its IP address (canonical form) and SSH port."""

    name: str
    address: str
    port: int


@dataclass(frozen=True)
class Plan:
    """The hosts a run connects to, and what the lab's guard must see routed through its bridge."""

    targets: tuple[Target, ...]
    lab: bool
    guarded: tuple[str, ...]  # every address and health URL host (the lab's guard checks them all)


def _flag_values(args: list[str], flags: dict[str, bool]) -> dict[str, str] | None:
    """The flags' values (``--flag value``, ``--flag=value``; "" for a switch); None when a token is
    not one of ``flags`` exactly (a typo, combined short flags, --help, a second task)."""
    values: dict[str, str] = {}
    i = 0
    while i < len(args):
        flag, eq, value = args[i].partition("=") if args[i].startswith("--") else (args[i], "", "")
        if flag not in flags or (eq and not flags[flag]):
            return None
        if flags[flag] and not eq:
            if i + 1 == len(args) or args[i + 1].startswith("-"):
                return None
            i += 1
            value = args[i]
        values[flag] = value
        i += 1
    return values


def wanted(argv: list[str]) -> Wanted | None:
    """The run ``argv`` (without the program's name) asks for, when its task connects early."""
    if not argv or argv[0] not in EARLY_TASKS:
        return None
    values = _flag_values(argv[1:], EARLY_TASKS[argv[0]])
    if values is None or "--chain" in values:  # one chain of an estate: connected the usual way
        return None
    inventory = values.get("--inventory") or values.get("-I")
    text = values.get("--limit") or values.get("-l") or ""
    return Wanted(argv[0], inventory, tuple(n.strip() for n in text.split(",") if n.strip()))


def _port(value: object) -> int | None:
    """A TCP port (a whole number 1-65535, not a bool), else None."""
    return value if type(value) is int and 1 <= value <= 65535 else None


def _target(entry: object, default_port: int) -> Target | None:
    """A host entry (db, or one of web.servers) as a target: a plain name, an IP address, a port."""
    if not isinstance(entry, dict):
        return None
    name, address = entry.get("name"), entry.get("address")
    port = _port(entry.get("port") if entry.get("port") is not None else default_port)
    if not isinstance(name, str) or not NAME_RE.fullmatch(name) or port is None:
        return None
    if not isinstance(address, str) or "%" in address:  # (an IPv6 scope ID's text is free)
        return None
    try:
        return Target(name, str(ipaddress.ip_address(address)), port)
    except ValueError:  # a host name (resolving it would ask a DNS server), or not an address at all
        return None


def _health_host(entry: dict) -> str | None:
    """The host of a web server's health URL (what the lab's guard checks), else None."""
    url = entry.get("health_url")
    if not isinstance(url, str) or not re.fullmatch(r"https?://\S+", url):
        return None
    return urlsplit(url).hostname or url


def _sections(data: object) -> tuple[dict, dict, list] | None:
    """The inventory's connect, db and web.servers, when the early path can read them."""
    if not isinstance(data, dict) or not set(data) <= TOP_KEYS or not isinstance(data.get("lab", False), bool):
        return None
    connect, db, web = data.get("connect"), data.get("db"), data.get("web")
    if not (isinstance(connect, dict) and isinstance(db, dict) and isinstance(web, dict)):
        return None
    servers = web.get("servers")
    if connect.get("ssh_config") is not None or not isinstance(servers, list) or not 0 < len(servers) < MAX_HOSTS:
        return None
    if not all(isinstance(s, dict) for s in servers):
        return None
    return connect, db, servers


def plan(data: object, limit: tuple[str, ...] = ()) -> Plan | None:
    """The hosts a run on the inventory ``data`` (parsed YAML) connects to: the DB server and every web
    server (or --limit's); None when anything is not plainly valid (every host is checked, also those
    --limit leaves out: a hostile value anywhere means no early connection at all)."""
    found = _sections(data)
    if found is None:
        return None
    connect, db, servers = found
    port = _port(connect.get("port", DEFAULT_PORT))
    hosts = [_target(e, port) if port else None for e in (db, *servers)]
    health = [_health_host(s) for s in servers]
    if None in hosts or None in health:
        return None
    targets = [h for h in hosts if h is not None]
    names, places = [t.name for t in targets], [(t.address, t.port) for t in targets]
    webs = {t.address for t in targets[1:]}
    if len(set(names)) != len(names) or len(set(places)) != len(places) or len(webs) != len(servers):
        return None
    if any(n not in names[1:] for n in limit):
        return None
    chosen = [targets[0], *(t for t in targets[1:] if not limit or t.name in limit)]
    guarded = [t.address for t in targets] + [h for h in health if h is not None]
    return Plan(tuple(chosen), bool(data.get("lab", False)), tuple(guarded))  # type: ignore[union-attr]
