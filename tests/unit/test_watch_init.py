"""The watcher's SysV init script (render.watch_init) run here as a real program: what its "status"
and "start" take for a running watcher."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from svrchain.core import render


def script(tmp_path: Path) -> tuple[Path, Path, Path]:
    """The init script, rendered with its trigger, PID files and log under ``tmp_path``."""
    trigger = tmp_path / "svr_restart"
    trigger.write_text(f"#!/bin/sh\necho \"$@\" >>{tmp_path}/trigger.log\n[ \"$1\" = exit ] || sleep 30\n")
    trigger.chmod(0o755)
    init = tmp_path / "svr_restart_watch"
    init.write_bytes(render._template("svr-watch.sh.j2").render(
        name="svr_restart_watch", db_service="dbora", trigger=str(trigger), earlier=str(tmp_path / "earlier"),
        pidfile=str(tmp_path / "watch.pid"), supervisor=str(tmp_path / "supervise.pid")).encode())
    init.chmod(0o755)
    return init, tmp_path / "watch.pid", tmp_path / "supervise.pid"


def status(init: Path) -> tuple[int, str]:
    done = subprocess.run(["sh", str(init), "status"], capture_output=True, text=True, timeout=10)
    return done.returncode, done.stdout.strip()


@pytest.fixture
def procs():
    started: list[subprocess.Popen] = []
    yield started
    for p in started:
        p.kill()
        p.wait()


def test_the_trigger_running_under_both_pid_files_is_running(tmp_path, procs):
    init, watch, supervise = script(tmp_path)
    trigger = tmp_path / "svr_restart"
    procs += [subprocess.Popen([str(trigger), "supervise"]), subprocess.Popen([str(trigger), "watch"])]
    supervise.write_text(f"{procs[0].pid}\n")
    watch.write_text(f"{procs[1].pid}\n")
    assert status(init) == (0, f"svr_restart_watch is running (pid {procs[1].pid})")


@pytest.mark.parametrize("case", ["zombie", "another program", "not a number", "minus one", "empty", "missing"])
def test_a_pid_file_whose_process_is_not_the_trigger_is_not_running(tmp_path, procs, case):
    """A watcher killed and not yet reaped (a zombie), a PID reused by another program, or a PID file
    that names no process: "status" says not running (exit 3), and "start" starts the watcher."""
    init, watch, supervise = script(tmp_path)
    trigger = tmp_path / "svr_restart"
    procs.append(subprocess.Popen([str(trigger), "watch"]))
    watch.write_text(f"{procs[0].pid}\n")
    if case == "zombie":
        procs.append(subprocess.Popen([str(trigger), "exit"]))  # ends at once; not waited for: a zombie
        while Path(f"/proc/{procs[1].pid}/stat").read_text().rpartition(") ")[2][0] != "Z":
            time.sleep(0.01)
        supervise.write_text(f"{procs[1].pid}\n")
    elif case == "another program":
        procs.append(subprocess.Popen(["sleep", "30"]))
        supervise.write_text(f"{procs[1].pid}\n")
    else:
        text = {"not a number": "12x\n", "minus one": "-1\n", "empty": "", "missing": None}[case]
        if text is not None:
            supervise.write_text(text)
    assert status(init) == (3, "svr_restart_watch is not running")
    subprocess.run(["sh", str(init), "start"], check=True, timeout=10)
    deadline = time.monotonic() + 10
    while "supervise" not in ((tmp_path / "trigger.log").read_text() if (tmp_path / "trigger.log").exists() else ""):
        assert time.monotonic() < deadline, "start did not start the supervisor"
        time.sleep(0.02)


def test_stop_ends_a_watcher_of_the_earlier_layout(tmp_path):
    """A watcher that an earlier svrchain started (its trigger was the init script) is the one "stop"
    ends when the upgrade restarts the watcher: it must not keep running beside the new one."""
    init, watch, _ = script(tmp_path)
    earlier = tmp_path / "earlier"
    earlier.write_text("#!/bin/sh\nsleep 30\n")
    earlier.chmod(0o755)
    old = subprocess.Popen([str(earlier), "watch"])
    try:
        watch.write_text(f"{old.pid}\n")
        subprocess.run(["sh", str(init), "stop"], check=True, timeout=15)
        assert old.wait(timeout=5) == -15  # SIGTERM
    finally:
        old.kill()
        old.wait()
