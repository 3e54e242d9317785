"""The trigger's run, as the rest of svrchain sees it: its status file and its bound.

The trigger (``svrchain/files/svr_restart.sh``) writes the status of each run, one line per event,
to a temporary file beside :func:`status_path` while it runs, and renames it into place when it
finishes::

    started <epoch>                      the run holds the lock
    ready <epoch>                        the database was ready (absent when it never was)
    run <identity>                       the database's run it follows ('unknown' when it cannot tell)
    web <name> <ok|hostkey|failed> <epoch>   one web server's result
    finished <epoch> <ok|failed|notready|standby>   (standby: a pair's standby, nothing restarted)

:func:`parse` is the one reader of that format (restart-chain, verify, the bench and the tests use
it), and :func:`bound` the one answer to "how long may a trigger run take" (the trigger's lock
wait, its systemd unit's TimeoutStartSec, restart-chain's wait, verify's stuck-run check, the bench).
"""

from __future__ import annotations

import base64
import math
import shlex
from dataclasses import dataclass, field

from svrchain.core.inventory import Inventory

STATE_DIR = "/var/lib/svrchain"
# How long restart-chain waits for the trigger run that its database restart starts to begin.
START_WAIT = 15


def status_path(inv: Inventory) -> str:
    """The last finished run's status on the DB host (the run going writes ``<it>.XXXXXX``)."""
    return f"{STATE_DIR}/{inv.trigger.name}.status"


@dataclass(frozen=True)
class WebResult:
    """One web server's result in a run."""

    state: str  # ok, hostkey (its host key is not the pinned one: not retried) or failed
    at: float


@dataclass
class TriggerRun:
    """One trigger run, as its status file tells it (``None`` for what it does not say yet)."""

    started: float | None = None
    ready: float | None = None
    run: str | None = None
    webs: dict[str, WebResult] = field(default_factory=dict)
    finished: float | None = None
    result: str | None = None  # ok, failed, notready or standby (a pair's standby: nothing restarted)

    @property
    def done(self) -> bool:
        """The run has finished (its status file is complete)."""
        return self.finished is not None

    def restarted(self, web: str) -> float | None:
        """When ``web`` was restarted by this run after the database was ready; None if it was not."""
        w = self.webs.get(web)
        if w is None or w.state != "ok" or self.ready is None or w.at < self.ready:
            return None
        return w.at


def _float(word: str) -> float | None:
    try:
        value = float(word)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def parse(text: str) -> TriggerRun:
    """A status file's text as a :class:`TriggerRun`; lines it does not know, or cannot read, are skipped."""
    run = TriggerRun()
    for line in text.splitlines():
        p = line.split()
        if len(p) == 2 and p[0] in ("started", "ready") and _float(p[1]) is not None:
            setattr(run, p[0], _float(p[1]))
        elif len(p) == 2 and p[0] == "run":
            run.run = p[1]
        elif len(p) == 4 and p[0] == "web" and _float(p[3]) is not None:
            run.webs[p[1]] = WebResult(p[2], _float(p[3]) or 0.0)
        elif len(p) == 3 and p[0] == "finished" and _float(p[1]) is not None:
            run.finished, run.result = _float(p[1]), p[2]
    return run


def bound(inv: Inventory) -> int:
    """The longest one trigger run takes, in whole seconds, once it holds the lock: the readiness
    wait (its timeout and one more interval); then, every web server at once, the wait for its
    connection opened in advance, and each attempt (the restart, then the gate's ``status`` that
    tells whether it restarted after all, each within restart_timeout) with the backoff sleeps
    between them (1, 2, 4 ... s); the on-call hook, when one is set (its hook_timeout and the 5 s
    before it is killed); and a margin for the rest (state files, closing connections).

    A second run waits at most this long for the lock; restart-chain waits for its run to begin,
    then at most this long; systemd gives the unit's start twice this (the lock wait, then the run).
    """
    t, ready = inv.trigger, inv.db.ready
    backoff = 2 ** (t.retries - 1) - 1
    return (ready.timeout + math.ceil(ready.interval) + t.connect_timeout
            + t.retries * 2 * t.restart_timeout + backoff + 30 + (t.hook_timeout + 5 if t.hooks else 0))


def unit_timeout(inv: Inventory) -> int:
    """The trigger unit's TimeoutStartSec: it may wait for another run's lock, then run itself."""
    return 2 * bound(inv)


# On the DB host: wait for the trigger run that began at or after $2 to finish, and print its status.
# Exit 3 when no run began within $3 seconds (the chain did not fire), 4 when none finished within $4.
# $1 is the status path; a run going writes "$1".XXXXXX, whose first line is "started <epoch>".
_WAIT = r"""
S=$1; T0=$2; start_wait=$3; end_wait=$4
t=$(date +%s)
begun=
while :; do
    for f in "$S" "$S".*; do
        [ -f "$f" ] || continue
        s=$(awk 'NR==1 && $1=="started" {print $2}' "$f" 2>/dev/null)
        [ -n "$s" ] || continue
        if awk -v a="$s" -v b="$T0" 'BEGIN{exit !(a >= b)}'; then
            begun=1
            if [ "$f" = "$S" ]; then cat "$S"; exit 0; fi
        fi
    done
    now=$(date +%s)
    if [ -z "$begun" ] && [ $((now - t)) -ge "$start_wait" ]; then exit 3; fi
    if [ $((now - t)) -ge "$end_wait" ]; then exit 4; fi
    sleep 0.1
done
"""


def wait_command(inv: Inventory, since: float) -> tuple[str, list[str]]:
    """(script, arguments) that wait on the DB host for the run that began at or after ``since`` to
    finish (it begins within START_WAIT, then ends within the bound), printing its status."""
    return _WAIT, [status_path(inv), f"{since:.6f}", str(START_WAIT), str(START_WAIT + bound(inv))]


# On the DB host: the status of every run going ("<path>.XXXXXX"), one after another.
def going_command(inv: Inventory) -> str:
    """Prints the status of each run still going (or left by a run that died), separated by '--'."""
    return f'for f in {status_path(inv)}.??????; do [ -f "$f" ] && cat "$f" && echo --; done; true'


# --- The database's main process, as verify sees it (the trigger's run, checked from outside) ------

# On the DB host: every process whose command line matches db.run.process, of ANY account, one a
# line: "<pid> <uid> <user> <start ticks> <exe>" (exe '-' when it cannot be read). The regex comes
# base64-encoded ($1), so that no command line of this probe's own matches it.
PROCESSES = r"""
re=$(printf '%s' "$1" | base64 -d) || exit 1
for p in $(pgrep -f -- "$re"); do
    [ "$p" != "$$" ] || continue
    st=$(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null) || continue
    set -- $st
    [ -n "${20:-}" ] || continue
    printf '%s %s %s\n' "$p" "$(stat -c '%u %U' "/proc/$p" 2>/dev/null)" "${20}"
    readlink "/proc/$p/exe" 2>/dev/null || echo -
done | paste -d ' ' - -
"""


def processes_command(inv: Inventory) -> str:
    """The command line that runs :data:`PROCESSES` for the inventory's db.run.process."""
    regex = base64.b64encode((inv.db.run.process or "").encode()).decode()
    return f"sh -c {shlex.quote(PROCESSES)} sh {regex}"


@dataclass(frozen=True)
class Process:
    """A process whose command line matches db.run.process."""

    pid: int
    uid: int
    user: str
    start: int  # clock ticks since boot
    exe: str

    @property
    def run(self) -> str:
        """Its identity as the trigger writes a run: <uid>:<pid>.<start>."""
        return f"{self.uid}:{self.pid}.{self.start}"


def parse_processes(text: str) -> list[Process]:
    """:data:`PROCESSES`' output; lines it cannot read are skipped."""
    found = []
    for line in text.splitlines():
        p = line.split(maxsplit=4)
        if len(p) == 5 and p[0].isdigit() and p[1].isdigit() and p[3].isdigit():
            found.append(Process(int(p[0]), int(p[1]), p[2], int(p[3]), p[4].removesuffix(" (deleted)")))
    return found


def the_database(procs: list[Process], uid: int, exe: str | None) -> tuple[Process | None, list[Process]]:
    """(the database's main process, the look-alikes): the oldest process of the owner ``uid`` running
    ``exe`` (when the inventory names it) is the run, as the trigger tells it; every matching process
    of another account, or of another program, is a look-alike."""
    own = [p for p in procs if p.uid == uid and (exe is None or p.exe == exe)]
    main = min(own, key=lambda p: p.start) if own else None
    return main, [p for p in procs if p not in own]


def parse_tick(text: str) -> tuple[float, str] | None:
    """The watcher's tick file ("<epoch> <run>"): when it last looked, and the run it saw."""
    p = text.split()
    value = _float(p[0]) if len(p) == 2 else None
    return (value, p[1]) if value is not None else None


def tick_limit(inv: Inventory) -> float:
    """A watcher whose last look is older than this (a few of its intervals, at least 10 s) is stuck."""
    return max(5 * inv.db.run.interval, 10.0)
