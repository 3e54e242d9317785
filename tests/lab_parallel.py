"""make test's lab tests in two labs at once: ``python -m tests.lab_parallel [SLOT...] [-- FILE... | -k ...]``.

The lab tests spend most of their time waiting (hosts booting, the chain's waits), not computing, so
make test runs them in two groups at once, each with its own lab in a slot of its own (lab/slots.py:
its own network namespace, host namespaces, disks). The test modules go to the groups by the time each
took (MEASURED), longest first to the group with less to do, so that both end at about the same time.
Both groups run to the end whatever the other does; the run fails if either fails. Each group's lines
are shown as they come, prefixed with its name; at the end, each group's summary and one line with the
totals. Afterwards every slot is freed (its lab down, its namespace removed; after a failure or Ctrl-C
too) and checked: anything left of a slot's lab fails the run.

Slots: the arguments, else LAB_SLOTS, else "1 2". Arguments after ``--`` go to each group's pytest
(files or directories given there replace the default set, split the same way). Without root the lab
tests cannot run: one plain pytest run, where they skip, saying why.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from lab import slots
from lab.rootfs import ensure_rootfs

REPO = Path(__file__).resolve().parents[1]
# Seconds each module took, lab up and down included (measured one at a time on the shared 2-core
# machine, Dec 2026); a module not listed counts DEFAULT. tests/unit: its lab-marked tests.
MEASURED = {
    "tests/lab/test_attacks.py": 45,
    "tests/lab/test_bootstrap.py": 280,
    "tests/lab/test_bypass_keys.py": 145,
    "tests/lab/test_chain.py": 315,
    "tests/lab/test_every_restart.py": 180,
    "tests/lab/test_harden.py": 180,
    "tests/lab/test_hostile_values.py": 60,
    "tests/lab/test_least_privilege.py": 180,
    "tests/lab/test_oracle.py": 300,
    "tests/lab/test_results.py": 90,
    "tests/lab/test_rotate.py": 60,
    "tests/lab/test_run_owner.py": 300,
    "tests/lab/test_scenarios.py": 240,
    "tests/lab/test_site_unit.py": 45,
    "tests/lab/test_trigger_lock.py": 90,
    "tests/lab/test_trigger_upgrade.py": 90,
    "tests/lab/test_two_admins.py": 60,
    "tests/lab/test_uninstall.py": 150,
    "tests/lab/test_web_account.py": 90,
    "tests/unit": 45,
}
DEFAULT = 60
PYTEST = [sys.executable, "-m", "pytest", "-m", "lab", "-p", "no:cacheprovider"]
OUTCOMES = ("passed", "failed", "error", "errors", "skipped", "xfailed", "xpassed")
OUT_LOCK = threading.Lock()  # one group's line at a time on stdout
GRACE = 300  # seconds the groups get to tear their labs down after an interrupt, before they are killed


@dataclass
class Group:
    """One group of test modules, run in one lab slot."""

    slot: str
    files: list[str]
    proc: subprocess.Popen | None = None
    lines: list[str] = field(default_factory=list)
    started: float = 0.0
    ended: float = 0.0

    @property
    def name(self) -> str:
        return f"lab{self.slot}"

    def cost(self) -> float:
        return sum(MEASURED.get(f, DEFAULT) for f in self.files)


def split(files: list[str], slot_names: list[str]) -> list[Group]:
    """The files in groups of about equal measured time: longest first, each to the group with least."""
    groups = [Group(s, []) for s in slot_names]
    for f in sorted(files, key=lambda f: (-MEASURED.get(f, DEFAULT), f)):
        min(groups, key=Group.cost).files.append(f)
    for g in groups:
        g.files.sort()
    return [g for g in groups if g.files]


def default_files() -> list[str]:
    """Every lab test module, and tests/unit for the lab-marked tests there."""
    return [*sorted(str(p.relative_to(REPO)) for p in (REPO / "tests/lab").glob("test_*.py")), "tests/unit"]


def _follow(group: Group, out_lock: threading.Lock) -> None:
    """Show the group's lines as they come, prefixed with its name, and keep them for its summary."""
    assert group.proc is not None and group.proc.stdout is not None
    for line in group.proc.stdout:
        group.lines.append(line.rstrip("\n"))
        with out_lock:
            sys.stdout.write(f"[{group.name}] {line}")
            sys.stdout.flush()
    group.proc.wait()
    group.ended = time.monotonic()


def start(group: Group, extra: list[str]) -> threading.Thread:
    """Start the group's pytest in its slot (a session of its own: an interrupt reaches it once, from here)."""
    slots.ensure(group.slot)
    color = ["--color=yes"] if sys.stdout.isatty() else []
    argv = slots.argv(group.slot, [*PYTEST, *color, *extra, *group.files])
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    print(f"{group.name}: slot {group.slot}, about {group.cost() / 60:.0f} min measured: {' '.join(group.files)}",
          flush=True)
    group.started = time.monotonic()
    group.proc = subprocess.Popen(argv, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, errors="replace", start_new_session=True)
    thread = threading.Thread(target=_follow, args=(group, OUT_LOCK), daemon=True)
    thread.start()
    return thread


def wait(groups: list[Group], threads: list[threading.Thread]) -> bool:
    """Wait for every group; an interrupt (SIGINT, SIGTERM) is passed to the groups as SIGINT, so that
    pytest tears the labs down; a third one, or GRACE seconds after the first, kills them. True when
    interrupted."""
    signals: list[float] = []

    def on_signal(signum, frame) -> None:
        signals.append(time.monotonic())
        sig = signal.SIGINT if len(signals) < 3 else signal.SIGKILL
        with OUT_LOCK:
            print(f"lab: interrupted: {'stopping' if sig == signal.SIGINT else 'killing'} the groups "
                  "(their labs are taken down after)", flush=True)
        _signal_groups(groups, sig)

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        while any(t.is_alive() for t in threads):
            for t in threads:
                t.join(timeout=0.5)
            if signals and time.monotonic() - signals[0] > GRACE:
                _signal_groups(groups, signal.SIGKILL)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    return bool(signals)


def _signal_groups(groups: list[Group], sig: int) -> None:
    for g in groups:
        if g.proc is not None and g.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(g.proc.pid, sig)


def counts(line: str) -> dict[str, int]:
    """The outcomes in pytest's last line ("== 3 failed, 90 passed, 2 skipped in 1.2s ==")."""
    found = {word: int(n) for n, word in re.findall(r"(\d+) (\w+)", re.sub(r"\x1b\[[0-9;]*m", "", line))
             if word in OUTCOMES}
    if "errors" in found:
        found["error"] = found.pop("errors") + found.get("error", 0)
    return found


def summary(group: Group) -> list[str]:
    """The group's closing lines: pytest's short summary (skips and failures) and its last line."""
    start = next((i for i, x in enumerate(group.lines) if "short test summary info" in x), len(group.lines) - 1)
    code = group.proc.returncode if group.proc is not None else None
    head = (f"===== {group.name} (slot {group.slot}): exit {code}, {(group.ended - group.started) / 60:.1f} min: "
            f"{' '.join(group.files)}")
    return [head, *group.lines[max(start, 0):]]


def free(slot_names: list[str]) -> list[str]:
    """Free every slot; what is still left of any (each a line)."""
    left = []
    for s in slot_names:
        slots.free(s)
        left += [f"lab: slot {s} left {x}" for x in slots.leftovers(s)]
    return left


def parse(argv: list[str]) -> tuple[list[str], list[str], list[str]]:
    """(slots, files, other pytest arguments) from the command line and LAB_SLOTS."""
    own, extra = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv else (argv, [])
    slot_names = own or os.environ.get("LAB_SLOTS", "1 2").split()
    for s in slot_names:
        slots.check(s)
    files = [x for x in extra if not x.startswith("-") and (REPO / x.split("::")[0]).exists()]
    return slot_names, files, [x for x in extra if x not in files]


def main(argv: list[str]) -> int:
    """Run the lab tests in groups, one per slot; 0 only when every group passed and nothing is left."""
    slot_names, files, extra = parse(argv)
    if os.geteuid() != 0:
        return subprocess.run([*PYTEST, *extra, *files], cwd=REPO).returncode
    ensure_rootfs()  # built once here (if missing), not by two labs at once
    free(slot_names)  # whatever an earlier run left in these slots
    groups = split(files or default_files(), slot_names)
    threads = [start(g, extra) for g in groups]
    interrupted = wait(groups, threads)
    left = free(slot_names)
    total: dict[str, int] = {}
    print(flush=True)
    for g in groups:
        print("\n".join(summary(g)), flush=True)
        for k, v in counts(g.lines[-1] if g.lines else "").items():
            total[k] = total.get(k, 0) + v
    for x in left:
        print(x, flush=True)
    failed = total.get("failed", 0) + total.get("error", 0)
    ok = not interrupted and not left and all(g.proc is not None and g.proc.returncode == 0 for g in groups)
    print(f"lab: {total.get('passed', 0)} passed, {failed} failed, {total.get('skipped', 0)} skipped", flush=True)
    return 0 if ok else (130 if interrupted else 1)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
