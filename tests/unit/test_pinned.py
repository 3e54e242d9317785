"""The pinned host keys: connect.known_hosts parsed once per run, each connection given only its own
host's keys (a plain, hashed or [host]:port line), so that a changed or unknown key is refused as ever."""

from __future__ import annotations

import paramiko
import yaml

from svrchain.core.inventory import parse
from svrchain.remote.connection import Dialer
from tests.paths import LAB_INVENTORY


def test_each_host_gets_its_own_pinned_keys_from_one_parse(tmp_path, monkeypatch):
    keys = [paramiko.ECDSAKey.generate() for _ in range(3)]
    hashed = paramiko.HostKeys.hash_host("198.18.0.22")
    (tmp_path / "known_hosts").write_text(
        f"198.18.0.21 ecdsa-sha2-nistp256 {keys[0].get_base64()}\n"
        f"{hashed} ecdsa-sha2-nistp256 {keys[1].get_base64()}\n"
        f"[198.18.0.23]:2222 ecdsa-sha2-nistp256 {keys[2].get_base64()}\n")
    data = yaml.safe_load(LAB_INVENTORY.read_text())
    data["connect"]["known_hosts"] = str(tmp_path / "known_hosts")
    path = tmp_path / "inv.yaml"
    path.write_text(yaml.safe_dump(data))
    dialer = Dialer(parse(path.read_text(), path))
    loads = []
    real = paramiko.HostKeys.load
    monkeypatch.setattr(paramiko.HostKeys, "load", lambda self, f: (loads.append(f), real(self, f))[1])

    def pinned(host: str, port: int) -> list[str]:
        client = paramiko.SSHClient()
        dialer.pin(client, host, port)
        return [k.get_base64() for entry in client.get_host_keys().values() for k in entry.values()]

    assert pinned("198.18.0.21", 22) == [keys[0].get_base64()]
    assert pinned("198.18.0.22", 22) == [keys[1].get_base64()]  # a hashed line
    assert pinned("198.18.0.23", 2222) == [keys[2].get_base64()]
    assert pinned("198.18.0.23", 22) == []  # another port is another host: unknown, refused
    assert pinned("198.18.0.24", 22) == []
    assert loads == [str(tmp_path / "known_hosts")]  # parsed once for every host of the run
