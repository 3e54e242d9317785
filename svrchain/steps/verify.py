"""verify: a read-only check that every piece of the chain is in place and consistent."""

from __future__ import annotations

import shlex
import time
from dataclasses import dataclass

from tabulate import tabulate

from svrchain.core import authkeys, homes, output, render, selinux, sysv, tell, trigger_status
from svrchain.core.errors import GapFound, HostError, Unreachable
from svrchain.core.inventory import Inventory
from svrchain.core.plan import FileState, file_change
from svrchain.ops import Change
from svrchain.ops import db as ops_db
from svrchain.ops import web as ops_web
from svrchain.ops.key import PUB_MODE
from svrchain.remote.connection import Host
from svrchain.remote.files import probe
from svrchain.remote.group import Session, on_hosts
from svrchain.steps import account
from svrchain.steps.attacks import Row, run_attacks
from svrchain.steps.chain import current_run_command, outside_service, ready_probe, service_probe, service_problem
from svrchain.steps.dbora import detect_init, override_problem
from svrchain.steps.keys import bypasses, db_public_key, host_keys, marker, web_facts
from svrchain.steps.rotate import proof_command


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


def _registration(host: str, name: str, script: bytes, tool: str, r: dict, override: FileState) -> Check:
    """The service's boot registration. chkconfig hosts: exactly the links ``chkconfig --add`` makes
    from the script's header (S98dbora in 3 4 5, K11dbora in 0 1 2 6), ``chkconfig --list`` agreeing,
    and no override in /etc/chkconfig.d that a new ``--add`` would follow instead; update-rc.d hosts
    (insserv renumbers from the LSB block): start in 3 4 5, stop in 0 1 2 6."""
    if tool == "chkconfig":
        header = sysv.chkconfig_header(script.decode())
        if header is None:
            return Check(host, f"{name} boot", False, "the script svrchain installs has no '# chkconfig:' line")
        links = sysv.link_lists(r["links"].stdout).get(name, {})
        ok, detail = sysv.chkconfig_check(name, header, links, sysv.parse_list(r["chklist"].stdout))
        why = override_problem(name, script, override)
        return Check(host, f"{name} boot", ok and not why, "; ".join(x for x in (detail, why) if x))
    links = sysv.parse_links(r["links"].stdout).get(name, {})
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
        checks.append(Check(web.name, "least privilege", *account.sudo_check(session, f.r)))
    elif files.commands:
        checks.append(Check(web.name, "sudo rule", False, f"{files.detail()}: {tell.command('push-key')} removes it"))
    pins = [authkeys.known_hosts_line(web.address, web.port, k) for k in host_keys(web, f.r["hostkeys"].stdout)]
    if key is None:
        why = "the DB server has no key yet" if db_up else "cannot check: the DB server is unreachable"
        checks.append(Check(web.name, "authorized_keys", False, why, skipped=not db_up))
    elif f.unsafe:
        checks.append(Check(web.name, "authorized_keys", False, f"UNSAFE: {f.unsafe}; svrchain will not touch it: "
                                                                 "check who made it and why, then remove it"))
    else:
        checks += key_checks(web.name, f, ops_web.key_line(inv, key, f, web.server_version()), key, marker(session))
    checks += account_checks(session, web, f, key, db_up)
    paths = [render.GATE, *([render.SUDOERS] if inv.web.dedicated else []), f"{f.home}/.ssh", f.keys.path]
    checks += selinux_checks(web.name, paths, web.run(selinux.CHECK, *paths).stdout)
    return checks, pins


def selinux_checks(host: str, paths: list[str], said: str) -> list[Check]:
    """The SELinux contexts of the files svrchain wrote (no check where SELinux is off)."""
    wrong = selinux.wrong_contexts(said)
    return [] if wrong is None else [Check(host, "selinux contexts", *selinux.check_detail(paths, wrong))]


def key_checks(host: str, f: homes.WebFacts, change: Change, key: authkeys.PublicKey, mark: str) -> list[Check]:
    """The line (its content) and the modes of web.user's ~/.ssh and authorized_keys, from push-key's
    plan for them; the detail says what is wrong."""
    state, user = f.keys, f.user
    reasons = set(c.reasons) if (c := change.paths().get(state.path)) else set()
    if not state.exists:
        line = Check(host, "authorized_keys", False, f"{state.path} missing")
    elif "content" not in reasons:
        line = Check(host, "authorized_keys", True, "the restricted line, once")
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


def account_checks(session: Session, web: Host, f: homes.WebFacts, key: authkeys.PublicKey | None,
                   db_up: bool = True) -> list[Check]:
    """No line of svrchain's in any other account; no line whose key is held on the DB server (a bypass
    of the gate) and no file sshd reads that could not be inspected; sshd's AuthorizedKeysCommand, if
    any, reported as not inspected."""
    inv = session.inv
    blob = key.blob if key else None
    stale = homes.stale(f, blob, marker(session), inv.web.user)
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


def file_checks(host: str, svc: ops_db.Service, init: str, states: dict[str, FileState]) -> list[Check]:
    """A service's files: each as install-dbora / install-svr-restart would leave it (their plan is empty)."""
    checks = []
    for label, spec in svc.named(init):
        c = file_change(spec, states[spec.path])
        checks.append(Check(host, label, c is None, spec.path if c is None else
                            f"{spec.path}: {', '.join(c.reasons)} (not as svrchain installs it)"))
    return checks


def registration(host: str, svc: ops_db.Service, tool: str, r: dict, states: dict[str, FileState]) -> Check:
    """A SysV service's boot registration, as its init script (as svrchain writes it) asks for."""
    script = next(spec.content for spec in svc.files("sysv") if spec.path == svc.init_script)
    return _registration(host, svc.name, script, tool, r, states[f"{sysv.OVERRIDES}/{svc.name}"])


def db_checks(session: Session, pins: dict[str, list[str]], handover_gap: bool = True) -> list[Check]:
    """The DB server's checks: its services (files, boot registration and order), the watcher, the
    key, and the web servers' host keys pinned for the trigger."""
    inv, db = session.inv, session.db
    dbsvc, tsvc, wsvc = ops_db.services(inv)
    unit, tunit = dbsvc.unit, tsvc.unit
    overrides = [f"{sysv.OVERRIDES}/{s.name}" for s in (dbsvc, tsvc, wsvc)]
    kp = shlex.quote(inv.key.path)
    names = " ".join(shlex.quote(s.name) for s in (dbsvc, tsvc, wsvc))
    states, r = probe(db, [*ops_db.every_path(inv), *overrides, inv.trigger.known_hosts], {
        **sysv.PROBE, "priv": f"stat -c '%a %U' {kp}", "derived": f"ssh-keygen -y -P '' -f {kp}",
        "pubmode": f"stat -c '%a %U' {kp}.pub",
        "enabled": f"systemctl is-enabled {unit} {tunit}",
        "order": f"systemctl show -p After -p PartOf {tunit}; systemctl show -p Wants {unit}",
        **watch_probe(session),
        "selinux": f"set -- {' '.join(shlex.quote(p) for p in selinux_paths(inv))}\n{selinux.CHECK}",
        "chklist": f"command -v chkconfig >/dev/null && for s in {names}; do chkconfig --list \"$s\" 2>&1; done; true",
    }, prelude="READY=$(cat)", stdin=ready_probe(session).encode())  # (never on a command line: ps shows those)
    init, tool = detect_init(session, db, r)
    checks = chain_checks(db.name, init, tool, (dbsvc, tsvc), states, r)
    checks.append(runs_check(session, r))
    checks += service_checks(session, init, r, handover_gap)
    checks += watch_checks(session, init, tool, wsvc, states, r)
    checks.append(key_check(db.name, inv.key.path, db_public_key(session), r))
    checks += selinux_checks(db.name, selinux_paths(inv), r["selinux"].stdout)
    kh = states[inv.trigger.known_hosts]
    have = set(kh.content.decode(errors="replace").splitlines()) if kh.exists else set()
    missing = [w for w, lines in pins.items() if not set(lines) <= have]
    checks.append(Check(db.name, "pinned host keys", kh.exists and not missing,
                        f"{inv.trigger.known_hosts}: all {len(pins)} web server(s)" if kh.exists and not missing
                        else f"{inv.trigger.known_hosts}: missing or stale for {', '.join(missing) or 'all'}"))
    return checks


def selinux_paths(inv: Inventory) -> list[str]:
    """The DB server's files svrchain writes whose SELinux context matters (services, trigger, key)."""
    key_dir = inv.key.path.rsplit("/", 1)[0]
    return [*ops_db.every_path(inv), inv.trigger.known_hosts, key_dir, inv.key.path, inv.key.path + ".pub"]


def chain_checks(host: str, init: str, tool: str, svcs: tuple[ops_db.Service, ops_db.Service],
                 states: dict[str, FileState], r: dict) -> list[Check]:
    """The database's service and the trigger: their files, their boot registration, and the trigger
    starting after the database (SysV) or bound to its unit (systemd)."""
    dbsvc, tsvc = svcs
    checks = file_checks(host, dbsvc, init, states)
    if init == "sysv":
        links = sysv.parse_links(r["links"].stdout)
        if dbsvc.init_script:
            checks.append(registration(host, dbsvc, tool, r, states))
        checks += [*file_checks(host, tsvc, init, states), registration(host, tsvc, tool, r, states)]
        bad = sysv.starts_after(links.get(dbsvc.name, {}), links.get(tsvc.name, {}))
        return [*checks, Check(host, "boot order", not bad, f"{tsvc.name} starts after {dbsvc.name}" if not bad else
                               f"{tsvc.name} does not start after {dbsvc.name} in runlevel(s) {' '.join(bad)}")]
    unit, tunit = dbsvc.unit, tsvc.unit
    enabled = r["enabled"].stdout.split()
    props = dict(line.split("=", 1) for line in r["order"].stdout.splitlines() if "=" in line)
    ordered = (unit in props.get("After", "").split() and unit in props.get("PartOf", "").split()
               and tunit in props.get("Wants", "").split())
    return [*checks, *file_checks(host, tsvc, init, states),
            Check(host, "enabled", enabled == ["enabled", "enabled"],
                  f"{unit} {tunit}: {' '.join(enabled) or 'unknown'}"),
            Check(host, "boot order", ordered, f"{tunit}: After= and PartOf= {unit}, wanted by it" if ordered else
                  f"{tunit} is not ordered after, part of and wanted by {unit}")]


def key_check(host: str, path: str, key: authkeys.PublicKey | None, r: dict) -> Check:
    """The DB server's key: there, without a passphrase, matching its .pub, 600 root (.pub 644)."""
    if key is None or not r["priv"].ok:
        return Check(host, "key", False, f"{path} missing; run {tell.command('gen-key')}")
    if not r["derived"].ok:
        return Check(host, "key", False, f"{path} needs a passphrase; it must have none")
    if authkeys.parse_public_key(r["derived"].stdout).blob != key.blob:
        return Check(host, "key", False, f"{path}.pub does not match the private key")
    if r["priv"].stdout.split() != ["600", "root"]:
        return Check(host, "key", False, f"{path} is {r['priv'].stdout.strip()}, want 600 root")
    if r["pubmode"].stdout.split() != PUB_MODE:
        return Check(host, "key", False, f"{path}.pub is {r['pubmode'].stdout.strip()}, want 644 root")
    return Check(host, "key", True, f"{path} {key.type} {key.fingerprint}, 600 (.pub 644)")


def watch_probe(session: Session) -> dict[str, str]:
    """What verify reads of the watcher: whether it runs, the DB's run, the restarts still owed."""
    inv = session.inv
    return {
        "wup": f"if [ -d /run/systemd/system ]; then systemctl is-active {render.watch_unit(inv)}; "
               f"else /etc/init.d/{render.watch_name(inv)} status; fi",
        "wenabled": f"systemctl is-enabled {render.watch_unit(inv)}",
        "run": current_run_command(inv),
        "service": service_probe(inv),
        "ready": """printf '%s\\n' "$READY" | sh >/dev/null 2>&1""",  # READY: from stdin (see db_checks)
        "owed": f"for f in {render.owed_dir(inv)}/*; do [ -f \"$f\" ] && echo \"${{f##*/}} $(cat \"$f\")\"; done; true",
        "status": f"cat {trigger_status.status_path(inv)} 2>/dev/null; true",
        "going": trigger_status.going_command(inv),
        "now": "date +%s.%N",
        "tick": f"cat {render.watch_tick(inv)} 2>/dev/null; true",
        "procs": trigger_status.processes_command(inv) if inv.db.run.process else "true",
        "owner": f"id -u -- {shlex.quote(inv.db.run.user or 'root')}",
    }


def runs_check(session: Session, r: dict) -> Check:
    """The trigger's last run, and no run of it going on longer than its bound (a stuck run holds the
    lock: no web server would be restarted)."""
    inv, name = session.inv, session.db.name
    limit = trigger_status.bound(inv)
    try:
        now: float | None = float(r["now"].stdout)
    except ValueError:
        now = None
    going = [trigger_status.parse(text) for text in r["going"].stdout.split("--\n") if text.strip()]
    stuck = [g.started for g in going if g.started is not None and now is not None and now - g.started > limit]
    last = trigger_status.parse(r["status"].stdout)
    detail = (f"last run {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(last.finished))}: {last.result}"
              if last.finished is not None else "no run finished yet")
    if stuck:
        detail = (f"a run started at {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(min(stuck)))} is still "
                  f"going after its bound ({limit}s): see {inv.trigger.log}")
    return Check(name, f"{inv.trigger.name} runs", not stuck, detail)


def service_checks(session: Session, init: str, r: dict, gap: bool = True) -> list[Check]:
    """On a systemd host, the running database is its service's: else a restart of the service (the
    chain's, restart-chain's) would not restart it. (SysV: the init script acts on the process.)
    Without ``gap`` (bootstrap's own verify, which has just installed the service), a database still
    outside it is the hand-over left to do: said, and skipped (not a gap)."""
    inv, run = session.inv, r["run"].stdout.strip() or "none"
    if init != "systemd" or run == "none":
        return []
    unit = render.db_unit(inv)
    outside = service_problem(inv, r["service"].stdout)
    return [Check(session.db.name, "under its service", outside is None, f"run {run} is {unit}'s" if outside is None
                  else f"the database {outside}: a restart of the service would not restart it; "
                       f"{outside_service(inv)} (systemctl stop <the unit that started it>; systemctl start {unit})",
                  skipped=outside is not None and not gap)]


def watch_checks(session: Session, init: str, tool: str, wsvc: ops_db.Service, states: dict[str, FileState],
                 r: dict) -> list[Check]:
    """The watcher is installed, registered and running; it can tell the DB's run; nothing is owed."""
    inv, name = session.inv, session.db.name
    checks = file_checks(name, wsvc, init, states)
    if init == "sysv":
        checks.append(registration(name, wsvc, tool, r, states))
    else:
        enabled = r["wenabled"].stdout.strip()
        checks.append(Check(name, f"{wsvc.unit} enabled", enabled == "enabled", f"{wsvc.unit}: {enabled or 'unknown'}"))
    checks.append(watcher_check(session, wsvc.name, r))
    run = r["run"].stdout.strip() or "none"
    if inv.db.run.process:
        checks.append(run_owner_check(session, run, r))
    elif r["ready"].ok:
        checks.append(Check(name, "database run", run != "none",
                            f"current run {run}" if run != "none" else
                            f"the database is ready but db.run matches no process in {inv.source}: fix it"))
    owed = [line.split() for line in r["owed"].stdout.splitlines() if len(line.split()) == 3]
    checks.append(Check(name, "owed restarts", not owed, "none" if not owed else "; ".join(
        f"{w} since the run that was ready at {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(float(t)))}"
        for w, _run, t in owed) + " (the watcher retries each until it answers)"))
    return checks


def watcher_view(r: dict) -> tuple[float | None, str | None]:
    """(how long ago the watcher last looked at the database, the run it saw), from its tick."""
    tick = trigger_status.parse_tick(r["tick"].stdout)
    try:
        return (float(r["now"].stdout) - tick[0], tick[1]) if tick else (None, None)
    except ValueError:
        return None, None


def watcher_check(session: Session, wname: str, r: dict) -> Check:
    """The watcher runs, and it still looks at the database: its tick is no older than a few intervals."""
    inv, name = session.inv, session.db.name
    if not r["wup"].ok:
        return Check(name, "watcher", False, f"{wname} is not running: no restart outside the service is "
                                             f"followed; run {tell.command('install-svr-restart')} to start it")
    age, _ = watcher_view(r)
    if age is None:
        return Check(name, "watcher", False, f"{wname} runs but has not told when it last looked at the database "
                                             f"({render.watch_tick(inv)}): run {tell.command('install-svr-restart')}")
    if age > trigger_status.tick_limit(inv):
        return Check(name, "watcher", False, f"{wname} runs but last looked at the database {age:.0f}s ago "
                                             f"(every {inv.db.run.interval:g}s): it is stuck; see {inv.trigger.log}")
    return Check(name, "watcher", True, "running: every new run of the database is followed, however it starts")


def run_owner_check(session: Session, run: str, r: dict) -> Check:
    """The trigger's run is the database's real main process (its owner's, its program, its start time),
    and no process of another account (or program) looks like it."""
    inv, name = session.inv, session.db.name
    user, exe = inv.db.run.user, inv.db.run.executable
    if not r["owner"].ok or not r["owner"].stdout.strip().isdigit():
        return Check(name, "database run", False, f"db.run.user {user} is not an account of {name}: fix {inv.source}")
    main, fakes = trigger_status.the_database(trigger_status.parse_processes(r["procs"].stdout),
                                              int(r["owner"].stdout), exe)
    if fakes:
        return Check(name, "database run", False, "look-alike of the database's main process: " + "; ".join(
            f"PID {p.pid} of {p.user} ({p.exe})" for p in fakes[:5]) + f"; not a run (not {user}'s"
            + (f" {exe}" if exe else "") + "): find who started it")
    if main is None:
        why = f"no process of {user} matches db.run in {inv.source}: fix it"
        return Check(name, "database run", not r["ready"].ok, "the database is ready but " + why
                     if r["ready"].ok else "the database does not run")
    age, seen = watcher_view(r)
    if age is not None and age <= trigger_status.tick_limit(inv) and r["wup"].ok and seen != run:
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
    table = [(r.web, r.attack, r.expected, output.shown(r.seen, keep=""), "refused" if r.ok else "NOT REFUSED")
             for r in rows]
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


@on_hosts()
def run_verify(s: Session, attacks: bool = False) -> None:
    """What `fab verify` does (its flags and help: tasks/)."""
    s.prefetch([s.db])
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
    r = session.db.run(proof_command(inv, web.address, web.port, inv.key.path), timeout=60)
    said = (r.stdout.strip() or r.stderr.strip() or f"exit {r.code}").splitlines()
    if r.ok:
        return [Check(web.name, "chain path", True, f"{session.db.name} -> {web.name} gate status: {said[0][:150]}")]
    return [Check(web.name, "chain path", False, f"{session.db.name} -> {web.name} with {inv.key.path}: "
                  f"{said[-1][:200]} (exit {r.code}); run {tell.command('bootstrap')} and check "
                  f"{inv.trigger.known_hosts}")]


@on_hosts()
def run_smoke(s: Session) -> None:
    """What `fab smoke` does (its flags and help: tasks/): verify's checks and the chain's path."""
    s.prefetch([s.db])
    s.prefetch(s.webs, facts=lambda w: web_facts(s, w))
    checks = verify_step(s, extra=lambda web, key: chain_path_check(s, web, key))
    conclude("smoke", checks)
    print(f"smoke: all {len(checks)} checks ok, the chain's path works to every web server", file=s.out)
