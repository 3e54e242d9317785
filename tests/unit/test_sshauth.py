"""The admin's ssh config without hosts: aliases, ProxyJump and what is refused."""

from __future__ import annotations

from pathlib import Path

import paramiko
import pytest

from svrchain.core.errors import BadInventory
from svrchain.remote.sshauth import Route, public_blob, route

CONFIG = """
Host web1
  HostName 10.1.0.21
Host web2.example.com
  ProxyJump ops@bastion:2222
Host 10.9.*
  ProxyJump bastion
Host bastion
  HostName bastion.example.com
  User jump
Host twohops
  ProxyJump a,b
Host cmd
  ProxyCommand nc %h %p
Host viajump
  ProxyJump nested
Host nested
  ProxyJump bastion
"""


def cfg() -> paramiko.SSHConfig:
    return paramiko.SSHConfig.from_text(CONFIG)


def test_no_ssh_config_means_the_inventory_address():
    assert route(None, "web1", "198.18.0.21", 22, "root", "inv") == Route("198.18.0.21", 22, "root")


def test_an_alias_by_the_host_name_gives_hostname_and_the_inventory_keeps_user_and_port():
    assert route(cfg(), "web1", "198.18.0.21", 2200, "admin", "inv") == Route("10.1.0.21", 2200, "admin")


def test_proxyjump_by_address_with_user_and_port():
    r = route(cfg(), "w2", "web2.example.com", 22, "root", "inv")
    assert r == Route("web2.example.com", 22, "root", Route("bastion.example.com", 2222, "ops"))
    assert str(r.jump) == "ops@bastion.example.com:2222"


def test_proxyjump_to_an_alias_takes_its_block():
    r = route(cfg(), "w3", "10.9.0.3", 22, "root", "inv")
    assert r.jump == Route("bastion.example.com", 22, "jump")


def test_a_host_no_block_names_is_reached_directly():
    assert route(cfg(), "db", "198.18.0.10", 22, "root", "inv") == Route("198.18.0.10", 22, "root")


@pytest.mark.parametrize(("name", "said"), [
    ("twohops", "one jump host only"),
    ("cmd", "ProxyCommand is not supported; use ProxyJump"),
    ("viajump", "a jump through a jump is not supported"),
])
def test_what_is_refused_in_one_line(name, said):
    with pytest.raises(BadInventory, match=said):
        route(cfg(), name, "192.0.2.1", 22, "root", "inv.yaml")


def test_public_blob_from_pub_or_from_the_key_header(tmp_path: Path):
    import subprocess
    key = tmp_path / "k"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "pw", "-f", str(key)], check=True)
    from_pub = public_blob(key)
    Path(f"{key}.pub").unlink()
    assert from_pub is not None and public_blob(key) == from_pub


def test_fabric_ssh_config_flag_points_at_the_inventory_setting(tmp_path: Path, program):
    """fab in this process (the ``program`` fixture, tests/unit/conftest.py), in the checkout."""
    import os

    (tmp_path / "cfg").write_text("Host web1\n  ProxyJump bastion\n")
    r = program("fab", "-S", str(tmp_path / "cfg"), "verify",
                env={**os.environ, "INVENTORY": str(tmp_path / "none.yaml")})
    assert r.returncode == 4
    assert r.stderr.strip() == ("svrchain: -S/--ssh-config: not supported; set connect.ssh_config in the inventory "
                                "(e.g. ~/.ssh/config: host aliases and ProxyJump), so that every run on this site "
                                "reaches its hosts the same way")
