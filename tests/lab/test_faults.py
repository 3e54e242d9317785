"""Faults of real server rooms, on the lab: the chain degrades clearly and nothing is lost."""

from __future__ import annotations

import re
import subprocess
import time

import pytest
import yaml

from lab import hosts as labhosts
from svrchain.errors import HostError
from svrchain.plan import FileSpec
from svrchain.remote.files import WRITE_SCRIPT
from svrchain.remote.group import Session
from svrchain.trigger_status import TriggerRun, parse
from tests.lab.conftest import lab_of
from tests.paths import LAB_INVENTORY

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def lab():
    """Faults do not depend on the init system: SysV hosts."""
    yield from lab_of("sysv")


def apache_pid(lab, web: str) -> str:
    return lab.console(web, "cat /var/run/apache2/apache2.pid", check=False).stdout.strip()


def trigger_run(lab, since: float, timeout: float = 90) -> TriggerRun:
    """The trigger's status for its first run started after ``since`` (read on the DB host's console)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        run = parse(lab.console("db", "cat /var/lib/svrchain/svr_restart.status", check=False).stdout)
        if (run.started or 0) >= since and run.done:
            return run
        time.sleep(0.3)
    raise AssertionError("the trigger did not finish")


def wait_host_key(lab, web: str, timeout: float = 30) -> None:
    """Wait until sshd on ``web`` offers the ed25519 host key now in its file (it reloaded after a change)."""
    address = labhosts.host(web).address
    want = lab.console(web, "cut -d' ' -f2 /etc/ssh/ssh_host_ed25519_key.pub").stdout.strip()
    end = time.monotonic() + timeout
    while True:
        r = subprocess.run(["ssh-keyscan", "-T", "2", "-t", "ed25519", address], capture_output=True, text=True)
        if want in r.stdout.split():
            return
        assert time.monotonic() < end, f"{web}: sshd does not offer its new host key"
        time.sleep(0.2)


def db_now(lab) -> float:
    return float(lab.console("db", "date +%s.%N").stdout)


def test_a_web_server_down_during_a_db_restart(chain):
    labhosts.stop_host(labhosts.host("web2"))  # powered off
    try:
        t0 = db_now(chain)
        before = apache_pid(chain, "web1")
        chain.console("db", "service dbora restart")
        run = trigger_run(chain, t0)
        assert run.webs["web1"].state == "ok" and run.webs["web2"].state == "failed"
        assert run.result == "failed"
        assert apache_pid(chain, "web1") != before  # the others still restarted
        log = chain.console("db", "cat /var/log/svr_restart.log").stdout
        assert "web2 (198.18.0.22): FAILED after 3 attempts" in log
    finally:
        labhosts.start_host(labhosts.host("web2"))
        labhosts.wait_booted(labhosts.host("web2"))
    r = chain.fab("restart-chain", "--yes")  # a later maintenance run repairs it
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"^web2\s+web\s+restarted by the chain\s.*ok$", r.stdout, re.M), r.stdout


def test_two_db_restarts_in_quick_succession(chain):
    seen = len(chain.console("db", "cat /var/log/svr_restart.log").stdout.splitlines())
    chain.console("db", "service dbora restart; service dbora restart")
    run = chain.settled()  # the last run is followed, whatever ran in between
    last_db_start = float(chain.console("db", "su postgres -c \"psql -tAc 'select extract(epoch from "
                                              "pg_postmaster_start_time())'\"").stdout)
    ready = float(chain.console("db", "cat /var/lib/svrchain/svr_restart.run").stdout.split()[1])
    assert ready >= last_db_start
    for web in ("web1", "web2"):
        assert chain.wait_page(web, 200)[0] == 200  # restarted after the last DB start: healthy
    log = chain.console("db", "cat /var/log/svr_restart.log").stdout.splitlines()[seen:]
    followed = [ln.split("(run ")[1].split(")")[0] for ln in log if "restarting 2 web server(s)" in ln]
    # Triggers serialized; each run followed at most once, the last one certainly.
    assert run in followed and len(followed) == len(set(followed)) and 1 <= len(followed) <= 2, log


def test_the_db_never_ready(chain, tmp_path):
    data = labhosts.inventory_data()
    data["db"]["ready"] = {"command": "false", "timeout": 3, "interval": 0.5}
    never = tmp_path / "never.yaml"
    never.write_text(yaml.safe_dump(data))
    assert chain.fab("install-svr-restart", inventory=never).returncode == 0
    try:
        before = {w: apache_pid(chain, w) for w in ("web1", "web2")}
        t0 = db_now(chain)
        chain.console("db", "service dbora restart")
        run = trigger_run(chain, t0)
        assert run.result == "notready"
        assert "database not ready after 3s: web servers NOT restarted" in chain.console(
            "db", "cat /var/log/svr_restart.log").stdout
        assert {w: apache_pid(chain, w) for w in ("web1", "web2")} == before
    finally:
        assert chain.fab("install-svr-restart").returncode == 0


def test_a_changed_host_key_is_refused_and_flagged(chain):
    chain.console("web1", "cp -a /etc/ssh/ssh_host_ed25519_key /root/hk && cp -a /etc/ssh/ssh_host_ed25519_key.pub "
                          "/root/hk.pub && rm /etc/ssh/ssh_host_ed25519_key* && ssh-keygen -q -t ed25519 -N '' "
                          "-f /etc/ssh/ssh_host_ed25519_key && pkill -HUP -x sshd")
    try:
        wait_host_key(lab=chain, web="web1")
        t0 = db_now(chain)
        chain.console("db", "service dbora restart")
        run = trigger_run(chain, t0)
        assert run.webs["web1"].state == "hostkey" and run.webs["web2"].state == "ok"
        assert "web1 (198.18.0.21): REFUSED: its host key is not the one pinned" in chain.console(
            "db", "cat /var/log/svr_restart.log").stdout
        v = chain.fab("verify")
        # web1 cannot be logged in to: the check is incomplete, exit 3 (the DB also owes it a restart: a gap)
        assert v.returncode == 3 and re.search(r"^web1\s+reachable\s+UNREACHABLE\s+.*host key CHANGED", v.stdout,
                                               re.M)
    finally:
        chain.console("web1", "mv /root/hk /etc/ssh/ssh_host_ed25519_key && mv /root/hk.pub "
                              "/etc/ssh/ssh_host_ed25519_key.pub && pkill -HUP -x sshd")
        wait_host_key(lab=chain, web="web1")


def test_an_incomplete_transfer_leaves_the_file_as_it_was(chain):
    before = chain.host("web1").file("/root/.ssh/authorized_keys").content
    spec = FileSpec("/root/.ssh/authorized_keys", before + b"# more\n", 0o600)
    with Session.open(LAB_INVENTORY) as s, pytest.raises(HostError, match="arrived incomplete"):
        # As if the connection dropped mid-transfer: the host gets fewer bytes than the checksum covers.
        s.webs[0].check(WRITE_SCRIPT, spec.path, "600", "root:root", spec.sha256, "/var/backups/svrchain", "-", "-",
                        stdin=spec.content[:-5], what="writing")
    assert chain.host("web1").file("/root/.ssh/authorized_keys").content == before
    assert chain.host("web1").run("ls /root/.ssh/.svrchain.* 2>/dev/null").stdout == ""  # no temp file left


def test_a_full_disk_is_a_clear_error_and_the_old_file_stays(chain):
    ak = chain.host("web1").file("/root/.ssh/authorized_keys").content
    chain.console("web1", "sed -i '/svrchain:/d' /root/.ssh/authorized_keys")  # push-key must write
    drifted = chain.host("web1").file("/root/.ssh/authorized_keys").content
    chain.console("web1", "cp -a /root/.ssh /root/ssh.keep && mount -t tmpfs -o size=16k tmpfs /root/.ssh && "
                          "cp -a /root/ssh.keep/. /root/.ssh/ && chmod 700 /root/.ssh && "
                          "dd if=/dev/zero of=/root/.ssh/filler bs=1k count=64 2>/dev/null; true")
    try:
        r = chain.fab("push-key")
        assert r.returncode == 1
        line = next(ln for ln in r.stdout.splitlines() if ln.startswith("web1") and " push-key " in ln)
        assert "writing /root/.ssh/authorized_keys failed" in line and "No space left on device" in line, line
        assert "Traceback" not in r.stdout + r.stderr
        assert chain.host("web1").file("/root/.ssh/authorized_keys").content == drifted  # intact
    finally:
        chain.console("web1", "umount /root/.ssh && rm -rf /root/ssh.keep")
    assert chain.fab("push-key").returncode == 0
    assert chain.host("web1").file("/root/.ssh/authorized_keys").content == ak
