"""The trigger's status file and its bound (svrchain.core.trigger_status), with values written here."""

from __future__ import annotations

from svrchain.core import render, trigger_status
from svrchain.core.inventory import load
from tests.paths import LAB_INVENTORY

# inventory/lab.yaml: ready.timeout 60, interval 0.1; connect 3, retries 3, restart 60
INV = load(LAB_INVENTORY)

STATUS = """started 1000.25
ready 1004.5
run 4242.99
web web1 ok 1005.75
web web2 failed 1030.0
web web3 ok 1003.0
finished 1031.5 failed
"""


def test_a_finished_run_is_read_whole():
    run = trigger_status.parse(STATUS)
    assert (run.started, run.ready, run.run, run.finished, run.result) == (1000.25, 1004.5, "4242.99", 1031.5, "failed")
    assert run.done
    assert run.webs["web2"] == trigger_status.WebResult("failed", 1030.0)
    assert run.restarted("web1") == 1005.75
    assert run.restarted("web2") is None  # failed
    assert run.restarted("web3") is None  # before the database was ready: not a restart after it
    assert run.restarted("web9") is None


def test_a_run_going_and_a_run_never_ready():
    going = trigger_status.parse("started 12.5\n")
    assert going.started == 12.5 and not going.done and going.webs == {}
    notready = trigger_status.parse("started 12.5\nfinished 75.0 notready\n")
    assert notready.done and notready.result == "notready" and notready.ready is None


def test_lines_it_cannot_read_are_skipped():
    run = trigger_status.parse("started x\nready 5 6\nweb a ok\nweb b ok nan\nfinished 9 ok\n\nweb c ok 7\n")
    assert run.started is None and run.ready is None and set(run.webs) == {"c"} and run.finished == 9.0


def test_one_bound_for_every_wait():
    # 60 ready + 1 interval + 3 connect + 3 attempts x (60 restart + 60 status) + 1 + 2 backoff + 30 margin
    assert trigger_status.bound(INV) == 457
    assert trigger_status.unit_timeout(INV) == 914
    assert "TimeoutStartSec=914\n" in render.svr_restart_service(INV).decode()
    assert "\nbound=457\n" in render.trigger_config(INV).decode()
    _, args = trigger_status.wait_command(INV, 1700000000.5)
    assert args == ["/var/lib/svrchain/svr_restart.status", "1700000000.500000", "15", str(15 + 457)]
    program = render.trigger_program().decode()
    assert 'flock "$@" 9' in program and 'lock -w "$BOUND"' in program  # the lock waits one bound


def test_the_database_is_the_oldest_process_of_its_owner_and_program_the_rest_are_lookalikes():
    procs = trigger_status.parse_processes(
        "900 65534 nobody 100 /usr/bin/sleep\n"  # the attacker's: older than the database's
        "1200 105 postgres 300 /usr/lib/postgresql/15/bin/postgres\n"
        "1300 105 postgres 400 /usr/lib/postgresql/15/bin/postgres (deleted)\n"  # (a child, upgraded binary)
        "1400 105 postgres 50 /usr/bin/perl\n"  # the owner's, but another program
        "garbage line\n")
    main, fakes = trigger_status.the_database(procs, 105, "/usr/lib/postgresql/15/bin/postgres")
    assert main is not None and (main.pid, main.run) == (1200, "105:1200.300")
    assert [(p.pid, p.user) for p in fakes] == [(900, "nobody"), (1400, "postgres")]
    main, fakes = trigger_status.the_database(procs, 105, None)
    assert main is not None and main.pid == 1400 and [p.pid for p in fakes] == [900]
    assert trigger_status.the_database(procs, 0, None) == (None, procs)


def test_the_watchers_tick():
    assert trigger_status.parse_tick("1764634000 105:1200.300\n") == (1764634000.0, "105:1200.300")
    assert trigger_status.parse_tick("") is None and trigger_status.parse_tick("nan x") is None
    assert trigger_status.parse_tick("12 a b") is None
