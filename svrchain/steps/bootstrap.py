"""bootstrap: every step in order, then verify."""

from __future__ import annotations

from svrchain.remote.group import Session, on_hosts


@on_hosts(lock=True)
def run_bootstrap(s: Session, dry_run: bool = False, adopt: bool = False) -> None:
    """What `fab bootstrap` does (its flags and help: tasks/)."""
    # The DB host's probe (every DB fact the steps and the closing verify read, in one round trip: the
    # run's longest wait) starts as soon as its lock is held, ahead of the web servers' connections;
    # the steps are imported while the probes run (issue 23: start fast).
    s.connect_db_first(then=lambda: _read_db_facts(s))
    from svrchain.remote.facts import web_facts
    s.prefetch(s.webs, facts=lambda w: web_facts(s, w))
    from svrchain.steps.adopt import adopt_step
    from svrchain.steps.dbora import install_dbora_step
    from svrchain.steps.keys import gen_key_step, push_key_step
    from svrchain.steps.trigger import install_svr_restart_step
    from svrchain.steps.verify import conclude, verify_step

    steps = [("install-dbora", install_dbora_step), ("gen-key", gen_key_step), ("push-key", push_key_step),
             ("install-svr-restart", install_svr_restart_step)]
    steps = [(name, lambda step=step: step(s, dry_run)) for name, step in steps]
    s.run_steps("bootstrap", [*steps, ("adopt", lambda: adopt_step(s, dry_run, adopt))])
    if dry_run:
        return
    conclude("bootstrap: verify", verify_step(s, handover_gap=False))


def _read_db_facts(s: Session) -> None:
    """Start reading, in the background, every DB fact bootstrap's steps and its verify read (one probe)."""
    from svrchain.ops.db import db_facts
    from svrchain.remote.facts import prefetch

    prefetch(s, s.db, db_facts(s.inv))
