"""A lab in use is never pulled from under its user, and a lab that is not whole says which host and why
(issue 23: a bench run refused half-way, "198.18.0.10 would go through eth0, not the lab's bridge").

The module's lab is held by this process (tests/lab/conftest.py's lab_of, as the bench holds its own): a
``python -m lab down`` of another process waits for it instead of tearing the bridge and the hosts down
under a run. Faults are staged through the lab's console and the bridge itself, each undone.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time

import pytest

from bench import run as bench
from lab import LabError
from lab import hosts as labhosts
from tests.lab.conftest import lab_of
from tests.paths import LAB_INVENTORY, REPO

pytestmark = pytest.mark.lab

LAB = [sys.executable, "-m", "lab"]


@pytest.fixture(scope="module")
def lab():
    yield from lab_of("sysv")


def lab_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([*LAB, *args], cwd=REPO, text=True, capture_output=True, timeout=timeout)


def test_another_process_cannot_take_the_lab_down_under_a_run(lab):
    # Today's lab down tore the bridge and every host down at once, whoever was using the lab.
    other = subprocess.Popen([*LAB, "down"], cwd=REPO, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        # Either it says it waits (and goes on waiting), or it ends: having torn the lab down.
        said = other.stderr.readline() if select.select([other.stderr], [], [], 60)[0] else ""
        time.sleep(1)
        assert other.poll() is None, f"lab down did not wait for the lab's holder: {said}{other.communicate()}"
        assert said.startswith(f"lab: waiting for the lab's holder (PID {os.getpid()} since ")
        assert labhosts.problems() == []
        assert lab.fab("verify").returncode in (0, 2)  # the run goes on (the lab's own bridge), not refused
    finally:
        other.terminate()
        other.wait(timeout=10)
    refused = lab_cli("down", "--wait", "1")
    assert refused.returncode == 1
    assert f"is in use by PID {os.getpid()} since " in refused.stderr
    assert refused.stderr.strip().splitlines()[-1].endswith("let it finish (or stop it), then run this again")
    assert "Traceback" not in refused.stderr
    assert labhosts.problems() == []


def test_a_host_whose_sshd_is_gone_is_named(lab):
    with lab.fault("web1", "kill $(cat /run/sshd.pid)", "/usr/sbin/sshd"):
        wrong = labhosts.problems()
        assert wrong == ["web1: sshd at 198.18.0.21:22 sends no SSH banner"]
        r = lab_cli("check")
        assert r.returncode == 1 and "lab: web1: sshd at 198.18.0.21:22 sends no SSH banner" in r.stderr
        with pytest.raises(LabError, match=r"^bench: \S+/svrchain verify failed \(\d+\); the lab is not whole: "
                                           r"web1: sshd at 198\.18\.0\.21:22 sends no SSH banner:\n"):
            bench.measure([bench.SVRCHAIN, "verify"], {"INVENTORY": str(LAB_INVENTORY)})
    assert _whole_soon()


def test_a_bridge_gone_down_is_named_before_any_host(lab):
    # What the flaky bench run met: the lab's bridge no longer routing its addresses.
    subprocess.run(["ip", "link", "set", labhosts.BRIDGE, "down"], check=True)
    try:
        assert labhosts.problems() == ["the bridge svrlab0 with 198.18.0.1/24 is down or gone (was the lab "
                                       "torn down meanwhile?)"]
        with pytest.raises(LabError, match=r"; the lab is not whole: the bridge svrlab0 .* is down or gone"):
            bench.measure([bench.SVRCHAIN, "verify"], {"INVENTORY": str(LAB_INVENTORY)})
    finally:
        subprocess.run(["ip", "link", "set", labhosts.BRIDGE, "up"], check=True)
    assert _whole_soon()


def test_a_host_powered_off_is_named(lab):
    web2 = labhosts.host("web2")
    labhosts.stop_host(web2)
    try:
        wrong = labhosts.problems()
        assert wrong == [f"web2: not running (no PID 1; see {web2.disk / 'console.log'})"]
    finally:
        labhosts.start_host(web2)
        labhosts.wait_booted(web2)
    assert _whole_soon()


def _whole_soon(timeout: float = 30) -> bool:
    end = time.monotonic() + timeout
    while labhosts.problems():
        if time.monotonic() > end:
            return False
        time.sleep(0.2)
    return True
