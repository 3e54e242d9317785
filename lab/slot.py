"""Which lab this process may touch, and when: the slot's network namespace and the slot's lock.

A lab lives in one network namespace (the machine's own, or a developer's slot ``svrctl<N>`` entered
through ``labslot N``) with its bridge, veths and addresses, and owns the host namespaces, disks and
machine names of its slot (``SVRCHAIN_LAB_SLOT``). A command whose slot and network namespace disagree
would tear down or bring up another slot's bridge: it is refused in one line.

Bringing a lab up or down, and a run that uses it from up to down (the bench, a test module), hold the
slot's lock (``/var/lib/svrchain-lab<N>.lock``, flock), so that another process's ``lab down`` can never
remove the bridge or the hosts under them (issue 23: a bench run refused half-way because "198.18.0.10
would go through eth0"): it waits for the holder, then says who holds the lab.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from lab import LabError

SLOT = os.environ.get("SVRCHAIN_LAB_SLOT", "")
NETNS_DIR = Path("/run/netns")
LOCK = Path(f"/var/lib/svrchain-lab{SLOT}.lock")
WAIT = 600.0  # seconds another process's up, down or run is waited for before giving up

_held: list[int] = []  # this process's open lock file (held while non-empty; re-entrant)


def _slot_namespaces() -> dict[int, str]:
    """The developers' slot namespaces (``svrctl<N>``) by inode."""
    out = {}
    for p in NETNS_DIR.glob("svrctl*") if NETNS_DIR.is_dir() else []:
        with contextlib.suppress(OSError):
            out[p.stat().st_ino] = p.name
    return out


def check_namespace() -> None:
    """Refuse to touch a lab from the wrong network namespace: with ``SVRCHAIN_LAB_SLOT=N`` only inside
    ``svrctl<N>`` (``labslot N``); without it, never inside a slot's namespace."""
    here = os.stat("/proc/self/ns/net").st_ino
    slots = _slot_namespaces()
    if SLOT and slots.get(here) != f"svrctl{SLOT}":
        raise LabError(f"lab: SVRCHAIN_LAB_SLOT={SLOT}, but this command does not run in the slot's network "
                       f"namespace svrctl{SLOT} (it would use another lab's bridge): run it as `labslot {SLOT} ...`")
    if not SLOT and here in slots:
        raise LabError(f"lab: this command runs in {slots[here]} without SVRCHAIN_LAB_SLOT (it would use "
                       f"the machine's lab's hosts and disks): run it as `labslot {slots[here][6:]} ...`")


def holder() -> str:
    """Who holds the slot's lab, as its lock file says (the PID, since when, the command)."""
    try:
        return LOCK.read_text().strip() or "another process"
    except OSError:
        return "another process"


def _describe() -> str:
    since = time.strftime("%H:%M:%S")
    return f"PID {os.getpid()} since {since}: {' '.join(sys.argv)[:200]}"


@contextlib.contextmanager
def held(wait: float = WAIT) -> Iterator[None]:
    """This process has the slot's lab to itself for the block (re-entrant): another process's up, down
    or held run waits for the block to end, for up to ``wait`` seconds, then is refused naming it."""
    check_namespace()
    if _held:
        _held.append(_held[0])
        try:
            yield
        finally:
            _held.pop()
        return
    fd = os.open(LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        _acquire(fd, wait)
        os.ftruncate(fd, 0)
        os.pwrite(fd, (_describe() + "\n").encode(), 0)
        _held.append(fd)
        try:
            yield
        finally:
            _held.clear()
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # closing the last descriptor releases the lock


def _acquire(fd: int, wait: float) -> None:
    deadline = time.monotonic() + wait
    told = False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pass
        if time.monotonic() >= deadline:
            raise LabError(f"lab: the lab{' of slot ' + SLOT if SLOT else ''} is in use by {holder()}; "
                           f"waited {wait:.0f}s: let it finish (or stop it), then run this again") from None
        if not told and wait >= 2:
            print(f"lab: waiting for the lab's holder ({holder()})", file=sys.stderr, flush=True)
            told = True
        time.sleep(0.1)
