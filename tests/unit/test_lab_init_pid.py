"""The lab's pidfile names a host's PID 1 only while that process is still the host's PID 1: after a
reboot of this machine the number may be anyone's, and stopping the host must never kill it."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab import hosts

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (a network namespace)")


@pytest.fixture
def host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[hosts.LabHost]:
    monkeypatch.setattr(hosts, "VAR", tmp_path)
    monkeypatch.setattr(hosts, "NETNS_PREFIX", f"svrchain-unit{os.getpid()}-")
    h = hosts.LabHost("web1", "web", "")
    h.disk.mkdir()
    subprocess.run(["ip", "netns", "add", h.netns], check=True)
    yield h
    subprocess.run(["ip", "netns", "del", h.netns], check=False)


def _pid1_in(netns: str) -> tuple[subprocess.Popen, int]:
    """A PID namespace's PID 1 (a sleep) in the network namespace: the shape of a lab host's init."""
    proc = subprocess.Popen(["ip", "netns", "exec", netns, "unshare", "--pid", "--fork", "sleep", "30"])
    for _ in range(500):
        kids = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        if kids:
            inner = Path(f"/proc/{kids[0]}/task/{kids[0]}/children").read_text().split()
            if inner or Path(f"/proc/{kids[0]}/comm").read_text().strip() == "sleep":
                return proc, int(inner[0] if inner else kids[0])
        time.sleep(0.01)
    raise AssertionError("no PID 1 started")


def test_a_live_process_that_is_not_the_hosts_pid_1_is_not_its_init(host: hosts.LabHost) -> None:
    (host.disk / "init.pid").write_text(str(os.getpid()))
    assert hosts.init_pid(host) is None


def test_the_hosts_pid_1_is_its_init_until_it_ends(host: hosts.LabHost) -> None:
    proc, pid = _pid1_in(host.netns)
    try:
        (host.disk / "init.pid").write_text(str(pid))
        assert hosts.init_pid(host) == pid
        hosts.stop_host(host)
        assert hosts.init_pid(host) is None
        assert not (host.disk / "init.pid").exists()
    finally:
        proc.kill()
        proc.wait()


def test_a_pid_1_of_another_network_namespace_is_not_the_hosts(host: hosts.LabHost) -> None:
    other = host.netns + "x"
    subprocess.run(["ip", "netns", "add", other], check=True)
    proc, pid = _pid1_in(other)
    try:
        (host.disk / "init.pid").write_text(str(pid))
        assert hosts.init_pid(host) is None
        hosts.stop_host(host)
        assert proc.poll() is None  # not killed
    finally:
        proc.kill()
        proc.wait()
        subprocess.run(["ip", "netns", "del", other], check=False)
