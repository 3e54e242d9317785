"""bootstrap: every step in order, then verify."""

from __future__ import annotations

from svrchain.ops.db import db_facts
from svrchain.remote.facts import prefetch, web_facts
from svrchain.remote.group import Session
from svrchain.steps.adopt import adopt_step
from svrchain.steps.dbora import install_dbora_step
from svrchain.steps.keys import gen_key_step, push_key_step
from svrchain.steps.trigger import install_svr_restart_step
from svrchain.steps.verify import conclude, verify_step

STEPS = (
    ("install-dbora", install_dbora_step),
    ("gen-key", lambda s, dry: gen_key_step(s, dry)),
    ("push-key", push_key_step),
    ("install-svr-restart", install_svr_restart_step),
)


def run_bootstrap(dry_run: bool = False, adopt: bool = False) -> None:
    """What `fab bootstrap` does (its flags and help: tasks/)."""
    with Session.open(lock=not dry_run) as s:
        prefetch(s, s.db, db_facts(s.inv))  # every DB fact the steps and the closing verify read: one probe
        s.prefetch(s.webs, facts=lambda w: web_facts(s, w))
        steps = [(name, lambda step=step: step(s, dry_run)) for name, step in STEPS]
        s.run_steps("bootstrap", [*steps, ("adopt", lambda: adopt_step(s, dry_run, adopt))])
        if dry_run:
            return
        conclude("bootstrap: verify", verify_step(s, handover_gap=False))
