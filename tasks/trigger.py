"""install-svr-restart: the trigger service on the DB server, ordered after the DB."""

from __future__ import annotations

from invoke import Context

from tasks import render
from tasks.base import svr_task
from tasks.dbora import install_init_script
from tasks.errors import SvrchainError
from tasks.plan import FileSpec
from tasks.remote import Session


def install_svr_restart_step(session: Session, dry_run: bool) -> None:
    """Write /etc/init.d/svr_restart and register it for 3, 4, 5 after the DB's script."""
    name = session.inv.trigger.name
    init_script = f"/etc/init.d/{name}"
    specs = [FileSpec(init_script, render.svr_restart(session.inv), 0o755)]
    install_init_script(session, "install-svr-restart", name, specs, init_script, dry_run)


@svr_task
def install_svr_restart(c: Context, dry_run: bool = False) -> None:
    """Install the trigger service svr_restart on the DB server (chkconfig: 345 99 1, after dbora).

    When started, at boot or by a DB restart, it waits (within db.ready.timeout) until the DB is
    ready, then SSHes with the restricted key to all web servers in parallel (BatchMode, pinned
    known_hosts, connect timeout, retries with backoff), logs each result to syslog and its log
    file, and exits non-zero if any web server failed. --dry-run shows the diff.
    """
    with Session.open() as s:
        try:
            install_svr_restart_step(s, dry_run)
        except SvrchainError as exc:
            s.fail(s.db.name, "install-svr-restart", exc)
        s.finish("install-svr-restart")
