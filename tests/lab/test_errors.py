"""Unreachable hosts, unknown and changed host keys: one clear line per host, non-zero exit,
the other hosts still served. trust-hosts pins keys only after showing them."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from lab import hosts as labhosts
from tests.lab.conftest import lab_of

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def lab():
    """These checks do not depend on the init system: SysV hosts only."""
    yield from lab_of("sysv")


def inventory(tmp_path: Path, known_hosts: Path | None = None, **web2: str) -> Path:
    """The lab inventory with absolute paths, another known_hosts, or web2 changed."""
    data = labhosts.inventory_data()
    if known_hosts:
        data["connect"]["known_hosts"] = str(known_hosts)
    data["web"]["servers"][1].update(web2)
    path = tmp_path / "inv.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_unreachable_web_server(chain, tmp_path):
    r = chain.fab("push-key", inventory=inventory(tmp_path, address="198.18.0.99"))
    assert r.returncode == 3
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith("web2"))
    assert re.match(r"web2\s+push-key\s+unreachable\s+web2 \(198\.18\.0\.99:22\): cannot connect: ", line), line
    assert "is the host up and its address right in" in line
    assert r.stderr.strip() == "svrchain: push-key: failed on web2 (see above)"
    assert "Traceback" not in r.stdout + r.stderr


def test_unreachable_db_server_in_verify(chain, tmp_path):
    chain.console("db", "pkill -x sshd")
    try:
        r = chain.fab("verify")
        assert r.returncode == 3  # only a host unreachable: exit 3, not a gap (2)
        row = r"^db\s+reachable\s+UNREACHABLE\s+db \(198\.18\.0\.10:22\): connection refused"
        assert re.search(row, r.stdout, re.M), r.stdout
    finally:
        chain.console("db", "/usr/sbin/sshd")


def test_unknown_and_changed_host_keys_are_refused(chain, tmp_path):
    known = tmp_path / "known_hosts"
    pinned = (labhosts.STATE / "known_hosts").read_text().splitlines()
    other = pinned[0].split()[2]  # the DB host's key, not web1's
    # db: pinned; web1: a different key under its address; web2: not pinned at all.
    known.write_text(f"{pinned[0]}\n198.18.0.21 ssh-ed25519 {other}\n")
    inv = inventory(tmp_path, known_hosts=known)
    r = chain.fab("push-key", inventory=inv)
    assert r.returncode == 3
    assert re.search(r"^web1 .* host key CHANGED: it offers ssh-ed25519 SHA256:\S+, not the key pinned in", r.stdout,
                     re.M), r.stdout
    assert re.search(r"^web2 .* host key unknown: it is not pinned in .*`fab trust-hosts`", r.stdout, re.M), r.stdout
    t = chain.fab("trust-hosts", inventory=inv)
    assert t.returncode == 3  # a changed key: not connected to; the new one waits for --yes
    assert re.search(r"^web1\s+CHANGED", t.stdout, re.M) and re.search(r"^web2\s+new\s", t.stdout, re.M)
    assert "--yes" in t.stderr and "CHANGED" not in known.read_text()
    assert "198.18.0.22" not in known.read_text()  # nothing pinned without --yes


def test_trust_hosts_pins_after_showing_fingerprints(chain, tmp_path):
    known = tmp_path / "known_hosts"
    known.write_text("")
    inv = inventory(tmp_path, known_hosts=known)
    dry = chain.fab("trust-hosts", "--dry-run", inventory=inv)
    assert dry.returncode == 0 and "would pin 3 key(s)" in dry.stdout and known.read_text() == ""
    r = chain.fab("trust-hosts", "--yes", inventory=inv)
    assert r.returncode == 0, r.stdout + r.stderr
    for name in ("db", "web1", "web2"):
        fp = chain.host(name).check_output("ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub").split()[1]
        assert re.search(rf"^{name}\s+new\s+\S+ ssh-ed25519 {re.escape(fp)}$", r.stdout, re.M), r.stdout
    assert sorted(known.read_text().splitlines()) == sorted((labhosts.STATE / "known_hosts").read_text().splitlines())
    again = chain.fab("trust-hosts", inventory=inv)
    assert again.returncode == 0 and len(re.findall(r"^\S+\s+ok\s", again.stdout, re.M)) == 3


# Accepts TCP connections on web2's address, port 2222, and never says a word (not an SSH server).
SILENT = ("import socket, time; s = socket.socket(); s.bind(('198.18.0.22', 2222)); s.listen(16); "
          "print('listening', flush=True); time.sleep(600)")


def test_banner_less_port_is_one_line_and_limit_leaves_it_alone(chain, tmp_path):
    """web2's port 2222 accepts TCP in web2's own namespace and sends no SSH banner: push-key and
    trust-hosts say so in one line (exit 3, no traceback); verify --limit web1 checks web1 only."""
    listener = subprocess.Popen(["ip", "netns", "exec", labhosts.host("web2").netns, sys.executable, "-c", SILENT],
                                stdout=subprocess.PIPE, text=True)
    try:
        assert listener.stdout.readline().strip() == "listening"
        inv = inventory(tmp_path, port=2222)
        r = chain.fab("push-key", inventory=inv)
        assert r.returncode == 3, r.stdout + r.stderr
        assert re.search(r"^web2\s+push-key\s+unreachable\s+web2 \(198\.18\.0\.22:2222\): no SSH banner within 5s: "
                         r"something accepts TCP on that port but does not speak SSH", r.stdout, re.M), r.stdout
        t0 = time.monotonic()
        t = chain.fab("trust-hosts", inventory=inv)
        assert t.returncode == 3 and time.monotonic() - t0 < 12, t.stdout + t.stderr
        assert t.stderr.strip().startswith("svrchain: web2: 198.18.0.22:2222: no SSH banner within 5s"), t.stderr
        assert "Traceback" not in r.stdout + r.stderr + t.stdout + t.stderr
        v = chain.fab("verify", "--limit", "web1")
        assert v.returncode == 0, v.stdout + v.stderr
        assert v.stdout.splitlines()[0].endswith("db 198.18.0.10, web1 198.18.0.21 (--limit: 1 of 2 web servers)")
        assert not re.search(r"^web2\s", v.stdout, re.M)
    finally:
        listener.kill()
        listener.wait()
