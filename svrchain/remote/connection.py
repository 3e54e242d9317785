"""SSH connections: one per host per run, opened on first use, host keys pinned, svrchain's host lock.

Connections are Fabric ``Connection`` objects with a pinned-known_hosts policy: an unknown or
changed host key is refused, never accepted. Commands run over the connection's transport as
exec channels (stdin in, stdout/stderr/exit code out); nothing opens a second connection.
"""

from __future__ import annotations

import contextlib
import getpass
import logging
import os
import shlex
import socket
import threading
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import paramiko
from fabric import Config, Connection

from svrchain.core import inventory, tell
from svrchain.core.errors import BadInventory, HostError, HostUnreachable
from svrchain.core.plan import Result
from svrchain.core.render import RUN_DIR
from svrchain.remote import early, sshauth

T = TypeVar("T")
# paramiko's transport thread logs a failed handshake as a traceback; svrchain says it in one line.
logging.getLogger("paramiko").addHandler(logging.NullHandler())


def handshake_problem(exc: BaseException, timeout: float, transport: paramiko.Transport | None = None) -> str:
    """One line (what happened and what to check) for an SSH handshake or login that failed; with the
    transport, a handshake that never got the server's banner is told apart from one dropped later."""
    text = str(exc)
    no_banner = transport is not None and not transport.remote_version
    if "protocol banner" in text or no_banner:
        return (f"no SSH banner within {timeout:g}s: something accepts TCP on that port but does not speak "
                "SSH (or sshd is overloaded); check the address and port in the inventory")
    if "No existing session" in text:
        return ("the server closed the SSH session before the login (sshd dropped it: see its log on the host, "
                "e.g. MaxStartups or AllowUsers); check connect.user and connect.identity in the inventory")
    if text.startswith("Incompatible version"):  # paramiko: "Incompatible version (1.5 instead of 2.0)"
        return (f"the server speaks SSH protocol 1 only ({text.partition('(')[2].partition(' ')[0]}); svrchain uses "
                "protocol 2 only: check the address and port in the inventory, or the server's sshd")
    if isinstance(exc, EOFError) or "reset" in text.lower() or not text:
        return ("the server closed the connection during the SSH handshake; is it an SSH server, and what "
                "does its log say?")
    return f"SSH failed: {text.splitlines()[0]}"


def load_known_hosts(path: Path, source: Path) -> paramiko.HostKeys:
    """The pinned host keys; a damaged line is one error naming the file and the line."""
    keys = paramiko.HostKeys()
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInventory(f"{source}: connect.known_hosts: cannot read {path}: "
                           f"{getattr(exc, 'strerror', None) or exc}") from None
    for lineno, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            paramiko.hostkeys.HostKeyEntry.from_line(line.strip(), lineno)
        except paramiko.hostkeys.InvalidHostKey:
            fix = f"delete that line, then run {tell.command('trust-hosts')} to pin the host again"
            raise BadInventory(f"{path}:{lineno}: a damaged host key line (its key is not valid base64); "
                               f"{fix}") from None
        except (paramiko.SSHException, ValueError):
            continue
    keys.load(str(path))
    return keys


def sudo_problem(label: str, user: str, stderr: str, source: Path) -> str | None:
    """One line for sudo missing or asking for a password, or None when it is neither."""
    if "sudo" in stderr and "not found" in stderr:
        return (f"{label}: {user} is not root and the host has no sudo; install sudo with a NOPASSWD rule for "
                f"{user}, or set connect.user: root in {source}")
    if "sudo:" in stderr and "password" in stderr:
        return (f"{label}: {user} needs passwordless sudo (sudo -n) for svrchain; add a NOPASSWD rule or "
                "connect as root")
    return None


# How often a wait of the main thread wakes: a signal that the kernel gave another thread runs its
# Python handler only when the main thread runs again (Ctrl-C, SIGTERM: svrchain.cli).
WAKE = 0.2


def result_of(future: Future) -> T:
    """``future.result()``, waited for in short steps (see :data:`WAKE`)."""
    while True:
        try:
            return future.result(timeout=WAKE)
        except TimeoutError:
            continue


def locked(lock: threading.Lock) -> None:
    """Acquire ``lock``, waiting in short steps (see :data:`WAKE`)."""
    while not lock.acquire(timeout=WAKE):
        pass


class Once:
    """Values read once per key and shared between threads: concurrent callers of a key wait for the
    one reading, and a failed read is kept (every caller gets its error, nothing retries it)."""

    def __init__(self) -> None:
        self._table: dict[Hashable, Future] = {}
        self._lock = threading.Lock()

    def get(self, key: Hashable, read: Callable[[], T]) -> T:
        """``read()``'s value for ``key``, read by the first caller only."""
        with self._lock:
            future = self._table.get(key)
            mine = future is None
            if mine:
                future = self._table[key] = Future()
        if mine:
            try:
                future.set_result(read())
            except BaseException as exc:
                future.set_exception(exc)
        return result_of(future)

    def get_many(self, keys: list[Hashable], read: Callable[[set], dict]) -> list:
        """The values of ``keys``: those nobody has read or is reading are read together, in one
        ``read(missing)`` that returns a value (or the exception to raise) for each."""
        self.settle(self.claim(keys), read)
        with self._lock:
            futures = [self._table[k] for k in keys]
        return [result_of(f) for f in futures]

    def claim(self, keys: list[Hashable]) -> dict[Hashable, Future]:
        """Mark the ``keys`` nobody has read or is reading as being read (by the caller, who must
        :meth:`settle` them): anyone asking for one meanwhile waits for that read."""
        with self._lock:
            missing = [k for k in keys if k not in self._table]
            return {k: self._table.setdefault(k, Future()) for k in missing}

    @staticmethod
    def settle(claimed: dict[Hashable, Future], read: Callable[[set], dict]) -> None:
        """Read the ``claimed`` keys together and hand each its value (or its exception)."""
        if not claimed:
            return
        try:
            values = read(set(claimed))
        except BaseException as exc:
            values = {k: exc for k in claimed}
        for k, future in claimed.items():
            v = values[k]
            if isinstance(v, BaseException):
                future.set_exception(v)
            else:
                future.set_result(v)

    def forget(self, stale: Callable[[Hashable], bool]) -> None:
        """Drop the keys ``stale`` says are out of date: the next ``get`` reads them again."""
        with self._lock:
            for key in [k for k in self._table if stale(k)]:
                del self._table[key]

    def values(self) -> list:
        """The values read so far (not those still being read, nor the errors)."""
        with self._lock:
            futures = list(self._table.values())
        return [f.result() for f in futures if f.done() and f.exception() is None]


class QuickAck:
    """A TCP socket that acknowledges what it receives at once (TCP_QUICKACK, set again before every
    read: Linux clears it by itself).

    sshd leaves Nagle's algorithm on for non-interactive sessions, so a small packet it sends right
    after another (after the login succeeds: the host-keys notice, then the answer to the first
    channel) waits until the first is acknowledged; with delayed ACKs that is about 40 ms, measured on
    every host of the lab before the first command of every run could start. Paramiko reads through
    ``recv``; everything else is the socket's own.
    """

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self._quick = getattr(socket, "TCP_QUICKACK", None)  # Linux only; elsewhere a plain socket

    def recv(self, size: int, flags: int = 0) -> bytes:
        if self._quick is not None:
            with contextlib.suppress(OSError):
                self.sock.setsockopt(socket.IPPROTO_TCP, self._quick, 1)
        return self.sock.recv(size, flags)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sock, name)


class Dialer:
    """How this run reaches its hosts: the inventory's connect settings, the admin's key (or
    ssh-agent), the pinned host keys, the admin's ssh config, and one shared connection per jump host."""

    def __init__(self, inv: inventory.Inventory, auth: sshauth.Auth | None = None,
                 say: Callable[[str], None] | None = None):
        self.inv = inv
        self.auth = auth or sshauth.Auth()  # the real one is loaded once the local files are checked
        self.say = say  # with -v/--verbose: where each remote command and its exit code are shown
        self.ssh_config = sshauth.load_ssh_config(inv)
        self.known_hosts = inv.path(inv.connect.known_hosts)
        self._jumps = Once()
        self._pinned = Once()

    def route(self, name: str, address: str, port: int, user: str) -> sshauth.Route:
        """How the admin reaches a host (its ssh config's HostName, User, ProxyJump)."""
        return sshauth.route(self.ssh_config, name, address, port, user, self.inv.source)

    def tcp(self, label: str, hostname: str, port: int) -> QuickAck:
        """A TCP connection to ``hostname:port`` with Nagle off and every ACK sent at once (the one the
        command started early, if it did: :mod:`svrchain.remote.early`); a failure is one line naming
        ``label``."""
        inv = self.inv
        try:
            sock = (early.take(inv.source, hostname, port, inv.connect.timeout)
                    or socket.create_connection((hostname, port), timeout=inv.connect.timeout))
        except ConnectionRefusedError:
            raise HostUnreachable(
                f"{label}: connection refused; is sshd running and is the port right in {inv.source}?") from None
        except TimeoutError:
            raise HostUnreachable(f"{label}: cannot connect: timed out after {inv.connect.timeout}s; is the "
                                  f"host up and its address right in {inv.source}?") from None
        except OSError as exc:
            raise HostUnreachable(f"{label}: cannot connect: {exc.strerror or exc}; is the host up and its "
                                  f"address right in {inv.source}?") from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return QuickAck(sock)

    def login(self, label: str, r: sshauth.Route, sock: QuickAck | paramiko.Channel) -> Connection:
        """An SSH connection over ``sock`` to ``r``: the host key checked against connect.known_hosts
        (unknown or changed is refused), logged in with the admin's key or ssh-agent."""
        kwargs, agent = self.auth.connect_kwargs()
        timeout = self.inv.connect.timeout
        conn = Connection(
            # A Config per connection: invoke's Config is not safe to share between threads.
            r.hostname, user=r.user, port=r.port, config=Config(overrides={"load_ssh_configs": False}),
            connect_timeout=timeout,
            connect_kwargs={**kwargs, "sock": sock, "banner_timeout": timeout, "auth_timeout": timeout},
        )
        conn.client.set_missing_host_key_policy(paramiko.RejectPolicy())
        self.pin(conn.client, r.hostname, r.port)
        try:
            conn.open()
        except (paramiko.SSHException, OSError, EOFError) as exc:
            sock.close()
            raise HostUnreachable(self._login_failure(label, r, exc, conn.client.get_transport())) from None
        finally:
            if agent is not None:
                agent.close()
        return conn

    def pin(self, client: paramiko.SSHClient, hostname: str, port: int) -> None:
        """Give ``client`` the host's keys pinned in connect.known_hosts (checked for damaged lines by
        Session.check_files). The file is parsed once per run, not once per host: Paramiko's parse
        checks each line against every line before it (at N = 100, 100 x 101 lines)."""
        pinned = self._pinned.get("known_hosts", lambda: paramiko.HostKeys(str(self.known_hosts)))
        name = hostname if port == 22 else f"[{hostname}]:{port}"  # as Paramiko looks a host up
        mine = client.get_host_keys()
        for keytype, key in (pinned.lookup(name) or {}).items():
            mine.add(name, keytype, key)

    def _login_failure(self, label: str, r: sshauth.Route, exc: Exception,
                       transport: paramiko.Transport | None = None) -> str:
        """One line for a failed SSH login, naming the host and the fix."""
        kh = self.inv.connect.known_hosts
        if isinstance(exc, paramiko.BadHostKeyException):
            return (f"{label}: host key CHANGED: it offers {exc.key.get_name()} {exc.key.fingerprint}, not the key "
                    f"pinned in {kh}; if the change is expected, remove its line from {kh} and run "
                    f"{tell.command('trust-hosts')}")
        if isinstance(exc, paramiko.AuthenticationException):
            return (f"{label}: authentication as {r.user} with {self.auth.what or 'the admin key'} failed; "
                    "check connect.user/identity in the inventory and the host's authorized_keys")
        if isinstance(exc, TimeoutError):
            return f"{label}: the SSH handshake timed out"
        if "not found in known_hosts" in str(exc):
            return (f"{label}: host key unknown: it is not pinned in {kh}; check it and pin it with "
                    f"{tell.command('trust-hosts')}")
        if isinstance(exc, paramiko.SSHException):
            return f"{label}: {handshake_problem(exc, self.inv.connect.timeout, transport)}"
        if isinstance(exc, EOFError):
            return f"{label}: {handshake_problem(exc, self.inv.connect.timeout)}"
        return f"{label}: the SSH connection failed: {getattr(exc, 'strerror', None) or exc}"

    def jump(self, r: sshauth.Route) -> Connection:
        """The (one, shared) connection to a jump host, opened on first use: pinned like any host."""
        label = f"jump host {r}"
        return self._jumps.get(r, lambda: self.login(label, r, self.tcp(label, r.hostname, r.port)))

    def close(self) -> None:
        """Close the jump hosts' connections (after the hosts' own, which run through them)."""
        for conn in self._jumps.values():
            conn.close()


# Held for as long as the admin's connection lives (cat ends when the channel closes): two changing
# runs, by two admins, never interleave on one host. The directory is root's alone; two runs that
# start at the same instant may both try to make it (one finds it made: fine), then wait in turn on
# the lock. The holder writes who it is in the lock file; a run that waits in vain names it.
HOST_LOCK = r"""
d=$1; wait=$2; who=$3
mkdir -m 700 -- "$d" 2>/dev/null
if [ -L "$d" ] || [ ! -d "$d" ] || [ "$(stat -c '%U %a' -- "$d")" != "root 700" ]; then
    echo "$d is not a directory only root can use (it is $(stat -c '%F, %U, %a' -- "$d" 2>&1)); remove it" >&2
    exit 3
fi
exec 9>>"$d/admin.lock" || exit 3
if ! flock -w "$wait" 9; then
    held=$(head -c 300 -- "$d/admin.lock" | head -n 1 | LC_ALL=C tr -c '[:print:]' '?')
    echo "another svrchain run still holds $d/admin.lock after ${wait}s (${held:-not svrchain's run});" \
        "let it finish, then run again" >&2
    exit 4
fi
printf '%s, pid %s, since %s\n' "$who" "$$" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >"$d/admin.lock"
echo locked
exec cat >/dev/null
"""
LOCK_WAIT = 60


def as_root(user: str, script: str, *args: str) -> str:
    """The command line that runs a POSIX sh script with positional args as root (sudo -n unless the
    admin logs in as root)."""
    command = "sh -c " + shlex.quote(script) + " svrchain " + " ".join(shlex.quote(a) for a in args)
    return command if user == "root" else "sudo -n " + command


def admin_identity() -> str:
    """Who runs this svrchain run, as the host lock's holder line names it: user@machine."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


def shown_command(user: str, script: str, args: tuple[str, ...], stdin: bytes) -> str:
    """A remote command as -v shows it on one line: how it runs (sudo for a non-root admin), the
    script's first line and how many more, its arguments (each at most 200 characters), stdin's size."""
    lines = [ln for ln in script.strip().splitlines() if ln.strip()]
    head = lines[0].strip() if lines else ""
    more = f" [+{len(lines) - 1} lines]" if len(lines) > 1 else ""
    words = " ".join(shlex.quote(a if len(a) <= 200 else a[:200] + "...") for a in args)
    sudo = "sudo -n " if user != "root" else ""
    feed = f" < {len(stdin)} bytes" if stdin else ""
    return f"{sudo}sh -c {shlex.quote(head + more)}{' ' + words if words else ''}{feed}".replace("\n", " ")


def take_host_lock(conn: Connection, label: str, user: str, source: Path) -> paramiko.Channel:
    """Take svrchain's lock on the host (one more channel), held until the connection closes; the
    channel is returned to be kept. On failure the connection is closed."""
    try:
        chan = conn.client.get_transport().open_session(timeout=30)
        chan.settimeout(LOCK_WAIT + 30)
        chan.exec_command(as_root(user, HOST_LOCK, RUN_DIR, str(LOCK_WAIT), admin_identity()))
        said = chan.makefile("rb").readline()
    except (paramiko.SSHException, OSError, EOFError) as exc:
        conn.close()
        raise HostError(f"{label}: taking svrchain's lock failed: {exc}") from None
    if said.strip() != b"locked":
        err = chan.makefile_stderr("rb").read().decode(errors="replace").strip()
        conn.close()
        sudo = sudo_problem(label, user, err, source)
        if sudo:
            raise HostError(sudo)
        why = err.splitlines()[-1] if err else (
            f"another svrchain run still holds {RUN_DIR}/admin.lock after {LOCK_WAIT}s; let it finish, "
            "then run again")
        raise HostError(f"{label}: {why}")
    return chan


def read_both(chan: paramiko.Channel) -> tuple[bytes, bytes]:
    """A command's stdout and stderr, read at the same time (stderr in a thread): a command that writes
    more than the channel's window to one of them must not stall waiting for the other to be read.
    The channel's timeout applies to each read; on an error the channel is closed."""
    got: dict[str, object] = {}

    def read_stderr() -> None:
        try:
            got["err"] = chan.makefile_stderr("rb").read()
        except BaseException as exc:  # handed to the caller below
            got["exc"] = exc

    reader = threading.Thread(target=read_stderr, name="stderr", daemon=True)
    reader.start()
    try:
        out = chan.makefile("rb").read()
    except BaseException:
        chan.close()
        raise
    finally:
        reader.join()
    if "exc" in got:
        chan.close()
        raise got["exc"]
    return out, got["err"]


class Host:
    """One inventory host and its (single, lazily opened) SSH connection, over which scripts run as
    root."""

    def __init__(self, dialer: Dialer, name: str, role: str, address: str, port: int, user: str,
                 locks: bool = False):
        self.dialer = dialer
        self.locks = locks  # hold svrchain's lock on the host while connected (changing runs)
        self.name = name
        self.role = role
        self.address = address
        self.port = port
        self.user = user
        self.route = dialer.route(name, address, port, user)
        self._conn: Connection | None = None
        self._error: HostError | None = None  # a failed connect is not retried within a run
        self._lock = threading.Lock()
        self._lock_channel: paramiko.Channel | None = None  # svrchain's host lock, while connected

    def __repr__(self) -> str:
        return f"<Host {self.name} {self.address}:{self.port}>"

    @property
    def label(self) -> str:
        """The host as messages name it: ``web1 (198.18.0.21:22)``, ``... via <jump host>``."""
        r = self.route
        via = f" via {r.jump}" if r.jump else ""
        return f"{self.name} ({r.hostname}:{self.port}{via})"

    def connection(self) -> Connection:
        """The host's connection, opened on first use; errors become one clear line."""
        locked(self._lock)  # (another thread may be connecting: waited for in short steps)
        try:
            if self._error is not None:
                raise self._error
            if self._conn is None:
                try:
                    self._conn = self._open()
                except HostError as exc:
                    self._error = exc
                    raise
            return self._conn
        finally:
            self._lock.release()

    def stream(self) -> QuickAck | paramiko.Channel:
        """The byte stream to the host's sshd: a TCP connection with Nagle off (SSH's small packets
        must not wait for delayed ACKs: without this every remote command costs about 40 ms more), or
        a channel through the jump host's (pinned, authenticated) connection."""
        r, d = self.route, self.dialer
        if r.jump is None:
            return d.tcp(self.label, r.hostname, r.port)
        if d.known_hosts is None or not d.known_hosts.is_file():
            raise HostUnreachable(f"{self.name}: jump host {r.jump}: no known_hosts to check its key against")
        try:
            transport = d.jump(r.jump).client.get_transport()
        except HostUnreachable as exc:
            raise HostUnreachable(f"{self.name}: {exc}") from None
        try:
            return transport.open_channel("direct-tcpip", (r.hostname, r.port), ("", 0),
                                          timeout=d.inv.connect.timeout)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise HostUnreachable(f"{self.label}: the jump host {r.jump} cannot reach {r.hostname}:{r.port} "
                                  f"({exc}); check ProxyJump in {d.inv.connect.ssh_config}") from None

    def _open(self) -> Connection:
        """Connect and log in; on a changing run, take the host lock too."""
        conn = self.dialer.login(self.label, self.route, self.stream())
        if self.locks:
            self._lock_channel = take_host_lock(conn, self.label, self.user, self.dialer.inv.source)
        return conn

    def server_version(self) -> str:
        """The host's sshd version from its SSH banner (e.g. ``SSH-2.0-OpenSSH_9.2p1 Debian-2``)."""
        transport = self.connection().client.get_transport()
        return transport.remote_version if transport else ""

    def close(self) -> None:
        """Close the connection (which releases the host lock)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def run(self, script: str, *args: str, stdin: bytes = b"", timeout: float = 300) -> Result:
        """Run a POSIX sh script (as root: sudo -n for a non-root admin) with positional args; with
        -v/--verbose, the command and its exit code are shown."""
        say = self.dialer.say
        if say:
            say(f"{self.name:<10} $ {shown_command(self.user, script, args, stdin)}")
        result = self._run(script, *args, stdin=stdin, timeout=timeout)
        if say:
            say(f"{self.name:<10} exit {result.code}")
        return result

    def _run(self, script: str, *args: str, stdin: bytes = b"", timeout: float = 300) -> Result:
        transport = self.connection().client.get_transport()
        if transport is None or not transport.is_active():
            raise HostError(f"{self.label}: the SSH connection was lost")
        try:
            chan = transport.open_session(timeout=30)
            chan.settimeout(timeout)
            chan.exec_command(as_root(self.user, script, *args))
            if stdin:
                chan.sendall(stdin)
            chan.shutdown_write()
            out, err = read_both(chan)
            code = chan.recv_exit_status()
            chan.close()
        except TimeoutError:
            raise HostError(f"{self.label}: a command did not finish within {timeout:.0f}s") from None
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise HostError(f"{self.label}: the SSH connection failed: {exc}") from None
        result = Result(code, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"), out)
        sudo = sudo_problem(self.label, self.user, result.stderr, self.dialer.inv.source) if code else None
        if sudo and self.user != "root":
            raise HostError(sudo)
        return result

    def check(self, script: str, *args: str, what: str, stdin: bytes = b"") -> Result:
        """Run, and turn a non-zero exit into one clear line naming the host and ``what``."""
        r = self.run(script, *args, stdin=stdin)
        if not r.ok:
            detail = (r.stderr.strip() or r.stdout.strip() or f"exit {r.code}").splitlines()[-1]
            raise HostError(f"{self.label}: {what} failed: {detail}")
        return r

    def twin(self) -> Host:
        """Another handle on the same host, for a fresh connection (e.g. to prove a login still works);
        it does not take the host's lock, which this run already holds."""
        return Host(self.dialer, self.name, self.role, self.address, self.port, self.user)
