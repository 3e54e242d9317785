"""The svrchain command's early connect on the lab's real hosts (issue 23, "Start fast"): bootstrap and
verify start their TCP connections before Fabric and Paramiko are imported, and everything else is as
it was: one connection per host (counted on the wire), host keys pinned (a changed or an unknown key
refused), the lab's guard, the clear errors."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bench.sniff import Syns
from lab import hosts as labhosts
from svrchain.remote import early
from tests.lab.conftest import REPO, lab_of

pytestmark = pytest.mark.lab
SVRCHAIN = str(Path(sys.executable).parent / "svrchain")
ADDRESSES = {"198.18.0.10", "198.18.0.21", "198.18.0.22"}


@pytest.fixture(scope="module")
def lab():
    yield from lab_of("sysv")


def svrchain(inventory: Path, *args: str) -> tuple[subprocess.CompletedProcess, Syns]:
    """Run the svrchain command with -I ``inventory`` (the early path: checked), and the SYNs it sent."""
    argv = [*args, "-I", str(inventory)]
    assert early.read_plan(argv, {}) is not None, "this run would not connect early"
    with Syns(labhosts.BRIDGE) as syns:
        r = subprocess.run([SVRCHAIN, *argv], cwd=REPO, env=os.environ, text=True, capture_output=True, timeout=300)
    return r, syns


def test_bootstrap_and_verify_connect_early_once_per_host(lab):
    r, syns = svrchain(lab.inventory, "bootstrap")
    assert r.returncode == 0, r.stdout + r.stderr
    assert dict(syns.per_host) == dict.fromkeys(ADDRESSES, 1)
    r, syns = svrchain(lab.inventory, "verify")
    assert r.returncode == 0, r.stdout + r.stderr
    assert dict(syns.per_host) == dict.fromkeys(ADDRESSES, 1)


def with_known_hosts(tmp_path: Path, text: str) -> Path:
    data = labhosts.inventory_data()
    (tmp_path / "known_hosts").write_text(text)
    data["connect"]["known_hosts"] = str(tmp_path / "known_hosts")
    inv = tmp_path / "inv.yaml"
    inv.write_text(yaml.safe_dump(data))
    return inv


def test_a_changed_and_an_unknown_host_key_are_refused_on_the_early_sockets(lab, tmp_path):
    pinned = (labhosts.STATE / "known_hosts").read_text().splitlines()
    db = next(line for line in pinned if line.startswith("198.18.0.10 ssh-ed25519 "))
    inv = with_known_hosts(tmp_path, f"{db}\n198.18.0.21 ssh-ed25519 {db.split()[2]}\n")
    r, syns = svrchain(inv, "verify")
    assert r.returncode == 3, r.stdout + r.stderr
    assert re.search(r"^web1 .* host key CHANGED: it offers ssh-ed25519 SHA256:\S+, not the key pinned in", r.stdout,
                     re.M), r.stdout
    assert re.search(r"^web2 .* host key unknown: it is not pinned in .*`svrchain trust-hosts`", r.stdout, re.M)
    assert "Traceback" not in r.stderr
    assert dict(syns.per_host) == dict.fromkeys(ADDRESSES, 1)


def test_an_address_outside_the_lab_sends_nothing(lab, tmp_path):
    data = labhosts.inventory_data()
    data["web"]["servers"][1]["address"] = "127.0.0.1"  # not through the lab's bridge: the guard refuses it
    inv = tmp_path / "inv.yaml"
    inv.write_text(yaml.safe_dump(data))
    argv = ["verify", "-I", str(inv)]
    assert early.read_plan(argv, {}) is None
    with Syns(labhosts.BRIDGE) as syns:
        r = subprocess.run([SVRCHAIN, *argv], cwd=REPO, text=True, capture_output=True, timeout=300)
    assert r.returncode == 4, r.stdout + r.stderr
    assert "is the built-in lab's inventory (lab: true) and the lab is not up (127.0.0.1" in r.stderr
    assert dict(syns.per_host) == {}


def test_an_inventory_the_full_check_refuses_closes_the_early_sockets(lab, tmp_path):
    data = labhosts.inventory_data()
    data["db"]["service"] = "no such service!"  # read only by the full check, after the early connect
    inv = tmp_path / "inv.yaml"
    inv.write_text(yaml.safe_dump(data))
    before = logins(lab)
    r, syns = svrchain(inv, "verify")
    assert r.returncode == 4, r.stdout + r.stderr
    assert re.search(r"inv\.yaml:\d+: db\.service", r.stderr), r.stderr
    assert "Traceback" not in r.stderr
    assert dict(syns.per_host) == dict.fromkeys(ADDRESSES, 1)  # a TCP handshake, nothing more: no login
    assert logins(lab) == before


def logins(lab) -> dict[str, str]:
    """Each host's count of SSH logins so far (its sshd log)."""
    return {h: lab.console(h, "grep -c 'Accepted publickey' /var/log/auth.log; true").stdout.strip()
            for h in ("db", "web1", "web2")}
