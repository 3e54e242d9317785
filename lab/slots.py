"""Lab slots: several labs on one machine at once (make test runs its lab tests in two).

A lab in slot N (``SVRCHAIN_LAB_SLOT=N``, lab/hosts.py) has its own host namespaces (``svrlabN-*``), disks
(``/var/lib/svrchain-labN``) and machine names, and runs inside a network namespace of its own,
``svrctlN``, where its bridge and the lab's fixed addresses live. ``python -m lab slot N -- CMD`` runs
CMD there; :func:`free` takes down whatever a slot's lab left and removes the namespace. Run as root.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from lab import LabError

NETNS = Path("/run/netns")


def check(slot: str) -> str:
    """A slot's number as text ("1" to "9"), or a LabError."""
    if not (len(slot) == 1 and slot in "123456789"):
        raise LabError(f"lab: a slot is a number from 1 to 9, not {slot!r}")
    return slot


def control_netns(slot: str) -> str:
    """The name of the network namespace a slot's lab runs in."""
    return f"svrctl{check(slot)}"


def ensure(slot: str) -> None:
    """Create the slot's network namespace (loopback up) unless it exists."""
    ns = control_netns(slot)
    if not (NETNS / ns).exists():
        subprocess.run(["ip", "netns", "add", ns], check=True, capture_output=True)
        subprocess.run(["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"], check=True, capture_output=True)


def argv(slot: str, command: list[str]) -> list[str]:
    """The command line that runs ``command`` in the slot (its namespace must exist: :func:`ensure`)."""
    return ["nsenter", f"--net={NETNS / control_netns(slot)}", "env", f"SVRCHAIN_LAB_SLOT={check(slot)}", *command]


def free(slot: str) -> None:
    """Take down the slot's lab (hosts, mounts, disks, namespaces) and remove its network namespace."""
    ns = control_netns(slot)
    if (NETNS / ns).exists():
        subprocess.run(argv(slot, [sys.executable, "-m", "lab", "down"]), capture_output=True, timeout=900)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    Path(f"/var/lib/svrchain-lab{slot}.lock").unlink(missing_ok=True)  # lab/slot.py's lock: nobody holds it now


def leftovers(slot: str) -> list[str]:
    """What of the slot's lab is still on this machine (nothing, after :func:`free`)."""
    var = f"/var/lib/svrchain-lab{check(slot)}"
    found = [f"network namespace {p.name}" for p in sorted(NETNS.glob(f"svrlab{slot}-*"))]
    if (NETNS / control_netns(slot)).exists():
        found.append(f"network namespace {control_netns(slot)}")
    found += [f"file or directory {p}" for p in (var, var + ".lock") if os.path.exists(p)]
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
