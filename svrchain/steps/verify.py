"""verify: a read-only check that every piece of the chain is in place and consistent."""

from __future__ import annotations

import time
from dataclasses import dataclass

from tabulate import tabulate

from svrchain.core import authkeys, homes, output, render, selinux, sysv, tell, trigger_status
from svrchain.core.errors import GapFound, HostError, SvrchainError, Unreachable
from svrchain.core.inventory import Inventory
from svrchain.core.plan import FileState
from svrchain.facts import Fact
from svrchain.facts.chain import ChainState, outside_service, service_problem
from svrchain.facts.db import (
    HeldKeysFact,
    InitFact,
    InitSystem,
    KeyFact,
    KeyFacts,
    KnownHostsFact,
    init_of,
    override_path,
)
from svrchain.facts.web import WebFacts
from svrchain.facts.web import selinux_paths as web_selinux_paths
from svrchain.ops import Change
from svrchain.ops import db as ops_db
from svrchain.ops import key as ops_key
from svrchain.ops import web as ops_web
from svrchain.remote.connection import Host
from svrchain.remote.facts import bypasses, db_public_key, gather, host_keys, prefetch, web_facts
from svrchain.remote.group import Session, on_hosts
from svrchain.steps import account
from svrchain.steps.attacks import Row, run_attacks


@dataclass
class Check:
    """One line of the verify table."""

    host: str
    check: str
    ok: bool
    detail: str
    unreachable: bool = False  # the host could not be reached or logged in to
    skipped: bool = False  # not checked: what it needs is on a host that could not be reached

    @property
    def status(self) -> str:
        return "unreachable" if self.unreachable else "skipped" if self.skipped else "ok" if self.ok else "gap"


def unreachable_check(host: str, exc: HostError) -> Check:
    """The row of a host that could not be checked: unreachable, or a gap when a command failed there."""
    return Check(host, "reachable", False, str(exc), isinstance(exc, Unreachable))


def record(session: Session, host: str, checks: list[Check], started: float) -> list[Check]:
    """Record a host's checks for the recap, --json and --junit, and print its live line now."""
    r = session.results
    seconds = round(r.elapsed() - started, 3)
    items = [r.add(host, output.Item("check", c.check, c.status, c.detail, seconds)) for c in checks]
    r.host_line(host, items, seconds)
    return checks


def _registration(host: str, name: str, script: bytes, found: tuple[InitSystem, ChainState], override: FileState
                  ) -> Check:
    """The service's boot registration. chkconfig hosts: exactly the links ``chkconfig --add`` makes
    from the script's header (S98dbora in 3 4 5, K11dbora in 0 1 2 6), ``chkconfig --list`` agreeing,
    and no override in /etc/chkconfig.d that a new ``--add`` would follow instead; update-rc.d hosts
    (insserv renumbers from the LSB block): start in 3 4 5, stop in 0 1 2 6."""
    init, chain = found
    if init.tool == "chkconfig":
        header = sysv.chkconfig_header(script.decode())
        if header is None:
            return Check(host, f"{name} boot", False, "the script svrchain installs has no '# chkconfig:' line")
        links = init.links.get(name, {})
        ok, detail = sysv.chkconfig_check(name, header, links, sysv.parse_list(chain.chkconfig_list))
        why = ops_db.override_problem(name, script, override)
        return Check(host, f"{name} boot", ok and not why, "; ".join(x for x in (detail, why) if x))
    links = init.last_links(name)
    if sysv.registered(links):
        return Check(host, f"{name} boot", True, " ".join(links[lv] for lv in sysv.START_LEVELS) + " (rc3-5)")
    return Check(host, f"{name} boot", False, "not registered to start in 3 4 5 and stop in 0 1 2 6")


def planned(host: str, name: str, change: Change, path: str) -> Check:
    """A check derived from push-key's plan: ok when push-key would not touch ``path``."""
    c = change.paths().get(path)
    if c is None:
        return Check(host, name, True, path)
    fix = tell.command("push-key")
    return Check(host, name, False, f"{path}: {', '.join(c.reasons)} ({fix} makes it as it should be)")


def web_checks(session: Session, web: Host, key: authkeys.PublicKey | None, db_up: bool
               ) -> tuple[list[Check], list[str]]:
    """The web server's checks against the DB's ``key`` (push-key's plan must be empty), and its host
    keys as known_hosts lines."""
    inv = session.inv
    f = web_facts(session, web)
    files = ops_web.gate_and_rule(inv, f)
    checks = [planned(web.name, "gate", files, render.GATE)]
    if inv.web.dedicated:
        checks.append(planned(web.name, "sudo rule", files, render.SUDOERS))
        checks.append(Check(web.name, "least privilege", *account.sudo_check(session, f)))
    elif files.commands:
        checks.append(Check(web.name, "sudo rule", False, f"{files.detail()}: {tell.command('push-key')} removes it"))
    pins = [authkeys.known_hosts_line(web.address, web.port, k) for k in host_keys(web, f.hostkeys)]
    if key is None:
        why = "the DB server has no key yet" if db_up else "cannot check: the DB server is unreachable"
        checks.append(Check(web.name, "authorized_keys", False, why, skipped=not db_up))
    elif f.unsafe:
        checks.append(Check(web.name, "authorized_keys", False, f"UNSAFE: {f.unsafe}; svrchain will not touch it: "
                                                                 "check who made it and why, then remove it"))
    else:
        line = ops_web.key_line(inv, key, f, web.server_version(), session.markers_of(web))
        checks += key_checks(web.name, f, line, key, render.marker(inv))
    checks += account_checks(session, web, f, key, db_up)
    checks += selinux_checks(web.name, web_selinux_paths(inv, f.home), f.selinux)
    return checks, pins


def selinux_checks(host: str, paths: list[str], said: str) -> list[Check]:
    """The SELinux contexts of the files svrchain wrote (no check where SELinux is off)."""
    wrong = selinux.wrong_contexts(said)
    return [] if wrong is None else [Check(host, "selinux contexts", *selinux.check_detail(paths, wrong))]


def key_checks(host: str, f: WebFacts, change: Change, key: authkeys.PublicKey, mark: str) -> list[Check]:
    """The line (its content) and the modes of web.user's ~/.ssh and authorized_keys, from push-key's
    plan for them; the detail says what is wrong."""
    state, user = f.keys, f.user
    reasons = set(c.reasons) if (c := change.paths().get(state.path)) else set()
    if not state.exists:
        line = Check(host, "authorized_keys", False, f"{state.path} missing")
    elif "content" not in reasons:
        line = Check(host, "authorized_keys", True, "the restricted line, once")
    elif gone := _removed_lines(state.content, c.spec.content, mark):  # type: ignore[union-attr]
        line = Check(host, "authorized_keys", False, f"a line of {', '.join(gone)}, a DB server that no longer "
                     f"restarts it ({tell.command('push-key')} removes it)")
    else:
        found = authkeys.find_lines(state.content.decode("utf-8", "replace"), key.blob, mark)
        line = Check(host, "authorized_keys", False, "the DB server's key is not there" if not found else
                     f"{len(found)} line(s) for the key, not exactly the expected one")
    if not state.exists:
        return [line]
    modes_ok = not (reasons - {"content"}) and not change.commands
    return [line, Check(host, "modes", modes_ok,
                        f"{f.home}/.ssh 700, authorized_keys 600, owner {user}" if modes_ok else
                        f"{f.home}/.ssh is {f.sshdir or 'missing'}, authorized_keys is "
                        f"{state.mode:o} {state.owner}; want 700/600 {user}")]


def _removed_lines(before: bytes, after: bytes, mark: str) -> list[str]:
    """The markers of the svrchain lines of other DB servers that push-key's plan takes out (an estate's
    web server no longer restarted by them)."""
    kept = set(after.decode("utf-8", "replace").splitlines())
    return [authkeys.line_comment(ln) for ln in before.decode("utf-8", "replace").splitlines()
            if ln not in kept and authkeys.line_blob(ln) and authkeys.MARKER_RE.fullmatch(authkeys.line_comment(ln))
            and authkeys.line_comment(ln) != mark]


def account_checks(session: Session, web: Host, f: WebFacts, key: authkeys.PublicKey | None,
                   db_up: bool = True) -> list[Check]:
    """No line of svrchain's in any other account; no line whose key is held on the DB server (a bypass
    of the gate) and no file sshd reads that could not be inspected; sshd's AuthorizedKeysCommand, if
    any, reported as not inspected."""
    inv = session.inv
    blob = key.blob if key else None
    stale = homes.stale(f, blob, render.marker(session.inv), inv.web.user)
    checks = [Check(web.name, "other accounts", not stale,
                    f"no line of svrchain's outside {inv.web.user}" if not stale else
                    f"svrchain's line is also in {', '.join(f'{s.user} ({s.path})' for s in stale)}, which is not "
                    f"web.user ({inv.web.user}): run {tell.command('push-key')} to remove it")]
    if not db_up:
        checks.append(Check(web.name, "legacy keys", False, "cannot check: the DB server is unreachable", skipped=True))
    else:
        checks.append(bypass_check(session, web))
    if f.keys_command:
        checks.append(Check(web.name, "keys command", False, f"AuthorizedKeysCommand {f.keys_command}: not "
                            "inspected (the keys it returns may bypass the gate)", skipped=True))
    return checks


def bypass_check(session: Session, web: Host) -> Check:
    """The lines whose key is held on the DB server (a gap: they bypass the gate), the admin's own key
    held there (a gap), the files sshd reads that could not be inspected (a gap); lines that only look
    like a bypass are named in the detail."""
    found = bypasses(session, web)
    db = session.db.name
    adopt = tell.command("bootstrap --adopt")
    bad = [f"{x.where()}: it bypasses the gate; retire it with {adopt}" for x in found.proved]
    bad += [f"YOUR OWN KEY {x.where()}: anyone root on {db} can log in with it; move it off {db}" for x in found.own]
    bad += [homes.unread_where(found.unread) + ": check who made it and why"] if found.unread else []
    if bad:
        return Check(web.name, "legacy keys", False, "; ".join(bad)[:600])
    detail = f"no line's key is held on {db}"
    if found.unproved:
        detail += "; not proved held, kept: " + "; ".join(x.where() for x in found.unproved)
    return Check(web.name, "legacy keys", True, detail[:600])


def file_checks(host: str, svc: ops_db.Service, found: ops_db.ServiceFacts) -> list[Check]:
    """A service's files: each as install-dbora / install-svr-restart would leave it (their plan
    for the file is empty)."""
    plan = ops_db.install(svc, found).paths()
    checks = []
    for label, spec in svc.named(found.init):
        c = plan.get(spec.path)
        checks.append(Check(host, label, c is None, spec.path if c is None else
                            f"{spec.path}: {', '.join(c.reasons)} (not as svrchain installs it)"))
    return checks


def registration(host: str, svc: ops_db.Service, found: tuple[InitSystem, ChainState],
                 states: dict[str, FileState]) -> Check:
    """A SysV service's boot registration, as its init script (as svrchain writes it) asks for."""
    script = next(spec.content for spec in svc.files("sysv") if spec.path == svc.init_script)
    return _registration(host, svc.name, script, found, states[override_path(svc.name)])


@dataclass(frozen=True)
class DbFound:
    """The DB server's facts, as verify takes them."""

    init: InitSystem
    services: tuple[ops_db.ServiceFacts, ...]  # the database's, the trigger's, the watcher's
    key: KeyFacts
    known_hosts: FileState
    chain: ChainState


def db_verify_facts(inv: Inventory) -> list[Fact]:
    """The DB server's facts verify's checks take (the order :func:`assemble` expects)."""
    return [InitFact(), *ops_db.service_facts(inv), KeyFact(), KnownHostsFact(), ops_db.chain_fact(inv)]


def assemble(inv: Inventory, label: str, parsed: list) -> DbFound:
    """The DB server's facts, as :func:`db_verify_facts` read them, for the checks (pure)."""
    init, *svcs, key, kh, chain = parsed
    kind, tool = init_of(inv, label, init)
    services = tuple(ops_db.ServiceFacts(kind, tool, s.states, init.last_links(svc.name), s.enabled, s.up)
                     for svc, s in zip(ops_db.services(inv), svcs, strict=True))
    return DbFound(init, services, key, kh, chain)


def db_found(session: Session) -> DbFound:
    """The DB server's facts verify needs, in one probe (those this run has read already and not
    changed since are reused)."""
    inv, db = session.inv, session.db
    return assemble(inv, db.label, gather(session, db, db_verify_facts(inv)))


def db_checks(session: Session, pins: dict[str, list[str]], handover_gap: bool = True) -> list[Check]:
    """The DB server's checks: its services (files, boot registration and order), the watcher, the
    key, and the web servers' host keys pinned for the trigger."""
    return db_checks_of(session, db_found(session), pins, handover_gap)


def db_checks_of(session: Session, found: DbFound, pins: dict[str, list[str]], handover_gap: bool = True
                 ) -> list[Check]:
    """:func:`db_checks` on facts already read (pure: ``session`` gives the inventory and the host's name)."""
    inv, db = session.inv, session.db
    checks = chain_checks(db.name, ops_db.services(inv)[:2], found)
    checks.append(runs_check(session, found.chain))
    checks += service_checks(session, found.services[0].init, found.chain, handover_gap)
    checks += watch_checks(session, ops_db.services(inv)[2], found)
    checks.append(key_check(inv, found.key))
    checks += selinux_checks(db.name, ops_db.selinux_paths(inv), found.chain.selinux)
    kh = found.known_hosts
    have = set(kh.content.decode(errors="replace").splitlines()) if kh.exists else set()
    missing = [w for w, lines in pins.items() if not set(lines) <= have]
    checks.append(Check(db.name, "pinned host keys", kh.exists and not missing,
                        f"{inv.trigger.known_hosts}: all {len(pins)} web server(s)" if kh.exists and not missing
                        else f"{inv.trigger.known_hosts}: missing or stale for {', '.join(missing) or 'all'}"))
    return checks


def chain_checks(host: str, svcs: tuple[ops_db.Service, ...], found: DbFound) -> list[Check]:
    """The database's service and the trigger: their files, their boot registration, and the trigger
    starting after the database (SysV) or bound to its unit (systemd)."""
    dbsvc, tsvc = svcs
    dbf, tf = found.services[:2]
    states, both = {**dbf.states, **tf.states}, (found.init, found.chain)
    checks = file_checks(host, dbsvc, dbf)
    if dbf.init == "sysv":
        if dbsvc.init_script:
            checks.append(registration(host, dbsvc, both, states))
        checks += [*file_checks(host, tsvc, tf), registration(host, tsvc, both, states)]
        bad = sysv.starts_after(found.init.last_links(dbsvc.name), found.init.last_links(tsvc.name))
        return [*checks, Check(host, "boot order", not bad, f"{tsvc.name} starts after {dbsvc.name}" if not bad else
                               f"{tsvc.name} does not start after {dbsvc.name} in runlevel(s) {' '.join(bad)}")]
    unit, tunit = dbsvc.unit, tsvc.unit
    enabled, props = found.chain.enabled, found.chain.order
    ordered = (unit in props.get("After", "").split() and unit in props.get("PartOf", "").split()
               and tunit in props.get("Wants", "").split())
    return [*checks, *file_checks(host, tsvc, tf),
            Check(host, "enabled", enabled == ("enabled", "enabled"),
                  f"{unit} {tunit}: {' '.join(enabled) or 'unknown'}"),
            Check(host, "boot order", ordered, f"{tunit}: After= and PartOf= {unit}, wanted by it" if ordered else
                  f"{tunit} is not ordered after, part of and wanted by {unit}")]


def key_check(inv: Inventory, f: KeyFacts) -> Check:
    """The DB server's key, from gen-key's own plan for it (a gap when it would change anything):
    there, without a passphrase, matching its .pub, 600 root (.pub 644)."""
    path, host = inv.key.path, inv.db.name
    if f.priv is None:
        return Check(host, "key", False, f"{path} missing; run {tell.command('gen-key')}")
    try:
        change = ops_key.key(inv, f)
    except SvrchainError:
        return Check(host, "key", False, f"{path} needs a passphrase; it must have none")
    if change.files:
        return Check(host, "key", False, f"{path}.pub does not match the private key")
    if change.commands:
        wrong = [f"{path} is {f.priv}, want 600 root"] if f.priv.split() != ["600", "root"] else []
        wrong += [f"{path}.pub is {f.pubmode}, want 644 root"] if f.pubmode.split() != ops_key.PUB_MODE else []
        return Check(host, "key", False, "; ".join(wrong))
    key = f.public_key()
    return Check(host, "key", True, f"{path} {key.type} {key.fingerprint}, 600 (.pub 644)" if key else path)


def runs_check(session: Session, chain: ChainState) -> Check:
    """The trigger's last run, and no run of it going on longer than its bound (a stuck run holds the
    lock: no web server would be restarted)."""
    inv, name, now = session.inv, session.db.name, chain.now
    limit = trigger_status.bound(inv)
    going = [trigger_status.parse(text) for text in chain.going.split("--\n") if text.strip()]
    stuck = [g.started for g in going if g.started is not None and now is not None and now - g.started > limit]
    last = trigger_status.parse(chain.status)
    detail = (f"last run {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(last.finished))}: {last.result}"
              if last.finished is not None else "no run finished yet")
    if stuck:
        detail = (f"a run started at {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(min(stuck)))} is still "
                  f"going after its bound ({limit}s): see {inv.trigger.log}")
    return Check(name, f"{inv.trigger.name} runs", not stuck, detail)


def service_checks(session: Session, init: str, chain: ChainState, gap: bool = True) -> list[Check]:
    """On a systemd host, the running database is its service's: else a restart of the service (the
    chain's, restart-chain's) would not restart it. (SysV: the init script acts on the process.)
    Without ``gap`` (bootstrap's own verify, which has just installed the service), a database still
    outside it is the hand-over left to do: said, and skipped (not a gap)."""
    inv, run = session.inv, chain.run
    if init != "systemd" or run == "none":
        return []
    unit = render.db_unit(inv)
    outside = service_problem(inv, chain.service)
    return [Check(session.db.name, "under its service", outside is None, f"run {run} is {unit}'s" if outside is None
                  else f"the database {outside}: a restart of the service would not restart it; "
                       f"{outside_service(inv)} (systemctl stop <the unit that started it>; systemctl start {unit})",
                  skipped=outside is not None and not gap)]


def watch_checks(session: Session, wsvc: ops_db.Service, found: DbFound) -> list[Check]:
    """The watcher is installed, registered and running; it can tell the DB's run; nothing is owed."""
    inv, name, chain, wf = session.inv, session.db.name, found.chain, found.services[2]
    checks = file_checks(name, wsvc, wf)
    if wf.init == "sysv":
        checks.append(registration(name, wsvc, (found.init, chain), wf.states))
    else:
        enabled = chain.watcher_enabled
        checks.append(Check(name, f"{wsvc.unit} enabled", enabled == "enabled", f"{wsvc.unit}: {enabled or 'unknown'}"))
    checks.append(watcher_check(session, wsvc.name, chain))
    run = chain.run
    if inv.db.run.process:
        checks.append(run_owner_check(session, run, chain))
    elif chain.ready:
        checks.append(Check(name, "database run", run != "none",
                            f"current run {run}" if run != "none" else
                            f"the database is ready but db.run matches no process in {inv.source}: fix it"))
    owed = chain.owed
    checks.append(Check(name, "owed restarts", not owed, "none" if not owed else "; ".join(
        f"{w} since the run that was ready at {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(float(t)))}"
        for w, _run, t in owed) + " (the watcher retries each until it answers)"))
    return checks


def watcher_view(chain: ChainState) -> tuple[float | None, str | None]:
    """(how long ago the watcher last looked at the database, the run it saw), from its tick."""
    tick = trigger_status.parse_tick(chain.tick)
    return (chain.now - tick[0], tick[1]) if tick and chain.now is not None else (None, None)


def watcher_check(session: Session, wname: str, chain: ChainState) -> Check:
    """The watcher runs, and it still looks at the database: its tick is no older than a few intervals."""
    inv, name = session.inv, session.db.name
    if not chain.watcher_up:
        return Check(name, "watcher", False, f"{wname} is not running: no restart outside the service is "
                                             f"followed; run {tell.command('install-svr-restart')} to start it")
    age, _ = watcher_view(chain)
    if age is None:
        return Check(name, "watcher", False, f"{wname} runs but has not told when it last looked at the database "
                                             f"({render.watch_tick(inv)}): run {tell.command('install-svr-restart')}")
    if age > trigger_status.tick_limit(inv):
        return Check(name, "watcher", False, f"{wname} runs but last looked at the database {age:.0f}s ago "
                                             f"(every {inv.db.run.interval:g}s): it is stuck; see {inv.trigger.log}")
    return Check(name, "watcher", True, "running: every new run of the database is followed, however it starts")


def run_owner_check(session: Session, run: str, chain: ChainState) -> Check:
    """The trigger's run is the database's real main process (its owner's, its program, its start time),
    and no process of another account (or program) looks like it."""
    inv, name = session.inv, session.db.name
    user, exe = inv.db.run.user, inv.db.run.executable
    if chain.owner is None:
        return Check(name, "database run", False, f"db.run.user {user} is not an account of {name}: fix {inv.source}")
    main, fakes = trigger_status.the_database(trigger_status.parse_processes(chain.processes), chain.owner, exe)
    if fakes:
        return Check(name, "database run", False, "look-alike of the database's main process: " + "; ".join(
            f"PID {p.pid} of {p.user} ({p.exe})" for p in fakes[:5]) + f"; not a run (not {user}'s"
            + (f" {exe}" if exe else "") + "): find who started it")
    if main is None:
        why = f"no process of {user} matches db.run in {inv.source}: fix it"
        return Check(name, "database run", not chain.ready, "the database is ready but " + why
                     if chain.ready else "the database does not run")
    age, seen = watcher_view(chain)
    if age is not None and age <= trigger_status.tick_limit(inv) and chain.watcher_up and seen != run:
        run = f"{run} (the watcher's: {seen})"
    if run != main.run:
        return Check(name, "database run", False, f"the chain follows {run}, not the database's main process "
                                                  f"{main.run} (PID {main.pid} of {user}): see {inv.trigger.log}")
    return Check(name, "database run", True, f"current run {run}: PID {main.pid} of {user} ({main.exe})")


def verify_step(session: Session, extra=None, handover_gap: bool = True) -> list[Check]:
    """Run every check (and ``extra(web, key)``'s on each reachable web server); print each host's
    line as soon as its checks are in, then the table; return the checks (``handover_gap``: see
    :func:`service_checks`)."""
    t0 = session.results.elapsed()
    checks: list[Check] = []
    try:
        key, db_up = db_public_key(session), True
    except HostError as exc:
        key, db_up = None, False
        checks = record(session, session.db.name, [unreachable_check(session.db.name, exc)], t0)

    def one_web(web: Host) -> tuple[list[Check], list[str] | None]:
        try:
            found, pins = web_checks(session, web, key, db_up)
            found += extra(web, key) if extra else []
        except HostError as exc:
            found, pins = [unreachable_check(web.name, exc)], None
        return record(session, web.name, found, t0), pins

    webs = session.each(session.webs, one_web, step="verify").succeeded  # one_web reports its own errors
    pins = {name: res[1] for name, res in webs.items() if res[1] is not None}
    if db_up:
        try:
            found = db_checks(session, pins, handover_gap)
        except HostError as exc:
            found = [unreachable_check(session.db.name, exc)]
        checks = record(session, session.db.name, found, t0)
    checks += [c for res in webs.values() for c in res[0]]
    rows = [(c.host, c.check, output.paint("ok" if c.ok else c.status.upper(), c.status, session.results.colour),
             output.shown(c.detail, keep="")) for c in checks]  # one line per cell, whatever a host said
    print(tabulate(rows, headers=["host", "check", "result", "detail"]), file=session.out, flush=True)
    return checks


def attacks_step(session: Session) -> list[Row]:
    """The attack matrix against every web server (one after another: they share local ports)."""
    rows = [row for web in session.webs for row in run_attacks(session, web)]
    for r in rows:
        session.results.add(r.web, output.Item("check", f"attack: {r.attack}", "ok" if r.ok else "gap",
                                               f"expected {r.expected}; seen {r.seen}"))
    result = {(True, False): "refused", (False, False): "NOT REFUSED", (False, True): "NO ANSWER"}
    table = [(r.web, r.attack, r.expected, output.shown(r.seen, keep=""), result[r.ok, r.hung]) for r in rows]
    print(tabulate(table, headers=["web", "attack", "expected", "seen", "result"]), file=session.out, flush=True)
    return rows


def conclude(what: str, checks: list[Check]) -> None:
    """Exit 3 when a host could not be reached (the check is incomplete), else 2 on any gap found."""
    down = sorted({c.host for c in checks if c.unreachable})
    if down:
        raise Unreachable(f"{what}: cannot reach {', '.join(down)} (see above)")
    gaps = [c for c in checks if not c.ok and not c.skipped]
    if gaps:
        raise GapFound(f"{what}: {len(gaps)} gap(s) on {', '.join(sorted({g.host for g in gaps}))}")


def prefetch_db(session: Session) -> None:
    """Start reading the DB server's facts: first what every web server's line needs (its key, the
    keys held there) in one probe, then the rest (services, watcher, runs) in another, so that no web
    server's line waits for the DB server's slower checks."""
    needed = [KeyFact(), HeldKeysFact()]
    names = {f.name for f in needed}
    prefetch(session, session.db, needed, [f for f in ops_db.db_facts(session.inv) if f.name not in names])


@on_hosts()
def run_verify(s: Session, attacks: bool = False) -> None:
    """What `fab verify` does (its flags and help: tasks/)."""
    prefetch_db(s)
    s.prefetch(s.webs, facts=lambda w: web_facts(s, w))
    checks = verify_step(s)
    conclude("verify", checks)
    if attacks:
        bad = [r for r in attacks_step(s) if not r.ok]
        if bad:
            raise GapFound(f"verify: {len(bad)} attack(s) not refused: "
                           + ", ".join(f"{r.attack} on {r.web}" for r in bad))
    print(f"verify: all {len(checks)} checks ok", file=s.out)


def chain_path_check(session: Session, web: Host, key: authkeys.PublicKey | None) -> list[Check]:
    """From the DB server, with the restricted key and the trigger's own ssh options, ask ``web``'s
    gate for ``status``: the chain's path end to end, restarting nothing."""
    if key is None:
        db_down = session.results.hosts[session.db.name].status == "unreachable"
        return [Check(web.name, "chain path", False, "not tried: the DB server " +
                      ("cannot be reached" if db_down else "has no key; run " + tell.command("bootstrap")),
                      skipped=db_down)]
    inv = session.inv
    r = session.db.run(ops_key.proof_command(inv, web.address, web.port, inv.key.path), timeout=60)
    said = (r.stdout.strip() or r.stderr.strip() or f"exit {r.code}").splitlines()
    if r.ok:
        return [Check(web.name, "chain path", True, f"{session.db.name} -> {web.name} gate status: {said[0][:150]}")]
    return [Check(web.name, "chain path", False, f"{session.db.name} -> {web.name} with {inv.key.path}: "
                  f"{said[-1][:200]} (exit {r.code}); run {tell.command('bootstrap')} and check "
                  f"{inv.trigger.known_hosts}")]


@on_hosts()
def run_smoke(s: Session) -> None:
    """What `fab smoke` does (its flags and help: tasks/): verify's checks and the chain's path."""
    prefetch_db(s)
    s.prefetch(s.webs, facts=lambda w: web_facts(s, w))
    checks = verify_step(s, extra=lambda web, key: chain_path_check(s, web, key))
    conclude("smoke", checks)
    print(f"smoke: all {len(checks)} checks ok, the chain's path works to every web server", file=s.out)
