"""install-svr-restart: the trigger service on the DB server, ordered after the DB."""

from __future__ import annotations

from svrchain import render
from svrchain.dbora import install_service
from svrchain.plan import FileSpec
from svrchain.remote import Session


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


def run_install_svr_restart(dry_run: bool = False) -> None:
    """What `fab install-svr-restart` does (its flags and help: tasks/)."""
    with Session.open(lock=not dry_run) as s:
        s.run_steps("install-svr-restart", [("install-svr-restart", lambda: install_svr_restart_step(s, dry_run))])
