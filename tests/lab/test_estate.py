"""An estate on real hosts: two chains in one inventory, web2 in both. shop: db1 restarts web1 and web2;
billing: db2 restarts web2. Each DB server has its own key and trigger; web2 holds one restricted line
per DB server, each with its own from=; a restart of either DB restarts web2 exactly once and its page
recovers; db2's key cannot restart web1; --chain limits a run; one SSH connection per host per run."""

from __future__ import annotations

import itertools
import re
import time

import pytest
import yaml

from lab import hosts as labhosts
from tests.lab.conftest import lab_of

pytestmark = pytest.mark.lab
HOSTS = ("db1", "db2", "web1", "web2")
RAN = "restart: exit 0"  # the gate's log line for each restart of the web server that succeeded
KEY = "/root/.ssh/svr_restart_key"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    for lab in lab_of("sysv", db_count=2):
        data = labhosts.inventory_data()
        db, web = data.pop("db"), data["web"]
        web1, web2 = web.pop("servers")
        data["chains"] = {
            "shop": {"db": {**db, "name": "db1", "address": "198.18.0.10"}, "web": {"servers": [web1, web2]}},
            "billing": {"db": {**db, "name": "db2", "address": "198.18.0.11"}, "web": {"servers": [web2]}},
        }
        lab.inventory = tmp_path_factory.mktemp("estate") / "estate.yaml"
        lab.inventory.write_text(yaml.safe_dump(data, sort_keys=False))
        yield lab


def accepted(lab) -> dict[str, int]:
    """The admin's SSH logins on each host so far (read through the console: no login counted)."""
    return {h: int(lab.console(h, "grep -c 'Accepted publickey' /var/log/auth.log; true").stdout.split()[0])
            for h in HOSTS}


def gate_restarts(lab) -> dict[str, int]:
    """How many times each web server's gate has really restarted it."""
    return {w: int(lab.console(w, f"grep -c \"{RAN}\" /var/log/auth.log; true").stdout.split()[0])
            for w in ("web1", "web2")}


def logs(lab) -> str:
    out = ""
    for db in ("db1", "db2"):
        out += lab.console(db, "tail -n 20 /var/log/svr_restart.log; true").stdout
    for web in ("web1", "web2"):
        out += lab.console(web, "grep svr-restart-gate /var/log/auth.log | tail -n 8; true").stdout
    return out


def settled(lab, db: str, timeout: float = 90) -> None:
    """Wait until ``db``'s trigger has followed its database's current run and no trigger run is going."""
    look = ('run=$($(ls /etc/init.d/svr_restart /usr/local/lib/svrchain/svr_restart | head -n 1) run); '
            'echo "$run"; pgrep -f "svr_restart (start|retry)" >/dev/null && echo busy || echo idle; '
            "cat /var/lib/svrchain/svr_restart.run 2>/dev/null; true")
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        run, state, *handled = lab.console(db, look).stdout.split()
        if run != "none" and handled[:1] == [run] and state == "idle":
            return
        time.sleep(0.2)
    raise AssertionError(f"{db}: the chain did not follow the database's run: {logs(lab)}")


def restart_db(lab, db: str) -> None:
    """The DBA restarts the database through its service; the trigger follows."""
    lab.console(db, "service dbora restart >/dev/null 2>&1; until pg_isready -q -h 127.0.0.1; do sleep 0.2; done")
    settled(lab, db)


def test_bootstrap_sets_up_both_chains_with_one_connection_per_host(lab):
    before = accepted(lab)
    r = lab.fab("bootstrap")
    assert r.returncode == 0, r.stdout + r.stderr
    after = accepted(lab)
    # web2 is in both chains: still one login for the whole run, as every other host.
    assert {h: after[h] - before[h] for h in HOSTS} == dict.fromkeys(HOSTS, 1), r.stdout
    heads = re.findall(r"^svrchain: inventory \S+ \(the lab\), chain (\w+): (.*)$", r.stderr + r.stdout, re.M)
    assert heads == [("shop", "db1 198.18.0.10, web1 198.18.0.21, web2 198.18.0.22"),
                     ("billing", "db2 198.18.0.11, web2 198.18.0.22")]
    for db in ("db1", "db2"):
        settled(lab, db)


def test_a_second_bootstrap_changes_nothing(lab):
    r = lab.fab("bootstrap")
    assert r.returncode == 0, r.stdout + r.stderr
    assert not re.search(r"^\S+ +\S+ +changed", r.stdout + r.stderr, re.M), r.stdout + r.stderr


def test_web2_holds_one_line_per_db_server_each_with_its_own_from(lab):
    lines = lab.console("web2", "grep svrchain: /root/.ssh/authorized_keys").stdout.splitlines()
    assert len(lines) == 2, lines
    froms = sorted(re.search(r'from="([^"]*)"', ln).group(1) for ln in lines)
    assert froms == ["198.18.0.10", "198.18.0.11"]
    assert all('command="/usr/local/sbin/svr-restart-gate"' in ln for ln in lines)
    assert sorted(ln.rsplit(" ", 1)[1] for ln in lines) == ["svrchain:svr_restart@db1", "svrchain:svr_restart@db2"]
    web1 = lab.console("web1", "grep svrchain: /root/.ssh/authorized_keys").stdout.splitlines()
    assert [ln.rsplit(" ", 1)[1] for ln in web1] == ["svrchain:svr_restart@db1"]
    keys = {db: lab.console(db, f"cut -d' ' -f2 {KEY}.pub").stdout.strip() for db in ("db1", "db2")}
    assert keys["db1"] != keys["db2"]  # each DB server has its own key


def test_db2s_key_cannot_restart_chain_shops_web1(lab):
    """An attacker with root on db2 (billing) holds its key: web1 (shop only) refuses it."""
    before = gate_restarts(lab)
    r = lab.console("db2", f"ssh -n -i {KEY} -o BatchMode=yes -o StrictHostKeyChecking=no "
                           "-o UserKnownHostsFile=/dev/null root@198.18.0.21 restart", check=False)
    assert r.returncode == 255 and "Permission denied" in r.stderr, r.stderr
    assert gate_restarts(lab) == before


def test_db1s_key_stolen_to_db2_is_refused_by_web2_from_there(lab):
    """web2 holds both DB servers' keys, each line admitting only its own DB server's address: db1's
    key, copied to db2 (a thief with root on db2 and a copy of it), does not work from there."""
    lab.console("db2", "install -m 600 /dev/null /root/stolen_key")
    lab.console("db2", f"cat > /root/stolen_key <<'EOF'\n{lab.console('db1', f'cat {KEY}').stdout}EOF")
    before = gate_restarts(lab)
    r = lab.console("db2", "ssh -n -i /root/stolen_key -o BatchMode=yes -o StrictHostKeyChecking=no "
                           "-o UserKnownHostsFile=/dev/null root@198.18.0.22 restart; rm -f /root/stolen_key",
                    check=False)
    assert "Permission denied" in r.stderr, r.stderr
    assert gate_restarts(lab) == before


def test_a_restart_of_db2_restarts_web2_once_and_web1_not_at_all(lab):
    before = gate_restarts(lab)
    restart_db(lab, "db2")
    assert gate_restarts(lab) == {"web1": before["web1"], "web2": before["web2"] + 1}, logs(lab)
    assert lab.wait_page("web2", 200)[0] == 200


def test_a_restart_of_db1_restarts_web1_and_web2_once_and_the_pages_recover(lab):
    before = gate_restarts(lab)
    restart_db(lab, "db1")
    assert gate_restarts(lab) == {"web1": before["web1"] + 1, "web2": before["web2"] + 1}, logs(lab)
    for web in ("web1", "web2"):
        assert lab.wait_page(web, 200)[0] == 200


def test_both_dbs_restarted_together_restart_web2_at_most_twice_never_at_once(lab):
    """The gate folds the second DB server's trigger into the restart running (or one more after it)."""
    before = gate_restarts(lab)
    lab.console("db1", "service dbora restart >/dev/null 2>&1 &")
    lab.console("db2", "service dbora restart >/dev/null 2>&1 &")
    time.sleep(2)
    for db in ("db1", "db2"):
        lab.console(db, "until pg_isready -q -h 127.0.0.1; do sleep 0.2; done")
        settled(lab, db)
    after = gate_restarts(lab)
    assert after["web1"] == before["web1"] + 1, logs(lab)
    assert 1 <= after["web2"] - before["web2"] <= 2, logs(lab)
    log = lab.console("web2", "grep svr-restart-gate /var/log/auth.log | grep -E \"restart: (running|exit)\"").stdout
    steps = [("running" if "running" in ln else "exit") for ln in log.splitlines()]
    assert all(a != b for a, b in itertools.pairwise(steps)), log  # never two restarts at once
    for web in ("web1", "web2"):
        assert lab.wait_page(web, 200)[0] == 200


def test_smoke_proves_both_db_servers_paths_to_web2(lab):
    before = gate_restarts(lab)
    r = lab.fab("smoke")
    assert r.returncode == 0, r.stdout + r.stderr
    assert gate_restarts(lab) == before  # status only: nothing restarted


def test_restart_chain_of_one_chain_restarts_its_db_and_its_web_servers(lab):
    before = gate_restarts(lab)
    r = lab.fab("restart-chain", "--yes", "--chain", "billing")
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"^db2 +restart +changed", r.stdout, re.M) and not re.search(r"^db1 ", r.stdout, re.M)
    settled(lab, "db2")
    assert gate_restarts(lab)["web1"] == before["web1"], logs(lab)
    assert gate_restarts(lab)["web2"] >= before["web2"] + 1, logs(lab)


def test_chain_limits_the_run_to_its_hosts(lab):
    before = accepted(lab)
    r = lab.fab("verify", "--chain", "billing")
    assert r.returncode == 0, r.stdout + r.stderr
    after = accepted(lab)
    assert {h: after[h] - before[h] for h in HOSTS} == {"db1": 0, "db2": 1, "web1": 0, "web2": 1}
    r = lab.fab("verify", "--chain", "nope")
    assert r.returncode == 4 and "--chain 'nope': no chain of that name" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


def test_a_db_server_taken_out_of_a_chain_loses_its_line_and_others_stay(lab, tmp_path):
    """The billing chain is taken out of the estate: the next bootstrap takes db2's line off web2 (every
    other line byte for byte, an admin's own too), and a dry run after it would change nothing."""
    data = yaml.safe_load(lab.inventory.read_text())
    lab.console("web2", "echo 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFOREIGNFOREIGNFOREIGNFOREIGNFOREIGNFORE x@y' "
                        ">> /root/.ssh/authorized_keys")
    before = lab.console("web2", "cat /root/.ssh/authorized_keys").stdout
    del data["chains"]["billing"]
    smaller = tmp_path / "estate.yaml"
    smaller.write_text(yaml.safe_dump(data, sort_keys=False))
    v = lab.fab("verify", inventory=smaller)
    assert v.returncode == 2 and re.search(r"^web2 +authorized_keys +GAP +a line of svrchain:svr_restart@db2, a DB "
                                           "server that no longer restarts it", v.stdout, re.M), v.stdout + v.stderr
    r = lab.fab("bootstrap", inventory=smaller)
    assert r.returncode == 0, r.stdout + r.stderr
    after = lab.console("web2", "cat /root/.ssh/authorized_keys").stdout
    assert after == "".join(ln for ln in before.splitlines(keepends=True) if "svrchain:svr_restart@db2" not in ln)
    r = lab.fab("bootstrap", "--dry-run", inventory=smaller)
    assert r.returncode == 0 and "would change" not in r.stdout + r.stderr, r.stdout + r.stderr
