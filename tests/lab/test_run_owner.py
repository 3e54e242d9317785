"""A run of the database is the database's (issue 19, item 1), on Debian SysV, chkconfig and systemd hosts.

The attacker is a local user of the DB server (here ``nobody``) who starts a process whose command
line looks like the database's main process (``exec -a /usr/lib/postgresql/15/bin/postgres sleep``).
Before the fix the watcher took the oldest process of ANY account that matched: after one more
restart it remembered the look-alike as the run, and every later restart was "already followed"
while the pages stayed broken. Now a run is a process of the database's owner (``db.run.user``) and
executable (``db.run.executable``): each kind of restart is still followed by exactly one restart of
every web server (counted in the gates' logs), and ``verify`` names the look-alike (PID and owner)
and exits 2 while it runs.

The watcher itself: a ``kill -9`` of it is followed by a new watcher without an admin (a supervisor
on SysV hosts, ``Restart=always`` under systemd), which then follows a DBA's restart.
"""

from __future__ import annotations

import re
import time

import pytest

from tests.lab.conftest import CORE_INITS, lab_of
from tests.lab.test_every_restart import POSTMASTER, dba, followed_once, gate_restarts, wait_down

pytestmark = pytest.mark.lab
LOOKALIKE = "/usr/lib/postgresql/15/bin/postgres"
WATCH_PID = "cat /run/svrchain/svr_restart_watch.pid"


@pytest.fixture(scope="module", params=list(CORE_INITS))
def chain(request):
    for lab in lab_of(request.param):
        yield lab.bootstrapped()


def lookalike(lab) -> int:
    """As nobody, a process whose command line is the database's main process's: its PID."""
    lab.console("db", f"setsid setpriv --reuid=nobody --regid=nogroup --clear-groups -- "
                      f"bash -c 'exec -a {LOOKALIKE} sleep 900' </dev/null >/dev/null 2>&1 &")
    end = time.monotonic() + 10
    while True:
        out = lab.console("db", f"pgrep -u nobody -f '^{LOOKALIKE}'; true").stdout.split()
        if out:
            return int(out[0])
        assert time.monotonic() < end, "the look-alike did not start"
        time.sleep(0.1)


def run_pid(run: str) -> int:
    """The PID in a run's identity ([uid:]pid.start)."""
    m = re.search(r"(\d+)\.\d+$", run)
    assert m, run
    return int(m.group(1))


def service_restart(lab) -> None:
    lab.console("db", "systemctl restart dbora.service" if lab.init == "systemd" else "service dbora restart")


def crash_and_start(lab) -> None:
    lab.console("db", f"kill -9 $({POSTMASTER})")
    wait_down(lab)  # the look-alike is not a run: while postgres is down there is none
    time.sleep(1)
    dba(lab, "start")


@pytest.fixture
def attacker(chain):
    """nobody's look-alike, running for the test, killed after it."""
    pid = lookalike(chain)
    yield pid
    chain.console("db", f"kill {pid}; true")


def test_a_lookalike_of_another_account_is_never_the_run(chain, attacker):
    before = gate_restarts(chain)
    # Each kind of restart, one after another, with the look-alike running all along.
    for restart in (service_restart, lambda lab: dba(lab, "restart"), crash_and_start):
        old = chain.settled()
        restart(chain)
        followed_once(chain, before, old)
        before = {w: n + 1 for w, n in before.items()}
        assert run_pid(chain.current_run()) != attacker
    # The run names its owner: postgres's uid, then the postmaster's PID and start time.
    uid = chain.console("db", "id -u postgres").stdout.strip()
    assert chain.current_run().startswith(f"{uid}:")


def test_verify_names_the_lookalike_and_exits_2_while_it_runs(chain, attacker):
    chain.settled()
    v = chain.fab("verify")
    assert v.returncode == 2, v.stdout + v.stderr
    line = re.search(r"^db +database run +GAP +(.*)$", v.stdout, re.M)
    assert line and f"PID {attacker}" in line.group(1) and "nobody" in line.group(1), v.stdout
    chain.console("db", f"kill {attacker}")
    time.sleep(0.5)
    chain.verify_ok()


def test_a_killed_watcher_comes_back_and_follows_the_next_restart(chain):
    old, before = chain.settled(), gate_restarts(chain)
    pid = chain.console("db", WATCH_PID).stdout.strip()
    chain.console("db", f"kill -9 {pid}")
    end = time.monotonic() + 60  # (a net: it comes back within a few seconds)
    while True:
        now = chain.console("db", f"{WATCH_PID} 2>/dev/null; true").stdout.strip()
        if now and now != pid and chain.console("db", f"kill -0 {now}", check=False).returncode == 0:
            break
        assert time.monotonic() < end, "the watcher did not come back after kill -9"
        time.sleep(0.2)
    dba(chain, "restart")
    followed_once(chain, before, old)
    assert re.search(r"^db +watcher +ok ", chain.fab("verify").stdout, re.M)


def test_verify_reports_a_watcher_that_runs_but_no_longer_ticks(chain):
    chain.settled()
    pid = chain.console("db", WATCH_PID).stdout.strip()
    chain.console("db", f"kill -STOP {pid}")
    try:
        time.sleep(12)  # more than a few of its intervals (and at least 10 s)
        v = chain.fab("verify")
        assert v.returncode == 2, v.stdout
        assert re.search(r"^db +watcher +GAP +.*last looked .* ago", v.stdout, re.M), v.stdout
    finally:
        chain.console("db", f"kill -CONT {pid}")
    time.sleep(2)
    chain.verify_ok()


def test_a_service_restart_with_the_watcher_and_its_supervisor_gone_restarts_all_and_starts_it(chain):
    """The service's own start does not rely on the watcher: it restarts every web server itself, and
    on SysV hosts starts a watcher that does not run (systemd restarts it by itself)."""
    if chain.init == "systemd":
        pytest.skip("systemd restarts the watcher itself (Restart=always: the kill -9 test)")
    old, before = chain.settled(), gate_restarts(chain)
    chain.console("db", "kill -9 $(cat /run/svrchain/svr_restart_supervise.pid /run/svrchain/svr_restart_watch.pid)")
    end = time.monotonic() + 10  # (a SIGKILL takes effect when the process next runs: under load, later)
    while chain.console("db", "/etc/init.d/svr_restart_watch status", check=False).returncode != 3:
        assert time.monotonic() < end, "the watcher still runs 10 s after kill -9 of it and its supervisor"
        time.sleep(0.1)
    service_restart(chain)
    followed_once(chain, before, old)
    end = time.monotonic() + 60
    while chain.console("db", "/etc/init.d/svr_restart_watch status", check=False).returncode != 0:
        assert time.monotonic() < end, chain.console("db", "tail -5 /var/log/svr_restart.log").stdout
        time.sleep(0.3)
    assert "the watcher was not running: starting it" in chain.console("db", "cat /var/log/svr_restart.log").stdout
