"""The one place a planned change takes effect: "ok" (and why) when there is nothing to do, else
shown (a dry run: the diffs, nothing touched) or applied ("changed"); one report line either way.
"""

from __future__ import annotations

from collections.abc import Callable

from svrchain.core.errors import HostError
from svrchain.core.plan import FileState, Outcome
from svrchain.ops import Change, Command
from svrchain.remote import files
from svrchain.remote.connection import Host
from svrchain.remote.group import Session


def apply(session: Session, host: Host, step: str, change: Change, dry_run: bool,
          prove: Callable[[], str] | None = None) -> Outcome:
    """The one place a change takes effect: "ok" (with why) when it is empty, else shown (dry run:
    the diffs, nothing touched) or applied ("changed"); one line for the step either way. ``prove``,
    run once the change is made, shows it works (or puts it back itself and raises); what it returns
    is added to the line."""
    if change.empty:
        return session.report(Outcome(host.name, step, "ok", change.noop))
    detail = change.detail()
    diffs = [d for d in (c.diff() for c in change.files) if d]
    if dry_run:
        return session.report(Outcome(host.name, step, "would change", detail, diffs), show_diff=True)
    try:
        carry_out(host, change)
        done = prove() if prove else ""
    finally:
        session.forget(host)  # facts read before (or during) this change are stale now
    return session.report(Outcome(host.name, step, "changed", f"{detail}: {done}" if done else detail, diffs))


def carry_out(host: Host, change: Change) -> None:
    """Write the change's files, then run its commands in order (a failed check puts back what was
    written or removed before it, and raises)."""
    touched: list[FileState] = []
    for c in change.files:
        files.write(host, c)
        touched.append(c.state)
    for cmd in change.commands:
        if cmd.removes:
            files.remove(host, *(s.path for s in cmd.removes))
            touched += cmd.removes
        elif cmd.problem is not None:
            check(host, cmd, touched)
        else:
            host.check(cmd.run, what=cmd.shown or cmd.run.split(" 2>")[0])


def check(host: Host, cmd: Command, touched: list[FileState]) -> None:
    """Run a check; on a problem, put back every file ``touched`` as found and raise it."""
    problem = cmd.problem(host.run(cmd.run)) if cmd.problem else None
    if problem:
        for state in reversed(touched):
            files.restore(host, state)
        raise HostError(f"{host.label}: {', '.join(s.path for s in touched)}: {problem}")
