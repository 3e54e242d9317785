"""trust-hosts: pin every host's SSH host key in the admin's known_hosts, after showing it."""

from __future__ import annotations

import os
import socket
import sys
import tempfile
from pathlib import Path

import paramiko

from svrchain import inventory
from svrchain.errors import SvrchainError


def fetch_host_key(address: str, port: int, timeout: float) -> paramiko.PKey:
    """The key a host offers in the SSH handshake (nothing is authenticated or trusted here)."""
    try:
        sock = socket.create_connection((address, port), timeout=timeout)
    except OSError as exc:
        raise SvrchainError(f"{address}:{port}: cannot connect: {exc.strerror or exc}") from None
    transport = paramiko.Transport(sock)
    try:
        transport.start_client(timeout=timeout)
        return transport.get_remote_server_key()
    except paramiko.SSHException as exc:
        raise SvrchainError(f"{address}:{port}: SSH handshake failed: {exc}") from None
    finally:
        transport.close()


def entry_name(address: str, port: int) -> str:
    """How known_hosts names a host."""
    return address if port == 22 else f"[{address}]:{port}"


def write_atomically(path: Path, text: str) -> None:
    """Replace a local file through a temp file and a rename, keeping its mode."""
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o600
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def run_trust_hosts(yes: bool = False, dry_run: bool = False) -> None:
    """What `fab trust-hosts` does (its flags and help: tasks/)."""
    from dotenv import find_dotenv, load_dotenv

    load_dotenv(find_dotenv(usecwd=True))
    inv = inventory.load()
    path = inv.path(inv.connect.known_hosts)
    known = paramiko.HostKeys(str(path)) if path.exists() else paramiko.HostKeys()
    hosts = [(inv.db.name, inv.db.address, inv.db.port or inv.connect.port)]
    hosts += [(w.name, w.address, w.port or inv.connect.port) for w in inv.web.servers]
    new: list[str] = []
    errors: list[str] = []
    for name, address, port in hosts:
        try:
            key = fetch_host_key(address, port, inv.connect.timeout)
        except SvrchainError as exc:
            errors.append(f"{name}: {exc}")
            print(f"{name:<10} unreachable   {exc}")
            continue
        entry = entry_name(address, port)
        pinned = known.lookup(entry) or {}
        fp = f"{key.get_name()} {key.fingerprint}"
        if key.get_name() in pinned:
            if pinned[key.get_name()] == key:
                print(f"{name:<10} ok            {entry} {fp}")
            else:
                errors.append(f"{name} ({entry}): host key CHANGED to {fp}; not pinned. If expected, "
                              f"remove its line from {path} and run trust-hosts again")
                print(f"{name:<10} CHANGED       {entry} {fp}")
            continue
        print(f"{name:<10} new           {entry} {fp}")
        new.append(f"{entry} {key.get_name()} {key.get_base64()}")
    if new and dry_run:
        print(f"would pin {len(new)} key(s) in {path}")
    elif new:
        if not yes:
            if not sys.stdin.isatty():
                raise SvrchainError(f"{len(new)} new host key(s) shown above; check the fingerprints, "
                                    "then run `fab trust-hosts --yes` to pin them")
            if input(f"Pin these {len(new)} key(s) in {path}? [y/N] ").strip().lower() not in ("y", "yes"):
                raise SvrchainError("nothing pinned")
        old = path.read_text() if path.exists() else ""
        if old and not old.endswith("\n"):
            old += "\n"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, old + "".join(x + "\n" for x in new))
        print(f"pinned {len(new)} key(s) in {path}")
    if errors:
        raise SvrchainError("\n".join(errors))
