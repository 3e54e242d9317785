"""The gate as the real bash program it is, run locally: it trusts nothing in its state directory.

Rendered as push-key renders it, except for the state directory (under the test's tmp_path) and
the restart command (a fake that records its runs). ``logger`` is a fake on PATH that records
each message, one per line, as syslog would get it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from svrchain.core import render
from svrchain.core.inventory import load
from tests.paths import LAB_INVENTORY

INV = load(LAB_INVENTORY)
CRAFTED = "a[$(touch {pwned})]"


@dataclass
class Gate:
    """A rendered gate, its state directory, and what it logged and ran."""

    path: Path
    state: Path
    tmp: Path

    def run(self, verb: str | None = "restart", client: str = "198.18.0.10 4242 22") -> subprocess.CompletedProcess:
        env = {**os.environ, "PATH": f"{self.tmp / 'bin'}:{os.environ['PATH']}", "SSH_CLIENT": client}
        if verb is not None:
            env["SSH_ORIGINAL_COMMAND"] = verb
        return subprocess.run(["bash", str(self.path)], env=env, capture_output=True, text=True, timeout=30)

    def start(self) -> subprocess.Popen:
        env = {**os.environ, "PATH": f"{self.tmp / 'bin'}:{os.environ['PATH']}", "SSH_ORIGINAL_COMMAND": "restart"}
        return subprocess.Popen(["bash", str(self.path)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    @property
    def log(self) -> list[str]:
        f = self.tmp / "syslog"
        return f.read_text().splitlines() if f.exists() else []

    @property
    def runs(self) -> list[str]:
        f = self.tmp / "runs"
        return f.read_text().split() if f.exists() else []


def make_gate(tmp_path: Path, gap: float = 0) -> Gate:
    """The gate rendered into ``tmp_path``; its restarts spaced by ``gap`` seconds (none by default)."""
    (tmp_path / "bin").mkdir()
    logger = tmp_path / "bin" / "logger"
    logger.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$*\" >>{tmp_path}/syslog\n")
    fake = tmp_path / "fake-restart"
    fake.write_text(f"#!/bin/bash\necho start >>{tmp_path}/runs\necho $EPOCHREALTIME >>{tmp_path}/times\n"
                    f"sleep ${{DELAY:-0}}\necho end >>{tmp_path}/runs\necho $EPOCHREALTIME >>{tmp_path}/times\n")
    for f in (logger, fake):
        f.chmod(0o755)
    inv = INV.model_copy(update={"web": INV.web.model_copy(update={"restart_command": str(fake)})})
    (tmp_path / "state").mkdir()
    state = Path(render.gate_state_dir(inv.web.user, str(tmp_path / "state")))
    state.mkdir(mode=0o700)
    path = tmp_path / "svr-restart-gate"
    path.write_bytes(render.gate(inv, str(tmp_path / "state"), gap=gap))
    return Gate(path, state, tmp_path)


@pytest.fixture
def gate(tmp_path: Path) -> Gate:
    return make_gate(tmp_path)


@pytest.mark.parametrize("name", ["requested", "covered"])
def test_a_crafted_state_value_runs_no_code_and_is_reset(gate, name):
    pwned = gate.tmp / "pwned"
    for f in ("requested", "covered", "rc"):
        (gate.state / f).write_text("1\n")
    (gate.state / name).write_text(CRAFTED.format(pwned=pwned) + "\n")
    r = gate.run()
    assert r.returncode == 0, (r.stderr, gate.log)
    assert not pwned.exists()
    assert gate.runs == ["start", "end"]  # the restart was not skipped for it
    assert any(f"state: {name} is corrupt ('a[$(touch" in line and "reset to" in line for line in gate.log), gate.log
    assert (gate.state / "requested").read_text().strip().isdigit()


def test_covered_beyond_requested_does_not_skip_restarts(gate):
    (gate.state / "requested").write_text("3\n")
    (gate.state / "covered").write_text("99\n")
    for _ in range(2):
        assert gate.run().returncode == 0
    assert gate.runs == ["start", "end"] * 2
    assert any("covered (99) is more than requested (3): corrupt" in line for line in gate.log), gate.log


@pytest.mark.parametrize("stage", [
    "run-is-a-file", "run-is-a-link", "state-is-a-link", "state-writable-by-others", "no-state-dir"])
def test_a_lock_that_cannot_be_taken_means_no_restart(gate, stage):
    # The old gate's lock files, replaced by directories, too: it then restarted unlocked.
    (gate.state / "request.lock").mkdir()
    (gate.state / "run.lock").mkdir()
    if stage == "run-is-a-file":
        (gate.state / "run").write_text("")
    elif stage == "run-is-a-link":
        (gate.tmp / "elsewhere").mkdir()
        (gate.state / "run").symlink_to(gate.tmp / "elsewhere")
    elif stage in ("state-is-a-link", "no-state-dir"):
        gate.state.rename(gate.tmp / "moved")
        if stage == "state-is-a-link":
            gate.state.symlink_to(gate.tmp / "moved")
    else:
        gate.state.chmod(0o777)
    r = gate.run()
    assert r.returncode != 0
    assert gate.runs == []
    assert any("restart: REFUSED" in line and "not restarting" in line for line in gate.log), gate.log


def test_nothing_is_written_through_a_planted_link(gate):
    targets = {}
    for name in ("requested", "covered", "rc", "last"):
        targets[name] = gate.tmp / f"target-{name}"
        targets[name].write_text("7\n")
        (gate.state / name).symlink_to(targets[name])
    assert gate.run().returncode == 0
    assert gate.runs == ["start", "end"]
    for name, target in targets.items():
        assert target.read_text() == "7\n", name
        assert not (gate.state / name).is_symlink() and (gate.state / name).is_file(), name
    assert (gate.state / "requested").read_text() == "1\n"


def test_a_refused_verb_is_logged_on_one_escaped_line(gate):
    r = gate.run("status\nid\x1b[31m\rX")
    assert r.returncode == 2 and gate.runs == []
    assert gate.log == ["-t svr-restart-gate -p auth.notice -- from 198.18.0.10: REFUSED: $'status\\nid\\E[31m\\rX'"]
    gate.run("touch /tmp/pwned; cat /etc/shadow")
    assert gate.log[-1].endswith("REFUSED: 'touch /tmp/pwned; cat /etc/shadow'")


def test_nothing_the_caller_sets_reaches_the_log_raw(gate):
    # The gate's own account can run it with any SSH_CLIENT: a CR and escapes must not forge a line.
    r = gate.run("status", client="x\r\x1b[2KMon-01-01:from-198.18.0.10:-restart:-exit-0\x07 1 22")
    assert r.returncode == 0
    assert gate.log == ["-t svr-restart-gate -p auth.notice -- "
                        "from x\\x0d\\x1b[2KMon-01-01:from-198.18.0.10:-restart:-exit-0\\x07: status"]


def test_status_reads_only_well_formed_values(gate):
    pwned = gate.tmp / "pwned"
    (gate.state / "last").write_text("$(id)\n")
    (gate.state / "rc").write_text(CRAFTED.format(pwned=pwned) + "\n")
    r = gate.run("status")
    assert r.returncode == 0 and r.stdout.startswith("last restart: never, exit 0\n"), r.stdout
    assert not pwned.exists()
    assert any("state: rc is corrupt" in line for line in gate.log) and any("state: last is corrupt" in line
                                                                            for line in gate.log), gate.log


def test_concurrent_restarts_are_serialized_and_coalesced(gate, monkeypatch):
    monkeypatch.setenv("DELAY", "0.5")
    procs = [gate.start() for _ in range(6)]
    codes = [p.wait(timeout=30) for p in procs]
    assert codes == [0] * 6, [p.stderr.read() for p in procs]
    runs = gate.runs
    assert runs == ["start", "end"] * (len(runs) // 2), runs  # never two at once
    assert 1 <= len(runs) // 2 <= 2, runs  # six triggers, at most two restarts


def times(gate: Gate) -> list[float]:
    """When each restart started and ended, in turn."""
    return [float(t) for t in (gate.tmp / "times").read_text().split()]


def test_hosts_get_restarts_spaced_by_the_gap():
    text = render.gate(INV).decode()
    assert f"GAP_US={round(render.GATE_GAP * 1_000_000)} " in text
    # five restarts span four gaps and the restarts themselves: more than 10 s, so at most four in any 10 s, one
    # fewer than systemd's default start limit; four span three, so the gap holds back no more than needed
    assert render.GATE_GAP * 3 < 10 <= render.GATE_GAP * 4


def test_a_restart_waits_for_the_gap_after_the_last_one(tmp_path):
    """A burst of triggers never trips the init system's start limit (systemd: 5 starts in 10 s, then the
    web server is left down): the next restart starts at least the gap after the last one ended."""
    gate = make_gate(tmp_path, gap=0.15)
    assert gate.run().returncode == 0
    r = gate.run()
    assert r.returncode == 0, (r.stderr, gate.log)
    first_end, second_start = times(gate)[1:3]
    assert second_start - first_end >= 0.15
    assert any("restart: waiting 0." in line and "less than 150 ms ago" in line for line in gate.log), gate.log


def test_no_wait_once_the_gap_has_passed(tmp_path):
    gate = make_gate(tmp_path, gap=0.6)
    (gate.state / "last").write_text("1000000000.000000\n")  # 2001
    assert gate.run().returncode == 0
    assert not any("waiting" in line for line in gate.log), gate.log


@pytest.mark.parametrize("last", ["9999999999.999999", "99999999999.9"])
def test_a_last_restart_in_the_future_holds_a_restart_back_no_longer_than_the_gap(tmp_path, last):
    """A clock stepped back, or a value the web account planted, cannot hold restarts back: at most the gap."""
    gate = make_gate(tmp_path, gap=0.15)
    (gate.state / "last").write_text(last + "\n")
    r = gate.run()
    assert r.returncode == 0 and gate.runs == ["start", "end"], (r.stderr, gate.log)
    assert any("restart: waiting 0.150000 s" in line for line in gate.log), gate.log
    assert float((gate.state / "last").read_text()) < 9999999999  # the restart's own time replaces it


def test_a_corrupt_last_is_logged_and_waits_for_nothing(tmp_path):
    gate = make_gate(tmp_path, gap=5)
    (gate.state / "last").write_text("$(id).5\n")
    r = gate.run()
    assert r.returncode == 0 and gate.runs == ["start", "end"], (r.stderr, gate.log)
    assert any("state: last is corrupt" in line for line in gate.log)
    assert not any("waiting" in line for line in gate.log), gate.log


def test_triggers_that_arrive_during_the_wait_share_the_restart(tmp_path, monkeypatch):
    gate = make_gate(tmp_path, gap=0.8)
    assert gate.run().returncode == 0  # a restart just ended
    procs = [gate.start() for _ in range(5)]
    assert [p.wait(timeout=30) for p in procs] == [0] * 5
    assert gate.runs == ["start", "end"] * 2, gate.runs  # the five waited together, and shared one


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is installed by make lab-deps")
def test_a_restart_starts_few_processes(gate):
    """Issue 23: the gate runs on every web server at once when the database restarts; what it starts
    besides the restart command itself (the locks, the state's renames, stat, two log lines) is few:
    its state is read and its time taken without a process, and the counters' lock let go by closing
    its descriptor (was 27 processes a restart, then 14)."""
    trace = gate.tmp / "trace"
    env = {**os.environ, "PATH": f"{gate.tmp / 'bin'}:{os.environ['PATH']}", "SSH_ORIGINAL_COMMAND": "restart"}
    r = subprocess.run(["strace", "-f", "-qq", "-e", "trace=execve", "-e", "signal=none", "-o", str(trace),
                        "bash", str(gate.path)], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    started = [ln.split('"')[1] for ln in trace.read_text().splitlines() if "execve(" in ln and "= 0" in ln]
    assert gate.runs == ["start", "end"]
    mine = [p for p in started[1:] if "fake-restart" not in p and not p.endswith("/sleep")]
    assert len(mine) <= 12, mine
    assert not [p for p in started if p.endswith("flock")][3:], started  # lock 8, lock 9, lock 8 again
