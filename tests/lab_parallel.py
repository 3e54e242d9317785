"""make test's tests in two labs at once: ``python -m tests.lab_parallel [--unit JOBS] [SLOT...] [-- ARG...]``.

The lab tests spend most of their time waiting (hosts booting, the chain's waits), not computing, so
make test runs them in two groups at once, each with its own lab in a slot of its own (lab/slot.py:
its own network namespace, host namespaces, disks). The test modules go to the groups by the time each
took (MEASURED), longest first to the group with less to do, so that both end at about the same time.
With ``--unit JOBS`` the unit tests (``pytest -n JOBS -m "not lab" tests/unit``, on this machine's own network)
count as one more module: the group they go to runs them first, then its lab tests, while the other
group's lab tests run. Every run goes to its end whatever the others do; the whole fails if any fails.
Each run's lines are shown as they come, prefixed with its name ([unit], [lab1], [lab2]); at the end,
each run's summary and one line with the totals. Afterwards every slot is freed (its lab down, its
namespace removed; after a failure or Ctrl-C too) and checked: anything left of a slot's lab fails.

Slots: the arguments, else LAB_SLOTS, else "1 2". Arguments after ``--`` go to each lab run's pytest
(files or directories given there replace the default set, split the same way). Without root the lab
tests cannot run: the unit tests, then one plain lab run, where they skip, saying why.
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

from lab import slot
from lab.rootfs import ensure_rootfs

REPO = Path(__file__).resolve().parents[1]
UNIT = "unit tests"  # make test's unit tests, as one more module of a group (--unit)
# Seconds each module took, lab up and down included (pytest --durations, both groups at once on the shared
# 2-core machine under a load of 13-19, Dec 2026: what matters is their ratio); a module not listed counts
# DEFAULT. tests/unit: its lab-marked tests.
MEASURED = {
    "tests/lab/test_attacks.py": 139,
    "tests/lab/test_bootstrap.py": 406,
    "tests/lab/test_bypass_keys.py": 199,
    "tests/lab/test_doctor.py": 150,  # estimated (one SysV lab, 7 cases): landed after the measured run
    "tests/lab/test_chain.py": 409,
    "tests/lab/test_estate.py": 150,  # one SysV lab, two DB hosts, 12 cases: 93 s alone; landed after the measured run
    "tests/lab/test_early_connect.py": 120,  # estimated (one SysV lab, 4 cases)
    "tests/lab/test_every_restart.py": 246,
    "tests/lab/test_harden.py": 344,
    "tests/lab/test_hostile_values.py": 112,
    "tests/lab/test_lab_down.py": 150,  # estimated (three labs up and down): landed after the measured run
    "tests/lab/test_lab_whole.py": 120,  # estimated (one SysV lab, 4 cases): landed after the measured run
    "tests/lab/test_least_privilege.py": 310,
    "tests/lab/test_oracle.py": 462,
    "tests/lab/test_results.py": 98,
    "tests/lab/test_rotate.py": 89,
    "tests/lab/test_run_owner.py": 358,
    "tests/lab/test_scenarios.py": 349,
    "tests/lab/test_site_unit.py": 49,
    "tests/lab/test_standby.py": 260,  # estimated (two labs, sysv and systemd: 224 s alone): landed after
    "tests/lab/test_standby_oracle.py": 90,  # estimated (one chkconfig lab, 1 case, 62 s alone): the measured run
    "tests/lab/test_trigger_lock.py": 81,
    "tests/lab/test_trigger_upgrade.py": 122,
    "tests/lab/test_two_admins.py": 73,
    "tests/lab/test_uninstall.py": 184,
    "tests/lab/test_web_account.py": 129,
    "tests/unit": 30,
}
UNIT_SECONDS = 200  # the unit tests on two processes beside a lab group (same load)
DEFAULT = 120
PYTEST = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider"]
OUTCOMES = ("passed", "failed", "error", "errors", "skipped", "xfailed", "xpassed")
OUT_LOCK = threading.Lock()  # one run's line at a time on stdout
GRACE = 300  # seconds the runs get to tear their labs down after an interrupt, before they are killed


def unit_args(jobs: str) -> list[str]:
    """pytest's arguments for the unit tests on ``jobs`` processes, as make unit has them (worksteal: a
    process that has run out of tests takes half of the other's)."""
    return ["--dist", "worksteal", "-n", jobs, "-m", "not lab", "tests/unit"]


@dataclass
class Run:
    """One pytest run: its name (the prefix of its lines), command line, lines and exit code."""

    name: str
    argv: list[str]
    lines: list[str] = field(default_factory=list)
    code: int | None = None
    seconds: float = 0.0


@dataclass
class Group:
    """The test modules run one after the other, the lab's in one lab slot."""

    slot: str
    files: list[str]
    runs: list[Run] = field(default_factory=list)
    proc: subprocess.Popen | None = None  # the run going on
    stop: bool = False  # interrupted: start no further run

    def cost(self) -> float:
        return sum(UNIT_SECONDS if f == UNIT else MEASURED.get(f, DEFAULT) for f in self.files)


def split(files: list[str], slot_names: list[str]) -> list[Group]:
    """The files in groups of about equal measured time: longest first, each to the group with least."""
    groups = [Group(s, []) for s in slot_names]
    for f in sorted(files, key=lambda f: (-Group("", [f]).cost(), f)):
        min(groups, key=Group.cost).files.append(f)
    for g in groups:
        g.files.sort(key=lambda f: (f != UNIT, f))  # the unit tests first
    return [g for g in groups if g.files]


def default_files() -> list[str]:
    """Every lab test module, and tests/unit for the lab-marked tests there."""
    return [*sorted(str(p.relative_to(REPO)) for p in (REPO / "tests/lab").glob("test_*.py")), "tests/unit"]


def plan(group: Group, unit_jobs: str, extra: list[str]) -> None:
    """The group's runs: the unit tests (if it has them), then its lab tests in its slot."""
    color = ["--color=yes"] if sys.stdout.isatty() else []
    if UNIT in group.files:
        group.runs.append(Run("unit", [*PYTEST, *color, *unit_args(unit_jobs)]))
    lab_files = [f for f in group.files if f != UNIT]
    if lab_files:
        group.runs.append(Run(f"lab{group.slot}", slot.argv(group.slot, [*PYTEST, *color, "-m", "lab", *extra,
                                                                            *lab_files])))


def _go(group: Group) -> None:
    """Run the group's runs one after the other (each to its end), showing their lines as they come."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for run in group.runs:
        if group.stop:
            break
        start = time.monotonic()
        group.proc = subprocess.Popen(run.argv, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True, errors="replace", start_new_session=True)
        assert group.proc.stdout is not None
        for line in group.proc.stdout:
            run.lines.append(line.rstrip("\n"))
            with OUT_LOCK:
                sys.stdout.write(f"[{run.name}] {line}")
                sys.stdout.flush()
        run.code = group.proc.wait()
        run.seconds = time.monotonic() - start


def start(group: Group) -> threading.Thread:
    """Start the group's runs (each in a session of its own: an interrupt reaches it once, from here)."""
    slot.ensure(group.slot)
    print(f"group {group.slot} ({group.cost():.0f} s by MEASURED): {' '.join(group.files)}", flush=True)
    thread = threading.Thread(target=_go, args=(group,), daemon=True)
    thread.start()
    return thread


def wait(groups: list[Group], threads: list[threading.Thread]) -> bool:
    """Wait for every group; an interrupt (SIGINT, SIGTERM) is passed to the runs as SIGINT, so that
    pytest tears the labs down; a third one, or GRACE seconds after the first, kills them. True when
    interrupted."""
    signals: list[float] = []

    def on_signal(signum, frame) -> None:
        signals.append(time.monotonic())
        sig = signal.SIGINT if len(signals) < 3 else signal.SIGKILL
        with OUT_LOCK:
            print(f"interrupted: {'stopping' if sig == signal.SIGINT else 'killing'} the runs "
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
        g.stop = True
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


def summary(run: Run) -> list[str]:
    """The run's closing lines: pytest's short summary (skips and failures) and its last line."""
    start = next((i for i, x in enumerate(run.lines) if "short test summary info" in x), len(run.lines) - 1)
    return [f"===== [{run.name}] exit {run.code}, {run.seconds / 60:.1f} min", *run.lines[max(start, 0):]]


def free(slot_names: list[str]) -> list[str]:
    """Free every slot; what is still left of any (each a line)."""
    left = []
    for s in slot_names:
        slot.free(s)
        left += [f"lab: slot {s} left {x}" for x in slot.leftovers(s)]
    return left


def parse(argv: list[str]) -> tuple[list[str], str | None, list[str], list[str]]:
    """(slots, unit test jobs or None, files, other pytest arguments) from the command line and LAB_SLOTS."""
    own, extra = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv else (argv, [])
    unit = None
    if "--unit" in own:
        i = own.index("--unit")
        unit, own = own[i + 1], own[:i] + own[i + 2:]
    slot_names = own or os.environ.get("LAB_SLOTS", "1 2").split()
    for s in slot_names:
        slot.check(s)
    files = [x for x in extra if not x.startswith("-") and (REPO / x.split("::")[0]).exists()]
    return slot_names, unit, files, [x for x in extra if x not in files]


def report(groups: list[Group], left: list[str], interrupted: bool) -> int:
    """Print each run's summary, what a slot left, and the totals; the exit code."""
    runs = [r for g in groups for r in g.runs]
    total: dict[str, int] = {}
    print(flush=True)
    for r in runs:
        print("\n".join(summary(r)), flush=True)
        for k, v in counts(r.lines[-1] if r.lines else "").items():
            total[k] = total.get(k, 0) + v
    for x in left:
        print(x, flush=True)
    failed = total.get("failed", 0) + total.get("error", 0)
    ok = not interrupted and not left and all(r.code == 0 for r in runs)
    print(f"tests: {total.get('passed', 0)} passed, {failed} failed, {total.get('skipped', 0)} skipped", flush=True)
    return 0 if ok else (130 if interrupted else 1)


def main(argv: list[str]) -> int:
    """Run the tests in groups, one per slot; 0 only when every run passed and nothing is left."""
    slot_names, unit, files, extra = parse(argv)
    if os.geteuid() != 0:
        unit_argv = [*PYTEST, *unit_args(unit or "0")]
        codes = [subprocess.run(unit_argv, cwd=REPO).returncode] if unit else []
        codes.append(subprocess.run([*PYTEST, "-m", "lab", *extra, *files], cwd=REPO).returncode)
        return max(codes)
    ensure_rootfs()  # built once here (if missing), not by two labs at once
    free(slot_names)  # whatever an earlier run left in these slots
    groups = split([*(files or default_files()), *([UNIT] if unit else [])], slot_names)
    for g in groups:
        plan(g, unit or "0", extra)
    threads = [start(g) for g in groups]
    interrupted = wait(groups, threads)
    return report(groups, free(slot_names), interrupted)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
