"""svrchain's host lock script (remote/connection.py: HOST_LOCK), run as a real program on this
machine: two admins' runs started at the same instant serialise on it, and neither fails on its setup;
one that cannot get it says in one line which run holds it. Runs as root (the lock's directory must be
root's)."""

from __future__ import annotations

import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from svrchain.remote import connection

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the host lock's directory must be root's")
TRIES = 30


def start(d: Path, go: Path, wait: float = 60, who: str = "alice@laptop") -> subprocess.Popen:
    """The lock script, spinning until ``go`` exists: both runs leave that barrier at the same instant."""
    barrier = f'while [ ! -e {go} ]; do :; done; exec sh -c "$0" svrchain "$@"'
    return subprocess.Popen(["sh", "-c", barrier, connection.HOST_LOCK, str(d), str(wait), who],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def hold_then_release(p: subprocess.Popen) -> tuple[int, str]:
    """As the admin's connection does: once the lock is held, work, then let go (close stdin)."""
    said = p.stdout.readline()
    p.stdin.close()
    p.wait(30)
    return p.returncode, said.decode() + p.stderr.read().decode()


def test_two_runs_at_the_same_instant_on_a_fresh_host_both_get_the_lock_in_turn(tmp_path):
    failures = []
    with ThreadPoolExecutor(2) as pool:
        for n in range(TRIES):
            d, go = tmp_path / f"host{n}" / "svrchain", tmp_path / f"go{n}"
            d.parent.mkdir()
            runs = [start(d, go), start(d, go)]
            go.touch()
            for code, said in pool.map(hold_then_release, runs):
                if code != 0 or said != "locked\n":
                    failures.append(said)
    assert not failures, f"{len(failures)} of {2 * TRIES} runs failed, e.g.: {failures[0]}"


def test_a_run_that_cannot_get_the_lock_names_the_run_holding_it(tmp_path):
    d, go = tmp_path / "svrchain", tmp_path / "go"
    go.touch()
    first = start(d, go, who="alice@laptop")
    assert first.stdout.readline() == b"locked\n"
    second = start(d, go, wait=0.2, who="bob@desk")  # (flock -w takes tenths: no need to wait a whole second)
    code, said = hold_then_release(second)
    first.stdin.close()
    first.wait(10)
    assert code != 0 and said.count("\n") == 1, said
    assert "alice@laptop" in said and f"{d}/admin.lock" in said, said


def test_the_lock_directory_must_be_roots_alone(tmp_path):
    d, go = tmp_path / "svrchain", tmp_path / "go"
    go.touch()
    d.mkdir(mode=0o777)
    d.chmod(0o777)
    code, said = hold_then_release(start(d, go))
    assert code == 3 and "not a directory only root can use" in said, said
