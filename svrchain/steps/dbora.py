"""install-dbora: the DB's start script, managed by the init system for runlevels 3, 4, 5.

On SysV hosts: ``/etc/init.d/<service>`` with ``# chkconfig: 345 98 11`` and an LSB block,
registered with chkconfig or update-rc.d. On systemd hosts: ``<service>.service`` wrapping the same
script, enabled (or the site's own unit, named by ``db.unit``).
"""

from __future__ import annotations

from svrchain.core.errors import HostError
from svrchain.core.plan import FileState, Outcome
from svrchain.facts.db import InitFact, InitSystem, init_of, override_path
from svrchain.ops import db as ops_db
from svrchain.remote.apply import apply
from svrchain.remote.connection import Host
from svrchain.remote.facts import gather
from svrchain.remote.group import Session, on_hosts


def detect_init(session: Session, host: Host, found: InitSystem) -> tuple[str, str]:
    """(init system, SysV registration tool or '') of a host: the inventory's choice, or detected."""
    return init_of(session.inv, host.label, found)


def check_override(host: Host, name: str, script: bytes, override: FileState) -> None:
    """Refuse, in one line, to register a service that chkconfig would register from a different override
    (each run would register it again, never as svrchain installs it)."""
    why = ops_db.override_problem(name, script, override)
    if why:
        raise HostError(f"{host.label}: {why}")


def install_service(session: Session, step: str, svc: ops_db.Service, dry_run: bool, running: bool = False,
                    restart: bool = False) -> Outcome:
    """Read a service's state on the DB host, then apply ``ops_db.install``'s plan for it."""
    host, name, unit = session.db, svc.name, svc.unit
    found, state = gather(session, host, [InitFact(), ops_db.fact(svc, running)])
    init, tool = detect_init(session, host, found)
    enabled, states = state.enabled, state.states
    if init == "sysv" and tool == "chkconfig":
        check_override(host, name, next(s.content for s in svc.files("sysv") if s.path == svc.init_script),
                       states[override_path(name)])
    if init == "systemd" and not svc.files("systemd") and (
            enabled in ("", "not-found") or "No such file" in enabled):
        raise HostError(f"{host.label}: the unit {unit} does not exist; check db.unit in {session.inv.source}")
    facts = ops_db.ServiceFacts(init, tool, states, found.last_links(name), enabled, running and state.up)
    return apply(session, host, step, ops_db.install(svc, facts, running, restart), dry_run)


def install_dbora_step(session: Session, dry_run: bool) -> None:
    """Install the site's start script and its init script or unit; register it for 3, 4, 5."""
    svc = ops_db.dbora(session.inv)
    install_service(session, "install-dbora", svc, dry_run)


@on_hosts(lock=True)
def run_install_dbora(s: Session, dry_run: bool = False) -> None:
    """What `fab install-dbora` does (its flags and help: tasks/)."""
    s.run_steps("install-dbora", [("install-dbora", lambda: install_dbora_step(s, dry_run))])
