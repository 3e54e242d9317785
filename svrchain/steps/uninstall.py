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
from dataclasses import dataclass

from svrchain.core import authkeys, homes, render, sshd, sysv
from svrchain.core.errors import HostError
from svrchain.core.inventory import Inventory
from svrchain.core.plan import FileChange, FileSpec, Outcome
from svrchain.ops import db as ops_db
from svrchain.remote.connection import Host
from svrchain.remote.files import BACKUP_DIR, probe, remove, write
from svrchain.remote.group import Session, on_hosts
from svrchain.remote.runopts import confirm
from svrchain.steps import account, harden
from svrchain.steps.dbora import detect_init
from svrchain.steps.keys import db_public_key, marker, web_facts

# $1: a path. Prints the first backup svrchain kept of it, if that backup is not svrchain's own
# file: the site's file that svrchain replaced.
_ORIGINAL = r"""
orig() {
    name=$(printf %s "$1" | tr / %)
    first=$(ls -1 "$B" 2>/dev/null | grep -E "^$(printf %s "$name" | sed 's/[.]/[.]/g')[.][0-9]{8}T" | sort | head -n 1)
    [ -n "$first" ] && ! grep -q "$M" "$B/$first" && echo "$B/$first"
    true
}
"""


def db_paths(inv: Inventory) -> dict[str, str]:
    """Every file svrchain may have put on the DB server: the services' (as install declares them, for
    either init system) by path, and the key's and known_hosts by role."""
    key = inv.key.path
    return {**{p: p for p in ops_db.every_path(inv)},
            "key": key, "key-pub": f"{key}.pub", "key-new": f"{key}.new", "key-new-pub": f"{key}.new.pub",
            "known-hosts": inv.trigger.known_hosts}


@dataclass(frozen=True)
class Action:
    """One thing uninstall does: files to remove (copied to the backups first) or a command."""

    what: str  # for the report; '' for housekeeping nobody needs to read
    remove: tuple[str, ...] = ()
    command: str = ""


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


def db_plan(session: Session) -> list[Action]:
    """What uninstall does on the DB server, from one probe."""
    inv, db = session.inv, session.db
    quoted = " ".join(shlex.quote(p) for p in db_paths(inv).values())
    _, r = probe(db, commands={
        **sysv.PROBE,
        "present": f"for f in {quoted}; do [ -e \"$f\" ] && echo \"$f\"; done; true",
        "ours": f"grep -l {shlex.quote(render.MARK)} {quoted} 2>/dev/null; true",
        "orig-init": f"orig {shlex.quote(ops_db.dbora(inv).init_script or '-')}",
        # (/run/<trigger> held the SSH control sockets before they moved to RUN_DIR, which housekeeping removes.)
        "state": f"ls -d {render.STATE_PARENT} /run/{shlex.quote(inv.trigger.name)} 2>/dev/null; true",
    }, prelude=f"B={BACKUP_DIR}; M={shlex.quote(render.MARK)}\n{_ORIGINAL}")
    init, tool = detect_init(session, db, r)
    facts = DbFacts(init, tool, frozenset(r["present"].stdout.split()), frozenset(r["ours"].stdout.split()),
                    sysv.parse_links(r["links"].stdout), r["orig-init"].stdout.strip(),
                    tuple(r["state"].stdout.split()))
    return db_actions(inv, facts, db_paths(inv))


def db_actions(inv: Inventory, f: DbFacts, paths: dict[str, str]) -> list[Action]:
    """What uninstall does on the DB server (pure): the services stopped (the watcher only), unregistered,
    disabled and removed (the site's own init script put back), the key and svrchain's state removed."""
    dbsvc, tsvc, wsvc = ops_db.services(inv)
    actions: list[Action] = []
    if {wsvc.init_script, wsvc.unit_file} & f.ours:  # svrchain's own daemon stops; the database does not
        stop = f"systemctl stop {wsvc.unit}" if f.init == "systemd" else f"/etc/init.d/{wsvc.name} stop"
        actions.append(Action(f"stop {wsvc.name}", command=f"{stop} 2>/dev/null; true"))
    for svc in (wsvc, tsvc, dbsvc):
        actions += service_actions(svc, f, f.original if svc is dbsvc else "")
    others = [p for svc in (tsvc, dbsvc) for p in svc.other_files()] + ["key-pub", "key-new-pub", "known-hosts"]
    actions += [Action(f"remove {paths[k]}", (paths[k],)) for k in others if paths[k] in f.present]
    # A private key is never copied anywhere: a backup of it would still work.
    actions += [Action(f"remove {paths[k]} (a private key: not backed up)", command=f"rm -f -- {shlex.quote(paths[k])}")
                for k in ("key", "key-new") if paths[k] in f.present]
    actions += [Action(f"remove {d}", command=f"rm -rf {shlex.quote(d)}") for d in f.state_dirs]
    if not actions:
        return []
    if f.init == "systemd":
        # The empty .wants directory that enabling the trigger left behind.
        actions += [Action("", command="systemctl daemon-reload"),
                    Action("", command=f"rmdir /etc/systemd/system/{dbsvc.unit}.wants 2>/dev/null; true")]
    dirs = " ".join(shlex.quote(d) for d in (render.IMPL_DIR, inv.trigger.known_hosts.rsplit("/", 1)[0]))
    return [*actions, Action("", command=f"rmdir {dirs} 2>/dev/null; true"),
            Action("", command=f"rm -rf {render.RUN_DIR}")]  # the locks of svrchain's runs


def service_actions(svc: ops_db.Service, f: DbFacts, original: str) -> list[Action]:
    """Unregister and remove a service's files, or put back the site's script svrchain replaced; its
    unit is disabled, never stopped (removing svrchain must not stop the database)."""
    name, script, unit_file = svc.name, svc.init_script, svc.unit_file
    actions: list[Action] = []
    if script in f.ours and original:
        tmp = shlex.quote(f"{script}.svrchain-tmp")
        actions.append(Action(f"put back the site's {script} (from {original})",
                              command=f"cp -p {shlex.quote(original)} {tmp} && mv -f {tmp} {shlex.quote(script)}"))
        if name in f.links:  # registered again from its own header, as it was before svrchain
            actions += [Action("", command=c) for c in sysv.reregister_commands(f.tool, name)]
    elif script in f.ours:
        if name in f.links:
            actions.append(Action("", command=f"update-rc.d -f {name} remove" if f.tool == "update-rc.d"
                                  else f"chkconfig --del {name}"))
        actions.append(Action(f"remove {script}" + (" (unregistered)" if name in f.links else ""), (script,)))
    if unit_file in f.ours:
        if f.init == "systemd":
            actions.append(Action("", command=f"systemctl disable {svc.unit} 2>/dev/null || true"))
        actions.append(Action(f"remove {unit_file} (disabled)", (unit_file,)))
    return actions


def web_plan(session: Session, web: Host, key: authkeys.PublicKey | None) -> tuple[list[Action], list[FileChange]]:
    """What uninstall does on a web server (and the authorized_keys edits, each as its account)."""
    inv = session.inv
    f = web_facts(session, web)
    actions: list[Action] = []
    user = shlex.quote(inv.web.user)
    created = f.r["account"].ok and f.r["gecos"].stdout.strip() == render.ACCOUNT_COMMENT
    if created:
        actions.append(Action(f"remove the account {inv.web.user} and its home {f.home} (push-key created them)",
                              command=f"userdel -r {user} 2>/dev/null || userdel {user}"))
    # svrchain's line in every account (web.user's too, unless its home goes with it).
    blob = key.blob if key else None
    files = homes.stale(f, blob, marker(session), inv.web.user if created else None)
    edits = account.without_ours(web, files, blob, marker(session))
    sudoers = account.sudoers_state(web, f.r)
    if sudoers.exists and render.MARK.encode() in sudoers.content:
        actions.append(Action(f"remove {render.SUDOERS}", (render.SUDOERS,)))
    if f.r["gate"].ok:
        actions.append(Action(f"remove {render.GATE}", (render.GATE,)))
    if f.r["statedir"].ok:
        actions.append(Action(f"remove {render.GATE_STATE}",
                              command=f"rm -rf {render.GATE_STATE}; rmdir /var/lib/svrchain 2>/dev/null; true"))
    if actions or edits:  # the lock directory this run (and every changing run) held
        actions.append(Action("", command=f"rm -rf {render.RUN_DIR}"))
    return actions, edits


def _apply(session: Session, host: Host, actions: list[Action], edits: list[FileChange], dry_run: bool) -> None:
    """Report, and (unless dry) carry out, one host's actions."""
    said = [f"remove svrchain's line from {e.spec.path}" for e in edits] + [a.what for a in actions if a.what]
    if not said:
        session.report(Outcome(host.name, "uninstall", "ok", "nothing of svrchain's here"))
        return
    diffs = [e.diff() for e in edits]
    if dry_run:
        session.report(Outcome(host.name, "uninstall", "would change", "; ".join(said), diffs), show_diff=True)
        return
    try:
        for e in edits:
            write(host, e)
        for a in actions:
            if a.remove:
                remove(host, *a.remove)
            else:
                host.check(a.command, what=a.command.split(" 2>")[0])
    finally:
        session.forget(host)
    session.report(Outcome(host.name, "uninstall", "changed", "; ".join(said), diffs))


def uninstall_sshd(session: Session, web: Host, dry_run: bool) -> None:
    """Take harden-sshd's setting out again, with the same checks and rollback as putting it in."""
    states, r = probe(web, [sshd.MAIN, sshd.DROPIN], {"effective": f"{harden.SSHD} -T"})
    main, dropin = states[sshd.MAIN], states[sshd.DROPIN]
    pidfile = sshd.pidfile(sshd.effective(r["effective"].stdout))
    if dropin.exists:
        old, what = dropin, f"remove {sshd.DROPIN}"
    elif main.exists and sshd.BEGIN.encode() in main.content:
        old, what = main, f"remove svrchain's block from {sshd.MAIN}"
    else:
        session.report(Outcome(web.name, "uninstall-sshd", "ok", "no svrchain setting in sshd's configuration"))
        return
    if dry_run:
        session.report(Outcome(web.name, "uninstall-sshd", "would change", what))
        return
    if old is dropin:
        change = FileChange(FileSpec(sshd.DROPIN, b"", 0o644), dropin, ("remove",))
        done = harden.safe_apply(web, change, [], pidfile, put=lambda: remove(web, sshd.DROPIN))
    else:
        text = sshd.without_block(main.content.decode("utf-8", "surrogateescape"))
        spec = FileSpec(sshd.MAIN, text.encode("utf-8", "surrogateescape"), main.mode or 0o644,
                        main.owner or "root", main.group or "root")
        done = harden.safe_apply(web, FileChange(spec, main, ("content",)), [], pidfile)
    session.report(Outcome(web.name, "uninstall-sshd", "changed", f"{what}: {done}"))


def uninstall_step(session: Session, dry_run: bool, with_sshd: bool) -> None:
    try:
        key = db_public_key(session)  # to find the line by its key too, not only by its comment
    except HostError:
        key = None

    def one(host: Host) -> None:
        try:
            if host is session.db:
                _apply(session, host, db_plan(session), [], dry_run)
            else:
                _apply(session, host, *web_plan(session, host, key), dry_run)
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
