"""install-svr-restart: the trigger service on the DB server, ordered after the DB.

The trigger is one static script (``svrchain/files/svr_restart.sh``, installed verbatim) and its
settings file, rendered from the inventory; the SysV init script and the systemd unit only run it.
A host set up by an earlier svrchain (the whole trigger rendered into the init script) is brought to
this layout by the same step: the settings and the script are written before the wrapper replaces
the old script, and nothing is started but the watcher (which finds the current run followed).
"""

from __future__ import annotations

from svrchain import render
from svrchain.dbora import install_service
from svrchain.inventory import Inventory
from svrchain.plan import FileSpec
from svrchain.remote import Session


def trigger_files(inv: Inventory) -> list[FileSpec]:
    """The trigger on every host: its settings first (the script reads them on its next start), then
    the static script. The settings are root's alone (a ready command may hold a password)."""
    return [
        FileSpec(render.trigger_config_path(inv), render.trigger_config(inv), 0o600, parent_mode=0o755),
        FileSpec(render.trigger_script(inv), render.trigger_program(), 0o755, parent_mode=0o755),
    ]


def install_svr_restart_step(session: Session, dry_run: bool) -> None:
    """Install the trigger for the host's init system, ordered after (and bound to) the DB."""
    inv = session.inv
    sysv_specs = [*trigger_files(inv), FileSpec(render.trigger_init_path(inv), render.trigger_init(inv), 0o755)]
    systemd_specs = [
        *trigger_files(inv),
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
