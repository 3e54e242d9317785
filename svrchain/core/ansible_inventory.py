"""The site's Ansible inventory, read without Ansible: INI, YAML, or the JSON of ``ansible-inventory
--list``; groups, children, hosts (with ranges such as ``web[01:10]``), host and group variables, and
``group_vars/`` and ``host_vars/`` beside the file. Pure logic apart from reading those files.

What svrchain takes from a host: ``ansible_host`` (else its name), ``ansible_port``, ``ansible_user``
(and their older ``ansible_ssh_*`` spellings). Inventory plugins, scripts and directories are not
read: one line says so.
"""

from __future__ import annotations

import ast
import json
import re
import shlex
import string
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from svrchain.core.errors import BadInventory

# A host name with ranges: web[01:10], db-[a:c], x[1:10:2].
_RANGE = re.compile(r"\[([0-9a-zA-Z]+):([0-9a-zA-Z]+)(?::([0-9]+))?\]")
# ansible-inventory --list's JSON: these keys of a group (and _meta at the top).
_JSON_GROUP_KEYS = {"hosts", "vars", "children"}
ALIASES = {"ansible_host": ("ansible_host", "ansible_ssh_host"),
           "ansible_port": ("ansible_port", "ansible_ssh_port"),
           "ansible_user": ("ansible_user", "ansible_ssh_user")}


class AnsibleInventoryError(BadInventory):
    """The Ansible inventory cannot be read, or uses what svrchain does not read (exit 4)."""


@dataclass
class Group:
    """One group: its own hosts, its child groups, its variables."""

    hosts: list[str] = field(default_factory=list)
    children: list[str] = field(default_factory=list)
    vars: dict[str, object] = field(default_factory=dict)


@dataclass
class AnsibleInventory:
    """Groups and each host's own variables, as read (``all`` and ``ungrouped`` always exist)."""

    source: Path
    groups: dict[str, Group] = field(default_factory=dict)
    hostvars: dict[str, dict[str, object]] = field(default_factory=dict)
    merged: bool = False  # ansible-inventory --list: hostvars already hold the group variables
    from_json: bool = False  # ansible-inventory's output: group_vars/ and host_vars/ are in it already

    def group(self, name: str) -> Group:
        return self.groups.setdefault(name, Group())

    def add_host(self, group: str, host: str, variables: dict[str, object] | None = None) -> None:
        g = self.group(group)
        if host not in g.hosts:
            g.hosts.append(host)
        self.hostvars.setdefault(host, {}).update(variables or {})

    def members(self, name: str, seen: frozenset[str] = frozenset()) -> list[str]:
        """Every host of a group and of its children, in the file's order, each once."""
        if name not in self.groups:
            raise AnsibleInventoryError(f"{self.source}: no group '{name}' (its groups: "
                                        f"{', '.join(sorted(g for g in self.groups if g != 'ungrouped'))})")
        if name == "all":
            return list(self.hostvars)
        out: list[str] = []
        g = self.groups[name]
        for h in [*g.hosts, *(h for c in g.children if c not in seen for h in self.members(c, seen | {name}))]:
            if h not in out:
                out.append(h)
        return out

    def _depths(self) -> dict[str, int]:
        """Each group's depth below ``all`` (Ansible applies group variables shallow to deep): a group
        nobody names as a child is one of ``all``'s; a child is one deeper than its deepest parent."""
        parents = {c: [p for p, g in self.groups.items() if c in g.children] for c in self.groups}
        depth = {"all": 0}
        for _ in range(len(self.groups) + 1):
            for name, ps in parents.items():
                if name != "all":
                    depth[name] = 1 + max((depth.get(p, 0) for p in ps if p != name), default=0)
        return depth

    def host_vars(self, host: str) -> dict[str, object]:
        """A host's variables as Ansible resolves them: ``all``'s, then its groups' from the shallowest
        (same depth: by name), then its own."""
        if self.merged:
            return dict(self.hostvars[host])
        depth = self._depths()
        mine = [g for g in self.groups if g != "all" and host in self.members(g)]
        out = dict(self.groups.get("all", Group()).vars)
        for g in sorted(mine, key=lambda n: (depth.get(n, 1), n)):
            out.update(self.groups[g].vars)
        out.update(self.hostvars[host])
        return out

    def connection(self, host: str) -> dict[str, object]:
        """What svrchain uses of a host: ansible_host, ansible_port, ansible_user (those set)."""
        v = self.host_vars(host)
        found = {key: next((v[a] for a in names if a in v), None) for key, names in ALIASES.items()}
        return {k: value for k, value in found.items() if value is not None}


def expand(pattern: str, source: Path) -> list[str]:
    """``web[01:03]`` -> web01, web02, web03 (numbers keep their width; letters a-z), as Ansible does."""
    m = _RANGE.search(pattern)
    if not m:
        return [pattern]
    first, last, step = m.group(1), m.group(2), int(m.group(3) or 1)
    head, tail = pattern[: m.start()], pattern[m.end():]
    if first.isdigit() and last.isdigit():
        width = len(first) if first.startswith("0") else 0
        items = [str(i).zfill(width) for i in range(int(first), int(last) + 1, step)]
    elif len(first) == len(last) == 1 and first in string.ascii_letters and last in string.ascii_letters:
        items = [chr(c) for c in range(ord(first), ord(last) + 1, step)]
    else:
        raise AnsibleInventoryError(f"{source}: {pattern}: a range is [start:end] of numbers or single letters")
    if not items:
        raise AnsibleInventoryError(f"{source}: {pattern}: an empty range")
    return [h for i in items for h in expand(head + i + tail, source)]


def _ini_value(text: str) -> object:
    """A host line's value as Ansible reads it (a Python literal where it is one, else the text)."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _ini_words(line: str, source: Path, n: int) -> list[str]:
    try:
        return shlex.split(line, comments=True)
    except ValueError as exc:
        raise AnsibleInventoryError(f"{source}:{n}: {exc}") from None


def _ini_host(inv: AnsibleInventory, group: str, words: list[str], n: int) -> None:
    """One host line: ``name[:port] key=value ...``."""
    name, *pairs = words
    variables: dict[str, object] = {}
    for p in pairs:
        if "=" not in p:
            raise AnsibleInventoryError(f"{inv.source}:{n}: '{p}' is not key=value")
        k, v = p.split("=", 1)
        variables[k] = _ini_value(v)
    m = re.fullmatch(r"(.+?):([0-9]+)", name)
    if m and "[" not in m.group(2):
        name, variables = m.group(1), {"ansible_port": int(m.group(2)), **variables}
    for host in expand(name, inv.source):
        inv.add_host(group, host, variables)


def parse_ini(text: str, source: Path) -> AnsibleInventory:
    """An INI inventory: host lines, ``[group]``, ``[group:vars]``, ``[group:children]``."""
    inv = AnsibleInventory(source)
    group, kind = "ungrouped", "hosts"
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        m = re.fullmatch(r"\[([^\]:\s]+)(?::(vars|children))?\]", line)
        if m:
            group, kind = m.group(1), m.group(2) or "hosts"
            inv.group(group)
            continue
        if line.startswith("["):
            raise AnsibleInventoryError(f"{source}:{n}: {line}: not a section svrchain reads ([group], "
                                        "[group:vars], [group:children])")
        if kind == "vars":
            k, sep, v = line.partition("=")
            if not sep:
                raise AnsibleInventoryError(f"{source}:{n}: '{line}' is not key=value")
            inv.group(group).vars[k.strip()] = v.strip()  # in a :vars section a value is text
        elif kind == "children":
            inv.group(group).children.append(line.split()[0])
            inv.group(line.split()[0])
        else:
            _ini_host(inv, group, _ini_words(line, source, n), n)
    return _finish(inv)


def _yaml_group(inv: AnsibleInventory, name: str, body: object) -> None:
    g = inv.group(name)
    if body is None:
        return
    if not isinstance(body, dict):
        raise AnsibleInventoryError(f"{inv.source}: group {name}: must be a mapping (hosts, vars, children)")
    extra = set(body) - _JSON_GROUP_KEYS
    if extra:
        raise AnsibleInventoryError(f"{inv.source}: group {name}: {', '.join(sorted(map(str, extra)))}: not read "
                                    "by svrchain (it reads hosts, vars and children)")
    for host, variables in (body.get("hosts") or {}).items():
        for h in expand(str(host), inv.source):
            inv.add_host(name, h, dict(variables or {}))
    g.vars.update(body.get("vars") or {})
    for child, child_body in (body.get("children") or {}).items():
        if child not in g.children:
            g.children.append(str(child))
        _yaml_group(inv, str(child), child_body)


def parse_yaml(data: dict, source: Path) -> AnsibleInventory:
    """A YAML inventory: top-level groups (usually ``all``) with hosts, vars and children."""
    if "plugin" in data:
        raise AnsibleInventoryError(f"{source}: an inventory plugin ({data['plugin']}) is not read by svrchain; "
                                    "give it the output of `ansible-inventory -i <it> --list` saved as a .json file")
    inv = AnsibleInventory(source)
    for name, body in data.items():
        _yaml_group(inv, str(name), body)
    return _finish(inv)


def parse_json(data: dict, source: Path) -> AnsibleInventory:
    """The JSON of ``ansible-inventory --list`` (with or without --export)."""
    inv = AnsibleInventory(source, from_json=True)
    meta = data.get("_meta") or {}
    for name, body in data.items():
        if name == "_meta":
            continue
        if not isinstance(body, dict):
            raise AnsibleInventoryError(f"{source}: {name}: not a group of ansible-inventory --list's JSON")
        g = inv.group(name)
        g.children = [str(c) for c in body.get("children") or []]
        g.vars = dict(body.get("vars") or {})
        for h in body.get("hosts") or []:
            inv.add_host(name, str(h))
    for host, variables in (meta.get("hostvars") or {}).items():
        inv.hostvars.setdefault(str(host), {}).update(variables or {})
    inv.merged = not any(g.vars for g in inv.groups.values())  # --list merges them into hostvars
    return _finish(inv)


def _finish(inv: AnsibleInventory) -> AnsibleInventory:
    inv.group("all")
    inv.group("ungrouped")
    return inv


def _read_vars(path: Path, source: Path) -> dict[str, object]:
    """group_vars/<name> or host_vars/<name>: a YAML/JSON file (.yml, .yaml, .json, or none), or a
    directory of them, merged in name order."""
    out: dict[str, object] = {}
    candidates = [path, *(path.with_name(path.name + ext) for ext in (".yml", ".yaml", ".json"))]
    for p in candidates:
        files = sorted(p.iterdir()) if p.is_dir() else [p] if p.is_file() else []
        for f in files:
            try:
                data = yaml.safe_load(f.read_text())
            except (OSError, yaml.YAMLError) as exc:
                raise AnsibleInventoryError(f"{f}: cannot read it: {exc}") from None
            if data is not None and not isinstance(data, dict):
                raise AnsibleInventoryError(f"{f}: must be a mapping of variables")
            out.update(data or {})
    return out


def add_var_dirs(inv: AnsibleInventory) -> AnsibleInventory:
    """group_vars/ and host_vars/ beside the inventory file, as ansible-inventory reads them."""
    base = inv.source.parent
    for name, g in inv.groups.items():
        g.vars.update(_read_vars(base / "group_vars" / name, inv.source))
    for host, variables in inv.hostvars.items():
        variables.update(_read_vars(base / "host_vars" / host, inv.source))
    return inv


def parse(text: str, source: Path) -> AnsibleInventory:
    """An Ansible inventory file's text: JSON (a .json file or a text starting with '{'), YAML (.yml,
    .yaml), else INI."""
    suffix = source.suffix.lower()
    try:
        if suffix == ".json" or text.lstrip().startswith("{"):
            data = json.loads(text)
            if not isinstance(data, dict):
                raise AnsibleInventoryError(f"{source}: not the JSON of ansible-inventory --list")
            return parse_json(data, source)
        if suffix in (".yml", ".yaml"):
            data = yaml.safe_load(text)
            if not isinstance(data, dict):
                raise AnsibleInventoryError(f"{source}: an Ansible YAML inventory is a mapping of groups (all: ...)")
            return parse_yaml(data, source)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise AnsibleInventoryError(f"{source}: cannot read it: {str(exc).splitlines()[0]}") from None
    return parse_ini(text, source)


def load(path: Path) -> AnsibleInventory:
    """Read the Ansible inventory at ``path`` (and its group_vars/, host_vars/)."""
    if path.is_dir():
        raise AnsibleInventoryError(f"{path}: an inventory directory is not read by svrchain; name one file")
    try:
        text = path.read_text()
    except OSError as exc:
        raise AnsibleInventoryError(f"{path}: cannot read the Ansible inventory: {exc.strerror or exc}") from None
    if path.stat().st_mode & 0o111 and text.startswith("#!"):
        raise AnsibleInventoryError(f"{path}: an inventory script is not run by svrchain; give it the output of "
                                    "`ansible-inventory -i <it> --list` saved as a .json file")
    inv = parse(text, path)
    return inv if inv.from_json else add_var_dirs(inv)
