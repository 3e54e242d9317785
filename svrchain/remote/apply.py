"""The one place a planned change takes effect: "ok" (and why) when there is nothing to do, else
shown (a dry run: the diffs, nothing touched) or applied ("changed"); one report line either way.
"""

from __future__ import annotations

from collections.abc import Iterable

from svrchain.core.plan import FileChange, FileSpec, FileState, Outcome
from svrchain.ops import Change, files_change
from svrchain.remote import files
from svrchain.remote.connection import Host
from svrchain.remote.group import Session


def apply(session: Session, host: Host, step: str, change: Change, dry_run: bool) -> Outcome:
    """The one place a change takes effect: "ok" (with why) when it is empty, else shown (dry run:
    the diffs, nothing touched) or applied ("changed"); one line for the step either way."""
    if change.empty:
        return session.report(Outcome(host.name, step, "ok", change.noop))
    return apply_changes(session, host, step, list(change.files), dry_run, change.detail(), change.commands)


def apply_files(session: Session, host: Host, step: str, specs: list[FileSpec],
                states: dict[str, FileState], dry_run: bool, ok_detail: str = "") -> Outcome:
    """Compare, then (unless dry) write each differing file; one line (``ok_detail``: why nothing is needed)."""
    return apply(session, host, step, files_change(specs, states, noop=ok_detail), dry_run)


def apply_changes(session: Session, host: Host, step: str, changes: list[FileChange], dry_run: bool,
                  detail: str, commands: Iterable[str] = ()) -> Outcome:
    """Show (dry run) or write ``changes`` and run ``commands``; report one line for the step."""
    diffs = [d for d in (c.diff() for c in changes) if d]
    if dry_run:
        return session.report(Outcome(host.name, step, "would change", detail, diffs), show_diff=True)
    try:
        for c in changes:
            files.write(host, c)
        for cmd in commands:
            host.check(cmd, what=cmd)
    finally:
        session.forget(host)  # facts read before (or during) this change are stale now
    return session.report(Outcome(host.name, step, "changed", detail, diffs))
