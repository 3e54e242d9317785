"""A primary and a streaming standby (issue 24 section 2) on the lab: db1 the PostgreSQL primary, db2 its
streaming standby (``lab up --standby``: pg_basebackup from db1), svrchain bootstrapped once from
inventory/lab-pair.yaml: two chains of the same web servers, one per DB server (its own key, trigger and
restricted line on each web server), each with ``db.role: {check: postgres}``; the pages reach the pair
with ``host=db1,db2 target_session_attrs=read-write``.

A restart of the standby (through its service, or a DBA's pg_ctl) restarts nothing; a local user of
the standby host with a PostgreSQL primary of her own cannot make the standby look primary; a
switchover (db1 stopped, db2 promoted with pg_promote()) restarts each web server exactly once, after
the new primary accepts writes, and the pages recover; the old primary brought back as a standby of
the new one restarts nothing.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from lab import dbpair
from svrchain.core import trigger_status
from tests.lab.conftest import lab_of

pytestmark = pytest.mark.lab
WEBS = ("web1", "web2")
RAN = "restart: exit 0"  # the gate's log line for each restart of the web server that succeeded
PG = "/usr/lib/postgresql/15/bin"
ROLE_CHECK = "/usr/local/lib/svrchain/svr_restart-role"
HANDLED = "/var/lib/svrchain/svr_restart.run"
PAIR_INVENTORY = Path(__file__).resolve().parents[2] / "inventory" / "lab-pair.yaml"


@pytest.fixture(scope="module", params=["sysv", "systemd"])
def pair(request):
    """The pair's lab with svrchain bootstrapped on db1 and db2 (the pages through the multi-host string)."""
    for lab in lab_of(request.param, standby=True):
        lab.inventory = PAIR_INVENTORY
        r = lab.fab("bootstrap")
        assert r.returncode == 0, r.stdout + r.stderr
        if lab.init == "systemd":  # the DBs under svrchain's service, as an admin would hand them over
            for name, _ in dbpair.PAIR:
                lab.console(name, "systemctl stop lab-db.service && systemctl start dbora.service")
        followed(lab, "db1", "")
        followed(lab, "db2", "~standby")
        yield lab


def as_postgres(lab, host: str, command: str) -> str:
    return lab.console(host, f"su postgres -s /bin/sh -c \"{command}\" </dev/null 2>&1").stdout


def sql(lab, host: str, query: str) -> str:
    return as_postgres(lab, host, f"psql -XqtA -c '{query}'").strip()


def handled(lab, host: str) -> str:
    return lab.console(host, f"cat {HANDLED} 2>/dev/null; true").stdout.split(" ")[0].strip()


def followed(lab, host: str, mark: str, timeout: float = 60) -> str:
    """Wait until the trigger on ``host`` has followed the database's current run (as a standby's with
    mark '~standby') and no trigger run is going; return that run."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        run = lab.console(host, "/usr/local/lib/svrchain/svr_restart run").stdout
        busy = lab.console(host, "pgrep -f 'svr_restart (start|retry)'", check=False).returncode == 0
        if run.strip() not in ("", "none") and handled(lab, host) == run.strip() + mark and not busy:
            return run.strip()
        time.sleep(0.2)
    log = lab.console(host, "tail -5 /var/log/svr_restart.log").stdout
    raise AssertionError(f"{host} did not follow its run: {log}")


def gate_restarts(lab) -> dict[str, int]:
    """How many times each web server's gate has really restarted the web server."""
    return {w: int(lab.console(w, f"grep -c \"{RAN}\" /var/log/auth.log; true").stdout.split()[0]) for w in WEBS}


def apache_pids(lab) -> dict[str, str]:
    return {w: lab.console(w, "cat /var/run/apache2/apache2.pid").stdout.strip() for w in WEBS}


def nothing_restarted(lab, before: dict[str, int], pids: dict[str, str]) -> None:
    time.sleep(3)  # several of the watcher's looks: one that followed would have restarted by now
    assert gate_restarts(lab) == before and apache_pids(lab) == pids
    for web in WEBS:
        assert lab.wait_page(web, 200)[0] == 200


def test_each_db_server_of_the_pair_verifies_whole_with_its_role_check(pair):
    r = pair.fab("verify")
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("svr_restart role check") == 2, r.stdout  # one on each DB server
    assert pair.console("db1", ROLE_CHECK, check=False).returncode == 0  # the primary
    assert pair.console("db2", ROLE_CHECK, check=False).returncode == 1  # the standby


def test_a_restart_of_the_standby_through_its_service_restarts_nothing(pair):
    before, pids, old = gate_restarts(pair), apache_pids(pair), handled(pair, "db2")
    pair.console("db2", "/etc/init.d/dbora restart" if pair.init != "systemd" else "systemctl restart dbora")
    run = followed(pair, "db2", "~standby")
    assert run + "~standby" != old
    assert sql(pair, "db2", "SELECT pg_is_in_recovery()") == "t"
    nothing_restarted(pair, before, pids)
    assert "as a standby" in pair.console("db2", "tail -3 /var/log/svr_restart.log").stdout


def test_a_dbas_restart_of_the_standby_restarts_nothing(pair):
    before, pids, old = gate_restarts(pair), apache_pids(pair), handled(pair, "db2")
    as_postgres(pair, "db2", f"{PG}/pg_ctl restart -D /var/lib/postgresql/15/main -m fast -w "
                             "-o '-c config_file=/etc/postgresql/15/main/postgresql.conf' -l /tmp/pg.log")
    assert followed(pair, "db2", "~standby") + "~standby" != old
    nothing_restarted(pair, before, pids)


def test_restart_chain_of_the_standby_restarts_no_web_server_and_says_so(pair):
    """The on-call admin's restart-chain on the standby's chain: the standby restarted, the web servers
    left alone (its trigger's run says 'standby'), exit 0 at once instead of waiting for restarts."""
    before, pids = gate_restarts(pair), apache_pids(pair)
    r = pair.fab("restart-chain", "--yes", "--chain", "standby")
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("not restarted: db2 is a standby") >= len(WEBS), r.stdout
    followed(pair, "db2", "~standby")
    nothing_restarted(pair, before, pids)


# mallory's own PostgreSQL on the standby host: a primary (not in recovery), its postmaster named as the
# real one, on a socket in /tmp and on TCP 127.0.0.1:5433, and PG* variables pointing at it.
MALLORY_PG = ("id mallory >/dev/null 2>&1 || useradd -m mallory; "
              f"runuser -u mallory -- {PG}/initdb -D /tmp/mallory-pg -A trust >/dev/null && "
              f"runuser -u mallory -- {PG}/pg_ctl start -w -D /tmp/mallory-pg -l /tmp/mallory-pg.log "
              "-o \"-k /tmp -p 5433 -c listen_addresses=127.0.0.1\" >/dev/null")


def test_a_local_user_of_the_standby_cannot_make_it_look_primary(pair):
    """mallory runs a primary of her own beside the standby: the role check asks the real one (the
    owner's socket directory, where only postgres can create a socket), with a clean environment."""
    before, pids = gate_restarts(pair), apache_pids(pair)
    with pair.fault("db2", MALLORY_PG, f"runuser -u mallory -- {PG}/pg_ctl stop -D /tmp/mallory-pg -m immediate; "
                                       "rm -rf /tmp/mallory-pg; true"):
        assert pair.console("db2", "runuser -u mallory -- psql -XqtA -h /tmp -p 5433 -d postgres "
                                   "-c 'SELECT pg_is_in_recovery()'").stdout.strip() == "f"  # hers: a primary
        assert pair.console("db2", "runuser -u mallory -- touch /var/run/postgresql/.s.PGSQL.5432.x",
                            check=False).returncode != 0
        # Whatever the caller's environment says, the check asks the standby: exit 1.
        r = pair.console("db2", f"PGHOST=/tmp PGPORT=5433 PGDATABASE=postgres {ROLE_CHECK}", check=False)
        assert r.returncode == 1
        as_postgres(pair, "db2", f"{PG}/pg_ctl restart -D /var/lib/postgresql/15/main -m fast -w "
                                 "-o '-c config_file=/etc/postgresql/15/main/postgresql.conf' -l /tmp/pg.log")
        followed(pair, "db2", "~standby")
        nothing_restarted(pair, before, pids)
    # The check is root's and svrchain's: no one else may change it.
    assert pair.console("db2", f"stat -c '%U %a' {ROLE_CHECK}").stdout.split() == ["root", "755"]


def test_a_switchover_restarts_each_web_server_once_after_the_new_primary_accepts_writes(pair):
    before, pids = gate_restarts(pair), apache_pids(pair)
    pair.console("db1", "/etc/init.d/dbora stop" if pair.init != "systemd" else "systemctl stop dbora")
    failing = {w: pair.page(w)[0] for w in WEBS}  # the old workers: a session of the stopped primary
    assert 200 not in failing.values(), failing
    assert sql(pair, "db2", "SELECT pg_promote()") == "t"
    run = followed(pair, "db2", "")
    promoted = float(pair.console("db2", "su postgres -s /bin/sh -c \"psql -XqtA -d app -c "
                                         "'SELECT lab_run_started()'\"").stdout)
    status = trigger_status.parse(pair.console("db2", "cat /var/lib/svrchain/svr_restart.status").stdout)
    assert status.result == "ok" and status.run == run and status.ready is not None and status.ready >= promoted
    for web in WEBS:
        assert status.restarted(web) is not None and status.restarted(web) >= status.ready
    time.sleep(3)  # the watcher's later looks restart nothing more: exactly once
    assert gate_restarts(pair) == {w: before[w] + 1 for w in WEBS}, before
    assert all(apache_pids(pair)[w] != pids[w] for w in WEBS)
    for web in WEBS:
        code, body = pair.wait_page(web, 200)
        assert code == 200 and body.startswith("OK"), body
    assert sql(pair, "db2", "CREATE TABLE IF NOT EXISTS switched (x int)") == ""  # it accepts writes


def test_the_old_primary_back_as_a_standby_restarts_nothing(pair):
    """db1 comes back demoted: a standby of the new primary db2 (standby.signal, db2 as its primary)."""
    before, pids = gate_restarts(pair), apache_pids(pair)
    conninfo = (f"host=198.18.0.11 user={dbpair.REPLICATOR} password={dbpair.REPLICATOR} application_name=db1")
    pair.console("db1", "touch /var/lib/postgresql/15/main/standby.signal && chown postgres: "
                        "/var/lib/postgresql/15/main/standby.signal && printf \"primary_conninfo = '%s'\\n\" "
                        f"'{conninfo}' >>/var/lib/postgresql/15/main/postgresql.auto.conf")
    pair.console("db1", "/etc/init.d/dbora start" if pair.init != "systemd" else "systemctl start dbora")
    followed(pair, "db1", "~standby")
    assert sql(pair, "db1", "SELECT pg_is_in_recovery()") == "t"
    nothing_restarted(pair, before, pids)
