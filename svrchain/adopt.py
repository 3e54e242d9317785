"""Adopting a hand-made chain: retire the older key lines that restart the web server around the gate.

Sites often did the memo's procedure by hand before svrchain: a key on the DB server whose line on the
web servers runs the restart command directly, from the DB's address. Left in place it restarts
Apache outside the gate's logging and serialization. bootstrap finds every such line (in every
account, by its forced command and its ``from=``); with ``--adopt`` it first proves svrchain's own
key works on that web server, then removes the old lines (backed up, each file rewritten as its own
account) and names the old key's private half on the DB server, which it leaves to the admin.
"""

from __future__ import annotations

from svrchain import account, authkeys, homes
from svrchain.errors import HostError
from svrchain.homes import Legacy
from svrchain.keys import db_public_key, marker, web_facts
from svrchain.plan import FileChange, Outcome
from svrchain.remote.apply import apply_changes
from svrchain.remote.connection import Host
from svrchain.remote.files import probe
from svrchain.remote.group import Session
from svrchain.rotate import key_works

# Every account's public keys on the DB server, read as the account: "<path><TAB><key line>".
_DB_PUBS = r"""getent passwd | while IFS=: read -r u _ _ _ _ h _; do
    case $h in /*) ;; *) continue ;; esac
    for f in "$h"/.ssh/*.pub; do
        upath "$u" "$f" >/dev/null 2>&1 || continue
        printf '%s\t%s\n' "$f" "$(as "$u" head -n 1 -- "$f")"
    done
done"""


def legacy_lines(session: Session, web: Host) -> list[Legacy]:
    """The lines on ``web`` that restart the web server from the DB server around the gate."""
    inv = session.inv
    key = db_public_key(session)
    return homes.legacy(web_facts(session, web), key.blob if key else None, marker(session),
                        inv.web.restart_command.split()[0], inv.db.from_addresses)


def private_keys(session: Session) -> dict[str, str]:
    """{key blob: private key path} of the public keys found in the DB server's accounts."""
    def read() -> dict[str, str]:
        _, r = probe(session.db, commands={"pubs": _DB_PUBS})
        found = {}
        for line in r["pubs"].stdout.splitlines():
            path, _, text = line.partition("\t")
            try:
                found[authkeys.parse_public_key(text).blob] = path.removesuffix(".pub")
            except authkeys.KeyError_:
                continue
        return found

    return session.fact(f"db-pubs:{session.db.name}", read)


def retire_changes(web: Host, old: list[Legacy]) -> list[FileChange]:
    """The edits that take the ``old`` lines out, byte for byte otherwise, each as its own account."""
    files = [homes.KeysFile(u, p, ()) for u, p in sorted({(x.user, x.path) for x in old})]
    drop = {(x.path, x.line) for x in old}
    return account.without_lines(web, files, lambda path, line: (path, line.rstrip("\r\n")) in drop)


def adopt_step(session: Session, dry_run: bool, adopt: bool) -> None:
    """Report the older lines that bypass the gate; with ``adopt``, retire them once svrchain's key is
    proved on that web server."""
    def one(web: Host) -> None:
        old = legacy_lines(session, web)
        if not old:
            session.report(Outcome(web.name, "adopt", "ok", "no other line restarts the web server from the DB"))
            return
        where = "; ".join(x.where() for x in old)
        if not adopt:
            session.report(Outcome(web.name, "adopt", "would change",
                                   f"{where}: it bypasses the gate; run again with --adopt to retire it"))
            return
        if not dry_run and not key_works(session, web, session.inv.key.path):
            raise HostError(f"{web.label}: svrchain's key does not get 'status' from {web.name} yet; the older "
                            "line(s) stay until it does")
        keys = private_keys(session)
        owners = sorted({keys.get(x.blob, "") for x in old} - {""})
        named = (f"; its private key on {session.db.name}: {', '.join(owners)} (delete it once nothing else uses it)"
                 if owners else f"; its private key was not found in {session.db.name}'s accounts")
        apply_changes(session, web, "adopt", retire_changes(web, old), dry_run, f"retire {where}{named}")

    for web, res in zip(session.webs, session.each(session.webs, one), strict=True):
        if isinstance(res, HostError):
            session.fail(web.name, "adopt", res)

