"""restart-chain: restart the DB in a maintenance window and prove every web server followed."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field

from tabulate import tabulate

from svrchain.core import output, render, sysv, trigger_status
from svrchain.core.errors import HostError, SvrchainError, Unreachable
from svrchain.core.plan import Outcome
from svrchain.core.render import as_account
from svrchain.facts.chain import current_run_command, outside_service
from svrchain.remote.connection import Host
from svrchain.remote.group import Session, on_hosts
from svrchain.remote.runopts import confirm

# Wait on the DB host, in one round trip, until the database answers; print the time it did. The
# readiness check comes on stdin and is run by sh from there, as the trigger runs it: it may hold a
# password, and every account sees every command line (ps).
_WAIT_READY = r"""
end=$(( $(date +%s) + $1 ))
check=$(cat)
until printf '%s\n' "$check" | sh >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$end" ] || { echo "not ready after the bound" >&2; exit 1; }
    sleep 0.2
done
date +%s.%N
"""

@dataclass
class WebRow:
    """What happened to one web server during the chain."""

    name: str
    action: str = "not restarted"
    restarted_at: float | None = None  # seconds after the DB restart began
    healthy_at: float | None = None
    ok: bool = False
    notes: list[str] = field(default_factory=list)
    unreachable: bool = False


def report_web(session: Session, row: WebRow) -> None:
    """A web server's two lines (its restart, its health), printed as soon as it is done."""
    restarted = row.restarted_at is not None
    status = "changed" if restarted else "unreachable" if row.unreachable else "failed"
    when = f" at +{row.restarted_at:.1f}s" if restarted else ": " + "; ".join(row.notes)
    session.report(Outcome(row.name, "restart", status, row.action + when), seconds=row.restarted_at or 0.0)
    if restarted:
        health = "ok" if row.healthy_at is not None else "failed"
        said = f"healthy at +{row.healthy_at:.1f}s" if row.healthy_at is not None else "; ".join(row.notes)
        session.report(Outcome(row.name, "health", health, said), seconds=row.healthy_at or 0.0)


def ready_probe(session: Session) -> str:
    """The shell check that succeeds once the DB is ready (fed to sh on stdin, as the trigger runs it)."""
    return render.ready_check(session.inv)


def restart_command(session: Session) -> str:
    """Restart the DB through its service: systemctl on systemd hosts, else service or the init script."""
    svc, unit = session.inv.db.service, render.db_unit(session.inv)
    return (f"if {sysv.SYSTEMD}; then systemctl restart {unit}; "
            f"elif command -v service >/dev/null; then service {svc} restart; else /etc/init.d/{svc} restart; fi")


def gate_restart(user: str) -> str:
    """A restart through the gate, as the key's account, like the chain's own: it takes the gate's
    lock (never two restarts at once), is logged, and runs exactly web.restart_command."""
    return as_account(user, f"env SSH_ORIGINAL_COMMAND=restart SSH_CLIENT='restart-chain 0 0' {render.GATE}")


def plan_lines(session: Session) -> list[str]:
    """What restart-chain does, step by step (its dry run)."""
    inv = session.inv
    r = inv.db.ready
    webs = ", ".join(w.name for w in session.webs)
    return [
        f"1. {session.db.name}: restart the DB service (systemctl restart {render.db_unit(inv)} on systemd, "
        f"service {inv.db.service} restart on SysV)",
        f"2. {session.db.name}: wait until ready ({ready_probe(session)}; at most {r.timeout}s)",
        f"3. {session.db.name}: wait for {inv.trigger.name} to restart {webs} after the DB is ready",
        f"4. {webs}: where the chain did not restart one, restart it through {render.GATE} "
        f"('{inv.web.restart_command}', as {inv.web.user})",
        f"5. {webs}: GET each health URL until it answers 200 (at most {inv.web.health_timeout}s)",
    ]


# Health checks go straight to the web server, never through http_proxy/https_proxy (a proxy would
# see them, or answer for a server that is down; and the lab's must never leave this machine).
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def healthy(url: str, timeout: float) -> tuple[bool, str]:
    """GET ``url`` until it answers 200 or ``timeout`` passes; (ok, last answer)."""
    end = time.monotonic() + timeout
    last = ""
    while True:
        try:
            with _DIRECT.open(url, timeout=3) as resp:
                if resp.status == 200:
                    return True, "200"
                last = str(resp.status)
        except urllib.error.HTTPError as exc:
            last = f"{exc.code} {exc.read(200).decode(errors='replace').strip()[:80]}"
        except (urllib.error.URLError, OSError) as exc:
            last = str(getattr(exc, "reason", exc))
        if time.monotonic() >= end:
            return False, last
        time.sleep(0.2)


def restart_chain_step(session: Session) -> tuple[list[WebRow], dict[str, float]]:
    """Restart the DB, follow the chain, repair where it did not reach, check health."""
    opened = session.each(session.hosts, lambda h: h.connection(), step="restart")
    for name, error in opened.failed.items():
        if name == session.db.name:
            session.fail(name, "restart", error)  # its line and the recap: nothing was restarted
            raise error
        print(f"warning: {error}", file=session.out)  # its row says FAILED once the chain is followed
    t0, offset, ready_at = restart_db(session)
    rows = followed(session, t0)
    repair_and_check(session, rows, t0, offset)
    return list(rows.values()), {"ready": ready_at - t0}


def restart_db(session: Session) -> tuple[float, float, float]:
    """Restart the DB through its service and wait until it is ready; (start, the DB's clock minus
    ours, ready), in the DB's clock. A restart that did not give the database a new run is an error."""
    inv, db = session.inv, session.db
    t0_local = time.time()
    run = current_run_command(inv)
    r = db.check(f"date +%s.%N; {run}; {restart_command(session)} >/dev/null </dev/null",
                 what=f"service {inv.db.service} restart")
    t0, before = float(r.stdout.split()[0]), r.stdout.split()[1]
    ready_at = float(db.check(_WAIT_READY, str(inv.db.ready.timeout), stdin=ready_probe(session).encode(),
                              what="waiting for the DB to be ready").stdout.split()[0])
    session.report(Outcome(db.name, "restart", "changed", f"service {inv.db.service} restart: ready after "
                                                          f"{ready_at - t0:.1f}s"), seconds=ready_at - t0)
    after = db.run(run).stdout.strip()
    if before != "none" and after == before:
        raise HostError(
            f"{db.label}: the service restart did not restart the database (the same run {before} is still "
            f"going): {outside_service(inv)}, then run restart-chain again")
    return t0, t0 - t0_local, ready_at


def followed(session: Session, t0: float) -> dict[str, WebRow]:
    """Each web server's row from the trigger's run that started after ``t0`` (waited for within its bound)."""
    inv = session.inv
    script, args = trigger_status.wait_command(inv, t0)
    w = session.db.run(script, *args)
    rows = {web.name: WebRow(web.name) for web in session.webs}
    if w.code != 0:
        why = "did not start" if w.code == 3 else "did not finish in time"
        for row in rows.values():
            row.notes.append(f"{inv.trigger.name} {why}")
        return rows
    run = trigger_status.parse(w.stdout)
    if run.result == "standby":  # a pair's standby: its runs restart nothing (its promotion will)
        for row in rows.values():
            row.action, row.ok = f"not restarted: {session.db.name} is a standby", True
        return rows
    for name, result in run.webs.items():
        at = run.restarted(name)
        if name in rows and at is not None:
            rows[name].action = "restarted by the chain"
            rows[name].restarted_at = at - t0
            rows[name].ok = True
        elif name in rows:
            rows[name].notes.append(f"chain: {result.state}")
    return rows


def repair_and_check(session: Session, rows: dict[str, WebRow], t0: float, offset: float) -> None:
    """Restart through its gate each web server the chain did not reach; then check every health URL
    (times in the DB's clock, from ``t0``) and report each web server's line as it finishes."""
    inv = session.inv

    def repair(web: Host) -> None:
        row = rows[web.name]
        if row.ok:
            return
        web.check(gate_restart(inv.web.user), what=f"'{inv.web.restart_command}' through {render.GATE}")
        row.action = "restarted directly"
        row.restarted_at = time.time() + offset - t0
        row.ok = True

    for name, error in session.each(session.webs, repair, step="restart").failed.items():
        rows[name].action = "FAILED to restart"
        rows[name].notes.append(str(error))
        rows[name].unreachable = isinstance(error, Unreachable)

    def check_health(web: Host) -> None:
        row = rows[web.name]
        if row.restarted_at is not None:
            url = next(s.health_url for s in inv.web.servers if s.name == web.name)
            good, answer = healthy(url, inv.web.health_timeout)
            row.healthy_at = time.time() + offset - t0 if good else None
            if not good:
                row.ok = False
                row.notes.append(f"health {url}: {answer}")
        report_web(session, row)

    session.report_failures(session.each(session.webs, check_health, step="health"))


def restart_question(sessions: list[Session]) -> str:
    """The one question restart-chain asks: every DB server it will restart, with its web servers' count."""
    what = [f"the database {s.db.name} ({s.db.address}) and {len(s.webs)} web server(s)"
            + (f" (chain {s.chain})" if s.chain else "") for s in sessions]
    return f"Restart {'; then '.join(what)}?"


@on_hosts(lock=True)
def run_restart_chain(s: Session, dry_run: bool = False, yes: bool = False) -> None:
    """What `fab restart-chain` does (its flags and help: tasks/)."""
    if dry_run:
        print("restart-chain would:", *plan_lines(s), sep="\n  ", file=s.out)
        return
    if s is s.peers[0]:  # on an estate, one question before the first chain, for every chain of the run
        confirm(restart_question(s.peers), yes)
    rows, times = restart_chain_step(s)
    table = [(s.db.name, "db", f"service {s.inv.db.service} restart", f"ready +{times['ready']:.1f}s", "", "ok")]
    for row in rows:
        table.append((
            row.name, "web", row.action,
            f"+{row.restarted_at:.1f}s" if row.restarted_at is not None else "-",
            f"+{row.healthy_at:.1f}s" if row.healthy_at is not None else "-",
            "ok" if row.ok else "FAILED: " + output.shown("; ".join(row.notes), keep=""),
        ))
    print(tabulate(table, headers=["host", "role", "action", "restarted", "healthy", "result"]), file=s.out)
    failed = [r.name for r in rows if not r.ok]
    if failed:
        kind = Unreachable if any(r.unreachable for r in rows) else SvrchainError
        raise kind(f"restart-chain: {', '.join(failed)} not healthy after the DB restart")
