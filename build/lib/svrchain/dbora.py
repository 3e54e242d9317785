"""install-dbora: the DB's start script, managed by the init system for runlevels 3, 4, 5.

On SysV hosts: ``/etc/init.d/<service>`` with ``# chkconfig: 345 98 11`` and an LSB block,
registered with chkconfig or update-rc.d. On systemd hosts: ``<service>.service`` wrapping the same
script, enabled (or the site's own unit, named by ``db.unit``).
"""

from __future__ import annotations

from svrchain import render, sysv
from svrchain.inventory import ORACLE_READY
from svrchain.plan import FileChange, FileSpec, FileState, Outcome
from svrchain.remote import Host, HostError, Session, apply_files


def detect_init(session: Session, host: Host, results: dict) -> tuple[str, str]:
    """(init system, SysV registration tool or '') of a host: the inventory's choice, or detected."""
    setting = session.inv.db.init
    found = results["init"].stdout.strip() or "sysv"
    init = found if setting == "auto" else setting
    if init == "systemd":
        return init, ""
    if session.inv.db.unit:
        raise HostError(f"{host.label}: db.unit {session.inv.db.unit} needs systemd, but this host boots "
                        "with SysV init; use db.script or db.oracle instead")
    tool = sysv.tool_name(results["tool"].stdout)
    if not tool:
        raise HostError(
            f"{host.label}: neither chkconfig nor update-rc.d is installed; install one (Debian: "
            "init-system-helpers + insserv) to register services"
        )
    return init, tool


def override_problem(name: str, script: bytes, override: FileState) -> str:
    """Why the host's /etc/chkconfig.d/<name> would make chkconfig register ``script`` otherwise; '' if not."""
    text = override.content.decode(errors="replace") if override.exists else None
    return sysv.override_conflict(name, script.decode(), text)


def check_override(host: Host, name: str, script: bytes, override: FileState) -> None:
    """Refuse, in one line, to register a service that chkconfig would register from a different override
    (each run would register it again, never as svrchain installs it)."""
    why = override_problem(name, script, override)
    if why:
        raise HostError(f"{host.label}: {why}")


def install_service(session: Session, step: str, name: str, unit: str, sysv_specs: list[FileSpec],
                    systemd_specs: list[FileSpec], dry_run: bool, running: bool = False,
                    restart: bool = False) -> Outcome:
    """Write a service's files on the DB host for its init system, and register/enable it. With
    ``running`` the service must also run: started when it does not, restarted when its files (or,
    with ``restart``, files it runs) changed."""
    host = session.db
    override = f"{sysv.OVERRIDES}/{name}"
    paths = sorted({s.path for s in sysv_specs + systemd_specs} | {override})
    up = {"up": f"if [ -d /run/systemd/system ]; then systemctl is-active {unit}; else /etc/init.d/{name} status; fi"}
    states, r = host.probe(paths, {**sysv.PROBE, "enabled": f"systemctl is-enabled {unit}", **(up if running else {})})
    init, tool = detect_init(session, host, r)

    def run_it(changes: list[FileChange]) -> list[str]:
        if not running or (not (changes or restart) and r["up"].ok):
            return []
        verb = "restart" if changes or restart else "start"
        return [f"/etc/init.d/{name} {verb}" if init == "sysv" else f"systemctl {verb} {unit}"]

    if init == "sysv":
        links = sysv.parse_links(r["links"].stdout).get(name, {})
        script = f"/etc/init.d/{name}"
        if tool == "chkconfig":
            check_override(host, name, next(s.content for s in sysv_specs if s.path == script), states[override])

        def register(changes: list[FileChange]) -> list[str]:
            changed = any(c.spec.path == script and {"content", "create"} & set(c.reasons) for c in changes)
            return sysv.register_commands(tool, name, links, changed) + run_it(changes)

        return apply_files(session, host, step, sysv_specs, states, dry_run, after=register,
                           ok_detail=f"{script} in place, registered for 3 4 5 ({tool})" + (", running" * running))
    enabled = r["enabled"].stdout.strip()
    if not systemd_specs and (enabled in ("", "not-found") or "No such file" in enabled):
        raise HostError(f"{host.label}: the unit {unit} does not exist; check db.unit in {session.inv.source}")

    def enable(changes: list[FileChange]) -> list[str]:
        cmds = ["systemctl daemon-reload"] if changes else []
        return cmds + ([f"systemctl enable {unit}"] if enabled != "enabled" else []) + run_it(changes)

    return apply_files(session, host, step, systemd_specs, states, dry_run, after=enable,
                       ok_detail=f"{unit} in place, enabled (systemd)" + (", running" * running))


def install_dbora_step(session: Session, dry_run: bool) -> None:
    """Install the site's start script and its init script or unit; register it for 3, 4, 5."""
    inv = session.inv
    service = inv.db.service
    impl = [] if inv.db.unit else [FileSpec(render.impl_path(inv), render.dbora_impl(inv), 0o755, parent_mode=0o755)]
    if inv.db.oracle:  # the readiness check the trigger runs (instance OPEN, READ WRITE, service READY)
        impl.append(FileSpec(ORACLE_READY, render.oracle_ready(inv), 0o755, parent_mode=0o755))
    sysv_specs = [*impl, FileSpec(f"/etc/init.d/{service}", render.dbora_init(inv), 0o755)] if not inv.db.unit else []
    systemd_specs = [] if inv.db.unit else [
        *impl, FileSpec(f"/etc/systemd/system/{service}.service", render.dbora_service(inv), 0o644)]
    install_service(session, "install-dbora", service, render.db_unit(inv), sysv_specs, systemd_specs, dry_run)


def run_install_dbora(dry_run: bool = False) -> None:
    """What `fab install-dbora` does (its flags and help: tasks/)."""
    with Session.open(lock=not dry_run) as s:
        s.run_steps("install-dbora", [("install-dbora", lambda: install_dbora_step(s, dry_run))])
