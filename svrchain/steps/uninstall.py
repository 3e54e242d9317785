"""uninstall: remove exactly what svrchain installed, and nothing else.

On the DB server: the trigger (unregistered first), svrchain's start script wrapper or unit (the
site's own script that it replaced is put back from the first backup when there was one), the
restart key, the pinned web host keys and svrchain's state. On the web servers: svrchain's line in
authorized_keys (every other byte kept), the gate, its state and sudo rule, and the account
push-key created. Logs and /var/backups/svrchain stay; so does harden-sshd's sshd setting unless
``--sshd`` is given. Every removed file is copied to /var/backups/svrchain first.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable
from dataclasses import dataclass

from svrchain.core import authkeys, homes, render, sshd, sysv
from svrchain.core.errors import HostError
from svrchain.core.inventory import Inventory
from svrchain.core.plan import FileChange, FileState
from svrchain.facts.db import InitFact, InstalledFact, init_of
from svrchain.facts.sshd import SshdFact
from svrchain.ops import Change, Command, command, removal
from svrchain.ops import db as ops_db
from svrchain.ops import sshd as ops_sshd
from svrchain.remote.apply import apply
from svrchain.remote.connection import Host
from svrchain.remote.facts import db_public_key, gather, get, web_facts
from svrchain.remote.files import BACKUP_DIR
from svrchain.remote.group import Session, on_hosts
from svrchain.remote.runopts import confirm
from svrchain.steps import account, harden

NOTHING = "nothing of svrchain's here"

def db_paths(inv: Inventory) -> dict[str, str]:
    """Every file svrchain may have put on the DB server: the services' (as install declares them, for
    either init system) by path, and the key's and known_hosts by role."""
    key = inv.key.path
    return {**{p: p for p in ops_db.every_path(inv)},
            "key": key, "key-pub": f"{key}.pub", "key-new": f"{key}.new", "key-new-pub": f"{key}.new.pub",
            "known-hosts": inv.trigger.known_hosts}


def gone(*paths: str, shown: str | None = None) -> Command:
    """Remove files svrchain found there (each copied to the backups first)."""
    return removal(*(FileState(p, True) for p in paths), shown=shown)


def housekeeping(run: str) -> Command:
    """A command nobody needs to read about."""
    return Command(run)


@dataclass(frozen=True)
class DbFacts:
    """What uninstall reads of the DB server."""

    init: str
    tool: str  # SysV registration tool ('' on systemd)
    present: frozenset[str]  # which of db_paths exist
    ours: frozenset[str]  # which of them hold svrchain's mark
    links: dict[str, dict[str, str]]  # the services' rc links
    original: str  # the site's own init script svrchain replaced (its first backup), or ''
    state_dirs: tuple[str, ...]  # svrchain's state directories that exist


def db_plan(session: Session) -> Change:
    """What uninstall does on the DB server, from one probe."""
    inv, db = session.inv, session.db
    found, there = gather(session, db, [InitFact(), InstalledFact(list(db_paths(inv).values()), BACKUP_DIR,
                                                                    ops_db.dbora(inv).init_script)])
    init, tool = init_of(inv, db.label, found)
    links = {name: found.last_links(name) for name in found.links}
    facts = DbFacts(init, tool, there.present, there.ours, links, there.original, there.state_dirs)
    return db_actions(inv, facts, db_paths(inv))


def db_actions(inv: Inventory, f: DbFacts, paths: dict[str, str]) -> Change:
    """What uninstall does on the DB server (pure): the services stopped (the watcher only), unregistered,
    disabled and removed (the site's own init script put back), the key and svrchain's state removed."""
    dbsvc, tsvc, wsvc = ops_db.services(inv)
    actions: list[Command] = []
    if {wsvc.init_script, wsvc.unit_file} & f.ours:  # svrchain's own daemon stops; the database does not
        stop = f"systemctl stop {wsvc.unit}" if f.init == "systemd" else f"/etc/init.d/{wsvc.name} stop"
        actions.append(command(f"{stop} 2>/dev/null; true", f"stop {wsvc.name}"))
    for svc in (wsvc, tsvc, dbsvc):
        actions += service_actions(svc, f, f.original if svc is dbsvc else "")
    others = [p for svc in (tsvc, dbsvc) for p in svc.other_files()] + ["key-pub", "key-new-pub", "known-hosts"]
    actions += [gone(paths[k]) for k in others if paths[k] in f.present]
    # A private key is never copied anywhere: a backup of it would still work.
    actions += [command(f"rm -f -- {shlex.quote(paths[k])}", f"remove {paths[k]} (a private key: not backed up)")
                for k in ("key", "key-new") if paths[k] in f.present]
    actions += [command(f"rm -rf {shlex.quote(d)}", f"remove {d}") for d in f.state_dirs]
    if not actions:
        return Change(noop=NOTHING)
    if f.init == "systemd":
        # The empty .wants directory that enabling the trigger left behind.
        actions += [housekeeping("systemctl daemon-reload"),
                    housekeeping(f"rmdir /etc/systemd/system/{dbsvc.unit}.wants 2>/dev/null; true")]
    dirs = " ".join(shlex.quote(d) for d in (render.IMPL_DIR, inv.trigger.known_hosts.rsplit("/", 1)[0]))
    actions += [housekeeping(f"rmdir {dirs} 2>/dev/null; true"),
                housekeeping(f"rm -rf {render.RUN_DIR}")]  # the locks of svrchain's runs
    return uninstall_change((), actions)


def uninstall_change(edits: Iterable[FileChange], actions: list[Command]) -> Change:
    """Uninstall's change on one host: the authorized_keys edits, then the actions; said in its own words."""
    edits = tuple(edits)
    said = [f"remove svrchain's line from {e.spec.path}" for e in edits] + [a.shown for a in actions if a.shown]
    return Change(edits, tuple(actions), NOTHING, "; ".join(said)) if said else Change(noop=NOTHING)


def service_actions(svc: ops_db.Service, f: DbFacts, original: str) -> list[Command]:
    """Unregister and remove a service's files, or put back the site's script svrchain replaced; its
    unit is disabled, never stopped (removing svrchain must not stop the database)."""
    name, script, unit_file = svc.name, svc.init_script, svc.unit_file
    actions: list[Command] = []
    if script in f.ours and original:
        tmp = shlex.quote(f"{script}.svrchain-tmp")
        actions.append(command(f"cp -p {shlex.quote(original)} {tmp} && mv -f {tmp} {shlex.quote(script)}",
                               f"put back the site's {script} (from {original})"))
        if name in f.links:  # registered again from its own header, as it was before svrchain
            actions += [housekeeping(c) for c in sysv.reregister_commands(f.tool, name)]
    elif script in f.ours:
        if name in f.links:
            actions.append(housekeeping(f"update-rc.d -f {name} remove" if f.tool == "update-rc.d"
                                        else f"chkconfig --del {name}"))
        actions.append(gone(script, shown=f"remove {script}" + (" (unregistered)" if name in f.links else "")))
    if unit_file in f.ours:
        if f.init == "systemd":
            actions.append(housekeeping(f"systemctl disable {svc.unit} 2>/dev/null || true"))
        actions.append(gone(unit_file, shown=f"remove {unit_file} (disabled)"))
    return actions


def web_plan(session: Session, web: Host, key: authkeys.PublicKey | None) -> Change:
    """What uninstall does on a web server (the authorized_keys edits first, each as its account)."""
    inv = session.inv
    f = web_facts(session, web)
    actions: list[Command] = []
    user = shlex.quote(inv.web.user)
    if session.staying(web):  # another chain's DB server still restarts it: only this DB's line goes
        blob = key.blob if key else None
        files = homes.stale(f, blob, render.marker(inv), None)
        return uninstall_change(account.without_ours(web, files, blob, render.marker(inv)), actions)
    created = f.created
    if created:
        actions.append(command(f"userdel -r {user} 2>/dev/null || userdel {user}",
                               f"remove the account {inv.web.user} and its home {f.home} (push-key created them)"))
    # svrchain's line in every account (web.user's too, unless its home goes with it).
    blob = key.blob if key else None
    files = homes.stale(f, blob, render.marker(session.inv), inv.web.user if created else None)
    edits = account.without_ours(web, files, blob, render.marker(session.inv))
    if f.sudoers.exists and render.MARK.encode() in f.sudoers.content:
        actions.append(gone(render.SUDOERS))
    if f.gate.exists:
        actions.append(gone(render.GATE))
    if f.statedir_exists:
        actions.append(command(f"rm -rf {render.GATE_STATE}; rmdir /var/lib/svrchain 2>/dev/null; true",
                               f"remove {render.GATE_STATE}"))
    if actions or edits:  # the lock directory this run (and every changing run) held
        actions.append(housekeeping(f"rm -rf {render.RUN_DIR}"))
    return uninstall_change(edits, actions)


def uninstall_sshd(session: Session, web: Host, dry_run: bool) -> None:
    """Take harden-sshd's setting out again, with the same checks and rollback as putting it in."""
    f = get(session, web, SshdFact())
    change = ops_sshd.unharden(f)
    apply(session, web, "uninstall-sshd", change, dry_run,
          prove=harden.proof(web, ops_sshd.put_back(change), sshd.pidfile(f.effective)))


def uninstall_step(session: Session, dry_run: bool, with_sshd: bool) -> None:
    try:
        key = db_public_key(session)  # to find the line by its key too, not only by its comment
    except HostError:
        key = None

    def one(host: Host) -> None:
        try:
            if host is session.db:
                apply(session, host, "uninstall", db_plan(session), dry_run)
            else:
                apply(session, host, "uninstall", web_plan(session, host, key), dry_run)
                if with_sshd:
                    uninstall_sshd(session, host, dry_run)
        except HostError as exc:
            session.fail(host.name, "uninstall", exc)

    session.each(session.hosts, one, step="uninstall")  # one reports its own errors as they happen


@on_hosts(lock=True)
def run_uninstall(s: Session, sshd: bool = False, dry_run: bool = False, yes: bool = False) -> None:
    """What `fab uninstall` does (its flags and help: tasks/)."""
    if not dry_run:
        also = " (and harden-sshd's setting)" if sshd else ""
        confirm(f"Remove svrchain from the DB server {s.db.name} and {len(s.webs)} web server(s){also}?", yes)
    s.prefetch([s.db])
    s.prefetch(s.webs, facts=lambda w: web_facts(s, w))
    uninstall_step(s, dry_run, sshd)
    s.finish("uninstall")
