"""Two admins at once: two `fab bootstrap` runs started at the same instant serialise on svrchain's
host lock (the second waits for the first), and neither fails on the lock's setup, on a fresh lab
(no /run/svrchain anywhere) and again with /run/svrchain gone from the web hosts; and svrchain's own
lock-taking over real SSH, two connections released at the same instant, many times (where the race
on the lock's directory is most likely). SysV hosts."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from svrchain.remote.connection import take_host_lock
from svrchain.remote.group import Session
from tests.lab.conftest import FAB, REPO, lab_of
from tests.paths import LAB_INVENTORY

pytestmark = pytest.mark.lab
TRIES = 5  # each try is two whole bootstraps, one after the other on each host


@pytest.fixture(scope="module")
def lab():
    yield from lab_of("sysv")


def both_at_once(tmp_path, n: int) -> list[subprocess.CompletedProcess]:
    """Two bootstraps, each spinning until the same file appears, then started at once."""
    go = tmp_path / f"go{n}"
    env = {**os.environ, "INVENTORY": str(LAB_INVENTORY)}
    spin = f'while [ ! -e {go} ]; do :; done; exec "$@"'
    runs = [subprocess.Popen(["sh", "-c", spin, "sh", *FAB, "bootstrap"], cwd=REPO, env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for _ in range(2)]
    time.sleep(0.5)
    go.touch()
    out = [p.communicate(timeout=900)[0] for p in runs]
    return [subprocess.CompletedProcess(p.args, p.returncode, o) for p, o in zip(runs, out, strict=True)]


def test_two_bootstraps_at_the_same_instant_both_succeed(lab, tmp_path):
    for n in range(TRIES):
        if n:  # a host where the lock's directory is to be made again (the DB host's trigger keeps its own)
            for web in ("web1", "web2"):
                lab.console(web, "rm -rf /run/svrchain")
        for r in both_at_once(tmp_path, n):
            assert r.returncode == 0, f"try {n + 1}: {r.stdout}"
    for name in ("db", "web1", "web2"):
        assert lab.console(name, "stat -c '%F %a %U' /run/svrchain").stdout.strip() == "directory 700 root"


LOCK_TRIES = 20


def test_two_locks_taken_at_the_same_instant_on_a_fresh_host_are_held_in_turn(lab):
    sessions = [Session.open(LAB_INVENTORY) for _ in range(2)]  # logged in, no lock taken yet
    try:
        conns = [s.webs[0].connection() for s in sessions]
        web = sessions[0].webs[0]
        for _ in range(LOCK_TRIES):
            lab.console(web.name, "rm -rf /run/svrchain")
            barrier = threading.Barrier(2)

            def take(conn, barrier=barrier):
                barrier.wait()
                chan = take_host_lock(conn, web.label, web.user, LAB_INVENTORY)
                time.sleep(0.05)  # holding it
                chan.close()  # (cat ends: released)

            with ThreadPoolExecutor(2) as pool:
                for f in [pool.submit(take, c) for c in conns]:
                    f.result()  # a HostError here is the failure, with its line
    finally:
        for s in sessions:
            s.close()
