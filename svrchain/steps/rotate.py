"""rotate-key: a new key on the DB server, proved on every web server before the old one goes."""

from __future__ import annotations

import shlex
from typing import NoReturn

from svrchain.core import authkeys, homes, render, tell
from svrchain.core.errors import HostError
from svrchain.core.plan import Outcome
from svrchain.ops import files_change
from svrchain.ops import web as ops_web
from svrchain.ops.key import keygen_script, proof_command, rotation_type
from svrchain.remote.apply import apply
from svrchain.remote.connection import Host
from svrchain.remote.facts import db_public_key, web_facts
from svrchain.remote.group import Session, on_hosts


def _set_line(session: Session, web: Host, step: str, edit) -> None:
    """Rewrite ``web``'s authorized_keys with ``edit(text) -> text`` (as web.user, atomic, backed up)."""
    f = web_facts(session, web)
    if f.unsafe:
        raise homes.refusal(web.label, f)
    spec = homes.spec(f.keys, session.inv.web.user, f.group, edit(f.keys.content.decode("utf-8", "surrogateescape")))
    apply(session, web, step, files_change([spec], {spec.path: f.keys}, noop=f.keys.path), False)


def key_works(session: Session, web: Host, key_path: str) -> bool:
    """Whether ``key_path`` on the DB server gets this web server's gate to answer ``status``."""
    return session.db.run(proof_command(session.inv, web.address, web.port, key_path), timeout=60).ok


def rotate_key_step(session: Session, dry_run: bool) -> None:
    """New key beside the old; its line on every web server; proved; swapped in; old lines removed."""
    inv, db = session.inv, session.db
    old = db_public_key(session)
    if old is None:
        raise HostError(f"{db.label}: there is no key to rotate; run {tell.command('gen-key')} first")
    new_path = inv.key.path + ".new"
    if dry_run:
        session.report(Outcome(db.name, "rotate-key", "would change",
                               f"new key {new_path}; its line on {len(session.webs)} web server(s) beside the "
                               f"old; each proved with 'status'; then {inv.key.path} replaced and old lines removed"))
        return
    mark = render.marker(inv)
    db.check(keygen_script(rotation_type(inv, old), inv.key.bits), new_path, mark, what="ssh-keygen")
    new = authkeys.parse_public_key(db.check(f"cat {shlex.quote(new_path)}.pub", what="reading the new key").stdout)
    session.report(Outcome(db.name, "rotate-key", "changed", f"new key {new.fingerprint}"))

    def add(web: Host) -> bool:
        line = ops_web.restricted_line(session.inv, new, web.server_version())
        _set_line(session, web, "add-new-line",
                  lambda t: authkeys.merge_line(t, line, new.blob, mark, keep=frozenset({old.blob})))
        return key_works(session, web, new_path)

    added = session.each(session.webs, add, step="add-new-line")
    session.report_failures(added)
    failed = [w for w in session.webs if added.succeeded.get(w.name) is not True]
    if failed:
        roll_back(session, failed, old, new, new_path)
    k = shlex.quote(inv.key.path)
    db.check(f"mv -f {shlex.quote(new_path)} {k} && mv -f {shlex.quote(new_path)}.pub {k}.pub",
             what="putting the new key in place")
    session.report(Outcome(db.name, "rotate-key", "changed", f"{inv.key.path} is now {new.fingerprint}"))
    removed = session.each(session.webs, lambda w: _set_line(session, w, "remove-old-line",
                                                             lambda t: authkeys.remove_lines(t, old.blob, None)),
                           step="remove-old-line")
    session.report_failures(removed, f"the old key's line is still there: once fixed, run {tell.command('push-key')}")


def roll_back(session: Session, failed: list[Host], old: authkeys.PublicKey, new: authkeys.PublicKey,
              new_path: str) -> NoReturn:
    """The new key's lines go from every web server and the new key from the DB server; raise the
    error that stops the rotation (naming any web server where the new key's line could not go)."""
    rolled = session.each(session.webs, lambda w: _set_line(session, w, "rollback",
                                                            lambda t: authkeys.remove_lines(t, new.blob, None)),
                          step="rollback")
    stuck = session.report_failures(
        rolled, f"the new key's unused line is still there: once fixed, run {tell.command('push-key')}")
    session.db.run(f"rm -f {shlex.quote(new_path)} {shlex.quote(new_path)}.pub")
    names = ", ".join(w.name for w in failed)
    where = "everywhere" if not stuck else f"but the new key's line is left on {', '.join(stuck)}"
    raise HostError(f"{session.db.label}: rotation stopped: the new key did not work on {names}; the old key "
                    f"{old.fingerprint} is still in place {where}")


@on_hosts(lock=True)
def run_rotate_key(s: Session, dry_run: bool = False) -> None:
    """What `fab rotate-key` does (its flags and help: tasks/)."""
    s.prefetch(s.webs, facts=lambda w: web_facts(s, w))
    s.run_steps("rotate-key", [("rotate-key", lambda: rotate_key_step(s, dry_run))])
