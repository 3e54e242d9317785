"""The DB server's services, declared once (pure): what install-dbora and install-svr-restart write,
what verify checks and what uninstall removes all come from here.

Three services: the database's own (``db.service``: svrchain's wrapper around the site's script),
the trigger (``trigger.name``) and the watcher that follows every run of the database. Each has its
files for a SysV host and for a systemd host; each file carries the name verify shows for it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from svrchain.core import render, sysv
from svrchain.core.inventory import ORACLE_READY, Inventory
from svrchain.core.plan import FileSpec, FileState
from svrchain.facts import Fact
from svrchain.facts.chain import ChainFact
from svrchain.facts.db import HeldKeysFact, InitFact, KeyFact, KnownHostsFact, ServiceFact
from svrchain.ops import Change, command, files_change


def body(content: bool, make: Callable[..., bytes], *args: Any) -> bytes:
    """A file's content, rendered; without ``content`` nothing (the file's place is all that is wanted:
    the facts to read, the paths to check or remove, which the DB host's probe needs before the first
    template is even loaded)."""
    return make(*args) if content else b""


@dataclass(frozen=True)
class Service:
    """A service svrchain installs on the DB server, with its files per init system."""

    name: str  # the SysV service name (/etc/init.d/<name>)
    unit: str  # its systemd unit
    sysv: tuple[tuple[str, FileSpec], ...]  # (the name verify shows, the file)
    systemd: tuple[tuple[str, FileSpec], ...]

    def files(self, init: str) -> list[FileSpec]:
        """Its files on a host with that init system."""
        return [spec for _, spec in self.named(init)]

    def named(self, init: str) -> tuple[tuple[str, FileSpec], ...]:
        return self.sysv if init == "sysv" else self.systemd

    @property
    def init_script(self) -> str | None:
        """Its /etc/init.d script (registered with the runlevels), if svrchain writes one."""
        path = f"/etc/init.d/{self.name}"
        return path if any(spec.path == path for spec in self.files("sysv")) else None

    @property
    def unit_file(self) -> str | None:
        """Its unit file (enabled), if svrchain writes one."""
        path = f"/etc/systemd/system/{self.unit}"
        return path if any(spec.path == path for spec in self.files("systemd")) else None

    def other_files(self) -> list[str]:
        """Its files that are neither the init script nor the unit (scripts they run)."""
        paths = [spec.path for init in ("sysv", "systemd") for spec in self.files(init)]
        return [p for p in dict.fromkeys(paths) if p not in (self.init_script, self.unit_file)]


def dbora(inv: Inventory, content: bool = True) -> Service:
    """The database's service: the site's start script (unless db.unit names the site's own unit),
    Oracle's readiness check, and the init script or unit that runs it."""
    svc = inv.db.service
    common: list[tuple[str, FileSpec]] = []
    if not inv.db.unit:
        common.append((f"{svc} start script", FileSpec(render.impl_path(inv), body(content, render.dbora_impl, inv),
                                                       0o755, parent_mode=0o755)))
    if inv.db.oracle:  # the readiness check the trigger runs (instance OPEN, READ WRITE, service READY)
        common.append(("oracle readiness", FileSpec(ORACLE_READY, body(content, render.oracle_ready, inv), 0o755,
                                                    parent_mode=0o755)))
    if inv.db.unit:
        return Service(svc, render.db_unit(inv), (), tuple(common))
    init = (f"{svc} init script", FileSpec(f"/etc/init.d/{svc}", body(content, render.dbora_init, inv), 0o755))
    unit = (render.db_unit(inv), FileSpec(f"/etc/systemd/system/{render.db_unit(inv)}",
                                          body(content, render.dbora_service, inv), 0o644))
    return Service(svc, render.db_unit(inv), (*common, init), (*common, unit))


def trigger(inv: Inventory, content: bool = True) -> Service:
    """The trigger: its role check (with db.role: before the settings that name it), its settings
    (root's alone: a ready command may hold a password) and the static script, installed verbatim, in
    this order (the script reads the settings on its next start); then what runs it: an init script on
    SysV, a unit bound to the database's on systemd."""
    name, tunit = inv.trigger.name, render.trigger_unit(inv)
    role = [(f"{name} role check", FileSpec(render.role_path(inv), body(content, render.role_check, inv),
                                            0o755, parent_mode=0o755))] if inv.db.role else []
    common = (*role,
              (f"{name} settings", FileSpec(render.trigger_config_path(inv),
                                            body(content, render.trigger_config, inv), 0o600, parent_mode=0o755)),
              (f"{name} script", FileSpec(render.trigger_path(inv), body(content, render.trigger_program), 0o755,
                                          parent_mode=0o755)))
    init = (f"{name} init script", FileSpec(render.trigger_init_path(inv), body(content, render.trigger_init, inv),
                                            0o755))
    unit = (tunit, FileSpec(f"/etc/systemd/system/{tunit}", body(content, render.svr_restart_service, inv), 0o644))
    return Service(name, tunit, (*common, init), (*common, unit))


def watcher(inv: Inventory, content: bool = True) -> Service:
    """The watcher: runs the trigger's own "watch" loop as a daemon."""
    name, unit = render.watch_name(inv), render.watch_unit(inv)
    init = FileSpec(f"/etc/init.d/{name}", body(content, render.watch_init, inv), 0o755)
    return Service(name, unit, ((f"{name} script", init),),
                   ((unit, FileSpec(f"/etc/systemd/system/{unit}", body(content, render.watch_service, inv), 0o644)),))


def services(inv: Inventory, content: bool = True) -> list[Service]:
    """The DB server's services, in the order they start."""
    return [dbora(inv, content), trigger(inv, content), watcher(inv, content)]


def every_path(inv: Inventory) -> list[str]:
    """Every file the services may have on the DB server, whatever its init system (for uninstall)."""
    paths = [spec.path for s in services(inv, content=False) for init in ("sysv", "systemd")
             for spec in s.files(init)]
    return list(dict.fromkeys(paths))


@dataclass(frozen=True)
class ServiceFacts:
    """What install reads of a service on the DB server."""

    init: str  # "sysv" or "systemd"
    tool: str  # SysV registration tool ('' on systemd)
    states: dict[str, FileState]  # its files as found
    links: dict[str, str]  # its rc links by runlevel (SysV)
    enabled: str  # what `systemctl is-enabled` says of its unit (systemd)
    up: bool  # whether it runs now


def install(svc: Service, facts: ServiceFacts, running: bool = False, restart: bool = False) -> Change:
    """A service's files for the host's init system, registered for runlevels 3 4 5 (SysV) or enabled
    (systemd). With ``running`` it must also run: started when it does not, restarted when its
    files (or, with ``restart``, files it runs) change."""
    files = files_change(svc.files(facts.init), facts.states)
    changed = bool(files.files)
    run: list[str] = []
    if running and (changed or restart or not facts.up):
        verb = "restart" if changed or restart else "start"
        run = [f"/etc/init.d/{svc.name} {verb}" if facts.init == "sysv" else f"systemctl {verb} {svc.unit}"]
    if facts.init == "sysv":
        script = any(c.spec.path == svc.init_script and {"content", "create"} & set(c.reasons) for c in files.files)
        commands = sysv.register_commands(facts.tool, svc.name, facts.links, script)
        noop = f"/etc/init.d/{svc.name} in place, registered for 3 4 5 ({facts.tool})"
    else:
        commands = (["systemctl daemon-reload"] if changed else []) + (
            [f"systemctl enable {svc.unit}"] if facts.enabled != "enabled" else [])
        noop = f"{svc.unit} in place, enabled (systemd)"
    return Change(files.files, tuple(command(c) for c in commands + run), noop + ", running" * running)


def fact(svc: Service, running: bool = False) -> ServiceFact:
    """The fact install and verify read of a service (with ``running``, whether it runs too)."""
    paths = sorted({s.path for init in ("sysv", "systemd") for s in svc.files(init)})
    return ServiceFact(svc.name, svc.unit, paths, running)


def service_facts(inv: Inventory) -> list[ServiceFact]:
    """The facts of the DB server's three services (the watcher's with whether it runs)."""
    dbsvc, tsvc, wsvc = services(inv, content=False)
    return [fact(dbsvc), fact(tsvc), fact(wsvc, running=True)]


def selinux_paths(inv: Inventory) -> list[str]:
    """The DB server's files svrchain writes whose SELinux context matters (services, trigger, key)."""
    key_dir = inv.key.path.rsplit("/", 1)[0]
    return [*every_path(inv), inv.trigger.known_hosts, key_dir, inv.key.path, inv.key.path + ".pub"]


def chain_fact(inv: Inventory) -> ChainFact:
    """What verify reads of the chain at work on the DB server."""
    dbsvc, tsvc, wsvc = services(inv, content=False)
    return ChainFact(((dbsvc.name, dbsvc.unit), (tsvc.name, tsvc.unit), (wsvc.name, wsvc.unit)), selinux_paths(inv))


def db_facts(inv: Inventory) -> list[Fact]:
    """Every fact of the DB server that bootstrap's steps and its closing verify read (one probe)."""
    return [InitFact(), *service_facts(inv), KeyFact(), KnownHostsFact(), HeldKeysFact(), chain_fact(inv)]


def override_problem(name: str, script: bytes, override: FileState) -> str:
    """Why the host's /etc/chkconfig.d/<name> would make chkconfig register ``script`` otherwise; '' if not."""
    text = override.content.decode(errors="replace") if override.exists else None
    return sysv.override_conflict(name, script.decode(), text)
