"""trust-hosts: pin every host's SSH host key in the admin's known_hosts, after showing it."""

from __future__ import annotations

import os
import socket
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

import paramiko
from invoke import Context

from svrchain.core import estate, output, tell
from svrchain.core.errors import Declined, SvrchainError, Unreachable
from svrchain.remote import runopts, sshauth
from svrchain.remote.connection import Host, handshake_problem, load_known_hosts
from svrchain.remote.group import Session, chain_sessions, parallel_map
from svrchain.remote.runopts import confirm


def fetch_host_key(address: str, port: int, timeout: float, sock: paramiko.Channel | None = None,
                   prefer: tuple[str, ...] = ()) -> paramiko.PKey:
    """The key a host offers in the SSH handshake (nothing is authenticated or trusted here); the
    connection, the banner and the key exchange together take at most ``timeout`` seconds. ``sock``:
    a channel already open to it (through a jump host). ``prefer``: the key types pinned for it, asked
    for first (as the login does), so a host that has its pinned key shows that one."""
    try:
        sock = sock or socket.create_connection((address, port), timeout=timeout)
    except TimeoutError:
        raise Unreachable(f"{address}:{port}: cannot connect: timed out after {timeout:g}s; is the host up and "
                          "its address right in the inventory?") from None
    except OSError as exc:
        raise Unreachable(f"{address}:{port}: cannot connect: {exc.strerror or exc}; is the host up and its "
                          "address right in the inventory?") from None
    transport = paramiko.Transport(sock)
    transport.banner_timeout = timeout
    options = transport.get_security_options()
    wanted = [t for p in prefer for t in (RSA_TYPES if p == "ssh-rsa" else (p,)) if t in options.key_types]
    options.key_types = wanted + [t for t in options.key_types if t not in wanted]
    try:
        transport.start_client(timeout=timeout)
        return transport.get_remote_server_key()
    except (paramiko.SSHException, EOFError, OSError) as exc:
        raise Unreachable(f"{address}:{port}: {handshake_problem(exc, timeout, transport)}") from None
    finally:
        transport.close()


# How a pinned "ssh-rsa" key is asked for in the handshake (its signature algorithms).
RSA_TYPES = ("rsa-sha2-512", "rsa-sha2-256", "ssh-rsa")


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


def host_key(h: Host, timeout: float, prefer: tuple[str, ...] = ()) -> paramiko.PKey:
    """The key a host offers where the admin reaches it: the ssh config's HostName (connect.ssh_config),
    through its jump host (whose own key must already be pinned: the jump's login is checked)."""
    r = h.route
    if r.jump is None:
        return fetch_host_key(r.hostname, r.port, timeout, prefer=prefer)
    return fetch_host_key(r.hostname, r.port, timeout, h.stream(), prefer)


def key_verdict(pinned: Mapping[str, paramiko.PKey], key: paramiko.PKey) -> str:
    """"ok" when ``key`` is a key pinned for the host, "new" when none is pinned, else "CHANGED": a key
    of another type than the pinned one is a changed key too (as OpenSSH has it), never a new one."""
    if not pinned:
        return "new"
    return "ok" if pinned.get(key.get_name()) == key else "CHANGED"


def _fetch_all(hosts: list[Host], timeout: float, known: paramiko.HostKeys) -> list[paramiko.PKey | SvrchainError]:
    """Every host's key, all at once: the whole check takes about one ``timeout``, not one per host."""
    def one(h: Host) -> paramiko.PKey | SvrchainError:
        pinned = known.lookup(entry_name(h.route.hostname, h.port)) or {}
        try:
            return host_key(h, timeout, tuple(pinned.keys()))
        except SvrchainError as exc:
            return exc
    return parallel_map(one, hosts, 32)


def shared_keys(hosts: list[tuple[str, str, paramiko.PKey | SvrchainError]]) -> list[str]:
    """One warning per host key that hosts at different addresses present: (name, address, key) each.
    Clones of one image keep its host keys; then one server can stand in for another unnoticed."""
    by_key: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for name, address, key in hosts:
        if not isinstance(key, SvrchainError):
            by_key.setdefault((key.get_name(), key.get_base64()), []).append((name, address))
    warnings = []
    for named in by_key.values():
        if len({address for _, address in named}) > 1:
            key = next(k for n, _, k in hosts if n == named[0][0])
            assert not isinstance(key, SvrchainError)
            warnings.append(
                f"warning: {', '.join(n for n, _ in named)} present the same host key ({key.get_name()} "
                f"{key.fingerprint}): cloned from one image? Any of them could pose as the others; give each its "
                "own (on each: rm /etc/ssh/ssh_host_*; ssh-keygen -A; restart sshd), then trust-hosts again")
    return warnings


def _compare(s: Session, hosts: list[Host], known: paramiko.HostKeys, path: Path
             ) -> tuple[dict[str, str], list[SvrchainError]]:
    """Print one line per host (ok, new, CHANGED, unreachable) and record it for the recap (a new key
    as would-change until it is pinned); return the new entries by host and the errors."""
    new: dict[str, str] = {}
    errors: list[SvrchainError] = []
    keys = _fetch_all(hosts, s.inv.connect.timeout, known)
    for h, key in zip(hosts, keys, strict=True):
        if isinstance(key, SvrchainError):
            errors.append(Unreachable(f"{h.name}: {key}"))
            _said(s, h.name, "unreachable", "unreachable", str(key))
            continue
        entry = entry_name(h.route.hostname, h.port)
        fp = f"{key.get_name()} {key.fingerprint}"
        verdict = key_verdict(known.lookup(entry) or {}, key)
        if verdict == "CHANGED":
            pinned = ", ".join(sorted((known.lookup(entry) or {}).keys()))
            errors.append(Unreachable(f"{h.name} ({entry}): host key CHANGED: it offers {fp}, not the {pinned} key "
                                      f"pinned for it; not pinned. If expected, remove its line from {path} and "
                                      "run trust-hosts again"))
            _said(s, h.name, "CHANGED", "failed", f"{entry} {fp}")
        elif verdict == "new":
            _said(s, h.name, "new", "would-change", f"{entry} {fp}")
            new[h.name] = f"{entry} {key.get_name()} {key.get_base64()}"
        else:
            _said(s, h.name, "ok", "ok", f"{entry} {fp}")
    for warning in shared_keys([(h.name, h.route.hostname, k) for h, k in zip(hosts, keys, strict=True)]):
        print(warning, file=s.out)
    return new, errors


def _said(s: Session, host: str, word: str, status: str, detail: str) -> None:
    """A host's line, recorded as its 'host key' step (the recap)."""
    s.results.add(host, output.Item("step", "host key", status, detail))
    print(f"{host:<10} {word:<13} {detail}", file=s.out, flush=True)


def _pin(s: Session, path: Path, new: dict[str, str], yes: bool) -> None:
    """Append the new keys to known_hosts, after --yes or a 'y' at the prompt."""
    if not yes and not sys.stdin.isatty():
        raise Declined(f"{len(new)} new host key(s) shown above, not pinned (stdin is not a terminal); check "
                       f"the fingerprints, then run {tell.command('trust-hosts --yes')} to pin them")
    confirm(f"Pin these {len(new)} key(s) in {path}?", yes)
    old = path.read_text() if path.exists() else ""
    if old and not old.endswith("\n"):
        old += "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, old + "".join(x + "\n" for x in new.values()))
    for host in new:
        for item in s.results.hosts[host].items:
            item.status = "changed" if item.name == "host key" else item.status
    print(f"pinned {len(new)} key(s) in {path}", file=s.out, flush=True)


def _sessions(run: runopts.Run) -> list[Session]:
    """The run's session (one per chain on an estate, sharing the hosts), the lab's guard and the run
    log done; the pinned host keys are not checked (they may not exist yet)."""
    est = estate.load(*runopts.inventory_choice(run.options))
    chains = est.chosen(run.options.chain)
    if est.named:
        return chain_sessions(run, est, chains, False, check=False)
    inv = chains[0].inv
    if inv.lab:
        runopts.check_lab_inventory(inv)  # before the ssh config is read: it could lead elsewhere
    s = Session(inv, run)
    s.open_log()
    if inv.lab:
        s.check_lab_routes()
    return [s]


def run_trust_hosts(c: Context, yes: bool = False, dry_run: bool = False) -> None:
    """What `fab trust-hosts` does (its flags and help: tasks/): its session is opened here, as the pinned
    host keys it checks may not exist yet."""
    sessions = _sessions(runopts.of(c))
    s, inv = sessions[0], sessions[0].inv
    hosts = list({id(h): h for x in sessions for h in x.hosts}.values())  # a host of several chains once
    path = inv.path(inv.connect.known_hosts)
    known = load_known_hosts(path, inv.source) if path.exists() else paramiko.HostKeys()
    if any(h.route.jump for h in hosts):
        s.dialer.auth = sshauth.load_auth(inv)  # a jump host is logged in to
    for x in sessions:
        x.announce()
    try:
        new, errors = _compare(s, hosts, known, path)
    finally:
        s.shared.close() if s.shared else s.close()
    if new and dry_run:
        print(f"would pin {len(new)} key(s) in {path}")
    elif new:
        try:
            _pin(s, path, new, yes)
        except Declined as exc:
            if not errors:
                raise
            errors.append(exc)  # said after the hosts' own problems, which decide the exit code (3)
    if errors:
        raise Unreachable("\n".join(str(e) for e in errors))
