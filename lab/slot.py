"""Which lab this process may touch, and when: the slot's network namespace and the slot's lock.

A lab lives in one network namespace (the machine's own, or a developer's slot ``svrctl<N>`` entered
through ``labslot N``) with its bridge, veths and addresses, and owns the host namespaces, disks and
machine names of its slot (``SVRCHAIN_LAB_SLOT``). A command whose slot and network namespace disagree
would tear down or bring up another slot's bridge: it is refused in one line. Several slots run at once
(make test runs its lab tests in two): ``python -m lab slot N -- CMD`` runs CMD in slot N's namespace,
and :func:`free` takes down whatever a slot's lab left and removes the namespace. Run as root.

Bringing a lab up or down, and a run that uses it from up to down (the bench, a test module), hold the
slot's lock (``/var/lib/svrchain-lab<N>.lock``, flock), so that another process's ``lab down`` can never
remove the bridge or the hosts under them (issue 23: a bench run refused half-way because "198.18.0.10
would go through eth0"): it waits for the holder, then says who holds the lab.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from lab import LabError

SLOT = os.environ.get("SVRCHAIN_LAB_SLOT", "")
NETNS_DIR = Path("/run/netns")
CONTROL = "svrctl"  # a slot's network namespace: svrctl<N>


def lock_path(slot: str) -> Path:
    """The slot's lock file (slot "": the machine's own lab)."""
    return Path(f"/var/lib/svrchain-lab{slot}.lock")


LOCK = lock_path(SLOT)
WAIT = 600.0  # seconds another process's up, down or run is waited for before giving up

_held: list[int] = []  # this process's open lock file (held while non-empty; re-entrant)


def _slot_namespaces() -> dict[int, str]:
    """The developers' slot namespaces (``svrctl<N>``) by inode."""
    out = {}
    for p in NETNS_DIR.glob(CONTROL + "*") if NETNS_DIR.is_dir() else []:
        with contextlib.suppress(OSError):
            out[p.stat().st_ino] = p.name
    return out


def check_namespace() -> None:
    """Refuse to touch a lab from the wrong network namespace: with ``SVRCHAIN_LAB_SLOT=N`` only inside
    ``svrctl<N>`` (``labslot N``); without it, never inside a slot's namespace."""
    here = os.stat("/proc/self/ns/net").st_ino
    slots = _slot_namespaces()
    if SLOT and slots.get(here) != CONTROL + SLOT:
        raise LabError(f"lab: SVRCHAIN_LAB_SLOT={SLOT}, but this command does not run in the slot's network "
                       f"namespace {CONTROL}{SLOT} (it would use another lab's bridge): run it as `labslot {SLOT} ...`")
    if not SLOT and here in slots:
        raise LabError(f"lab: this command runs in {slots[here]} without SVRCHAIN_LAB_SLOT (it would use "
                       f"the machine's lab's hosts and disks): run it as `labslot {slots[here][len(CONTROL):]} ...`")


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


# --- other slots: enter, free, what is left ------------------------------------------------


def check(slot: str) -> str:
    """A slot's number as text ("1" to "9"), or a LabError."""
    if not (len(slot) == 1 and slot in "123456789"):
        raise LabError(f"lab: a slot is a number from 1 to 9, not {slot!r}")
    return slot


def control_netns(slot: str) -> str:
    """The name of the network namespace a slot's lab runs in."""
    return CONTROL + check(slot)


def ensure(slot: str) -> None:
    """Create the slot's network namespace (loopback up) unless it exists."""
    ns = control_netns(slot)
    if not (NETNS_DIR / ns).exists():
        subprocess.run(["ip", "netns", "add", ns], check=True, capture_output=True)
        subprocess.run(["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"], check=True, capture_output=True)


def argv(slot: str, command: list[str]) -> list[str]:
    """The command line that runs ``command`` in the slot (its namespace must exist: :func:`ensure`)."""
    return ["nsenter", f"--net={NETNS_DIR / control_netns(slot)}", "env", f"SVRCHAIN_LAB_SLOT={check(slot)}", *command]


def free(slot: str) -> None:
    """Take down the slot's lab (hosts, mounts, disks, namespaces) and remove its network namespace."""
    ns = control_netns(slot)
    if (NETNS_DIR / ns).exists():
        subprocess.run(argv(slot, [sys.executable, "-m", "lab", "down"]), capture_output=True, timeout=900)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    lock_path(slot).unlink(missing_ok=True)  # nobody holds it now


def leftovers(slot: str) -> list[str]:
    """What of the slot's lab is still on this machine (nothing, after :func:`free`)."""
    var = f"/var/lib/svrchain-lab{check(slot)}"
    found = [f"network namespace {p.name}" for p in sorted(NETNS_DIR.glob(f"svrlab{slot}-*"))]
    if (NETNS_DIR / control_netns(slot)).exists():
        found.append(f"network namespace {control_netns(slot)}")
    found += [f"file or directory {p}" for p in (var, str(lock_path(slot))) if os.path.exists(p)]
    found += [f"mount {line.split()[1]}" for line in Path("/proc/mounts").read_text().splitlines()
              if line.split()[1].startswith(var + "/")]
    procs = subprocess.run(["pgrep", "-a", "-f", f"{var}/"], capture_output=True, text=True).stdout.splitlines()
    found += [f"process {p}" for p in procs if str(os.getpid()) != p.split()[0]]
    return found


def run(slot: str, command: list[str]) -> int:
    """``python -m lab slot N -- CMD``: run CMD in the slot (replacing this process)."""
    if not command:
        raise LabError("lab: slot: give the command to run, e.g. python -m lab slot 1 -- python -m lab up")
    ensure(slot)
    full = argv(slot, command)
    os.execvp(full[0], full)
    return 127  # not reached
