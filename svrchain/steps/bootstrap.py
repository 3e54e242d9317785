"""bootstrap: every step in order, then verify."""

from __future__ import annotations

from svrchain.remote.group import Session, on_hosts


@on_hosts(lock=True)
def run_bootstrap(s: Session, dry_run: bool = False, adopt: bool = False) -> None:
    """What `fab bootstrap` does (its flags and help: tasks/)."""
    s.connect_db_first()
    # The steps are imported while the connections open (issue 23: start fast).
    from svrchain.ops.db import db_facts
    from svrchain.remote.facts import prefetch, web_facts
    from svrchain.steps.adopt import adopt_step
    from svrchain.steps.dbora import install_dbora_step
    from svrchain.steps.keys import gen_key_step, push_key_step
    from svrchain.steps.trigger import install_svr_restart_step
    from svrchain.steps.verify import conclude, verify_step

    prefetch(s, s.db, db_facts(s.inv))  # every DB fact the steps and the closing verify read: one probe
    s.prefetch(s.webs, facts=lambda w: web_facts(s, w))
    steps = [("install-dbora", install_dbora_step), ("gen-key", gen_key_step), ("push-key", push_key_step),
             ("install-svr-restart", install_svr_restart_step)]
    steps = [(name, lambda step=step: step(s, dry_run)) for name, step in steps]
    s.run_steps("bootstrap", [*steps, ("adopt", lambda: adopt_step(s, dry_run, adopt))])
    if dry_run:
        return
    conclude("bootstrap: verify", verify_step(s, handover_gap=False))
