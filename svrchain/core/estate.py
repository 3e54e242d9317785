"""An estate: named chains in one inventory, each a DB server and the web servers that depend on it.

Pure logic, no I/O beyond reading the file. A chain is validated as a one-DB :class:`Inventory` (the
shape every step works on); the estate adds what only the whole can tell: a host named twice with
two addresses, two DB servers of one host sharing a key or a trigger, a web server that two chains
would restart with two different commands. Today's one-DB inventories are an estate of one chain,
named after its DB server.

A chain's YAML::

    chains:
      shop:                  # the chain's name (letters, digits, '_' or '-')
        db: {...}            # as a one-DB inventory's db
        web: {servers: [...]}  # merged over the top-level web (user, restart_command, ...)
        key: {...}           # optional: merged over the top-level key
        trigger: {...}       # optional: merged over the top-level trigger
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from svrchain.core import render
from svrchain.core.inventory import (
    Inventory,
    InventoryError,
    WebServer,
    describe_error,
    parse,
    read_text,
    yaml_line,
    yaml_tree,
)

CHAIN_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}")
# A chain's own sections, each merged over the top-level section of the same name.
CHAIN_KEYS = ("db", "web", "key", "trigger")
# The top-level sections every chain shares as they are.
SHARED_KEYS = ("connect", "harden", "lab", "log")
# What must be the same for a web server that several chains restart (one gate, one sudo rule per host).
WEB_SHARED = ("user", "restart_command", "restart_shell")
# What two DB servers on one host must not share (each DB server has its own key and trigger).
DB_OWN = (("key.path", lambda i: i.key.path), ("trigger.name", lambda i: i.trigger.name),
          ("trigger.log", lambda i: i.trigger.log), ("db.service", lambda i: i.db.service))


@dataclass(frozen=True)
class Chain:
    """One chain: its name and its one-DB inventory (the DB server and the web servers it restarts)."""

    name: str
    inv: Inventory


@dataclass(frozen=True)
class Estate:
    """Every chain of an inventory file, in the file's order."""

    source: Path
    chains: tuple[Chain, ...]
    named: bool = True  # False: a one-DB inventory (its one chain named after its DB server)

    def chosen(self, name: str | None) -> list[Chain]:
        """The chains a run works on: all, or the one ``--chain NAME`` names (an unknown name is an error)."""
        if not name:
            return list(self.chains)
        found = [c for c in self.chains if c.name == name]
        if not found:
            names = ", ".join(c.name for c in self.chains)
            raise InventoryError(f"--chain {name!r}: no chain of that name in {self.source}; its chains are {names}")
        return found

    def restarters(self, web: str) -> list[Chain]:
        """The chains whose DB server may restart the web server named ``web``."""
        return [c for c in self.chains if web in {s.name for s in c.inv.web.servers}]

    def markers(self, web: str) -> frozenset[str]:
        """The key markers (``svrchain:<trigger>@<db>``) of every DB server that may restart ``web``."""
        return frozenset(render.marker(c.inv) for c in self.restarters(web))


def load(path: Path, how: str = "") -> Estate:
    """Read and validate an inventory file: an estate (``chains:``) or a one-DB inventory."""
    return parse_estate(read_text(path, how), path)


def parse_estate(text: str, source: Path) -> Estate:
    """Parse and validate an inventory's text as an estate; :class:`InventoryError` with one line per problem."""
    data, root = yaml_tree(text, source)
    if not isinstance(data, dict) or "chains" not in data:
        inv = parse(text, source)
        return Estate(source, (Chain(inv.db.name, inv),), named=False)
    chains = data["chains"]
    if not isinstance(chains, dict) or not chains:
        raise InventoryError(f"{source}:{yaml_line(root, ('chains',))}: chains: must be a mapping of chain names "
                             "to chains (at least one), e.g. 'shop: {db: ..., web: {servers: [...]}}'")
    for k in ("db", "ansible"):
        if k in data:
            raise InventoryError(f"{source}:{yaml_line(root, (k,))}: {k}: not with chains: give each chain its "
                                 f"own db (an Ansible inventory works with a one-DB inventory only)")
    built = tuple(_chain(data, str(name), body, source, root) for name, body in chains.items())
    estate = Estate(source, built)
    problem = estate_problem(estate)
    if problem:
        raise InventoryError(f"{source}: {problem}")
    return estate


def _chain(data: dict, name: str, body: object, source: Path, root: object) -> Chain:
    """One chain validated as a one-DB inventory: its own sections merged over the shared ones."""
    shown = name if CHAIN_RE.fullmatch(name) else repr(name)
    where = f"{source}:{yaml_line(root, ('chains', name))}: chains.{shown}"
    if not CHAIN_RE.fullmatch(name):
        raise InventoryError(f"{where}: a chain's name uses letters, digits, '_' or '-' (at most 63, "
                             "starting with a letter or digit), e.g. shop")
    if not isinstance(body, dict):
        raise InventoryError(f"{where}: must be a mapping with db and web (and optionally key, trigger)")
    unknown = sorted(set(body) - set(CHAIN_KEYS), key=str)
    if unknown:
        raise InventoryError(f"{where}: {unknown[0]}: unknown key; a chain has {', '.join(CHAIN_KEYS)}")
    merged: dict = {k: data[k] for k in SHARED_KEYS if k in data}
    for k in CHAIN_KEYS:
        top, own = data.get(k), body.get(k)
        if isinstance(top, dict) and isinstance(own, dict):
            merged[k] = {**top, **own}
        elif own is not None or top is not None:
            merged[k] = own if own is not None else top
    try:
        inv = Inventory.model_validate({**merged, "source": source})
    except ValidationError as exc:
        lines = []
        for e in exc.errors():
            loc = _chain_loc(body, name, e["loc"])
            # Described at the merged data's location, where "did you mean" finds the model's keys; named
            # under the chain when the problem is in the chain's own section.
            under = f"chains.{name}." if len(loc) > len(e["loc"]) else ""
            lines.append(f"{source}:{yaml_line(root, loc) or ''}: {under}{describe_error(e)}")
        raise InventoryError("\n".join(lines)) from None
    same = inv.same_as_db()
    if same is not None:
        raise InventoryError(f"{where}: {inv.web.servers[same].name} has the address of the chain's own DB "
                             "server; the DB server cannot be one of its own web servers")
    return Chain(name, inv)


def _chain_loc(body: dict, name: str, loc: tuple) -> tuple:
    """Where in the file a problem of a chain's merged data lies: under the chain, or the shared section."""
    if not loc or loc[0] not in body:
        return tuple(loc)
    own = body[loc[0]]
    if len(loc) > 1 and isinstance(own, dict) and loc[1] not in own:
        return tuple(loc)  # inherited from the top-level section
    return ("chains", name, *loc)


def estate_problem(estate: Estate) -> str | None:
    """What makes the chains contradict each other (one line), or None."""
    return _names_problem(estate) or _web_problem(estate) or _db_problem(estate)


def _host_key(inv: Inventory, port: int | None, user: str | None) -> tuple[int, str]:
    return (port or inv.connect.port, user or inv.connect.user)


def _names_problem(estate: Estate) -> str | None:
    """A host name with two addresses, an address with two names, a name both a DB and a web server."""
    by_name: dict[str, tuple[str, str, str]] = {}  # name -> (address, role, chain)
    by_address: dict[str, tuple[str, str, str]] = {}  # address:port -> (name, role, chain)
    for c in estate.chains:
        hosts = [(c.inv.db.name, c.inv.db.address, c.inv.db.port, "DB")]
        hosts += [(s.name, s.address, s.port, "web") for s in c.inv.web.servers]
        for name, address, port, role in hosts:
            seen = by_name.setdefault(name, (address, role, c.name))
            if seen[0] != address:
                return (f"{name}: address {address} in chain {c.name}, {seen[0]} in chain {seen[2]}; a host has "
                        "one address: give each host its own name")
            if seen[1] != role:
                return (f"{name}: a DB server in one chain and a web server in another ({seen[2]}, {c.name}); a host "
                        "is one or the other")
            where = f"{address}:{port or c.inv.connect.port}"
            other = by_address.setdefault(where, (name, role, c.name))
            if other[0] != name and "web" in (role, other[1]):
                return (f"{where}: named {other[0]} in chain {other[2]} and {name} in chain {c.name}; one host, one "
                        "name")
    return None


def _web_problem(estate: Estate) -> str | None:
    """A web server that two chains would reach, gate or restart differently."""
    first: dict[str, tuple[Chain, WebServer]] = {}
    for c in estate.chains:
        for s in c.inv.web.servers:
            a, sa = first.setdefault(s.name, (c, s))
            if sa != s:
                return (f"{s.name}: given differently in chains {a.name} and {c.name}; a web server in several "
                        "chains is the same host: give it the same address, port, user and health_url")
            for k in WEB_SHARED:
                mine, theirs = getattr(c.inv.web, k), getattr(a.inv.web, k)
                if mine != theirs:
                    return (f"{s.name}: web.{k} is {theirs!r} in chain {a.name} and {mine!r} in chain {c.name}; "
                            f"it has one gate and one restart command: give both chains the same web.{k}")
    return None


def _db_problem(estate: Estate) -> str | None:
    """A DB server in two chains, or two DB servers of one host sharing their key, trigger, log or service."""
    seen: dict[str, Chain] = {}
    on_host: dict[tuple, list[Chain]] = {}
    for c in estate.chains:
        db = c.inv.db
        if db.name in seen:
            return (f"{db.name}: the DB server of chains {seen[db.name].name} and {c.name}; a DB server has one "
                    "trigger: put all the web servers it restarts in one chain")
        seen[db.name] = c
        host = (db.address, *_host_key(c.inv, db.port, db.user)[:1])
        for other in on_host.setdefault(host, []):
            for what, value in DB_OWN:
                if value(other.inv) == value(c.inv):
                    return (f"{db.name} and {other.inv.db.name} (chains {other.name}, {c.name}) are on one host "
                            f"{db.address} and share {what} {value(c.inv)}; each DB server needs its own: set "
                            f"{what} in chain {c.name}")
        on_host[host].append(c)
    return None
