"""install-dbora: the DB start script, with its chkconfig/LSB header, registered for 3, 4, 5."""

from __future__ import annotations

from invoke import Context

from tasks import render, sysv
from tasks.base import svr_task
from tasks.errors import SvrchainError
from tasks.plan import FileChange, FileSpec
from tasks.remote import Host, Session, apply_files


def detect_init(session: Session, host: Host, results: dict) -> tuple[str, str]:
    """(init system, registration tool) of a host: the inventory's choice, or what is found."""
    setting = session.inv.db.init
    found = results["init"].stdout.strip() or "sysv"
    init = found if setting == "auto" else setting
    if init == "systemd":
        raise SvrchainError(
            f"{host.label}: init system 'systemd' is not supported yet (issue 4); set db.init: sysv "
            f"in {session.inv.source} only if the host really boots with SysV init"
        )
    tool = sysv.tool_name(results["tool"].stdout)
    if not tool:
        raise SvrchainError(
            f"{host.label}: neither chkconfig nor update-rc.d is installed; install one (Debian: "
            "init-system-helpers + insserv) to register services"
        )
    return init, tool


def install_init_script(session: Session, step: str, service: str, specs: list[FileSpec],
                        init_script: str, dry_run: bool) -> None:
    """Write a service's files on the DB host and register its init script; report the step."""
    host = session.db
    states, results = host.probe([s.path for s in specs], sysv.PROBE)
    _, tool = detect_init(session, host, results)
    links = sysv.parse_links(results["links"].stdout).get(service, {})

    def register(changes: list[FileChange]) -> list[str]:
        changed = any(c.spec.path == init_script and {"content", "create"} & set(c.reasons) for c in changes)
        return sysv.register_commands(tool, service, links, changed)

    apply_files(session, host, step, specs, states, dry_run, after=register,
                ok_detail=f"{init_script} in place, registered for 3 4 5 ({tool})")


def install_dbora_step(session: Session, dry_run: bool) -> None:
    """Install the site's start script and its init wrapper; register it for runlevels 3, 4, 5."""
    inv = session.inv
    service = inv.db.service
    init_script = f"/etc/init.d/{service}"
    specs = [
        FileSpec(render.impl_path(inv), render.dbora_impl(inv), 0o755, parent_mode=0o755),
        FileSpec(init_script, render.dbora_init(inv), 0o755),
    ]
    install_init_script(session, "install-dbora", service, specs, init_script, dry_run)


@svr_task
def install_dbora(c: Context, dry_run: bool = False) -> None:
    """Install the DB start script (chkconfig: 345 98 11 + LSB header) and register it for 3, 4, 5.

    The site's script (db.script, or the built-in Oracle dbora template) goes to
    /usr/local/lib/svrchain/<service>; /etc/init.d/<service> runs it and, on a restart outside a
    boot, starts the svr_restart trigger. --dry-run shows the diff and changes nothing.
    """
    with Session.open() as s:
        try:
            install_dbora_step(s, dry_run)
        except SvrchainError as exc:
            s.fail(s.db.name, "install-dbora", exc)
        s.finish("install-dbora")
