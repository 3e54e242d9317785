"""``lab down`` returns only when the whole lab is gone, and a lab brought up at once after it is whole
(issue 23: right after a systemd lab had gone down, the bench's run was refused: "198.18.0.10 would go
through eth0, not the lab's bridge svrlab0").

What is left is looked for here with this machine's own tools, not with the lab's code: every process
started for a host (systemd-nspawn, unshare, the hosts' own) and every process in a host's network
namespace, the namespaces, the mounts, the bridge and the veths, the disks.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from bench import run as bench
from lab import hosts as labhosts
from lab.slot import held
from tests.paths import REPO

pytestmark = pytest.mark.lab


def _netns_inodes() -> dict[int, str]:
    return {p.stat().st_ino: p.name for p in Path("/run/netns").glob(labhosts.NETNS_PREFIX + "*")}


def _left(spaces: dict[int, str], names: list[str]) -> list[str]:
    """Everything of the lab still there."""
    left = []
    for d in Path("/proc").glob("[0-9]*"):
        try:
            argv = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            inode = os.stat(d / "ns/net").st_ino
        except OSError:
            continue
        if inode in spaces or (f"{labhosts.VAR}/" in argv and "pytest" not in argv):
            left.append(f"process {d.name}: {argv[:80]}")
    left += [f"netns {n}" for n in _netns_inodes().values()]
    left += [line for line in Path("/proc/self/mounts").read_text().splitlines() if f" {labhosts.VAR}/" in line]
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    left += [f"link {dev}" for dev in ["svrlab0", *(f"svl-{n}" for n in names)] if f": {dev}" in links]
    left += [f"disk {n}" for n in names if (labhosts.VAR / n).exists()]
    return left


@pytest.mark.parametrize("init", ["sysv", "systemd"])
def test_down_returns_when_everything_is_gone(init):
    with held():
        hosts = labhosts.up(1, init)
        spaces = _netns_inodes()
        assert len(spaces) == 2
        labhosts.down()
        assert _left(spaces, [h.name for h in hosts]) == []


def test_a_lab_up_at_once_after_a_systemd_lab_went_down_is_whole_and_usable():
    with held():
        labhosts.up(2, "systemd")
        labhosts.down()
        try:
            labhosts.up(1)
            assert labhosts.problems() == []
            inventory = bench.inventory(1, bench.FULL)  # the bench's own, for this lab's one web host
            for _ in range(3):
                r = subprocess.run([bench.SVRCHAIN, "verify"], cwd=REPO, text=True, capture_output=True,
                                   env={**os.environ, "INVENTORY": str(inventory)}, timeout=300)
                assert r.returncode in (0, 2) and "is not up" not in r.stderr, r.stdout + r.stderr
        finally:
            labhosts.down()
