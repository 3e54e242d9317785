"""harden-sshd's settings as data: tests/unit/fixtures/sshd/ holds each case and its expected result."""

from __future__ import annotations

import pytest

from svrchain.core import sshd
from tests.unit.cases import cases

# What `ssh -Q kex|cipher|mac` lists on Debian 12's OpenSSH 9.2, weak algorithms included.
ALL = {
    "kex": {"diffie-hellman-group1-sha1", "diffie-hellman-group14-sha1", "diffie-hellman-group14-sha256",
            "diffie-hellman-group16-sha512", "diffie-hellman-group18-sha512", "diffie-hellman-group-exchange-sha1",
            "diffie-hellman-group-exchange-sha256", "ecdh-sha2-nistp256", "ecdh-sha2-nistp384", "ecdh-sha2-nistp521",
            "curve25519-sha256", "curve25519-sha256@libssh.org", "sntrup761x25519-sha512@openssh.com",
            "sntrup761x25519-sha512", "mlkem768x25519-sha256"},
    "cipher": {"3des-cbc", "aes128-cbc", "aes192-cbc", "aes256-cbc", "aes128-ctr", "aes192-ctr", "aes256-ctr",
               "aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "chacha20-poly1305@openssh.com"},
    "mac": {"hmac-sha1", "hmac-sha1-96", "hmac-sha2-256", "hmac-sha2-512", "hmac-md5", "umac-64@openssh.com",
            "umac-128@openssh.com", "hmac-sha1-etm@openssh.com", "hmac-sha2-256-etm@openssh.com",
            "hmac-sha2-512-etm@openssh.com", "umac-64-etm@openssh.com", "umac-128-etm@openssh.com"},
}
BEGIN = "# BEGIN svrchain (fab harden-sshd): edit the inventory, not these lines\n"
BLOCK = f"{BEGIN}PasswordAuthentication no\nMaxAuthTries 3\n# END svrchain\n"


@pytest.mark.parametrize("case", cases("sshd/settings.yaml"))
def test_settings(case):
    supported = ALL if case["supported"] == "ALL" else {k: set(v) for k, v in case["supported"].items()}
    version = tuple(case["version"]) if case["version"] else None
    got = sshd.settings(version, case["admin_is_root"], supported, case["host_key_types"],
                        case.get("algorithms", True))
    assert [f"{k} {v}" for k, v in got] == case["expected"]


@pytest.mark.parametrize("case", cases("sshd/config.yaml"))
def test_block_and_include(case):
    assert sshd.includes_dropins(case["main"]) is case["includes"]
    once = sshd.with_block(case["main"], [("PasswordAuthentication", "no"), ("MaxAuthTries", "3")])
    assert once == case["with_block"].replace("BLOCK", BLOCK)
    assert sshd.without_block(case["main"]) == case.get("without_block", case["main"])


@pytest.mark.parametrize("case", cases("sshd/effective.yaml"))
def test_effective_and_mismatches(case):
    seen = sshd.effective(case["seen"])
    assert seen == case["effective"]
    assert sshd.mismatches([tuple(s) for s in case["settings"]], seen) == case["mismatches"]


def test_extra_lines_the_drop_in_and_the_pid_file():
    extra = sshd.extra_settings(["MaxAuthTries 3", "Banner /etc/issue net"])
    assert extra == [("MaxAuthTries", "3"), ("Banner", "/etc/issue net")]
    assert sshd.dropin(extra) == (
        b"# Written by svrchain (fab harden-sshd). Edit the inventory, not this file.\n"
        b"# Public-key authentication only; root as narrow as the admin's login allows.\n"
        b"MaxAuthTries 3\nBanner /etc/issue net\n")
    assert sshd.pidfile({"pidfile": "/var/run/sshd/sshd.pid"}) == "/var/run/sshd/sshd.pid"
    assert sshd.pidfile({}) == "/run/sshd.pid"
