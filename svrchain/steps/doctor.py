"""doctor: on every web server, read what decides how bad a DB restart is for it, and say so."""

from __future__ import annotations

from tabulate import tabulate

from svrchain.core import output, webtier
from svrchain.core.errors import GapFound, HostError, Unreachable
from svrchain.remote.connection import Host
from svrchain.remote.group import Session, on_hosts


def doctor_host(session: Session, web: Host) -> list[webtier.Finding]:
    """One web server's findings: one read-only command there, its output judged in pure code."""
    r = web.run(webtier.PROBE, timeout=120)
    if not r.raw and r.code != 0:
        raise HostError(f"{web.label}: the doctor's read failed (exit {r.code}): {r.stderr.strip()[:200]}")
    return webtier.diagnose(r.raw, session.inv.web.restart_command)


def record(session: Session, host: str, rows: list[webtier.Finding], error: HostError | None, t0: float
           ) -> list[output.Item]:
    """Record a host's rows for the recap, --json and --junit, and print its live line (``t0``: when
    its read began)."""
    took = round(session.results.elapsed() - t0, 3)
    if error is not None:
        status = "unreachable" if isinstance(error, Unreachable) else "failed"
        items = [output.Item("check", "reachable", status, str(error), took)]
    else:
        items = [output.Item("check", f.check, "ok" if f.ok else "finding", f.detail, took) for f in rows]
    for i in items:
        session.results.add(host, i)
    session.results.host_line(host, items, took)
    return items


@on_hosts()
def run_doctor(s: Session, strict: bool = False) -> None:
    """What `fab doctor` does (its flags and help: tasks/)."""
    def one(web: Host) -> list[output.Item]:
        """One web server's rows (its error as its one row)."""
        t0 = s.results.elapsed()
        try:
            return record(s, web.name, doctor_host(s, web), None, t0)
        except HostError as exc:
            return record(s, web.name, [], exc, t0)

    found = s.each(s.webs, one, step="doctor").succeeded  # one records its own errors
    items = [(name, i) for name, res in found.items() for i in res]
    rows = [(h, i.name, output.paint(i.status.upper() if i.status != "ok" else "ok", i.status, s.results.colour),
             output.shown(i.detail, keep="")) for h, i in items]
    print(tabulate(rows, headers=["host", "check", "result", "detail"]), file=s.out, flush=True)
    print(conclude([i for _, i in items], [h for h, i in items if i.status == "finding"], strict), file=s.out)


def conclude(items: list[output.Item], finding_hosts: list[str], strict: bool) -> str:
    """The run's last line; exit 3 when a web server could not be reached, 1 when the read failed
    there; findings are advice: exit 0, or 2 (as verify's gaps) with ``strict``."""
    down = [i for i in items if i.status == "unreachable"]
    if down:
        raise Unreachable(f"doctor: cannot reach {len(down)} web server(s) (see above)")
    if any(i.status == "failed" for i in items):
        raise HostError("doctor: reading a web server failed (see above)")
    if finding_hosts:
        hosts = ", ".join(sorted(set(finding_hosts)))
        line = f"doctor: {len(finding_hosts)} finding(s) on {hosts}: each says what a DB restart costs and the fix"
        if strict:
            raise GapFound(line + " (--strict)")
        return line
    return f"doctor: {len(items)} checks, no finding"
