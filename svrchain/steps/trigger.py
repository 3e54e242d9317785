"""install-svr-restart: the trigger service on the DB server, ordered after the DB.

The trigger is one static script (``svrchain/files/svr_restart.sh``, installed verbatim) and its
settings file, rendered from the inventory; the SysV init script and the systemd unit only run it
(their files: ``svrchain.ops.db.trigger``).
A host set up by an earlier svrchain (the whole trigger rendered into the init script) is brought to
this layout by the same step: the settings and the script are written before the wrapper replaces
the old script, and nothing is started but the watcher (which finds the current run followed).
"""

from __future__ import annotations

from svrchain.ops import db as ops_db
from svrchain.remote.group import Session, on_hosts
from svrchain.steps.dbora import install_service


def install_svr_restart_step(session: Session, dry_run: bool) -> None:
    """Install the trigger for the host's init system, ordered after (and bound to) the DB."""
    t, w = ops_db.trigger(session.inv), ops_db.watcher(session.inv)
    trigger = install_service(session, "install-svr-restart", t, dry_run)
    # The watcher runs the trigger's own "watch" loop: restarted whenever the trigger changed.
    install_service(session, "install-watcher", w, dry_run, running=True, restart=trigger.status == "changed")


@on_hosts(lock=True)
def run_install_svr_restart(s: Session, dry_run: bool = False) -> None:
    """What `fab install-svr-restart` does (its flags and help: tasks/)."""
    s.run_steps("install-svr-restart", [("install-svr-restart", lambda: install_svr_restart_step(s, dry_run))])
