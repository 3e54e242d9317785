"""bootstrap: every step in order, then verify."""

from __future__ import annotations

from invoke import Context

from tasks.adopt import adopt_step
from tasks.base import svr_task
from tasks.dbora import install_dbora_step
from tasks.errors import SvrchainError
from tasks.keys import gen_key_step, push_key_step, web_facts
from tasks.remote import Session
from tasks.trigger import install_svr_restart_step
from tasks.verify import verify_step

STEPS = (
    ("install-dbora", install_dbora_step),
    ("gen-key", lambda s, dry: gen_key_step(s, dry)),
    ("push-key", push_key_step),
    ("install-svr-restart", install_svr_restart_step),
)


@svr_task
def bootstrap(c: Context, dry_run: bool = False, adopt: bool = False) -> None:
    """Set up the whole chain: install-dbora, gen-key, push-key, install-svr-restart, then verify.

    Prints changed/ok per host and step; a second run changes nothing. --dry-run shows every
    change (with diffs) and touches nothing. Older key lines that restart the web server from the
    DB server around the gate (a chain set up by hand) are reported; --adopt retires them once
    svrchain's own key is proved on that web server (backed up; the old private key is named).
    """
    with Session.open(lock=not dry_run) as s:
        s.prefetch([s.db])
        s.prefetch(s.webs, facts=lambda w: web_facts(s, w))
        steps = [(name, lambda step=step: step(s, dry_run)) for name, step in STEPS]
        s.run_steps("bootstrap", [*steps, ("adopt", lambda: adopt_step(s, dry_run, adopt))])
        if dry_run:
            return
        gaps = [c for c in verify_step(s) if not c.ok]
        if gaps:
            raise SvrchainError(f"bootstrap: verify found {len(gaps)} gap(s)")
