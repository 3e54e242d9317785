"""The chain fact's commands (what verify reads of the chain at work on the DB server) run here as a
real probe, as on a systemd host: the probe's init test made true, and stand-ins for systemctl,
chkconfig and SELinux's tools that answer as those do and note what they were asked. Their text is
the part of the fact that the lab proves whole; here each answer is parsed by the fact's own parser
(a command that asks another unit, drops its arguments or prints another form fails)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from svrchain.core import sysv, trigger_status
from svrchain.core.inventory import Inventory, parse
from svrchain.core.plan import Result
from svrchain.facts import Raw
from svrchain.facts.chain import ChainFact, ChainState, parse_chain
from svrchain.remote.files import parse_probe, probe_script
from tests.paths import LAB_INVENTORY

SERVICES = (("dbora", "dbora.service"), ("svr_restart", "svr-restart.service"),
            ("svr_restart_watch", "svr-restart-watch.service"))

# Each stand-in notes its arguments, one line per call, in $CALLS.
STANDINS = {
    "systemctl": """case $1 in
    is-enabled) shift; for u; do echo enabled; done ;;
    is-active) echo active ;;
    show) shift; props= unit=
          while [ $# -gt 0 ]; do if [ "$1" = -p ]; then props="$props $2"; shift; else unit=$1; fi; shift; done
          for p in $props; do echo "$p=$p-of-$unit"; done ;;
esac""",
    "chkconfig": 'echo "$2 0:off 1:off 2:off 3:on 4:on 5:on 6:off"',
    "selinuxenabled": "exit 0",
    "matchpathcon": 'echo "$3 verified."',
}


def inventory(process: str | None) -> Inventory:
    data = yaml.safe_load(LAB_INVENTORY.read_text())
    data["db"]["run"] = {"process": process, "user": "root"} if process else {"command": "true"}
    return parse(yaml.safe_dump(data), LAB_INVENTORY)


def read_here(tmp_path: Path, inv: Inventory, selinux: list[str], systemd: bool = True
              ) -> tuple[ChainState, str, dict[str, Result]]:
    """The chain fact read here as on a systemd host (``systemd``; else as the commands are): the
    state, the stand-ins' calls and each command's result by name."""
    for name, body in STANDINS.items():
        (tmp_path / name).write_text(f'#!/bin/sh\necho "{name} $*" >>"$CALLS"\n{body}\n')
        (tmp_path / name).chmod(0o755)
    fact = ChainFact(SERVICES, selinux)
    commands = {n: c.replace(sysv.SYSTEMD, "true") if systemd else c for n, c in fact.commands(inv).items()}
    script = probe_script([], list(commands.values()), prelude=fact.prelude(inv))
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin", "LC_ALL": "C", "CALLS": str(tmp_path / "calls")}
    done = subprocess.run(["sh", "-c", script, "svrchain"], input=b"exit 0", env=env, capture_output=True,
                          timeout=30, check=True)
    _, results = parse_probe("here", Result(0, "", "", done.stdout), [], list(commands))
    calls = (tmp_path / "calls").read_text() if (tmp_path / "calls").exists() else ""
    return parse_chain(Raw("here", {}, results)), calls, results


def test_the_units_asked_and_the_answers_read_on_systemd(tmp_path: Path) -> None:
    a, b = tmp_path / "a file", tmp_path / "b"
    a.write_text("x")
    b.write_text("y")
    state, calls, results = read_here(tmp_path, inventory(None), [str(a), str(b), str(tmp_path / "missing")])
    assert state.enabled == ("enabled", "enabled")
    assert state.watcher_enabled == "enabled" and state.watcher_up
    assert state.order == {"After": "After-of-svr-restart.service", "PartOf": "PartOf-of-svr-restart.service",
                           "Wants": "Wants-of-dbora.service"}
    assert state.service == "active active\n"  # db.run.command: whether the DB's unit is active
    assert state.selinux == f"ok {a}\nok {b}\n"
    assert re.findall(r"^chkconfig --list (\S+)$", calls, re.M) == ["dbora", "svr_restart", "svr_restart_watch"]
    assert sorted(re.findall(r"^systemctl (.*)$", calls, re.M)) == sorted([
        "is-enabled dbora.service svr-restart.service", "is-enabled svr-restart-watch.service",
        "show -p After -p PartOf svr-restart.service", "show -p Wants dbora.service",
        "is-active svr-restart-watch.service", "is-active dbora.service"])
    assert state.ready and state.run == "none" and state.processes == "" and state.owner == 0
    assert re.fullmatch(r"\d+\.\d{9}\n", results["now"].stdout)  # the clock to the nanosecond
    assert state.now is not None and abs(state.now - time.time()) < 60


def test_the_process_checks_find_the_database_by_its_pattern(tmp_path: Path) -> None:
    """With db.run.process: the service check names the oldest match and its cgroup, and the process
    list has every match, with its owner, start and executable (the parser reads them)."""
    tag = f"svrchain-test-{os.getpid()}-{time.monotonic_ns()}"
    db = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", tag])
    try:
        state, _, _ = read_here(tmp_path, inventory(f"^{re.escape(sys.executable)} -c .* {tag}$"), [])
        cgroup = Path(f"/proc/{db.pid}/cgroup").read_text().splitlines()
    finally:
        db.kill()
        db.wait()
    first, *rest = state.service.splitlines()
    assert first == f"pid {db.pid}" and rest == cgroup
    found = trigger_status.parse_processes(state.processes)
    assert [(p.pid, p.uid, p.exe) for p in found] == [(db.pid, os.getuid(), os.path.realpath(sys.executable))]


@pytest.mark.skipif(Path("/run/systemd/system").is_dir(), reason="systemd is this machine's init")
def test_off_systemd_no_systemctl_is_asked(tmp_path: Path) -> None:
    """The same commands as they are (this machine is no systemd host): systemctl is never run."""
    _, calls, _ = read_here(tmp_path, inventory(None), [], systemd=False)
    assert "systemctl" not in calls and calls.count("chkconfig --list") == 3
