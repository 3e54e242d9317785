"""The inventory: one YAML file per environment, validated on load.

Pure logic, no I/O beyond reading the file. Every problem becomes an :class:`InventoryError` whose
message is one line per problem, naming the file, the key's path and the fix.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from svrchain.core import ansible_inventory, tell
from svrchain.core.errors import BadInventory

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
# An account that goes into a sudo rule (where "ALL" is a keyword) and a shell: the portable set.
ACCOUNT_RE = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
# What web.restart_command may contain besides printable characters (it is also a sudo rule's
# command line): no double quotes or backslashes.
COMMAND_RE = re.compile(r'[^"\\]+')
HOSTNAME_RE = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?")
SERVICE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]*")
ABS_PATH_RE = re.compile(r"/[A-Za-z0-9_./@+-]*")
# A word of a command that sudo runs as given (no shell): what sudoers can match without quoting.
SUDO_WORD_RE = re.compile(r"[A-Za-z0-9_./@+=:,-]+")
SSHD_LINE_RE = re.compile(r"[A-Za-z][A-Za-z0-9]* +[ -~]+")
# Shell syntax in web.restart_command (run by sh -c as root): a list, a pipe, a substitution, a
# redirection. Allowed only with web.restart_shell: true (the inventory says it is a shell line).
SHELL_SYNTAX_RE = re.compile(r"[;&|`<>]|\$\(")


class InventoryError(BadInventory):
    """The inventory file is missing, unreadable or invalid (exit 4)."""


def _one_word(v: str) -> str:
    """Refuse what would change the shape of a shell line or an authorized_keys line."""
    if any(ch.isspace() or not ch.isprintable() for ch in v):
        raise ValueError("must not contain spaces, tabs, newlines or other control characters")
    return v


def _name(v: str) -> str:
    if not NAME_RE.fullmatch(_one_word(v)):
        raise ValueError("use letters, digits, '.', '_' or '-' (e.g. web1)")
    return v


def _account(v: str) -> str:
    if not ACCOUNT_RE.fullmatch(_one_word(v)):
        raise ValueError(
            "must be an account name: lower-case letters, digits, '_' or '-', starting with a lower-case "
            "letter or '_', at most 32 characters (e.g. svr-restart)"
        )
    return v


def _ip_text(v: str) -> str:
    """Text that may be parsed as an IP address: one word, no IPv6 scope ID (whose text is free)."""
    if "%" in _one_word(v):
        raise ValueError("must not have an IPv6 scope ID ('%...'); give the address without it")
    return v


def _address(v: str) -> str:
    """An IP address, stored in canonical form (what is rendered), or a host name."""
    _ip_text(v)
    try:
        return str(ipaddress.ip_address(v))
    except ValueError:
        if HOSTNAME_RE.fullmatch(v) and len(v) <= 253:
            return v
    raise ValueError("must be an IP address or a host name")


def _from_entry(v: str) -> str:
    """An IP address or network for from=, stored in canonical form."""
    _ip_text(v)
    try:
        net = ipaddress.ip_network(v, strict=True)
    except ValueError:
        raise ValueError(
            "from= takes IP addresses (or networks like 198.18.0.0/24): sshd does not resolve "
            "names by default"
        ) from None
    return str(net) if "/" in v else str(net.network_address)


def is_wide(entry: str) -> bool:
    """A from= network wider than /8 (IPv4) or /32 (IPv6): 0.0.0.0/0 and ::/0 first."""
    net = ipaddress.ip_network(entry)
    return net.prefixlen < (8 if net.version == 4 else 32)


def _command(v: str) -> str:
    if not v.strip() or not COMMAND_RE.fullmatch(v) or not v.isprintable():
        raise ValueError("must be one line without double quotes, backslashes, tabs or other control characters")
    return v


def _shell_line(v: str) -> str:
    if not v.strip() or not v.isprintable():
        raise ValueError(
            "must be one shell command line (run with sh -c): not empty, no newlines, tabs or other "
            "control characters; quotes, pipes and redirections are fine"
        )
    return v


def _abs_path(v: str) -> str:
    if not ABS_PATH_RE.fullmatch(v) or "/../" in v + "/":
        raise ValueError("must be an absolute path without spaces (e.g. /root/.ssh/svr_restart_key)")
    return v


def _sshd_line(v: str) -> str:
    if not SSHD_LINE_RE.fullmatch(v) or v.split()[0].lower() in {"match", "include"}:
        raise ValueError("must be one sshd_config line 'Keyword value' (no Match or Include), e.g. 'MaxAuthTries 3'")
    return v


def _service(v: str) -> str:
    if not SERVICE_RE.fullmatch(v):
        raise ValueError("must be a service name such as dbora or oracle.service")
    return v


Name = Annotated[str, AfterValidator(_name)]
Address = Annotated[str, AfterValidator(_address)]
FromEntry = Annotated[str, AfterValidator(_from_entry)]
Command = Annotated[str, AfterValidator(_command)]
ShellLine = Annotated[str, AfterValidator(_shell_line)]
Account = Annotated[str, AfterValidator(_account)]
AbsPath = Annotated[str, AfterValidator(_abs_path)]
Service = Annotated[str, AfterValidator(_service)]
SshdLine = Annotated[str, AfterValidator(_sshd_line)]
Port = Annotated[int, Field(ge=1, le=65535)]
Seconds = Annotated[int, Field(ge=1, le=3600)]
# How many hosts are worked on at once (SSH handshakes in flight, commands running): enough to keep
# two cores busy with handshakes, few enough that a 500-host fan-out neither exhausts the
# connecting side's CPU and memory nor trips a MaxStartups or connection-rate limit on the way.
Parallel = Annotated[int, Field(ge=1, le=1000)]
DEFAULT_MAX_PARALLEL = 32


class Strict(BaseModel):
    """Base: unknown keys are errors, values are not silently coerced across types."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Connect(Strict):
    """How the admin reaches every host."""

    user: Name = "root"
    identity: str | None = None  # None: the keys ssh-agent holds
    known_hosts: str
    ssh_config: str | None = None  # the admin's ssh config: host aliases (HostName) and ProxyJump
    port: Port = 22
    timeout: Seconds = 10
    max_parallel: Parallel = DEFAULT_MAX_PARALLEL  # hosts the admin's run works on at once


class Ready(Strict):
    """How to tell the DB is ready: a TCP port on the DB host, or a command run there."""

    port: Port | None = None
    host: Address = "127.0.0.1"
    command: ShellLine | None = None
    timeout: Seconds = 300
    interval: Annotated[float, Field(gt=0, le=60, strict=False)] = 1
    successes: Annotated[int, Field(ge=1, le=20)] = 1  # consecutive successes that make it ready

    @model_validator(mode="after")
    def _one_probe(self) -> Ready:
        if (self.port is None) == (self.command is None):
            raise ValueError("set exactly one of 'port' or 'command'")
        return self


# Where svrchain installs its Oracle readiness check (see render.oracle_ready).
ORACLE_READY = "/usr/local/lib/svrchain/oracle-ready"


class Oracle(Strict):
    """Settings of the built-in template of Oracle's documented dbora script, and of the checks that
    tell a new run of the instance and its readiness."""

    home: AbsPath
    owner: Account = "oracle"
    sid: Name  # ORACLE_SID: its pmon process marks each run of the instance
    service: Service | None = None  # the service the application connects to (must be registered)
    pdb: Name | None = None  # the pluggable database the application uses (must be open read write)


class Run(Strict):
    """How the watcher recognises a new run of the database: its main process (a new process, told by
    its start time, is a new run), or a command that prints the run's identity."""

    process: ShellLine | None = None  # extended regex matched against full command lines (pgrep -f)
    # With process: the account the DB's main process runs as (a process of any other account is never
    # a run; derived from oracle.owner with oracle), and the program it runs (/proc/PID/exe), if given.
    user: Account | None = None
    executable: AbsPath | None = None
    command: ShellLine | None = None
    interval: Annotated[float, Field(ge=0.1, le=60, strict=False)] = 1

    @model_validator(mode="after")
    def _one_way(self) -> Run:
        if (self.process is None) == (self.command is None):
            raise ValueError("set exactly one of 'process' (the DB's main process, e.g. '^ora_pmon_ORCL$') "
                             "or 'command'")
        if self.process is not None and self.user is None:
            raise ValueError("'process' needs 'user': the account the DB's main process runs as (e.g. postgres); "
                             "a look-alike process of any other account must never count as a run")
        if self.command is not None and (self.user or self.executable):
            raise ValueError("'user' and 'executable' go with 'process' only")
        return self


class Role(Strict):
    """A primary/standby pair's DB server: how the trigger and the watcher tell that the database is the
    primary, open read-write. Only then does a new run restart the web servers; a standby's runs restart
    nothing, and its promotion is followed as a new run. The check asks the database itself, as its
    owner, through its own client: PostgreSQL's pg_is_in_recovery() on the owner's socket directory,
    Oracle's v$database (database_role PRIMARY, open_mode READ WRITE) with db.oracle's home and SID."""

    check: Literal["postgres", "oracle"]
    # postgres: the DB's own psql, its socket directory (only its owner may create a socket there) and port.
    psql: AbsPath | None = None
    socket_dir: AbsPath = "/var/run/postgresql"
    port: Port = 5432
    database: Name = "postgres"


class Db(Strict):
    """The DB server and its service."""

    name: Name
    address: Address
    port: Port | None = None
    user: Name | None = None
    from_: list[FromEntry] | None = Field(default=None, alias="from", min_length=1)
    # A from= network wider than /8 (IPv4) or /32 (IPv6), 0.0.0.0/0 and ::/0 first, admits nearly any
    # host: refused unless this says it is meant.
    wide_from: bool = False
    service: Service = "dbora"
    init: Literal["auto", "sysv", "systemd"] = "auto"
    script: str | None = None
    oracle: Oracle | None = None
    unit: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@-]*\.service$")] | None = None
    ready: Ready
    run: Run
    role: Role | None = None  # a primary/standby pair: only the primary's runs restart the web servers

    model_config = ConfigDict(populate_by_name=False)

    @model_validator(mode="before")
    @classmethod
    def _oracle_defaults(cls, data: object) -> object:
        """With the built-in Oracle support, readiness is the SQL check and a run is a pmon process."""
        if isinstance(data, dict) and isinstance(data.get("oracle"), dict):
            data = dict(data)
            ready = data.get("ready") or {}
            if isinstance(ready, dict) and "command" not in ready and "port" not in ready:
                data["ready"] = {"command": ORACLE_READY, "successes": 3, **ready}
            sid = data["oracle"].get("sid")  # a missing or bad sid is reported on its own key
            owner = data["oracle"].get("owner", "oracle")
            data.setdefault("run", {"process": f"^ora_pmon_{sid if isinstance(sid, str) else 'SID'}$"})
            if isinstance(data["run"], dict) and "process" in data["run"]:
                data["run"] = {"user": owner, **data["run"]}  # pmon is the owner's (oracle.owner)
        return data

    @model_validator(mode="after")
    def _script_or_oracle(self) -> Db:
        if (self.script is not None) + (self.oracle is not None) + (self.unit is not None) != 1:
            raise ValueError(
                "set exactly one of 'script' (a local start script), 'oracle' (the built-in "
                "template of Oracle's dbora) or 'unit' (the site's own systemd unit for the DB)"
            )
        if self.oracle is not None and self.ready.port is not None:
            raise ValueError(
                "ready.port with oracle: Oracle's listener accepts connections long before the database is "
                "open (clients get ORA-01033, ORA-12514, ORA-12528), so a port says nothing; remove ready "
                "to use svrchain's SQL check (instance OPEN, database READ WRITE, service registered)"
            )
        self._role_ok()
        if self.unit is not None and self.init == "sysv":
            raise ValueError("'unit' names a systemd unit; it needs init: systemd or auto")
        wide = [n for n in self.from_ or [] if not self.wide_from and is_wide(n)]
        if wide:
            raise ValueError(
                f"from {wide[0]} admits {'every' if wide[0].endswith('/0') else 'nearly any'} address, so the key "
                "would work from almost anywhere: list the DB server's own addresses (set wide_from: true only "
                "if that is really meant)"
            )
        if self.from_ is None:
            try:
                ipaddress.ip_address(self.address)
            except ValueError:
                raise ValueError(
                    f"address '{self.address}' is a name: add 'from' with the DB server's IP "
                    "address(es) for the key's from= option"
                ) from None
        return self

    def _role_ok(self) -> None:
        if self.role is None:
            return
        if self.role.check == "oracle" and self.oracle is None:
            raise ValueError("role.check oracle asks v$database through db.oracle's home and SID: add oracle")
        if self.role.check == "postgres" and self.role.psql is None:
            raise ValueError("role.check postgres needs role.psql: the database's own psql (e.g. "
                             "/usr/lib/postgresql/15/bin/psql), run as its owner")
        if self.role.check == "postgres" and self.run.user is None:
            raise ValueError("role.check postgres needs run.user: the database's owner, who runs the check")

    @property
    def role_owner(self) -> str:
        """The account the role check runs as: the database's owner."""
        return self.oracle.owner if self.oracle is not None else self.run.user or "postgres"

    @property
    def from_addresses(self) -> list[str]:
        """The addresses the DB server connects from (the key's from= list)."""
        return list(self.from_) if self.from_ else [self.address]


class Key(Strict):
    """The dedicated, passphrase-less key on the DB server."""

    path: AbsPath = "/root/.ssh/svr_restart_key"
    type: Literal["ed25519", "rsa"] = "ed25519"
    bits: Annotated[int, Field(ge=3072, le=16384)] = 4096


class Trigger(Strict):
    """The svr_restart service on the DB server."""

    name: Service = "svr_restart"
    known_hosts: AbsPath = "/etc/svrchain/known_hosts"
    log: AbsPath = "/var/log/svr_restart.log"
    connect_timeout: Seconds = 5
    retries: Annotated[int, Field(ge=1, le=10)] = 3
    restart_timeout: Seconds = 120
    max_parallel: Parallel = DEFAULT_MAX_PARALLEL  # web servers connected to / restarted at once
    # The on-call hooks: shell command lines run on the DB server after a run (sh, as root).
    on_failure: ShellLine | None = None  # a run left web servers unrestarted, or the DB never became ready
    on_success: ShellLine | None = None  # every web server was restarted
    hook_timeout: Seconds = 30  # each hook is stopped after this long

    @property
    def hooks(self) -> bool:
        """Whether a hook is set (a run then lasts up to hook_timeout longer)."""
        return self.on_failure is not None or self.on_success is not None


class WebServer(Strict):
    """One web server."""

    name: Name
    address: Address
    port: Port | None = None
    user: Name | None = None
    health_url: Annotated[str, Field(pattern=r"^https?://[^\s]+$")]


class Web(Strict):
    """The web servers and what the key may run on them."""

    user: Account = "root"
    restart_command: Command = "/etc/init.d/httpd restart"
    restart_shell: bool = False  # with user root: restart_command is a shell line on purpose (;, &&, |, ...)
    health_timeout: Seconds = 30
    servers: list[WebServer] = Field(min_length=1)

    @property
    def dedicated(self) -> bool:
        """Least privilege: the key's account is not root, and restarts through one sudo rule."""
        return self.user != "root"

    @model_validator(mode="after")
    def _sudo_command(self) -> Web:
        words = self.restart_command.split()
        if not self.dedicated:
            return self._shell_line()
        if not (words[0].startswith("/") and all(SUDO_WORD_RE.fullmatch(w) for w in words)):
            raise ValueError(
                f"with web.user '{self.user}' (not root) the restart command runs through one sudo rule, "
                "so it must be a program's absolute path and plain arguments, without shell syntax "
                "(e.g. /usr/sbin/apachectl graceful)"
            )
        if words[0].endswith("/"):
            raise ValueError(
                f"restart_command: '{words[0]}' ends in '/', which a sudo rule reads as every program in "
                "that directory; name the program itself (e.g. /usr/sbin/apachectl)"
            )
        return self

    def _shell_line(self) -> Web:
        """As root, restart_command runs with sh -c: shell syntax only when the inventory says so."""
        found = SHELL_SYNTAX_RE.search(self.restart_command)
        if found and not self.restart_shell:
            raise ValueError(
                f"restart_command: '{found.group()}' is shell syntax, which runs as root (web.user root) with "
                "sh -c; give one command (e.g. /usr/sbin/apachectl graceful), or, if it is a shell line on "
                "purpose, say so with web.restart_shell: true")
        return self

    @model_validator(mode="after")
    def _unique(self) -> Web:
        for attr in ("name", "address"):
            seen: set[str] = set()
            for s in self.servers:
                value = getattr(s, attr)
                if value in seen:
                    raise ValueError(f"two web servers have the {attr} '{value}'; each must be unique")
                seen.add(value)
        return self


class Harden(Strict):
    """What harden-sshd adds to the web servers' sshd settings."""

    algorithms: bool = True
    extra: list[SshdLine] = []


class Ansible(Strict):
    """The site's Ansible inventory: the DB server is its db_group's one host, the web servers its
    web_group's hosts (ansible_host, ansible_port and ansible_user honoured)."""

    inventory: str  # INI, YAML, or ansible-inventory --list's JSON; relative to this file
    db_group: Name = "db"
    web_group: Name = "web"
    # Each web server's health URL: {name} and {address} replaced; a host var svrchain_health_url wins.
    health_url: Annotated[str, Field(pattern=r"^https?://[^\s]+$")] = "http://{address}/"


class Inventory(Strict):
    """A whole environment."""

    connect: Connect
    db: Db
    web: Web
    key: Key = Key()
    trigger: Trigger = Trigger()
    harden: Harden = Harden()
    lab: bool = False  # the built-in lab's inventory: runs only while the lab is up (make lab-up)
    log: str | None = None  # the admin side's run log (a local file; --log FILE wins)
    ansible: Ansible | None = None  # the hosts come from the site's Ansible inventory

    # Not part of the YAML: where it was loaded from, for messages and relative paths.
    source: Path = Field(default=Path("inventory.yaml"), exclude=True)

    @model_validator(mode="after")
    def _distinct_hosts(self) -> Inventory:
        if self.db.name in {s.name for s in self.web.servers}:
            raise ValueError(f"the DB server and a web server are both named '{self.db.name}'")
        return self

    def same_as_db(self) -> int | None:
        """The index of a web server at the DB server's address and port, if there is one."""
        db = (self.db.address, self.db.port or self.connect.port)
        return next((i for i, s in enumerate(self.web.servers) if (s.address, s.port or self.connect.port) == db),
                    None)

    def path(self, value: str) -> Path:
        """Resolve a local path from the file: ``~`` expanded, relative to the inventory's folder."""
        p = Path(os.path.expanduser(value))
        return p if p.is_absolute() else (self.source.parent / p).resolve()


def _known_keys(model: type[BaseModel]) -> list[str]:
    return [f.alias or name for name, f in model.model_fields.items() if name != "source"]


def _model_at(loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The model class that sits at a location in the inventory, for 'did you mean' hints."""
    model: type[BaseModel] | None = Inventory
    for part in loc:
        if model is None:
            return None
        if isinstance(part, int):
            continue
        field = next(
            (f for n, f in model.model_fields.items() if (f.alias or n) == part), None
        )
        if field is None:
            return None
        ann = field.annotation
        model = _first_model(ann)
    return model


def _first_model(ann: object) -> type[BaseModel] | None:
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    for arg in getattr(ann, "__args__", ()) or ():
        found = _first_model(arg)
        if found:
            return found
    return None


def _loc_text(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            text = str(part)
            # A key with spaces or control characters is quoted, so a problem stays on one line.
            shown = text if text.isprintable() and text.strip() == text and " " not in text and text else repr(text)
            out += ("." if out else "") + shown
    return out or "(top level)"


# Parts pydantic adds to an error's location for unions and validators, e.g. "function-after[...]".
_PYDANTIC_TAG = re.compile(r"^[a-z][a-z-]*\[.*\]$")


# pydantic's error types in plain words (its own wording names Python types and regexes).
_PLAIN = {
    "int_type": "must be a whole number", "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_type": "must be a number", "float_parsing": "must be a number",
    "bool_type": "must be true or false", "bool_parsing": "must be true or false",
    "string_type": "must be text", "list_type": "must be a list (lines starting with '- ')",
    "model_type": "must be a mapping ('key: value' lines indented under it)",
    "dict_type": "must be a mapping ('key: value' lines indented under it)",
    "model_attributes_type": "must be a mapping ('key: value' lines indented under it)",
    "greater_than_equal": "must be at least {ge}", "less_than_equal": "must be at most {le}",
    "greater_than": "must be more than {gt}", "less_than": "must be less than {lt}",
    "literal_error": "must be one of {expected}", "too_short": "must list at least {min_length}",
    "too_long": "must list at most {max_length}",
}
# What a key that must match a pattern should look like.
_PATTERN_HINT = {
    "health_url": "must be an http:// or https:// URL without spaces (e.g. http://web1.example.com/health)",
    "unit": "must be a systemd service unit's name, ending in .service (e.g. oracle.service)",
}


def _plain(err: dict, loc: tuple[int | str, ...]) -> str:
    """pydantic's message for one error, in plain words (no type names, no regexes)."""
    etype = err["type"]
    if etype == "string_pattern_mismatch":
        key = str(loc[-1]) if loc else ""
        return _PATTERN_HINT.get(key, f"is not in the expected form (see {tell.example()})")
    if etype in _PLAIN:
        return _PLAIN[etype].format(**{k: str(v) for k, v in (err.get("ctx") or {}).items()})
    return err["msg"].removeprefix("Value error, ")


def _describe(err: dict) -> str:
    """One human sentence (problem and fix) for one pydantic error."""
    loc = _clean_loc(err["loc"])
    etype = err["type"]
    where = _loc_text(loc)
    if etype in ("extra_forbidden", "invalid_key") and loc:
        parent = _model_at(loc[:-1])
        options = _known_keys(parent) if parent else []
        if etype == "invalid_key":  # a key YAML read as a number, null, true/false or a date
            return (f"{_loc_text(loc[:-1])}: the key {_yaml_text(err.get('input'))} should be a string; known keys: "
                    f"{', '.join(options)}")
        guess = difflib.get_close_matches(str(loc[-1]), options, n=1)
        hint = f"did you mean '{guess[0]}'?" if guess else f"known keys: {', '.join(options)}"
        return f"{where}: unknown key; {hint}"
    if etype == "missing":
        return f"{where}: missing; add it (every key is described in {tell.example()})"
    got = err.get("input")
    shown = "" if isinstance(got, dict | list) or got is None else f" (got {got!r})"
    return f"{where}: {_plain(err, loc)}{shown}"


def _yaml_text(value: object) -> str:
    """A scalar as YAML writes it: null, true and false rather than Python's None, True and False."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "null" if value is None else str(value)


def _clean_loc(loc: tuple) -> tuple[int | str, ...]:
    return tuple(p for p in loc if not (isinstance(p, str) and _PYDANTIC_TAG.match(p)))


def _line(root: yaml.Node | None, loc: tuple[int | str, ...]) -> int | None:
    """The YAML line (1-based) of the deepest key of ``loc`` found in the document."""
    node, line = root, (root.start_mark.line + 1 if root is not None else None)
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            keys = [(k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode)]
            pair = next(((k, v) for k, v in keys if k.value == part), None) or \
                next(((k, v) for k, v in keys if _names_key(k, part)), None)
            if pair is None:
                break
            line, node = pair[0].start_mark.line + 1, pair[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


def _names_key(key: yaml.ScalarNode, part: int | str) -> bool:
    """Whether a location's part is pydantic's for a key YAML reads as no text: the number itself (true
    and false as 1 and 0), else the value's repr (None, a date); a key given as text is matched as text."""
    if key.tag not in _KEY_TAGS:
        return False
    value = yaml.SafeLoader.yaml_constructors[key.tag](yaml.SafeLoader(""), key)
    return value == part if isinstance(part, int) else repr(value) == part


def duplicate_keys(root: yaml.Node | None, path: str = "", walked: set[int] | None = None
                   ) -> list[tuple[str, int, int]]:
    """Every key given twice in one mapping: (its path, the first line, the repeated line), 1-based.
    A node an alias reaches again is walked once (an alias inside its own anchor, or aliases of
    aliases, would otherwise never end)."""
    found: list[tuple[str, int, int]] = []
    walked = set() if walked is None else walked
    if id(root) in walked:
        return found
    walked.add(id(root))
    if isinstance(root, yaml.MappingNode):
        seen: dict[str, int] = {}
        for k, v in root.value:
            key = k.value if isinstance(k, yaml.ScalarNode) else None
            where = f"{path}.{key}" if path else str(key)
            if key is not None and key != "<<":
                if key in seen:
                    found.append((where, seen[key], k.start_mark.line + 1))
                seen.setdefault(key, k.start_mark.line + 1)
            found += duplicate_keys(v, where, walked)
    elif isinstance(root, yaml.SequenceNode):
        for i, item in enumerate(root.value):
            found += duplicate_keys(item, f"{path}[{i}]", walked)
    return found


_TAGS = tuple(f"tag:yaml.org,2002:{t}" for t in ("int", "float", "bool", "timestamp"))
_KEY_TAGS = (*_TAGS, "tag:yaml.org,2002:null")  # a key that is no text, as pydantic locates it (_names_key)


def _unfit(node: yaml.Node | None) -> yaml.Node | None:
    """The first scalar under ``node`` that its tag cannot build (``!!int x``, ``!!timestamp 2020-13-45``)."""
    if isinstance(node, yaml.ScalarNode) and node.tag in _TAGS:
        try:
            yaml.SafeLoader.yaml_constructors[node.tag](yaml.SafeLoader(""), node)
        except (ValueError, KeyError, AttributeError):
            return node
    children = ([n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode)
                else node.value if isinstance(node, yaml.SequenceNode) else [])
    return next((bad for child in children if (bad := _unfit(child)) is not None), None)


# libyaml's parser where PyYAML was built with it (about eight times as fast; the same nodes and marks).
_FAST = getattr(yaml, "CSafeLoader", None)


def _compose(text: str) -> tuple[yaml.SafeLoader, yaml.Node | None]:
    """A loader of ``text`` and its node tree: libyaml's where PyYAML has it; PyYAML's own otherwise, and
    for a text libyaml refuses (PyYAML's messages are the ones the tests and the docs show)."""
    if _FAST is not None:
        try:
            loader = _FAST(text)
            return loader, loader.get_single_node()
        except yaml.YAMLError:
            pass
    loader = yaml.SafeLoader(text)
    return loader, loader.get_single_node()


def _yaml(text: str, source: Path) -> tuple[object, yaml.Node | None]:
    """The document's data and its node tree (for line numbers); a YAML error, or a key given twice
    in one mapping (YAML would keep the last silently), as :class:`InventoryError`."""
    try:  # one pass: the node tree, then the data built from it (what safe_load does)
        loader, root = _compose(text)
        twice = duplicate_keys(root)  # before the data: building it merges each `<<` into its mapping's node
        data = None if root is None else loader.construct_document(root)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InventoryError(f"{source}{where}: not valid YAML: {problem}") from None
    except (ValueError, KeyError, AttributeError):  # PyYAML's own, for a value its tag cannot build
        bad = _unfit(root)
        where = f":{bad.start_mark.line + 1}:{bad.start_mark.column + 1}" if bad else ""
        what = f"{bad.value!r} is no {bad.tag.rsplit(':', 1)[1]}" if bad else "a value"
        raise InventoryError(f"{source}{where}: not valid YAML: {what} (does not fit its tag); remove the tag "
                             "or fix the value") from None
    if twice:
        raise InventoryError("\n".join(
            f"{source}:{second}: {where}: given twice, on lines {first} and {second} "
            "(YAML would keep the last silently); keep one" for where, first, second in twice))
    return data, root


def parse(text: str, source: Path) -> Inventory:
    """Parse and validate inventory text; raise :class:`InventoryError` with one line per problem,
    each naming the file and, where there is one, the YAML line."""
    data, root = _yaml(text, source)
    if not isinstance(data, dict):
        raise InventoryError(f"{source}: expected a mapping of settings (connect, db, web, ...)")
    data = with_ansible(data, source, root)
    try:
        inv = Inventory.model_validate({**data, "source": source})
    except ValidationError as exc:
        lines = []
        for e in exc.errors():
            line = _line(root, _clean_loc(e["loc"]))
            lines.append(f"{source}{f':{line}' if line else ''}: {_describe(e)}")
        raise InventoryError("\n".join(lines)) from None
    except (TypeError, ValueError) as exc:  # e.g. non-string keys in a mapping
        raise InventoryError(f"{source}: {exc}") from None
    i = inv.same_as_db()
    if i is not None:
        web = inv.web.servers[i]
        raise InventoryError(
            f"{source}:{_line(root, ('web', 'servers', i, 'address'))}: web.servers[{i}].address: {web.name} has "
            f"the DB server's address {web.address}; the DB server cannot be one of its own web servers: give "
            f"{web.name}'s own address")
    return inv


def _ansible_host(site: ansible_inventory.AnsibleInventory, host: str) -> dict[str, object]:
    """One host of the Ansible inventory as svrchain's name, address, port and user."""
    c = site.connection(host)
    out: dict[str, object] = {"name": host, "address": str(c.get("ansible_host", host))}
    if "ansible_port" in c:
        port = c["ansible_port"]
        if isinstance(port, bool) or not str(port).isdigit():
            raise InventoryError(f"{site.source}: {host}: ansible_port: must be a whole number (got {port!r})")
        out["port"] = int(str(port))
    if "ansible_user" in c:
        out["user"] = str(c["ansible_user"])
    return out


def with_ansible(data: dict, source: Path, root: yaml.Node | None = None) -> dict:
    """The inventory's data with db's host and web.servers filled in from the Ansible inventory that
    ``ansible`` names (unchanged without one); the hosts must not be typed a second time. ``root``,
    the document's node tree, gives the line of a section that is no mapping."""
    a = data.get("ansible")
    if not isinstance(a, dict) or not isinstance(a.get("inventory"), str):
        return data
    path = Path(os.path.expanduser(a["inventory"]))
    site = ansible_inventory.load(path if path.is_absolute() else source.parent / path)
    dbg, webg = str(a.get("db_group", "db")), str(a.get("web_group", "web"))
    dbs, webs = site.members(dbg), site.members(webg)
    if len(dbs) != 1:
        raise InventoryError(f"{source}: ansible.db_group: the group '{dbg}' of {site.source} has {len(dbs)} hosts "
                             f"({', '.join(dbs) or 'none'}); it must have one, the DB server")
    if not webs or dbs[0] in webs:
        raise InventoryError(f"{source}: ansible.web_group: the group '{webg}' of {site.source} must have the web "
                             f"servers, and not the DB server {dbs[0]} (it has: {', '.join(webs) or 'none'})")
    for section in ("db", "web"):
        if data.get(section) and not isinstance(data[section], dict):
            line = _line(root, (section,))
            raise InventoryError(f"{source}{f':{line}' if line else ''}: {section}: a mapping of its settings, not "
                                 f"{type(data[section]).__name__} {str(data[section])[:60]!r}; the Ansible "
                                 "inventory fills in its hosts")
    db, web = dict(data.get("db") or {}), dict(data.get("web") or {})
    for section, keys in (("db", ("name", "address", "port", "user")), ("web", ("servers",))):
        for k in keys:
            if k in (db if section == "db" else web):
                raise InventoryError(f"{source}: {section}.{k}: given by the Ansible inventory {site.source}; "
                                     "remove it here (hosts are named once)")
    template = str(a.get("health_url", "http://{address}/"))
    db.update(_ansible_host(site, dbs[0]))
    web["servers"] = []
    for h in webs:
        host = _ansible_host(site, h)
        url = site.host_vars(h).get("svrchain_health_url") or \
            template.replace("{name}", h).replace("{address}", str(host["address"]))
        web["servers"].append({**host, "health_url": str(url)})
    return {**data, "db": db, "web": web}


def load(path: Path, how: str = "") -> Inventory:
    """Read and validate the inventory file; ``how`` says what chose it (for the message when it is missing)."""
    return parse(read_text(path, how), path)


def read_text(path: Path, how: str = "") -> str:
    """The inventory file's text; a missing or unreadable file as one line (``how``: what chose it)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        given = f" (given by {how})" if how else ""
        raise InventoryError(
            f"{path}: no such inventory file{given}; check the path (every key is explained in {tell.example()})"
        ) from None
    except IsADirectoryError:
        raise InventoryError(f"{path}: is a directory, not an inventory file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InventoryError(f"{path}: cannot read the inventory: {getattr(exc, 'strerror', None) or exc}") from None
    return text


# For svrchain.core.estate, which validates each chain as one inventory and reports as parse does.
describe_error = _describe
yaml_line = _line
yaml_tree = _yaml
