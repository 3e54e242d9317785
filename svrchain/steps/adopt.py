"""Adopting a hand-made chain: retire the lines whose key is held on the DB server and that bypass the gate.

Sites often did the memo's procedure by hand before svrchain: a key on the DB server whose line on the
web servers runs the restart command directly. Left in place it restarts Apache outside the gate's
logging and serialization. bootstrap finds every line, in every account and wherever sshd reads
authorized_keys, whose key is held on the DB server (its private key or .pub found in an account's
~/.ssh or /etc/svrchain there); with ``--adopt`` it first proves svrchain's own key works on that web
server, then removes those lines (backed up, each file rewritten as its own account). A line whose key
is not proved held there is never removed, whatever its options look like, nor the admin's own key:
those are reported.
"""

from __future__ import annotations

from svrchain.core import homes
from svrchain.core.errors import HostError
from svrchain.core.homes import Bypasses, Legacy
from svrchain.core.plan import FileChange, Outcome
from svrchain.ops import Change
from svrchain.remote.apply import apply
from svrchain.remote.connection import Host
from svrchain.remote.facts import bypasses, held_keys
from svrchain.remote.group import Session
from svrchain.steps import account
from svrchain.steps.rotate import key_works


def retire_changes(web: Host, old: list[Legacy]) -> list[FileChange]:
    """The edits that take the ``old`` lines out, byte for byte otherwise, each as its own account."""
    files = [homes.KeysFile(u, p, ()) for u, p in sorted({(x.user, x.path) for x in old})]
    drop = {(x.path, x.line) for x in old}
    return account.without_lines(web, files, lambda path, line: (path, line.rstrip("\r\n")) in drop)


def kept(session: Session, found: Bypasses) -> str:
    """What is reported and left in place: the admin's own keys held on the DB server, lines that only
    look like a bypass, files that could not be inspected, and the DB server's files that could not tell."""
    db = session.db.name
    parts = [f"YOUR OWN KEY {x.where()}: kept; anyone root on {db} can log in with it: move it off {db}"
             for x in found.own]
    parts += [f"kept {x.where()}" for x in found.unproved]
    parts += [homes.unread_where(found.unread)] if found.unread else []
    unread = held_keys(session).unread
    parts += [f"not inspected on {db}: {'; '.join(unread[:5])}"] if unread else []
    return "; ".join(parts)


def adopt_step(session: Session, dry_run: bool, adopt: bool) -> None:
    """Report the lines whose key is held on the DB server and that bypass the gate; with ``adopt``,
    retire them once svrchain's key is proved on that web server. Lines whose key is not proved held
    there, and the admin's own keys, are reported and kept."""
    def one(web: Host) -> None:
        found = bypasses(session, web)
        note = kept(session, found)
        if not found.proved:
            session.report(Outcome(web.name, "adopt", "ok", note or "no other line's key is held on the DB server"))
            return
        where = "; ".join(x.where() for x in found.proved)
        if not adopt:
            session.report(Outcome(web.name, "adopt", "would change",
                                   f"{where}: it bypasses the gate; run again with --adopt to retire it"
                                   + (f"; {note}" if note else "")))
            return
        if not dry_run and not key_works(session, web, session.inv.key.path):
            raise HostError(f"{web.label}: svrchain's key does not get 'status' from {web.name} yet; the older "
                            "line(s) stay until it does")
        named = (f" (delete the private key on {session.db.name} once nothing else uses it)"
                 + (f"; {note}" if note else ""))
        change = Change(tuple(retire_changes(web, found.proved)), said=f"retire {where}{named}")
        apply(session, web, "adopt", change, dry_run)

    session.report_failures(session.each(session.webs, one, step="adopt"))
