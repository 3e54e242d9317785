"""The trigger and the watcher of a primary/standby pair's DB server (db.role, issue 24 section 2), as
the real bash program against the stand-ins of tests/unit/fake_trigger.py and a stand-in role check
(``bin/role``: exit 0 for ``primary`` in the file ``role``, 1 for ``standby``, 2 for anything else):
a standby's run restarts nothing, its promotion restarts every web server once, a primary's look at
the database forks nothing. The role check itself is proved on the lab (tests/lab/test_standby.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from svrchain.core import estate, render
from svrchain.core.inventory import InventoryError
from svrchain.ops import db as db_ops
from tests.unit import fake_trigger
from tests.unit.fake_trigger import Trigger
from tests.unit.test_trigger import spawn_as

WEB1, WEB2 = fake_trigger.address(1), fake_trigger.address(2)
REPO = Path(__file__).resolve().parents[2]

FAKE_ROLE = """#!/bin/sh
echo x >>@ROOT@/role.calls
case $(cat @ROOT@/role) in
    primary) exit 0 ;;
    standby) exit 1 ;;
esac
exit 2
"""


def with_role(t: Trigger, role: str, extra: tuple[str, ...] = (), drop: tuple[str, ...] = ()) -> None:
    """The trigger's settings with role_command the stand-in role check, which says ``role``; ``extra``
    settings replace the rendered ones of their keys, and the keys in ``drop`` are left out."""
    script = t.root / "bin" / "role"
    script.write_text(FAKE_ROLE.replace("@ROOT@", str(t.root)))
    script.chmod(0o755)
    set_role(t, role)
    lines = [ln for ln in render.trigger_config(t.inv).decode().splitlines()
             if not ln.startswith(tuple(k.split("=")[0] + "=" for k in (*extra, *drop)))]
    t.configure(text=("\n".join([*lines, *extra, f"role_command={script}"]) + "\n").encode())


def set_role(t: Trigger, role: str) -> None:
    (t.root / "role").write_text(role + "\n")
    t.own(t.root / "role")


def handled(t: Trigger) -> str:
    f = t.root / "var/lib/svrchain/svr_restart.run"
    return f.read_text().split()[0] if f.exists() else ""


def until(what, timeout: float = 20) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if what():
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def trig() -> Iterator[Trigger]:
    t = fake_trigger.make()
    yield t
    fake_trigger.remove(t)


def test_a_standbys_start_restarts_nothing_and_is_followed_as_a_standbys(trig: Trigger):
    with_role(trig, "standby")
    r = trig.run("start")
    assert r.returncode == 0, (r.stderr, trig.log)
    assert trig.ssh_calls("restart") == [] and trig.restarts(WEB1) == [] and trig.owed() == []
    assert handled(trig) == "1234.5678~standby"
    assert "database up as a standby (run 1234.5678" in trig.log
    first = trig.status
    assert first.result == "standby" and first.run == "1234.5678" and first.webs == {}  # restart-chain reads it
    assert trig.run("start").returncode == 0  # the same standby run again: nothing, said once
    assert trig.status == first
    assert trig.log.count("as a standby") == 1 and trig.ssh_calls("restart") == []


def test_a_primarys_start_restarts_every_web_server_once(trig: Trigger):
    with_role(trig, "primary")
    assert trig.run("start").returncode == 0, trig.log
    assert len(trig.restarts(WEB1)) == 1 and len(trig.restarts(WEB2)) == 1
    assert handled(trig) == "1234.5678" and trig.status.result == "ok"


def test_a_primary_not_open_read_write_is_not_ready(trig: Trigger):
    """Ready by its probe, but the role check cannot tell yet (Oracle's primary still MOUNTED): no restart
    (within a ready_timeout of 1 s, the least, not the stand-ins' 2 s)."""
    with_role(trig, "mounted", ("ready_timeout=1",))
    assert trig.run("start").returncode == 1
    assert trig.status.result == "notready" and trig.ssh_calls("restart") == []


def test_the_watcher_follows_a_promotion_once_and_a_standbys_new_run_not_at_all(trig: Trigger):
    with_role(trig, "standby", ("run_interval=0.05",))
    watcher = trig.popen("watch")
    try:
        assert until(lambda: handled(trig) == "1234.5678~standby"), trig.log  # installed on a standby
        trig.set_run("999.1")  # the standby restarted
        assert until(lambda: handled(trig) == "999.1~standby"), trig.log
        trig.looks(5)  # five looks at the standby's new run (0.05 s apart)
        assert trig.ssh_calls("restart") == []
        set_role(trig, "primary")  # promoted: the same run, now the primary
        assert until(lambda: len(trig.restarts(WEB1)) == 1 and len(trig.restarts(WEB2)) == 1), trig.log
        assert until(lambda: handled(trig) == "999.1"), trig.log
        calls = len((trig.root / "role.calls").read_text().split())
        trig.looks(5)  # five looks at the primary's run
        assert len(trig.restarts(WEB1)) == 1 and len(trig.restarts(WEB2)) == 1  # exactly once
        assert len((trig.root / "role.calls").read_text().split()) == calls  # a primary's look: no check
        assert "the database's run 999.1 is the primary now, open read-write (promoted)" in trig.log
    finally:
        watcher.terminate()
        watcher.wait()


@pytest.mark.parametrize("role", ["primary", "standby"])
def test_a_primarys_look_forks_nothing_a_standbys_only_its_role_check(role: str):
    t = fake_trigger.make()
    me = "nobody" if fake_trigger.AS_ROOT else subprocess.run(["id", "-un"], capture_output=True,
                                                             text=True).stdout.strip()
    name = f"svrchain_db_{t.root.name[-6:]}"
    uid = fake_trigger.NOBODY if fake_trigger.AS_ROOT else os.getuid()
    db = spawn_as(uid, name)
    with_role(t, role, ("run_interval=0.05", f"run_process=^{name}$", f"run_user={me}"), drop=("run_command",))
    watcher = t.popen("watch")
    try:
        mark = "~standby" if role == "standby" else ""
        assert until(lambda: handled(t).endswith(mark) and handled(t).startswith(f"{uid}:{db.pid}.")), t.log
        t.looks(3)  # in its loop, past its start
        execs = [ln for ln in t.traced_looks(watcher.pid, 10) if "execve(" in ln]  # over ten looks
        if role == "primary":
            assert execs == []
        else:
            assert any(f'"{t.root}/bin/role"' in ln for ln in execs), execs  # the role check, each look
        assert t.ssh_calls("restart") == []
    finally:
        watcher.terminate()
        watcher.wait()
        db.kill()
        db.wait()
        fake_trigger.remove(t)


def role_inventory(root, role: dict, **db):
    return fake_trigger.inventory(root, db={"role": role, **db})


def test_a_role_check_needs_the_databases_own_client_and_owner(tmp_path):
    run = {"process": "^postgres", "user": "postgres"}
    with pytest.raises(InventoryError, match=r"role\.check postgres needs role\.psql"):
        role_inventory(tmp_path, {"check": "postgres"}, run=run)
    with pytest.raises(InventoryError, match=r"role\.check postgres needs run\.user"):
        role_inventory(tmp_path, {"check": "postgres", "psql": "/usr/lib/postgresql/15/bin/psql"})
    with pytest.raises(InventoryError, match=r"role\.check oracle .* add oracle"):
        role_inventory(tmp_path, {"check": "oracle"}, run=run)
    with pytest.raises(InventoryError, match=r"socket_dir"):
        role_inventory(tmp_path, {"check": "postgres", "psql": "/p", "socket_dir": "relative"}, run=run)
    assert fake_trigger.inventory(tmp_path).db.role is None  # today's inventories: no role, as before


def shellcheck(text: bytes) -> None:
    if shutil.which("shellcheck"):
        r = subprocess.run(["shellcheck", "-"], input=text, capture_output=True)
        assert r.returncode == 0, r.stdout.decode()


def test_postgres_role_check_asks_as_the_owner_through_its_psql_on_its_socket_dir(tmp_path):
    inv = role_inventory(tmp_path, {"check": "postgres", "psql": "/usr/lib/postgresql/15/bin/psql"},
                         run={"process": "^/usr/lib/postgresql/15/bin/postgres", "user": "postgres"})
    text = render.role_check(inv)
    assert b"runuser -u \"$OWNER\" -- env -i" in text and b"OWNER='postgres'" in text
    assert b"PSQL='/usr/lib/postgresql/15/bin/psql'" in text and b"-h '/var/run/postgresql' -p '5432'" in text
    assert b"SELECT pg_is_in_recovery()" in text
    shellcheck(text)
    settings = dict(render.trigger_settings(inv)[:-2])
    assert settings["role_command"] == "/usr/local/lib/svrchain/svr_restart-role" == render.role_path(inv)
    files = [spec.path for spec in db_ops.trigger(inv).files("sysv")]
    assert files[:2] == [render.role_path(inv), render.trigger_config_path(inv)]  # the check before its setting


def test_oracle_role_check_wants_primary_read_write(tmp_path):
    inv = role_inventory(tmp_path, {"check": "oracle"}, script=None, run=None,
                         oracle={"home": "/u01/app/oracle/product/19.0.0/dbhome_1", "sid": "ORCL"})
    text = render.role_check(inv)
    assert b"select 'ROLE ' || database_role || ' ' || open_mode from v$database;" in text
    assert b'"ROLE PRIMARY READ WRITE") exit 0' in text and b"OWNER='oracle'" in text
    shellcheck(text)
    assert "role_command" not in dict(render.trigger_settings(fake_trigger.inventory(tmp_path)))


def test_the_lab_pair_is_two_chains_of_the_same_web_servers_each_with_its_role_check():
    e = estate.load(REPO / "inventory" / "lab-pair.yaml")
    assert [(c.name, c.inv.db.name, c.inv.db.address) for c in e.chains] == [
        ("primary", "db1", "198.18.0.10"), ("standby", "db2", "198.18.0.11")]
    assert [[s.name for s in c.inv.web.servers] for c in e.chains] == [["web1", "web2"]] * 2
    for c in e.chains:
        assert c.inv.db.role is not None and c.inv.db.role.check == "postgres"
        assert dict(render.trigger_settings(c.inv))["role_command"] == "/usr/local/lib/svrchain/svr_restart-role"
