"""trust-hosts' warning for hosts cloned from one image (svrchain.steps.hosts.shared_keys, pure); the lab's
test_scenarios.py case 'cloned-host-key' shows it against real sshd."""

from __future__ import annotations

import paramiko

from svrchain.core.errors import Unreachable
from svrchain.steps.hosts import shared_keys


def key() -> paramiko.PKey:
    return paramiko.ECDSAKey.generate()


def test_two_hosts_with_one_key_are_named_in_one_warning():
    k, other = key(), key()
    warnings = shared_keys([("db", "198.18.0.10", other), ("web1", "198.18.0.21", k), ("web2", "198.18.0.22", k)])
    assert len(warnings) == 1
    fp = k.fingerprint
    assert warnings[0].startswith(f"warning: web1, web2 present the same host key (ecdsa-sha2-nistp256 {fp}):")
    assert "ssh-keygen -A" in warnings[0]


def test_distinct_keys_one_address_on_two_ports_and_unreachable_hosts_are_quiet():
    k = key()
    assert shared_keys([("a", "10.0.0.1", key()), ("b", "10.0.0.2", key())]) == []
    assert shared_keys([("a", "10.0.0.1", k), ("b", "10.0.0.1", k)]) == []  # one host, two ports (or names)
    assert shared_keys([("a", "10.0.0.1", Unreachable("x")), ("b", "10.0.0.2", Unreachable("x"))]) == []


def test_each_shared_key_is_its_own_warning():
    k1, k2 = key(), key()
    hosts = [("w1", "1.0.0.1", k1), ("w2", "1.0.0.2", k1), ("w3", "1.0.0.3", k2), ("w4", "1.0.0.4", k2),
             ("w5", "1.0.0.5", k2)]
    assert [w.split(" present")[0] for w in shared_keys(hosts)] == ["warning: w1, w2", "warning: w3, w4, w5"]
