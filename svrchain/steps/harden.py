"""harden-sshd: public-key logins only on the web servers, without ever locking the admin out.

A change is written (atomically, the old file kept), checked with ``sshd -t`` and ``sshd -T``
(sshd must accept it and actually use it), and only then sshd is reloaded; a fresh SSH login is
tried after the reload. If any of that fails, the old file is put back (and sshd reloaded again
if it had been): the host ends as it was, and the run says why.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from svrchain.core import sshd
from svrchain.core.errors import HostError, SvrchainError
from svrchain.core.plan import FileState, Outcome
from svrchain.facts.sshd import SshdFact
from svrchain.ops import sshd as ops_sshd
from svrchain.remote.apply import apply
from svrchain.remote.connection import Host
from svrchain.remote.facts import get
from svrchain.remote.files import restore
from svrchain.remote.group import Session, on_hosts


def fresh_login(web: Host, attempts: int = 3) -> None:
    """Log in again on a new connection as the admin (and through sudo, if the admin uses it)."""
    for i in range(attempts):
        twin = web.twin()
        try:
            twin.check("true", what="a command on a fresh connection")
            return
        except HostError:
            if i == attempts - 1:
                raise
            time.sleep(0.3)
        finally:
            twin.close()


def reload(web: Host, pidfile: str) -> None:
    """Reload sshd and wait until it listens again."""
    web.check(ops_sshd.RELOAD, pidfile, what="reloading sshd")


def proof(web: Host, put_back: list[FileState], pidfile: str) -> Callable[[], str]:
    """After the reload, a fresh login must work; else the files are put back and sshd reloaded again."""
    def prove() -> str:
        try:
            fresh_login(web)
        except HostError as exc:
            for state in put_back:
                restore(web, state)
            reload(web, pidfile)
            try:
                fresh_login(web)
            except HostError as again:
                paths = ", ".join(s.path for s in put_back)
                raise HostError(
                    f"{web.label}: a fresh login failed after the reload ({exc}), and still fails after putting "
                    f"{paths} back ({again}); keep your open sessions and check sshd by hand") from None
            raise HostError(f"{web.label}: a fresh login failed after the reload ({exc}); "
                            f"{', '.join(s.path for s in put_back)} was put back and sshd reloaded: the admin can "
                            "log in again") from None
        return "sshd -t ok, reloaded, a fresh login works"

    return prove


def harden_one(session: Session, web: Host, dry_run: bool) -> Outcome:
    """harden-sshd on one web server: svrchain's settings written, checked, reloaded and proved."""
    f = get(session, web, SshdFact())
    try:
        change = ops_sshd.harden(session.inv, f, web.server_version(), web.user == "root")
    except SvrchainError as exc:
        raise HostError(f"{web.label}: {exc}") from None
    return apply(session, web, "harden-sshd", change, dry_run,
                 prove=proof(web, ops_sshd.put_back(change), sshd.pidfile(f.effective)))


def harden_step(session: Session, dry_run: bool) -> None:
    """The first web server alone, then (if it went well) the others in parallel."""
    def one(web: Host) -> None:
        try:
            harden_one(session, web, dry_run)
        except HostError as exc:
            session.fail(web.name, "harden-sshd", exc)

    first, rest = session.webs[0], session.webs[1:]
    one(first)
    if any(o.failed for o in session.outcomes) and not dry_run:
        for web in rest:
            session.report(Outcome(web.name, "harden-sshd", "skipped", f"not tried: it failed on {first.name}"))
        return
    session.each(rest, one, step="harden-sshd")  # one reports its own errors as they happen


@on_hosts(lock=True)
def run_harden_sshd(s: Session, dry_run: bool = False) -> None:
    """What `fab harden-sshd` does (its flags and help: tasks/)."""
    s.prefetch(s.webs)
    harden_step(s, dry_run)
    s.finish("harden-sshd")
