"""Render the files svrchain installs on the DB server (pure logic, Jinja2 templates)."""

from __future__ import annotations

import functools
import shlex
from pathlib import Path
from typing import TYPE_CHECKING

from svrchain.core import trigger_status
from svrchain.core.errors import SvrchainError
from svrchain.core.inventory import Inventory

TEMPLATES = Path(__file__).resolve().parents[1] / "templates"
IMPL_DIR = "/usr/local/lib/svrchain"

if TYPE_CHECKING:
    from jinja2 import Environment, Template


@functools.cache
def _environment() -> Environment:
    """The templates' Jinja2 environment, made (and Jinja2 imported) on the first render: a run that
    renders nothing, or has not rendered yet (its connections opening), does not wait for Jinja2."""
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,  # shell scripts, not HTML
        comment_start_string="<#",  # '{#' is bash's ${#array[@]}
        comment_end_string="#>",
    )
    env.filters["q"] = quote
    return env


def _template(name: str) -> Template:
    return _environment().get_template(name)


def as_account(user: str, command: str) -> str:
    """``command`` (shell words, already quoted) run as ``user`` rather than root."""
    if user == "root":
        return command
    u = shlex.quote(user)
    return f'setpriv --reuid={u} --regid="$(id -g -- {u})" --init-groups -- {command}'


def marker(inv: Inventory) -> str:
    """The comment that names svrchain's key (and line) for this DB server and trigger."""
    return f"svrchain:{inv.trigger.name}@{inv.db.name}"


def quote(value: object) -> str:
    """One shell word for any inventory value (the templates' ``q`` filter): always single-quoted,
    so that neither the shell nor shellcheck reads a value as anything but a literal string."""
    return "'" + str(value).replace("'", "'\"'\"'") + "'"


# Every inventory value that goes into a shell line goes through this filter.


def impl_path(inv: Inventory) -> str:
    """Where the site's own start script is installed; the init script wraps it."""
    return f"{IMPL_DIR}/{inv.db.service}"


def dbora_impl(inv: Inventory) -> bytes:
    """The site's start script: the local file named in the inventory, or Oracle's template."""
    if inv.db.script is not None:
        path = inv.path(inv.db.script)
        try:
            return path.read_bytes()
        except OSError as exc:
            raise SvrchainError(
                f"{inv.source}: db.script: cannot read {path}: {exc.strerror}; fix the path"
            ) from None
    return _template("dbora-oracle.sh.j2").render(oracle=inv.db.oracle).encode()


def oracle_ready(inv: Inventory) -> bytes:
    """svrchain's Oracle readiness check (installed at ORACLE_READY with db.oracle)."""
    o = inv.db.oracle
    assert o is not None
    return _template("oracle-ready.sh.j2").render(
        home=o.home, sid=o.sid, owner=o.owner, service=o.service, pdb=o.pdb).encode()


def role_path(inv: Inventory) -> str:
    """Where svrchain installs the trigger's role check (with db.role): one per trigger."""
    return f"{IMPL_DIR}/{inv.trigger.name}-role"


def role_check(inv: Inventory) -> bytes:
    """The role check (db.role): exit 0 when the database is the primary, open read-write, 1 when it is
    a standby, 2 when it cannot tell; run as the database's owner through the database's own client."""
    role, o = inv.db.role, inv.db.oracle
    assert role is not None
    return _template("db-role.sh.j2").render(
        name=role_path(inv), check=role.check, owner=inv.db.role_owner, psql=role.psql,
        socket_dir=role.socket_dir, port=role.port, database=role.database,
        home=o.home if o else "", sid=o.sid if o else "").encode()


def dbora_init(inv: Inventory, hook: bool = True) -> bytes:
    """``/etc/init.d/<service>``: header for chkconfig/insserv, runs the site's script, then the trigger."""
    return _template("dbora-wrapper.sh.j2").render(
        service=inv.db.service, impl=impl_path(inv), trigger=inv.trigger.name, hook=hook,
    ).encode()


def db_unit(inv: Inventory) -> str:
    """The DB's systemd unit: the site's own (db.unit), or svrchain's <service>.service."""
    return inv.db.unit or f"{inv.db.service}.service"


def trigger_unit(inv: Inventory) -> str:
    """The trigger's systemd unit name (svr_restart -> svr-restart.service)."""
    return inv.trigger.name.replace("_", "-") + ".service"


def trigger_path(inv: Inventory) -> str:
    """Where the trigger itself lives (the static script, the same on every host); the SysV init
    script and the systemd units only run it."""
    return f"{IMPL_DIR}/{inv.trigger.name}"


def trigger_init_path(inv: Inventory) -> str:
    """The trigger's SysV init script (a wrapper with the boot order's header)."""
    return f"/etc/init.d/{inv.trigger.name}"


def trigger_config_path(inv: Inventory) -> str:
    """The trigger's settings and web servers, rendered from the inventory (the script finds them by its name)."""
    return f"/etc/svrchain/{inv.trigger.name}.conf"


# The trigger: one static, shellchecked script, installed verbatim.
TRIGGER_SOURCE = Path(__file__).resolve().parents[1] / "files" / "svr_restart.sh"


def trigger_program() -> bytes:
    """The trigger script, byte for byte as it is installed."""
    return TRIGGER_SOURCE.read_bytes()


def watch_name(inv: Inventory) -> str:
    """The watcher's service name (SysV), e.g. svr_restart_watch."""
    return f"{inv.trigger.name}_watch"


def watch_unit(inv: Inventory) -> str:
    """The watcher's systemd unit, e.g. svr-restart-watch.service."""
    return watch_name(inv).replace("_", "-") + ".service"


def watch_init(inv: Inventory) -> bytes:
    """``/etc/init.d/<trigger>_watch``: runs the trigger's ``watch`` loop as a daemon."""
    return _template("svr-watch.sh.j2").render(
        name=watch_name(inv), db_service=inv.db.service, trigger=trigger_path(inv), earlier=trigger_init_path(inv),
        pidfile=watch_pidfile(inv), supervisor=supervise_pidfile(inv)).encode()


def watch_service(inv: Inventory) -> bytes:
    """``<trigger>-watch.service``: the same loop under systemd."""
    return _template("svr-watch.service.j2").render(
        name=watch_name(inv), trigger=trigger_path(inv)).encode()


def owed_dir(inv: Inventory) -> str:
    """Where the trigger keeps the web servers still owed a restart (one file each)."""
    return f"/var/lib/svrchain/{inv.trigger.name}.owed"


def watch_pidfile(inv: Inventory) -> str:
    """The watcher's PID file (the watcher writes it)."""
    return f"{RUN_DIR}/{watch_name(inv)}.pid"


def supervise_pidfile(inv: Inventory) -> str:
    """The PID file of the watcher's supervisor on SysV hosts (it runs the watcher again when it ends)."""
    return f"{RUN_DIR}/{inv.trigger.name}_supervise.pid"


def watch_tick(inv: Inventory) -> str:
    """The watcher's tick: "<epoch> <run>", written each time it looks at the database."""
    return f"{RUN_DIR}/{watch_name(inv)}.tick"


def dbora_service(inv: Inventory) -> bytes:
    """svrchain's ``<service>.service``, wrapping the site's start script."""
    return _template("dbora.service.j2").render(service=inv.db.service, impl=impl_path(inv)).encode()


def svr_restart_service(inv: Inventory) -> bytes:
    """``svr-restart.service``: after the DB's unit, part of it, wanted by it."""
    return _template("svr-restart.service.j2").render(
        name=inv.trigger.name, db_unit=db_unit(inv), script=trigger_path(inv),
        timeout=trigger_status.unit_timeout(inv),
    ).encode()


# Every file svrchain writes says so; uninstall and push-key recognise svrchain's files by it.
MARK = "Written by svrchain"
GATE = "/usr/local/sbin/svr-restart-gate"
# The gate's state: one directory per account (GATE_STATE/<user>, the account's own, mode 700) under
# root-owned parents, so that no gate ever reads what another account wrote.
STATE_PARENT = "/var/lib/svrchain"
GATE_STATE = f"{STATE_PARENT}/gate"
SUDOERS = "/etc/sudoers.d/svrchain"
# The GECOS field of the account push-key creates: uninstall removes only an account carrying it.
ACCOUNT_COMMENT = "svrchain restart trigger"
# The least time between the end of one of the gate's restarts and the start of the next: at most four
# in any 10 s, one fewer than systemd's default start limit (StartLimitBurst=5 in 10 s), past which a
# restart stops the web server and leaves it down.
GATE_GAP = 2.5


def gate_state_dir(user: str, root: str = GATE_STATE) -> str:
    """The gate's state directory for one account."""
    return f"{root}/{user}"


def gate(inv: Inventory, state_root: str = GATE_STATE, gap: float = GATE_GAP) -> bytes:
    """The web side's forced command: whitelisted verbs, logged, serialized, coalesced and spaced restarts.

    ``state_root`` and ``gap`` are for tests that run the gate locally; hosts always get
    :data:`GATE_STATE` and :data:`GATE_GAP`.
    """
    return _template("svr-restart-gate.sh.j2").render(
        restart_command=inv.web.restart_command, sudo=inv.web.dedicated, words=inv.web.restart_command.split(),
        state=gate_state_dir(inv.web.user, state_root), gap_us=round(gap * 1_000_000)).encode()


def _sudoers_escape(word: str) -> str:
    """A command word as sudoers matches it literally (its special characters escaped)."""
    return "".join("\\" + ch if ch in ",:=\\" else ch for ch in word)


def sudo_command(inv: Inventory) -> str:
    """The restart command as the sudo rule names it (and ``sudo -l`` lists it). A command without
    arguments gets ``""``: in sudoers a bare command allows any arguments, ``""`` allows none."""
    words = [_sudoers_escape(w) for w in inv.web.restart_command.split()]
    return " ".join(words if len(words) > 1 else [*words, '""'])


def sudoers(inv: Inventory) -> bytes:
    """The one sudo rule of the trigger's unprivileged account: the restart command, as root, nothing else."""
    user = inv.web.user
    return (
        f"# {MARK} (fab push-key). Edit the inventory, not this file.\n"
        f"# {user} (the DB server's restart key) may run the web server's restart command as root,\n"
        "# with exactly these arguments, and nothing else.\n"
        f"Defaults:{user} !requiretty\n"
        f"{user} ALL=(root) NOPASSWD: {sudo_command(inv)}\n"
    ).encode()


# Where the trigger keeps its lock and SSH control sockets on the DB server: a directory only root
# can write (the world-writable /run/lock would let any local user hold or plant the lock).
RUN_DIR = "/run/svrchain"


def ssh_options(inv: Inventory) -> list[str]:
    """The options of every SSH connection the DB server's key makes (the trigger, rotate-key's
    proof, the attack matrix): no ssh_config of root's or the system's, no agent, no other key,
    the pinned web host keys only, never a prompt."""
    options = ("BatchMode=yes", "IdentitiesOnly=yes", "IdentityAgent=none", "GSSAPIAuthentication=no",
               "StrictHostKeyChecking=yes", f"UserKnownHostsFile={inv.trigger.known_hosts}",
               "GlobalKnownHostsFile=/dev/null", f"ConnectTimeout={inv.trigger.connect_timeout}")
    return ["-F", "/dev/null", *(w for o in options for w in ("-o", o))]


def ready_check(inv: Inventory) -> str:
    """The shell command line that succeeds once the DB is ready; the trigger and restart-chain
    both run it as ``sh -c <it>``."""
    r = inv.db.ready
    if r.command:
        return r.command
    return f"timeout 2 bash -c {quote(f'exec 3<>/dev/tcp/{r.host}/{r.port}')}"


def trigger_init(inv: Inventory) -> bytes:
    """``/etc/init.d/svr_restart``: the boot order's header (after the DB), then the trigger itself."""
    return _template("svr-restart-init.sh.j2").render(
        name=inv.trigger.name, db_service=inv.db.service, script=trigger_path(inv),
        config=trigger_config_path(inv)).encode()


def _seconds(value: float) -> str:
    """A number of seconds as the trigger reads it (digits, maybe a fraction; never an exponent)."""
    return str(value) if isinstance(value, int) else f"{value:.6f}".rstrip("0").rstrip(".")


def trigger_settings(inv: Inventory) -> list[tuple[str, str]]:
    """The trigger's settings, in the order of its config file: (key, value), ``web`` once per web server."""
    t, ready, run = inv.trigger, inv.db.ready, inv.db.run
    settings = [
        ("key", inv.key.path), ("known_hosts", t.known_hosts), ("log", t.log),
        ("ready_command", ready_check(inv)), ("ready_timeout", str(ready.timeout)),
        ("ready_interval", _seconds(ready.interval)), ("ready_successes", str(ready.successes)),
        ("connect_timeout", str(t.connect_timeout)), ("retries", str(t.retries)),
        ("restart_timeout", str(t.restart_timeout)), ("max_parallel", str(t.max_parallel)),
        ("bound", str(trigger_status.bound(inv))),
        ("run_interval", _seconds(run.interval)),
        *([("run_command", run.command)] if run.command else [("run_process", run.process or ""),
                                                               ("run_user", run.user or "")]),
        *([("run_executable", run.executable)] if run.executable else []),
        *([("role_command", role_path(inv))] if inv.db.role else []),
    ]
    if t.hooks:
        settings.append(("hook_timeout", str(t.hook_timeout)))
    settings += [(k, v) for k, v in (("on_failure", t.on_failure), ("on_success", t.on_success)) if v]
    port = inv.connect.port
    settings += [("web", f"{s.name} {s.address} {s.port or port} {inv.web.user}") for s in inv.web.servers]
    return settings


def trigger_config(inv: Inventory) -> bytes:
    """``/etc/svrchain/svr_restart.conf``: the trigger's settings, as data (the trigger never runs it)."""
    lines = [f"# {MARK} (fab install-svr-restart). Edit the inventory, not this file.",
             f"# The settings of {trigger_path(inv)}: key=value, one a line, read as data (never run);",
             "# 'web' is one web server: name address port user."]
    for key, value in trigger_settings(inv):
        if "\n" in value or "\r" in value:  # the inventory allows neither; one line per setting
            raise SvrchainError(f"{inv.source}: the trigger's {key} holds a line break")
        lines.append(f"{key}={value}")
    return ("\n".join(lines) + "\n").encode()
