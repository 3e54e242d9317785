"""Oracle on the lab (issue 20): svrchain's Oracle path end to end on an Oracle-shaped DB host.

The DB host runs stand-ins for Oracle's tools (lab/files/oracle; docs/lab.md says what they model) over a
real PostgreSQL: dbstart/dbshut reading /etc/oratab, sqlplus "/ as sysdba", lsnrctl and a listener that
refuses the page's new connections with the phase's ORA- error, background processes ora_pmon_ORCL, ...
of the account oracle, beside a second instance (TEST) and an ASM instance (asm_pmon_+ASM). The
inventory (inventory/lab-oracle.yaml) uses db.oracle: svrchain's built-in dbora template, its
oracle-ready check (v$instance, v$database, v$pdbs, lsnrctl status) and ora_pmon_ORCL as the run.

Every way the database starts again is followed: each web server is restarted exactly once per new
run, never before the instance is OPEN READ WRITE, the PDB open and the service READY (the stand-ins'
phase log against each Apache's start), and the page is healthy after; the window from ready to the
last web server's restart is printed. Restarts of something else (the other SID, the listener alone)
restart nothing, and without svrchain's watcher the page stays failing after a DBA's restart.
"""

from __future__ import annotations

import re
import time

import pytest

from lab import hosts as labhosts
from tests.lab.conftest import lab_of

pytestmark = pytest.mark.lab
WEBS = ("web1", "web2")
# The stand-ins' phase timings in these tests, in seconds (the defaults: lab/hosts.py ORACLE_PHASES).
PHASES = {"MOUNT": 1, "OPEN": 1, "PDB": 1, "REGISTER": 1, "CLOSE": 0.5}
OH = labhosts.ORACLE_HOME
PHASES_LOG = f"{labhosts.ORACLE_LAB}/phases.log"
RAN = "restart: exit 0"  # the gate's log line for each restart of the web server that succeeded
ERRORS = {  # what the page may show while the database starts (tnslsnr, index.php)
    "ORA-12514: TNS:listener does not currently know of service requested in connect descriptor",
    "ORA-12528: TNS:listener: all appropriate instances are blocking new connections",
    "ORA-01033: ORACLE initialization or shutdown in progress",
    "ORA-03113: end-of-file on communication channel",
}


@pytest.fixture(scope="module", params=["chkconfig", "systemd"])
def chain(request):
    for lab in lab_of(request.param, "oracle", PHASES):
        yield lab.bootstrapped()


def as_oracle(lab, command: str) -> str:
    """A command of the DBA's, as the Oracle software owner (its login environment: ORACLE_SID=ORCL)."""
    return lab.console("db", f"su - oracle -c '{command}' </dev/null 2>&1", check=False).stdout


def sqlplus(lab, sql: str, sid: str = "ORCL") -> str:
    """The DBA's sqlplus / as sysdba, the SQL on its stdin."""
    command = f"su - oracle -c 'ORACLE_SID={sid} sqlplus -s / as sysdba' 2>&1 <<'SQL'\n{sql}\nexit\nSQL"
    return lab.console("db", command).stdout


def gate_restarts(lab) -> dict[str, int]:
    """How many times each web server's gate has really restarted the web server."""
    return {w: int(lab.console(w, f"grep -c \"{RAN}\" /var/log/auth.log; true").stdout.split()[0]) for w in WEBS}


def apache_started(lab, web: str) -> float:
    return float(lab.console(web, "stat -c %.9Y /var/run/apache2/apache2.pid").stdout)


def logs(lab) -> str:
    """The trigger's log, the phase log and the gates' lines, for a failure's message."""
    out = lab.console("db", f"tail -n 20 /var/log/svr_restart.log; tail -n 15 {PHASES_LOG}; true").stdout
    for web in WEBS:
        out += lab.console(web, "grep svr-restart-gate /var/log/auth.log | tail -n 6; true").stdout
    return out


def last_run_phases(lab) -> dict[str, float]:
    """When the application's database (ORCL) last went STARTED, and then OPEN, its PDB open and its
    service READY, from the stand-ins' phase log."""
    events = [line.split() for line in lab.console("db", f"cat {PHASES_LOG}").stdout.splitlines()]
    start = max(i for i, e in enumerate(events) if e[1:3] == ["ORCL", "STARTED"])
    found: dict[str, float] = {"STARTED": float(events[start][0])}
    for e in events[start + 1:]:
        if e[1] == "ORCL" and e[2] in ("OPEN", "PDB_OPEN", "SERVICE_READY"):
            found.setdefault(e[2], float(e[0]))
    return found


def pmon(lab, run: str) -> str:
    """The owner and name of the process that is the trigger's run ("<uid>:<pid>.<start>")."""
    pid = run.split(":")[-1].split(".")[0]
    return " ".join(lab.console("db", f"ps -o user=,comm= -p {pid}").stdout.split())


def wait_down(lab, timeout: float = 60) -> None:
    """Wait until the trigger sees no run of the database (it is down)."""
    end = time.monotonic() + timeout
    while lab.current_run() != "none":
        assert time.monotonic() < end, "the database did not go down"
        time.sleep(0.2)


def unchanged(lab, before: dict[str, int], run: str, seconds: float = 3) -> None:
    """Nothing was restarted: the same run, no restart of any web server, the page healthy."""
    time.sleep(seconds)  # three of the watcher's intervals: a follow would have begun
    assert lab.settled() == run
    assert gate_restarts(lab) == before, logs(lab)
    for web in WEBS:
        assert lab.wait_page(web, 200)[0] == 200


def followed_once(lab, before: dict[str, int], old_run: str, what: str) -> str:
    """The new run was followed: each web server restarted exactly once, after the database was open,
    its PDB open and its service READY; the page healthy. Prints the window ready -> last restart."""
    run = lab.settled()
    assert run != old_run
    assert pmon(lab, run) == "oracle ora_pmon_ORCL"
    time.sleep(3)  # a second follow of the same run would show by now (three of the watcher's intervals)
    log = lab.console("db", "cat /var/log/svr_restart.log").stdout
    assert log.count(f"database ready (run {run}): restarting 2 web server(s)") == 1, log
    assert gate_restarts(lab) == {w: before[w] + 1 for w in WEBS}, logs(lab)
    p = last_run_phases(lab)
    assert p["STARTED"] <= p["OPEN"] <= p["PDB_OPEN"] <= p["SERVICE_READY"], p
    started = {w: apache_started(lab, w) for w in WEBS}
    for web in WEBS:
        assert started[web] >= p["SERVICE_READY"], (web, started, p, logs(lab))
        assert lab.wait_page(web, 200)[0] == 200
    seen_ready = float(lab.console("db", "cat /var/lib/svrchain/svr_restart.run").stdout.split()[1])
    print(f"[{lab.init}] {what}: OPEN -> service READY {p['SERVICE_READY'] - p['OPEN']:.2f}s; "
          f"ready -> last web restart {max(started.values()) - p['SERVICE_READY']:.2f}s "
          f"(svrchain's check passed {seen_ready - p['SERVICE_READY']:.2f}s after READY, "
          f"the web servers restarted {max(started.values()) - seen_ready:.2f}s after that)")
    return run


def test_bootstrap_installs_the_oracle_dbora_and_restarts_nothing(chain):
    dbora = chain.console("db", "cat /usr/local/lib/svrchain/dbora").stdout
    assert OH in dbora and "bin/dbstart" in dbora and "bin/dbshut" in dbora
    if chain.init == "systemd":
        assert chain.console("db", "systemctl is-enabled dbora.service").stdout.strip() == "enabled"
    else:
        assert re.search(r"3:on\s+4:on\s+5:on", chain.console("db", "chkconfig --list dbora").stdout)
    # The run is the application's pmon, of oracle's: not TEST's, not ASM's (they run beside it).
    run = chain.settled()
    assert pmon(chain, run) == "oracle ora_pmon_ORCL"
    others = chain.console("db", "ps -o user=,comm= -C asm_pmon_+ASM,ora_pmon_TEST").stdout.split("\n")
    assert sorted(" ".join(x.split()) for x in others if x.strip()) == ["oracle asm_pmon_+ASM", "oracle ora_pmon_TEST"]
    # (systemd: handing the database over to its unit was one new run, followed once)
    assert gate_restarts(chain) == {w: int(chain.init == "systemd") for w in WEBS}, logs(chain)
    for web in WEBS:
        assert chain.wait_page(web, 200)[0] == 200
    v = chain.fab("verify")
    assert v.returncode == 0, v.stdout + v.stderr


def test_the_db_host_booting_is_followed_once(chain):
    old, before = chain.settled(), gate_restarts(chain)
    chain.boot("db")
    followed_once(chain, before, old, "boot")


def test_service_dbora_restart_is_followed_once(chain):
    old, before = chain.settled(), gate_restarts(chain)
    chain.console("db", "systemctl restart dbora.service" if chain.init == "systemd" else "service dbora restart")
    followed_once(chain, before, old, "service dbora restart")


def test_a_dbas_sqlplus_shutdown_and_startup_is_followed_once(chain):
    old, before = chain.settled(), gate_restarts(chain)
    out = sqlplus(chain, "shutdown immediate\nstartup")
    assert "Database closed." in out and "ORACLE instance shut down." in out, out
    assert "ORACLE instance started." in out and "Database mounted." in out and "Database opened." in out, out
    followed_once(chain, before, old, "sqlplus shutdown immediate + startup")


def test_dbshut_then_dbstart_is_followed_once(chain):
    old, before = chain.settled(), gate_restarts(chain)
    out = as_oracle(chain, f"dbshut {OH}")
    assert 'Processing Database instance "ORCL"' in out and "TEST" not in out, out  # TEST is N in oratab
    wait_down(chain)
    assert "status READY" not in as_oracle(chain, "lsnrctl status")  # dbshut stops the listener too
    assert gate_restarts(chain) == before
    as_oracle(chain, f"dbstart {OH}")
    followed_once(chain, before, old, "dbshut + dbstart")


def test_a_crash_and_a_startup_are_followed_once(chain):
    old, before = chain.settled(), gate_restarts(chain)
    chain.console("db", "kill -9 $(pgrep -u oracle -x ora_pmon_ORCL)")
    wait_down(chain)
    # The rest of the instance goes with pmon: the stand-in notices within a tick, logs CRASH, and
    # its processes end a moment later (the trigger may see pmon gone before that).
    end = time.monotonic() + 30
    while ("ORCL CRASH" not in chain.console("db", f"tail -n 3 {PHASES_LOG}").stdout
           or chain.console("db", "pgrep -u oracle '^ora_.*_ORCL$'", check=False).stdout):
        assert time.monotonic() < end, "no crash of the instance logged, or its processes outlived pmon"
        time.sleep(0.2)
    time.sleep(2)  # down for a while: nothing to restart the web servers for
    assert gate_restarts(chain) == before
    out = sqlplus(chain, "startup")
    assert "Database opened." in out, out
    followed_once(chain, before, old, "crash (pmon killed) + startup")


def test_a_start_after_a_power_cut_is_followed_once(chain):
    """A power cut leaves PostgreSQL's postmaster.pid behind, and after the boot its PID may be another
    process's: the stand-in's start removes such a file (a real Oracle has none to trip on), so the
    lab's DB host comes back from every power-cycle."""
    old, before = chain.settled(), gate_restarts(chain)
    out = sqlplus(chain, "shutdown abort")
    assert "ORACLE instance shut down." in out, out
    wait_down(chain)
    pgdata = f"{labhosts.ORACLE_LAB}/pgdata"
    as_oracle(chain, f"echo $(pgrep -o -u oracle -f tnslsnr) >{pgdata}/postmaster.pid")  # a live PID, not postgres
    assert chain.console("db", f"cat {pgdata}/postmaster.pid").stdout.strip().isdigit()
    out = sqlplus(chain, "startup")
    assert "Database opened." in out, out
    followed_once(chain, before, old, "power cut (a stale postmaster.pid) + startup")


def test_restarting_the_other_sid_restarts_nothing(chain):
    run, before = chain.settled(), gate_restarts(chain)
    out = sqlplus(chain, "shutdown immediate\nstartup", sid="TEST")
    assert "ORACLE instance shut down." in out and "Database opened." in out, out
    unchanged(chain, before, run)
    assert sqlplus(chain, "shutdown abort\nstartup", sid="+ASM").count("ASM instance") == 2
    unchanged(chain, before, run)


def test_restarting_the_listener_alone_restarts_nothing(chain):
    run, before = chain.settled(), gate_restarts(chain)
    as_oracle(chain, "lsnrctl stop")
    assert "TNS-12541: TNS:no listener" in as_oracle(chain, "lsnrctl status")
    as_oracle(chain, "lsnrctl start")
    end = time.monotonic() + 30
    while 'Service "app" has 1 instance(s)' not in as_oracle(chain, "lsnrctl status"):  # registered again
        assert time.monotonic() < end, as_oracle(chain, "lsnrctl status")
        time.sleep(0.3)
    unchanged(chain, before, run)


def test_the_page_shows_each_phase_and_the_chain_ends_it(chain):
    # Longer phases for this start (lab.conf is read at each startup), so that polling the page sees each.
    conf = f"{labhosts.ORACLE_LAB}/lab.conf"
    chain.console("db", f"cp {conf} {conf}.test && sed -i -E 's/^(MOUNT|OPEN|PDB|REGISTER)=.*/\\1=2/' {conf}")
    try:
        old, before = chain.settled(), gate_restarts(chain)
        sqlplus(chain, "shutdown immediate")
        chain.console("db", "(su - oracle -c 'sqlplus -s / as sysdba' <<'SQL' >/dev/null 2>&1 &\nstartup\nSQL\n)")
        seen: list[str] = []
        end = time.monotonic() + 60
        while time.monotonic() < end:
            status, body = chain.page("web1")
            if status == 200:
                break
            if status == 0:  # Apache itself restarting (the chain): no answer of the page's
                time.sleep(0.1)
                continue
            error = next((e for e in ERRORS if body.startswith(f"FAIL {e}")), None)
            assert error, body
            if not seen or seen[-1] != error:
                seen.append(error)
            time.sleep(0.1)
        print(f"[{chain.init}] the page during the start:", *seen, sep="\n  ")
        codes = {s[:9] for s in seen}
        assert "ORA-12514" in codes and codes & {"ORA-12528", "ORA-01033"}, seen
        followed_once(chain, before, old, "sqlplus startup, the page watched")
    finally:
        chain.console("db", f"mv {conf}.test {conf}")


def test_without_the_watcher_the_page_stays_failing(chain):
    """The failure svrchain prevents, shown: a DBA's restart with svrchain's watcher stopped leaves the
    page failing (ORA-03113) for good; the watcher started again follows that run and ends it."""
    watch = ("systemctl {} svr-restart-watch.service" if chain.init == "systemd"
             else "/etc/init.d/svr_restart_watch {}")
    old, before = chain.settled(), gate_restarts(chain)
    chain.console("db", watch.format("stop"))
    try:
        sqlplus(chain, "shutdown immediate\nstartup")
        end = time.monotonic() + 30
        while "SERVICE_READY" not in chain.console("db", f"tail -n 1 {PHASES_LOG}").stdout:
            assert time.monotonic() < end, logs(chain)
            time.sleep(0.2)
        time.sleep(5)  # ready for a while: a chain that followed would have restarted the web servers by now
        for web in WEBS:
            status, body = chain.page(web)
            assert status == 500 and "ORA-03113: end-of-file on communication channel" in body, body
        assert gate_restarts(chain) == before
    finally:
        chain.console("db", watch.format("start"))
    followed_once(chain, before, old, "the watcher started again after a DBA's restart")
