"""The trigger on the DB host answers to root only: a local user cannot hold or plant its lock
(it lives in /run/svrchain, not the world-writable /run/lock), and root's own ssh config cannot change
what its SSH connections run (-F /dev/null). SysV and systemd hosts."""

from __future__ import annotations

import time

import pytest

from tests.lab.test_chain import WEBS, apache_start, assert_restarted_after_ready, wait_for_run_after

pytestmark = pytest.mark.lab
OLD_LOCK = "/run/lock/svr_restart.lock"  # /var/lock/svr_restart.lock before
LOCK = "/run/svrchain/svr_restart.lock"


def restart_db_and_check(lab) -> None:
    """Restart the DB through its service; every web server must be restarted after it is ready."""
    how = "systemctl restart dbora.service" if lab.init == "systemd" else "service dbora restart"
    before = {w: apache_start(lab, w) for w in WEBS}
    t0 = float(lab.host("db").check_output("date +%s.%N"))
    lab.host("db").check_output(how)
    assert_restarted_after_ready(lab, before, wait_for_run_after(lab, t0))


def as_mallory(lab, command: str):
    return lab.console("db", f"runuser -u mallory -- sh -c '{command}'", check=False)


def test_a_local_user_cannot_hold_or_plant_the_trigger_lock(chain):
    chain.console("db", "id mallory >/dev/null 2>&1 || useradd -m mallory")
    # Where the lock was, any local user can hold it (the trigger then waited, and gave up) ...
    pid = chain.console("db", f"setsid runuser -u mallory -- flock -n {OLD_LOCK} sleep 300 "
                        "</dev/null >/dev/null 2>&1 & echo $!").stdout.strip()
    try:
        end = time.monotonic() + 10
        while as_mallory(chain, f"flock -n {OLD_LOCK} true").returncode == 0:  # until mallory's flock holds it
            assert time.monotonic() < end, "mallory's flock never took the old lock"
            time.sleep(0.1)
        # ... where it is now, no one but root can even reach it.
        assert as_mallory(chain, f"flock -n {LOCK} true").returncode != 0
        assert as_mallory(chain, "mkdir -p /run/svrchain && touch /run/svrchain/x").returncode != 0
        restart_db_and_check(chain)
        assert chain.console("db", "stat -c '%F %a %U' /run/svrchain").stdout.strip() == "directory 700 root"
        r = as_mallory(chain, f"flock -n {LOCK} true")
        assert r.returncode != 0 and "Permission denied" in r.stderr, r.stderr
    finally:
        chain.console("db", f"kill -- -{pid}", check=False)


def test_roots_own_ssh_config_does_not_change_what_the_trigger_runs(chain):
    config = ("Host *\n  RemoteCommand id\n  ProxyCommand sh -c 'touch /tmp/svrchain-proxied; exit 1'\n"
              "  IdentityFile /nonexistent\n")
    with chain.fault("db", f"mkdir -p /root/.ssh && printf '%s' \"{config}\" >/root/.ssh/config",
                     "rm -f /root/.ssh/config /tmp/svrchain-proxied"):
        assert "RemoteCommand id" in chain.console("db", "cat /root/.ssh/config").stdout
        restart_db_and_check(chain)
        assert chain.console("db", "test -e /tmp/svrchain-proxied", check=False).returncode != 0
