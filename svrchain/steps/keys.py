"""gen-key and push-key: the DB server's restricted key, and its one line on every web server."""

from __future__ import annotations

from svrchain.core import authkeys, homes, render, tell
from svrchain.core.errors import HostError, SvrchainError
from svrchain.core.plan import FileSpec, Outcome
from svrchain.facts.db import KeyFact, KnownHostsFact
from svrchain.facts.web import WebFacts
from svrchain.ops import Change, files_change
from svrchain.ops import key as ops_key
from svrchain.ops import web as ops_web
from svrchain.remote.apply import apply
from svrchain.remote.connection import Host
from svrchain.remote.facts import db_public_key, get, host_keys, web_facts
from svrchain.remote.group import Session, on_hosts
from svrchain.steps import account

# --- gen-key ----------------------------------------------------------------------------------


def gen_key_step(session: Session, dry_run: bool, rotate: bool = False) -> None:
    """Make sure the DB server has the dedicated, passphrase-less key (mode 600)."""
    host = session.db
    facts = get(session, host, KeyFact())
    try:
        change = ops_key.key(session.inv, facts, rotate)
    except SvrchainError as exc:
        raise HostError(f"{host.label}: {exc}") from None
    apply(session, host, "gen-key", change, dry_run)


@on_hosts(lock=True)
def run_gen_key(s: Session, rotate: bool = False, dry_run: bool = False) -> None:
    """What `fab gen-key` does (its flags and help: tasks/)."""
    s.run_steps("gen-key", [("gen-key", lambda: gen_key_step(s, dry_run, rotate))])


# --- push-key ---------------------------------------------------------------------------------

def push_key_step(session: Session, dry_run: bool) -> None:
    """Install the restricted line on every web server and pin their host keys on the DB server."""
    inv = session.inv
    key = db_public_key(session)
    if key is None and not dry_run:
        raise HostError(f"{session.db.label}: {inv.key.path}.pub does not exist; run {tell.command('gen-key')} first")

    def one(web: Host) -> list[str]:
        f = web_facts(session, web)
        if account.ensure_account(session, web, f, dry_run):
            f = web_facts(session, web)  # read again: the account is new
        if f.unsafe:
            raise homes.refusal(web.label, f)
        pins = [authkeys.known_hosts_line(web.address, web.port, k) for k in host_keys(web, f.hostkeys)]
        if key is None:
            session.report(Outcome(web.name, "push-key", "would change",
                                   f"{f.keys.path}: add the line of the key gen-key creates"))
            return pins
        change = ops_web.push_key(inv, key, f, web.server_version(), session.markers_of(web))
        apply(session, web, "push-key", change, dry_run)
        remove_stale(session, web, f, key.blob, dry_run)
        return pins

    results = session.each(session.webs, one, step="push-key")
    session.report_failures(results)
    pin_host_keys(session, results.succeeded, dry_run)


def remove_stale(session: Session, web: Host, facts: WebFacts, blob: str | None, dry_run: bool) -> None:
    """Take svrchain's lines out of every account but web.user (left by an earlier web.user), each
    file rewritten as its own account; one "stale-lines" line when there were any."""
    files = homes.stale(facts, blob, render.marker(session.inv), facts.user)
    changes = account.without_ours(web, files, blob, render.marker(session.inv))
    if changes:
        where = ", ".join(f"{c.spec.runas} ({c.spec.path})" for c in changes)
        said = f"remove svrchain's line from {where}: web.user is {facts.user}"
        apply(session, web, "stale-lines", Change(tuple(changes), said=said), dry_run)


def pin_host_keys(session: Session, pinned: dict[str, list[str]], dry_run: bool) -> None:
    """Write the trigger's known_hosts on the DB server: the web servers' keys, read from themselves.

    Lines of web servers that could not be read this run (or not in --limit) are kept as they were.
    """
    path = session.inv.trigger.known_hosts
    found = get(session, session.db, KnownHostsFact())
    old = found.content.decode() if found.exists else ""
    lines: list[str] = []
    for web in session.all_webs:
        if web.name in pinned:
            lines += pinned[web.name]
        else:
            name = web.address if web.port == 22 else f"[{web.address}]:{web.port}"
            lines += [x for x in old.splitlines() if x.split(" ", 1)[0] == name]
    spec = FileSpec(path, "".join(x + "\n" for x in lines).encode(), 0o644, parent_mode=0o755)
    noop = f"{path}: {len(lines)} key(s) of {len(pinned)} web server(s)"
    apply(session, session.db, "pin-host-keys", files_change([spec], {path: found}, noop=noop), dry_run)


@on_hosts(lock=True)
def run_push_key(s: Session, dry_run: bool = False) -> None:
    """What `fab push-key` does (its flags and help: tasks/)."""
    s.prefetch(s.webs, facts=lambda w: web_facts(s, w))
    s.run_steps("push-key", [("push-key", lambda: push_key_step(s, dry_run))])
