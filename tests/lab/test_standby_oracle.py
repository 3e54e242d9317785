"""The role check on the Oracle-shaped DB host (issue 24 section 2), where the stand-ins model
``v$database.database_role`` (lab/files/oracle: kept across restarts; a standby's open database reads
``READ ONLY WITH APPLY``; ``alter database commit to switchover to physical standby|primary`` and
``alter database activate physical standby database`` change it; no redo goes anywhere).

With ``db.role: {check: oracle}``: the database restarted as a standby restarts nothing (svrchain's
role check: database_role is not PRIMARY); its activation as the primary, without a restart, has each
web server restarted exactly once, after it is PRIMARY and READ WRITE with its service READY.
"""

from __future__ import annotations

import time

import pytest
import yaml

from lab import hosts as labhosts
from tests.lab.conftest import lab_of

pytestmark = pytest.mark.lab
WEBS = ("web1", "web2")
PHASES = {"MOUNT": 1, "OPEN": 1, "PDB": 1, "REGISTER": 1, "CLOSE": 0.5}
RAN = "restart: exit 0"
PHASES_LOG = f"{labhosts.ORACLE_LAB}/phases.log"


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """The Oracle-shaped lab (chkconfig hosts) bootstrapped with the role check."""
    data = labhosts.inventory_data("lab-oracle.yaml")
    data["db"]["role"] = {"check": "oracle"}
    path = tmp_path_factory.mktemp("oracle-role") / "lab-oracle-role.yaml"
    path.write_text(yaml.safe_dump(data))
    for lab in lab_of("chkconfig", "oracle", PHASES):
        lab.inventory = path
        yield lab.bootstrapped()


def sqlplus(lab, sql: str) -> str:
    command = f"su - oracle -c 'sqlplus / as sysdba' 2>&1 <<'SQL'\n{sql}\nexit\nSQL"
    return lab.console("db", command).stdout


def gate_restarts(lab) -> dict[str, int]:
    return {w: int(lab.console(w, f"grep -c \"{RAN}\" /var/log/auth.log; true").stdout.split()[0]) for w in WEBS}


def handled(lab) -> str:
    return lab.console("db", "cat /var/lib/svrchain/svr_restart.run").stdout.split(" ")[0]


def wait_handled(lab, want, timeout: float = 90) -> str:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if want(handled(lab)) and lab.console("db", "pgrep -f '[s]vr_restart start'", check=False).returncode:
            return handled(lab)
        time.sleep(0.2)
    raise AssertionError(lab.console("db", "tail -8 /var/log/svr_restart.log").stdout)


def test_a_standbys_restart_restarts_nothing_its_activation_restarts_each_web_server_once(chain):
    before = gate_restarts(chain)
    assert "Database altered." in sqlplus(chain, "alter database commit to switchover to physical standby;")
    chain.console("db", "/etc/init.d/dbora restart")  # dbshut, dbstart: a new run, as a standby
    run = chain.current_run()
    assert wait_handled(chain, lambda h: h.endswith("~standby") and h != "") == f"{run}~standby"
    assert "ROLE PHYSICAL STANDBY READ ONLY WITH APPLY" in sqlplus(
        chain, "set heading off feedback off\nselect 'ROLE ' || database_role || ' ' || open_mode from v$database;")
    time.sleep(3)
    assert gate_restarts(chain) == before
    assert chain.console("db", "/usr/local/lib/svrchain/svr_restart-role", check=False).returncode == 1
    activated = time.time()
    assert "Database altered." in sqlplus(chain, "alter database activate physical standby database;")
    assert wait_handled(chain, lambda h: h == run) == run  # the same run, promoted: followed
    time.sleep(3)  # the watcher's later looks restart nothing more
    assert gate_restarts(chain) == {w: before[w] + 1 for w in WEBS}
    for web in WEBS:
        started = float(chain.console(web, "stat -c %.9Y /var/run/apache2/apache2.pid").stdout)
        assert started >= activated
        assert chain.wait_page(web, 200)[0] == 200
    assert chain.console("db", "/usr/local/lib/svrchain/svr_restart-role", check=False).returncode == 0
