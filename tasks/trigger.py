"""install-svr-restart: the trigger service on the DB server, ordered after the DB."""

from __future__ import annotations

from invoke import Context

from tasks import render
from tasks.base import svr_task
from tasks.dbora import install_service
from tasks.plan import FileSpec
from tasks.remote import Session


def install_svr_restart_step(session: Session, dry_run: bool) -> None:
    """Install the trigger for the host's init system, ordered after (and bound to) the DB."""
    inv = session.inv
    script = render.svr_restart(inv)
    sysv_specs = [FileSpec(render.trigger_script(inv, "sysv"), script, 0o755)]
    systemd_specs = [
        FileSpec(render.trigger_script(inv, "systemd"), script, 0o755, parent_mode=0o755),
        FileSpec(f"/etc/systemd/system/{render.trigger_unit(inv)}", render.svr_restart_service(inv), 0o644),
    ]
    trigger = install_service(session, "install-svr-restart", inv.trigger.name, render.trigger_unit(inv),
                              sysv_specs, systemd_specs, dry_run)
    # The watcher runs the trigger's own "watch" loop: restarted whenever the trigger changed.
    name = render.watch_name(inv)
    install_service(
        session, "install-watcher", name, render.watch_unit(inv),
        [FileSpec(f"/etc/init.d/{name}", render.watch_init(inv), 0o755)],
        [FileSpec(f"/etc/systemd/system/{render.watch_unit(inv)}", render.watch_service(inv), 0o644)],
        dry_run, running=True, restart=trigger.status == "changed")


@svr_task
def install_svr_restart(c: Context, dry_run: bool = False) -> None:
    """Install the trigger service svr_restart on the DB server, ordered after the DB.

    SysV: /etc/init.d/svr_restart (chkconfig: 345 99 1, Required-Start: dbora). systemd:
    svr-restart.service, After= and PartOf= the DB's unit and wanted by it, so a restart, a
    stop/start and a boot of the DB all run it. When it starts it waits (within db.ready.timeout)
    until the DB is ready, then SSHes with the restricted key to all web servers in parallel
    (BatchMode, pinned known_hosts, connect timeout, retries with backoff), logs each result to
    syslog and its log file, and exits non-zero if any web server failed. --dry-run shows the diff.
    """
    with Session.open(lock=not dry_run) as s:
        s.run_steps("install-svr-restart", [("install-svr-restart", lambda: install_svr_restart_step(s, dry_run))])
