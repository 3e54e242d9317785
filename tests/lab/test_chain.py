"""The chain on real hosts: a DB restart (through its service, by restart-chain, or a boot of the
DB host) restarts every web server after the DB is ready, and the PHP page recovers."""

from __future__ import annotations

import re
import time

import pytest

from svrchain.core.trigger_status import TriggerRun, parse
from tests.lab.conftest import CORE_INITS, TRIGGER_BOUND, lab_fixture

pytestmark = pytest.mark.lab
lab = lab_fixture(*CORE_INITS)
WEBS = ("web1", "web2")


def apache_start(lab, web: str) -> tuple[str, float]:
    """(PID, start time) of the web host's Apache parent, from its pid file, read over SSH."""
    out = lab.host(web).check_output("cat /var/run/apache2/apache2.pid; stat -c %.9Y /var/run/apache2/apache2.pid")
    pid, started = out.split()
    return pid, float(started)


STATUS = "/var/lib/svrchain/svr_restart.status"


def last_run(lab) -> TriggerRun:
    """The trigger's last status file on the DB host."""
    return parse(lab.host("db").file(STATUS).content_string)


def wait_for_run_after(lab, t: float, timeout: float = TRIGGER_BOUND) -> TriggerRun:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if lab.host("db").file(STATUS).exists:
            run = last_run(lab)
            if (run.started or 0) >= t and run.done:
                return run
        time.sleep(0.3)
    raise AssertionError("the trigger did not run")


def assert_restarted_after_ready(lab, before: dict[str, tuple[str, float]], run: TriggerRun) -> None:
    for web in WEBS:
        pid, started = apache_start(lab, web)
        assert pid != before[web][0], f"{web}: Apache was not restarted"
        assert run.ready is not None and started >= run.ready, f"{web}: Apache started before the DB was ready"
        assert run.restarted(web) is not None, run


@pytest.fixture
def not_chkconfig(lab):
    """For checks of the key, the gate and the web side, which do not depend on the DB host's init system:
    proved on the SysV (insserv) and systemd hosts, not again on the chkconfig ones."""
    if lab.init == "chkconfig":
        pytest.skip("does not depend on the init system: proved on the sysv and systemd hosts")


def watcher(lab, verb: str) -> None:
    """Stop or start svrchain's watcher on the DB host."""
    lab.console("db", f"systemctl {verb} svr-restart-watch.service" if lab.init == "systemd"
                else f"/etc/init.d/svr_restart_watch {verb}")


def test_without_the_chain_the_page_stays_broken(chain):
    for web in WEBS:
        assert chain.wait_page(web, 200)[0] == 200
    # Without the watcher, the DBA restarting the database by itself (its own script, not the
    # service) is followed by nothing.
    watcher(chain, "stop")
    chain.console("db", "/usr/local/lib/svrchain/dbora restart; until pg_isready -q -h 127.0.0.1; do sleep 0.2; done")
    # Each worker's first request meets its dead persistent connection; every later one still fails,
    # as with Oracle's ORA-03113, until Apache restarts.
    answers = []
    for _ in range(8):
        for web in WEBS:
            answers.append(chain.page(web))
        time.sleep(0.2)
    assert [a for a in answers if not (a[0] == 500 and a[1].startswith("FAIL"))] == []
    assert "ORA-03113" in answers[-1][1]
    # The watcher, once running, sees that this run was never followed, and follows it.
    watcher(chain, "start")
    for web in WEBS:
        assert chain.wait_page(web, 200)[0] == 200


@pytest.mark.parametrize("how", ["service dbora restart", "systemctl restart dbora.service",
                                 "systemctl stop dbora.service && systemctl start dbora.service"])
def test_service_restart_restarts_every_web_server(chain, how):
    if how.startswith("systemctl") and chain.init != "systemd":
        pytest.skip("systemctl is for the systemd hosts")
    before = {w: apache_start(chain, w) for w in WEBS}
    t0 = float(chain.host("db").check_output("date +%s.%N"))
    chain.host("db").check_output(how)
    run = wait_for_run_after(chain, t0)
    assert_restarted_after_ready(chain, before, run)
    for web in WEBS:
        status, body = chain.wait_page(web, 200)
        assert status == 200, body
    log = chain.host("db").file("/var/log/svr_restart.log").content_string
    assert "web1 (198.18.0.21): web server restarted" in log
    syslog = chain.host("db").file("/var/log/syslog").content_string
    assert "svr_restart: all 2 web server(s) restarted" in syslog


def test_boot_of_the_db_host_restarts_every_web_server(chain):
    before = {w: apache_start(chain, w) for w in WEBS}
    t0 = float(chain.host("db").check_output("date +%s.%N"))
    chain.boot("db")  # power cycle: everything killed, rc 3 runs S..dbora then S..svr_restart
    run = wait_for_run_after(chain, t0)
    assert_restarted_after_ready(chain, before, run)
    db_start = chain.host("db").check_output(
        "su postgres -c \"psql -tAc 'select extract(epoch from pg_postmaster_start_time())'\"")
    assert run.ready is not None and float(db_start) <= run.ready
    for web in WEBS:
        assert chain.wait_page(web, 200)[0] == 200
    log = chain.host("db").file("/var/log/svr_restart.log").content_string
    current = chain.console("db", "cat /var/lib/svrchain/svr_restart.run").stdout.split()[0]
    assert log.count(f"database ready (run {current}): restarting 2 web server(s)") == 1, log  # followed once


def test_the_labs_dbora_starts_past_a_stale_postmaster_pid(chain):
    """A power cut leaves postmaster.pid behind, and after the boot its PID may be another process's: the
    lab's dbora removes such a file (as pg_ctlcluster does), so the lab's DB host comes back from every
    power-cycle (PostgreSQL alone would refuse to start)."""
    if chain.init != "sysv":
        pytest.skip("the lab's start script, the same on every init system: proved on sysv")
    data = "/var/lib/postgresql/15/main"
    chain.console("db", "service dbora stop")
    # A live PID of postgres's own that is not the postmaster (another account's PID, PostgreSQL takes for stale)
    chain.console("db", f"su postgres -s /bin/sh -c 'setsid sleep 300 </dev/null >/dev/null 2>&1 & echo $!' "
                  f">{data}/postmaster.pid")
    chain.console("db", "service dbora start")  # returns before PostgreSQL is ready, as Oracle's dbora does
    r = chain.console("db", "for i in $(seq 100); do pg_isready -q -h 127.0.0.1 && exit; sleep 0.2; done; "
                      "exit 1", check=False)
    log = chain.console("db", "tail -3 /var/log/postgresql/postgresql-15-main.log").stdout
    chain.console("db", "pkill -u postgres -x sleep", check=False)
    assert r.returncode == 0, log
    chain.settled()


def test_restart_chain_reports_every_host(chain):
    r = chain.fab("restart-chain", "--yes")
    assert r.returncode == 0, r.stdout + r.stderr
    for web in WEBS:
        row = rf"^{web}\s+web\s+restarted by the chain\s+\+[\d.]+s\s+\+[\d.]+s\s+ok$"
        assert re.search(row, r.stdout, re.M), r.stdout
    dry = chain.fab("restart-chain", "--dry-run")
    assert dry.returncode == 0 and "service dbora restart" in dry.stdout


@pytest.mark.usefixtures("not_chkconfig")
def test_restart_chain_repairs_a_web_server_the_chain_missed(chain):
    chain.console("web2", "sed -i '/svrchain:/d' /root/.ssh/authorized_keys")
    before = apache_start(chain, "web2")
    r = chain.fab("restart-chain", "--yes")
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"^web2\s+web\s+restarted directly\s.*ok$", r.stdout, re.M), r.stdout
    assert re.search(r"^web1\s+web\s+restarted by the chain\s.*ok$", r.stdout, re.M), r.stdout
    assert apache_start(chain, "web2")[0] != before[0]
    log = chain.host("db").file("/var/log/svr_restart.log").content_string
    assert "web2 (198.18.0.22): FAILED after 3 attempts" in log
    # The repair went through the gate, like the chain's restarts: its lock, its log.
    assert "svr-restart-gate: from restart-chain: restart: exit 0" in chain.wait_log(
        "web2", "svr-restart-gate: from restart-chain: restart: exit 0")
    assert chain.fab("push-key").returncode == 0


TRIGGER_SSH = ("ssh -i /root/.ssh/svr_restart_key -o BatchMode=yes -o UserKnownHostsFile=/etc/svrchain/known_hosts "
               "root@198.18.0.21")


@pytest.mark.usefixtures("not_chkconfig")
def test_the_key_refuses_any_other_command(chain):
    before = apache_start(chain, "web1")
    r = chain.host("db").run(f"{TRIGGER_SSH} 'touch /tmp/pwned; cat /etc/shadow'")
    assert r.rc == 2 and "refused: only 'restart' and 'status' are allowed" in r.stderr
    assert "root:" not in r.stdout
    assert not chain.host("web1").file("/tmp/pwned").exists
    assert apache_start(chain, "web1") == before  # nothing ran
    assert "REFUSED: 'touch /tmp/pwned; cat /etc/shadow'" in chain.host("web1").file("/var/log/auth.log").content_string


@pytest.mark.usefixtures("not_chkconfig")
def test_the_key_restarts_by_default_and_reports_status(chain):
    before = apache_start(chain, "web1")
    assert chain.host("db").run(TRIGGER_SSH).rc == 0  # no command asked: restart
    assert apache_start(chain, "web1")[0] != before[0]
    status = chain.host("db").run(f"{TRIGGER_SSH} status")
    assert status.rc == 0 and status.stdout.startswith("last restart: ") and "exit 0" in status.stdout
    assert "from 198.18.0.10: restart: exit 0" in chain.host("web1").file("/var/log/auth.log").content_string


@pytest.mark.usefixtures("not_chkconfig")
def test_concurrent_triggers_are_serialized_and_coalesced(chain):
    log = "/var/log/auth.log"
    runs_before = chain.host("web1").check_output(f"grep -c 'restart: running' {log} || true")
    # Each caller's exit code, waited for by its PID: bash 5.2's `wait -n` returns 127 for a job that
    # ended together with another (measured: 6 in 10 bursts of six), which read as a caller's failure.
    r = chain.host("db").run(
        f"pids=; for i in 1 2 3 4 5 6; do {TRIGGER_SSH} restart & pids=\"$pids $!\"; done; rc=0; "
        "for p in $pids; do wait $p || { echo \"caller $p: exit $?\" >&2; rc=1; }; done; exit $rc")
    text = chain.host("web1").file(log).content_string
    gate = [ln for ln in text.splitlines() if "svr-restart-gate" in ln][-20:]
    assert r.rc == 0, (r.stderr, gate)  # every caller got the exit code of a restart that covered it
    runs = text.count("restart: running") - int(runs_before)
    assert 1 <= runs <= 2  # six triggers, at most two restarts
    events = [ln for ln in text.splitlines() if "restart: running" in ln or "restart: exit" in ln]
    assert all("running" in a and "exit" in b for a, b in zip(events[::2], events[1::2], strict=False))


def test_a_burst_of_triggers_leaves_the_web_server_running(chain):
    """systemd refuses a unit's sixth start within 10 s, and a refused restart leaves the web server
    stopped: the gate spaces its restarts so that no burst of triggers gets there."""
    if chain.init != "systemd":
        pytest.skip("systemd's start limit is for the systemd hosts")
    for _ in range(6):
        r = chain.host("db").run(f"{TRIGGER_SSH} restart")
        assert r.rc == 0, (r.stderr, chain.host("web1").check_output("systemctl status apache2 | tail -3"))
    assert chain.host("web1").run("systemctl is-active apache2").stdout.strip() == "active"
    assert chain.wait_page("web1", 200)[0] == 200


@pytest.mark.usefixtures("not_chkconfig")
def test_the_key_is_refused_from_another_address(chain):
    key = chain.host("db").file("/root/.ssh/svr_restart_key").content_string
    chain.console("web2", f"umask 077; cat > /root/stolen_key <<'EOF'\n{key}EOF")
    before = apache_start(chain, "web1")
    r = chain.console("web2", "ssh -i /root/stolen_key -o BatchMode=yes -o StrictHostKeyChecking=no "
                      "-o IdentitiesOnly=yes root@198.18.0.21 true", check=False)
    assert r.returncode == 255 and "Permission denied" in r.stderr, r.stderr
    assert apache_start(chain, "web1") == before
