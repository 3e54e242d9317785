"""gen-key and push-key: the DB server's restricted key, and its one line on every web server."""

from __future__ import annotations

from svrchain.core import authkeys, homes, render, tell
from svrchain.core.authkeys import PublicKey
from svrchain.core.errors import HostError, SvrchainError
from svrchain.core.plan import FileSpec, Outcome
from svrchain.facts.db import HeldKeysFact, KeyFact, KnownHostsFact
from svrchain.facts.web import WebFact, WebFacts
from svrchain.ops import Change, files_change
from svrchain.ops import key as ops_key
from svrchain.ops import web as ops_web
from svrchain.remote import sshauth
from svrchain.remote.apply import apply
from svrchain.remote.connection import Host
from svrchain.remote.facts import get
from svrchain.remote.group import Session
from svrchain.steps import account


def marker(session: Session) -> str:
    """The comment that names svrchain's key (and line) for this DB server and trigger."""
    return render.marker(session.inv)


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


def run_gen_key(rotate: bool = False, dry_run: bool = False) -> None:
    """What `fab gen-key` does (its flags and help: tasks/)."""
    with Session.open(lock=not dry_run) as s:
        s.run_steps("gen-key", [("gen-key", lambda: gen_key_step(s, dry_run, rotate))])


# --- push-key ---------------------------------------------------------------------------------

def db_public_key(session: Session) -> PublicKey | None:
    """The DB server's public key, read over SSH once per run (None when it does not exist yet)."""
    return get(session, session.db, KeyFact()).public_key()


def held_keys(session: Session) -> homes.HeldKeys:
    """The public keys held on the DB server (its accounts' ~/.ssh, /etc/svrchain), read once per run."""
    return get(session, session.db, HeldKeysFact())


def own_keys(session: Session) -> frozenset[str]:
    """The admin's own keys (connect.identity's, and every key the agent offers), as blobs."""
    return session.fact("own-keys", lambda: sshauth.own_blobs(session.dialer.auth))


def bypasses(session: Session, web: Host) -> homes.Bypasses:
    """The lines on ``web`` that the DB server's keys open around the gate (see homes.bypasses)."""
    inv, key = session.inv, db_public_key(session)
    return homes.bypasses(web_facts(session, web), (key.blob if key else None, marker(session)),
                          held_keys(session).keys, own_keys(session),
                          (inv.web.restart_command.split()[0], inv.db.from_addresses), session.db.name)


def web_facts(session: Session, web: Host) -> WebFacts:
    """What is known of ``web``'s accounts: web.user's home and authorized_keys (read as web.user),
    every account's authorized_keys, and the gate, sudo and host key facts.

    Read once per run: a later step (bootstrap's verify) reuses them unless this run changed the host.
    """
    return get(session, web, WebFact())


def expected_line(session: Session, key: PublicKey, ssh_version_text: str) -> str:
    """The authorized_keys line for ``key`` on a web server with that OpenSSH version."""
    return ops_web.restricted_line(session.inv, key, ssh_version_text)


def host_keys(web: Host, lines: tuple[str, ...]) -> list[PublicKey]:
    """The web server's own host keys, checked against the key the admin connection saw."""
    keys = []
    for line in lines:
        try:
            keys.append(authkeys.parse_public_key(line))
        except SvrchainError:
            continue
    seen = web.connection().client.get_transport().get_remote_server_key()
    if not any(k.blob == seen.get_base64() for k in keys):
        raise HostError(
            f"{web.label}: the host keys sshd reports do not include the one this connection saw; "
            "refusing to pin them"
        )
    return keys


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
        apply(session, web, "push-key", ops_web.push_key(inv, key, f, web.server_version()), dry_run)
        remove_stale(session, web, f, key.blob, dry_run)
        return pins

    results = session.each(session.webs, one)
    pinned: dict[str, list[str]] = {}
    for web, res in zip(session.webs, results, strict=True):
        if isinstance(res, HostError):
            session.fail(web.name, "push-key", res)
        else:
            pinned[web.name] = res
    pin_host_keys(session, pinned, dry_run)


def remove_stale(session: Session, web: Host, facts: WebFacts, blob: str | None, dry_run: bool) -> None:
    """Take svrchain's lines out of every account but web.user (left by an earlier web.user), each
    file rewritten as its own account; one "stale-lines" line when there were any."""
    files = homes.stale(facts, blob, marker(session), facts.user)
    changes = account.without_ours(web, files, blob, marker(session))
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


def run_push_key(dry_run: bool = False) -> None:
    """What `fab push-key` does (its flags and help: tasks/)."""
    with Session.open(lock=not dry_run) as s:
        s.prefetch(s.webs, facts=lambda w: web_facts(s, w))
        s.run_steps("push-key", [("push-key", lambda: push_key_step(s, dry_run))])
