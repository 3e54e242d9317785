"""The I/O side: one SSH connection per host per run, facts in one round trip, atomic writes.

Connections are Fabric ``Connection`` objects with a pinned-known_hosts policy: an unknown or
changed host key is refused, never accepted. Commands run over the connection's transport as
exec channels (stdin in, stdout/stderr/exit code out); nothing opens a second connection.
"""

from __future__ import annotations

import contextlib
import io
import logging
import shlex
import socket
import tarfile
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import paramiko
from fabric import Config, Connection

from svrchain import inventory, output, runopts, sshauth
from svrchain.errors import BadInventory, HostError, HostUnreachable, SvrchainError, Unreachable
from svrchain.ops import Change, files_change
from svrchain.plan import FileChange, FileSpec, FileState, Outcome, Result
from svrchain.render import RUN_DIR, as_account

# (defined in errors, plan, render; imported from here too)
__all__ = ["HostError", "HostUnreachable", "Result", "as_account"]

T = TypeVar("T")
BACKUP_DIR = "/var/backups/svrchain"
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
            raise BadInventory(f"{path}:{lineno}: a damaged host key line (its key is not valid base64); "
                               "delete that line, then run `fab trust-hosts` to pin the host again") from None
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


# Run a command as an account (never as root through a path that account controls).
_AS = r"""
as() {
    u=$1; shift
    if [ "$u" = root ]; then "$@"; else setpriv --reuid="$u" --regid="$(id -g -- "$u")" --init-groups -- "$@"; fi
}
"""


# The atomic write, run on the host with the content on stdin: temp file in the same directory,
# checksum checked (a cut connection never yields a half-written file), owner and mode set, the
# content validated when the spec says how, a backup of the old file kept, then one rename.
# With an account ($8), the file is in that account's home: a symbolic link or another owner on the
# way is refused before anything changes, and every step that touches the home runs as the account
# itself, so nothing the account plants (a link, a swapped temp file) can make root act elsewhere.
WRITE_SCRIPT = _AS + r"""
set -eu
f=$1; mode=$2; owner=$3; sum=$4; backups=$5; pmode=$6; validate=${7:--}; runas=${8:--}
d=$(dirname -- "$f")
if [ "$runas" = - ]; then
    run() { "$@"; }
else
    run() { as "$runas" "$@"; }
    for p in "$d" "$f"; do
        if [ -L "$p" ]; then
            echo "$p is a symbolic link; svrchain never follows links in $runas's home:" \
                "remove it (after checking who made it and why), then run again" >&2
            exit 6
        fi
        o=$(stat -c %U -- "$p" 2>/dev/null) || continue
        if [ "$o" != "$runas" ]; then
            echo "$p is owned by $o, not $runas; svrchain acts in $runas's home only as $runas:" \
                "give it back to $runas (after checking why), then run again" >&2
            exit 6
        fi
    done
fi
if [ ! -d "$d" ]; then
    [ "$pmode" != - ] || { echo "directory $d does not exist" >&2; exit 3; }
    if [ "$runas" = - ]; then
        mkdir -p -m "$pmode" -- "$d"
        chown -h "$owner" "$d"
    elif ! out=$(run mkdir -m "$pmode" -- "$d" 2>&1); then
        echo "$runas cannot create $d ($out); create it owned by $runas, mode $pmode" >&2
        exit 3
    fi
fi
tmp=$(run mktemp "$d/.svrchain.XXXXXX")
trap 'run rm -f -- "$tmp"' EXIT
run sh -c 'cat >"$1"' svrchain "$tmp"
got=$(run sha256sum -- "$tmp" | cut -d' ' -f1)
if [ "$got" != "$sum" ]; then
    echo "the file arrived incomplete (checksum differs); $f was left as it was" >&2
    exit 4
fi
[ "$runas" != - ] || chown -h "$owner" "$tmp"
run chmod "$mode" -- "$tmp"
if [ "$validate" != - ] && ! out=$(sh -c "$validate" validate "$tmp" 2>&1); then
    echo "the new content was rejected ($(echo "$out" | sed -n '/[^[:space:]]/{p;q}')); $f was left as it was" >&2
    exit 5
fi
sync "$tmp" 2>/dev/null || sync
if [ -e "$f" ]; then
    mkdir -p -m 700 "$backups"
    b="$backups/$(echo "$f" | tr / %).$(date +%Y%m%dT%H%M%S.%N)"
    if [ "$runas" = - ]; then cp -p -- "$f" "$b"; else (umask 077; run cat -- "$f" >"$b"); fi
fi
run mv -f -- "$tmp" "$f"
trap - EXIT
"""

# Remove files, keeping a copy of each in the backup directory first.
_REMOVE = r"""
set -eu
backups=$1; shift
for f; do
    [ -e "$f" ] || [ -L "$f" ] || continue
    mkdir -p -m 700 "$backups"
    cp -pP -- "$f" "$backups/$(echo "$f" | tr / %).$(date +%Y%m%dT%H%M%S.%N)"
    rm -f -- "$f"
done
"""

# Held for as long as the admin's connection lives (cat ends when the channel closes): two changing
# runs, by two admins, never interleave on one host. The directory is root's alone.
_HOST_LOCK = r"""
d=$1; wait=$2
[ -d "$d" ] || mkdir -m 700 -- "$d" || exit 3
if [ -L "$d" ] || [ "$(stat -c '%U %a' -- "$d")" != "root 700" ]; then
    echo "$d is not a directory only root can use (it is $(stat -c '%F, %U, %a' -- "$d")); remove it" >&2
    exit 3
fi
exec flock -w "$wait" "$d/admin.lock" sh -c 'echo locked; exec cat >/dev/null'
"""
LOCK_WAIT = 60

# Facts: every section runs in a subshell of one shell (no exec of its own) and leaves its output
# and exit code in a temp directory, sent back as one tar stream: one round trip, any bytes.
_PROBE_HEAD = _AS + r"""
d=$(mktemp -d) || exit 1
trap 'rm -rf "$d"' EXIT
sec() { ( eval "$2" ) >"$d/$1" 2>&1; echo $? >"$d/$1.rc"; }
file() { if [ -f "$1" ]; then stat -c '%a %U %G' -- "$1" && cat -- "$1"; else return 44; fi; }
# A file or directory in account $1's home ($2): never through a link, never one another account
# owns; the file is read as the account itself. Exit 45 (with the reason) when it is unsafe.
upath() {
    [ -L "$2" ] && { echo "is a symbolic link"; return 45; }
    [ -e "$2" ] || return 44
    o=$(stat -c %U -- "$2") && [ "$o" = "$1" ] || { echo "is owned by $o, not $1"; return 45; }
}
ufile() { upath "$@" || return; stat -c '%a %U %G' -- "$2" && as "$1" cat -- "$2"; }
"""
_PROBE_TAIL = 'cd "$d" && tar cf - .'

# A file read as a probe command, for a path only known on the host ($F): see Host.file_state.
FILE_CMD = 'file "$F"'
# The same for a file in account $U's home, read as $U (see upath/ufile above).
UFILE_CMD = 'ufile "$U" "$F"'


class Host:
    """One inventory host and its (single, lazily opened) SSH connection."""

    def __init__(self, session: Session, name: str, role: str, address: str, port: int, user: str,
                 locks: bool = False):
        self.session = session
        self.locks = locks  # hold svrchain's lock on the host while connected (changing runs)
        self.name = name
        self.role = role
        self.address = address
        self.port = port
        self.user = user
        self.route = sshauth.route(session.ssh_config, name, address, port, user, session.inv.source)
        self._conn: Connection | None = None
        self._error: HostError | None = None  # a failed connect is not retried within a run
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<Host {self.name} {self.address}:{self.port}>"

    @property
    def label(self) -> str:
        r = self.route
        via = f" via {r.jump}" if r.jump else ""
        return f"{self.name} ({r.hostname}:{self.port}{via})"

    # -- connection ------------------------------------------------------------------------

    def connection(self) -> Connection:
        """The host's connection, opened on first use; errors become one clear line."""
        with self._lock:
            if self._error is not None:
                raise self._error
            if self._conn is None:
                try:
                    self._conn = self._open()
                except HostError as exc:
                    self._error = exc
                    raise
            return self._conn

    def stream(self) -> socket.socket | paramiko.Channel:
        """The byte stream to the host's sshd: a TCP connection with Nagle off (SSH's small packets
        must not wait for delayed ACKs: without this every remote command costs about 40 ms more), or
        a channel through the jump host's (pinned, authenticated) connection."""
        r, s = self.route, self.session
        if r.jump is not None:
            if s.known_hosts is None or not s.known_hosts.is_file():
                raise HostUnreachable(f"{self.name}: jump host {r.jump}: no known_hosts to check its key against")
            try:
                transport = s.jump(r.jump).client.get_transport()
            except HostUnreachable as exc:
                raise HostUnreachable(f"{self.name}: {exc}") from None
            try:
                return transport.open_channel("direct-tcpip", (r.hostname, r.port), ("", 0),
                                              timeout=s.inv.connect.timeout)
            except (paramiko.SSHException, OSError, EOFError) as exc:
                raise HostUnreachable(f"{self.label}: the jump host {r.jump} cannot reach {r.hostname}:{r.port} "
                                      f"({exc}); check ProxyJump in {s.inv.connect.ssh_config}") from None
        return tcp_socket(self.label, r.hostname, r.port, s.inv)

    def _open(self) -> Connection:
        conn = login(self.session, self.label, self.route, self.stream())
        if self.locks:
            self._take_host_lock(conn)
        return conn

    def _take_host_lock(self, conn: Connection) -> None:
        """Take svrchain's lock on the host, held until the connection closes (one more channel)."""
        command = "sh -c " + shlex.quote(_HOST_LOCK) + f" svrchain {RUN_DIR} {LOCK_WAIT}"
        if self.user != "root":
            command = "sudo -n " + command
        try:
            chan = conn.client.get_transport().open_session(timeout=30)
            chan.settimeout(LOCK_WAIT + 30)
            chan.exec_command(command)
            said = chan.makefile("rb").readline()
        except (paramiko.SSHException, OSError, EOFError) as exc:
            conn.close()
            raise HostError(f"{self.label}: taking svrchain's lock failed: {exc}") from None
        if said.strip() != b"locked":
            err = chan.makefile_stderr("rb").read().decode(errors="replace").strip()
            conn.close()
            sudo = sudo_problem(self.label, self.user, err, self.session.inv.source)
            if sudo:
                raise HostError(sudo)
            why = err.splitlines()[-1] if err else (
                f"another svrchain run still holds {RUN_DIR}/admin.lock after {LOCK_WAIT}s; let it finish, "
                "then run again")
            raise HostError(f"{self.label}: {why}")
        self._lock_channel = chan  # closing the connection releases it

    def server_version(self) -> str:
        """The host's sshd version from its SSH banner (e.g. ``SSH-2.0-OpenSSH_9.2p1 Debian-2``)."""
        transport = self.connection().client.get_transport()
        return transport.remote_version if transport else ""

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # -- commands --------------------------------------------------------------------------

    def run(self, script: str, *args: str, stdin: bytes = b"", timeout: float = 300) -> Result:
        """Run a POSIX sh script (as root: sudo -n for a non-root admin) with positional args."""
        command = "sh -c " + shlex.quote(script) + " svrchain " + " ".join(shlex.quote(a) for a in args)
        if self.user != "root":
            command = "sudo -n " + command
        transport = self.connection().client.get_transport()
        if transport is None or not transport.is_active():
            raise HostError(f"{self.label}: the SSH connection was lost")
        try:
            chan = transport.open_session(timeout=30)
            chan.settimeout(timeout)
            chan.exec_command(command)
            if stdin:
                chan.sendall(stdin)
            chan.shutdown_write()
            out = chan.makefile("rb").read()
            err = chan.makefile_stderr("rb").read()
            code = chan.recv_exit_status()
            chan.close()
        except TimeoutError:
            raise HostError(f"{self.label}: a command did not finish within {timeout:.0f}s") from None
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise HostError(f"{self.label}: the SSH connection failed: {exc}") from None
        result = Result(code, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"), out)
        sudo = sudo_problem(self.label, self.user, result.stderr, self.session.inv.source) if code else None
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

    def probe(self, files: Iterable[str] = (), commands: dict[str, str] | None = None, prelude: str = ""
              ) -> tuple[dict[str, FileState], dict[str, Result]]:
        """Read files and run read-only commands in one round trip (``prelude`` sets shell variables
        the commands share)."""
        files = list(files)
        commands = commands or {}
        parts = [_PROBE_HEAD, prelude]
        for i, path in enumerate(files):
            parts.append(f"sec f{i} {shlex.quote('file ' + shlex.quote(path))}")
        for i, cmd in enumerate(commands.values()):
            parts.append(f"sec c{i} {shlex.quote(cmd)}")
        parts.append(_PROBE_TAIL)
        r = self.run("\n".join(parts))
        sections: dict[str, tuple[int, bytes]] = {}
        try:
            with tarfile.open(fileobj=io.BytesIO(r.raw)) as tar:
                found = {m.name.removeprefix("./"): tar.extractfile(m) for m in tar.getmembers() if m.isfile()}
                data = {name: f.read() for name, f in found.items() if f is not None}
        except tarfile.TarError:
            raise HostError(f"{self.label}: reading the host's state failed: {r.stderr.strip()[:200]}") from None
        for name, content in data.items():
            if not name.endswith(".rc"):
                sections[name] = (int(data.get(name + ".rc", b"1").strip() or 1), content)
        states = {path: self.file_state(path, *sections.get(f"f{i}", (1, b""))) for i, path in enumerate(files)}
        results: dict[str, Result] = {}
        for i, name in enumerate(commands):
            rc, raw = sections.get(f"c{i}", (1, b""))
            results[name] = Result(rc, raw.decode("utf-8", "replace"), "", raw)
        return states, results

    def file_state(self, path: str, rc: int, raw: bytes) -> FileState:
        """A file's state from the output of ``FILE_CMD`` (mode/owner line, then the bytes)."""
        if rc == 44:
            return FileState(path, exists=False)
        if rc == 45:
            return FileState(path, exists=True, unsafe=raw.decode(errors="replace").strip())
        if rc != 0:
            raise HostError(f"{self.label}: cannot read {path}: {raw.decode(errors='replace').strip()}")
        meta, _, content = raw.partition(b"\n")
        mode, owner, group = meta.decode().split()
        return FileState(path, True, content, int(mode, 8), owner, group)

    def write(self, change: FileChange) -> None:
        """Write one file atomically (temp + checksum + rename), keeping a backup of the old one."""
        spec = change.spec
        parent = f"{spec.parent_mode:o}" if spec.parent_mode else "-"
        self.check(WRITE_SCRIPT, spec.path, f"{spec.mode:o}", f"{spec.owner}:{spec.group}", spec.sha256,
                   BACKUP_DIR, parent, spec.validate or "-", spec.runas or "-", stdin=spec.content,
                   what=f"writing {spec.path}")

    def remove(self, *paths: str) -> None:
        """Remove files (a copy of each kept in the backup directory)."""
        self.check(_REMOVE, BACKUP_DIR, *paths, what=f"removing {', '.join(paths)}")

    def restore(self, state: FileState) -> None:
        """Put a file back as ``state`` found it (or remove it if it did not exist)."""
        if state.exists:
            spec = FileSpec(state.path, state.content, state.mode or 0o644, state.owner or "root",
                            state.group or "root")
            self.write(FileChange(spec, state, ("restore",)))
        else:
            self.check('rm -f -- "$1"', state.path, what=f"removing {state.path}")

    def twin(self) -> Host:
        """Another handle on the same host, for a fresh connection (e.g. to prove a login still works);
        it does not take the host's lock, which this run already holds."""
        return Host(self.session, self.name, self.role, self.address, self.port, self.user)


class Session:
    """One run: the inventory, its hosts, one connection each, and the outcome report."""

    def __init__(self, inv: inventory.Inventory, out=None, lock: bool = False, limit: tuple[str, ...] = (),
                 auth: sshauth.Auth | None = None):
        self.inv = inv
        self.results = output.current()
        self.out = out or self.results.human
        self.auth = auth or sshauth.Auth()
        self.ssh_config = sshauth.load_ssh_config(inv)
        self.known_hosts = inv.path(inv.connect.known_hosts)
        self._jumps: dict[sshauth.Route, Future] = {}
        self.outcomes: list[Outcome] = []
        self.unreachable: set[str] = set()  # hosts this run could not connect to (exit 3 if only they failed)
        self._facts: dict[str, Future] = {}  # facts read once per run, by key ("what:host")
        self._facts_lock = threading.Lock()
        self._print_lock = threading.Lock()
        self._prefetcher: ThreadPoolExecutor | None = None
        c = inv.connect
        self.db = Host(self, inv.db.name, "db", inv.db.address, inv.db.port or c.port, inv.db.user or c.user, lock)
        # Every web server of the inventory, and those this run works on (all, or --limit's).
        self.all_webs = [Host(self, s.name, "web", s.address, s.port or c.port, s.user or c.user, lock)
                         for s in inv.web.servers]
        chosen = runopts.limited([w.name for w in self.all_webs], inv.db.name, limit, inv.source)
        self.webs = [w for w in self.all_webs if w.name in chosen]
        for h in self.hosts:
            self.results.host(h.name, h.role, h.address)

    @classmethod
    def open(cls, path: Path | None = None, lock: bool = False) -> Session:
        """Load the run's inventory (or ``path``), check the local files it names, and start a session
        on its hosts (``--limit``'s web servers); with ``lock``, each host is locked against other
        changing runs while connected. The first line printed names the inventory and the hosts."""
        inv = inventory.load(*((path, "") if path else runopts.inventory_choice()))
        s = cls(inv, lock=lock, limit=runopts.current().limit if path is None else ())
        if inv.lab:
            runopts.check_lab(inv.source, [h.address for h in s.hosts])
        s.check_files()
        s.announce()
        return s

    def check_files(self) -> None:
        """The admin's key (or ssh-agent) and the pinned host keys: present, readable, not damaged."""
        inv = self.inv
        self.auth = sshauth.load_auth(inv)
        if not self.known_hosts.is_file():
            raise inventory.InventoryError(
                f"{inv.source}: connect.known_hosts: {self.known_hosts} does not exist; create it with "
                "`fab trust-hosts`"
            )
        load_known_hosts(self.known_hosts, inv.source)

    def announce(self) -> None:
        """Say which inventory and which hosts this run works on (its first line)."""
        hosts = ", ".join(f"{h.name} {h.address}" for h in self.hosts)
        limit = ""
        if self.webs != self.all_webs:
            limit = f" (--limit: {len(self.webs)} of {len(self.all_webs)} web servers)"
        print(f"svrchain: inventory {self.inv.source}{' (the lab)' if self.inv.lab else ''}: {hosts}{limit}",
              file=self.out, flush=True)

    @property
    def hosts(self) -> list[Host]:
        return [self.db, *self.webs]

    def prefetch(self, hosts: list[Host] | None = None, facts: Callable[[Host], object] | None = None) -> None:
        """Start connecting (and reading ``facts``) in the background, overlapping other work."""
        hosts = self.hosts if hosts is None else hosts
        if self._prefetcher is None:
            self._prefetcher = ThreadPoolExecutor(max_workers=self.parallel(len(hosts)))
        for h in hosts:
            self._prefetcher.submit(_quietly, (lambda h=h: facts(h)) if facts else h.connection)

    def fact(self, key: str, read: Callable[[], T]) -> T:
        """``read()`` once per run and key; concurrent callers wait for the one reading."""
        return self._once(self._facts, key, read)

    def _once(self, table: dict, key: object, read: Callable[[], T]) -> T:
        """``read()`` once per key of ``table``; concurrent callers wait for the one reading."""
        with self._facts_lock:
            future = table.get(key)
            mine = future is None
            if mine:
                future = table[key] = Future()
        if mine:
            try:
                future.set_result(read())
            except BaseException as exc:
                future.set_exception(exc)
        return future.result()

    def forget(self, host: Host) -> None:
        """Drop the facts read from ``host``: this run is about to change it."""
        with self._facts_lock:
            for key in [k for k in self._facts if k.endswith(f":{host.name}")]:
                del self._facts[key]

    def jump(self, r: sshauth.Route) -> Connection:
        """The (one, shared) connection to a jump host, opened on first use: pinned like any host."""
        label = f"jump host {r}"
        return self._once(self._jumps, r, lambda: login(self, label, r, tcp_socket(label, r.hostname, r.port,
                                                                                      self.inv)))

    def close(self) -> None:
        if self._prefetcher is not None:
            self._prefetcher.shutdown(wait=True)
        for h in self.hosts:
            h.close()
        for future in self._jumps.values():
            if future.done() and future.exception() is None:
                future.result().close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- parallelism and reporting ---------------------------------------------------------

    def parallel(self, count: int) -> int:
        """Threads for work on ``count`` hosts: at most ``connect.max_parallel`` at once."""
        return max(1, min(self.inv.connect.max_parallel, count))

    def each(self, hosts: list[Host], fn: Callable[[Host], T]) -> list[T | HostError]:
        """Run ``fn`` on every host in parallel; a host's error is returned, not raised."""
        def guarded(h: Host) -> T | HostError:
            try:
                return fn(h)
            except HostError as exc:
                return exc
        if len(hosts) == 1:
            return [guarded(hosts[0])]
        with ThreadPoolExecutor(max_workers=self.parallel(len(hosts))) as pool:
            return list(pool.map(guarded, hosts))

    def report(self, outcome: Outcome, show_diff: bool = False, seconds: float | None = None) -> Outcome:
        """Print one ``host step status detail`` line (and its diffs in a dry run), as it happens;
        record it for the recap, --json and --junit (``seconds``: how long it took; by default the
        time since the host's previous line)."""
        with self._print_lock:
            self.outcomes.append(outcome)
            status = outcome.status.replace(" ", "-")
            took = self.results.since_last(outcome.host) if seconds is None else round(seconds, 3)
            self.results.add(outcome.host, output.Item("step", outcome.step, status, outcome.detail, took))
            word = output.paint(f"{outcome.status:<13}", status, self.results.colour)
            line = f"{outcome.host:<10} {outcome.step:<20} {word} {outcome.detail}"
            print(line.rstrip(), file=self.out, flush=True)
            if show_diff:
                for d in outcome.diffs:
                    print(_indent(d), file=self.out, end="", flush=True)
        return outcome

    def fail(self, host: str, step: str, error: Exception) -> Outcome:
        status = "failed"
        if isinstance(error, Unreachable):
            self.unreachable.add(host)
            status = "unreachable"
        return self.report(Outcome(host, step, status, str(error)))

    def run_steps(self, what: str, steps: Iterable[tuple[str, Callable[[], object]]]) -> None:
        """Run steps in order: a step's error goes on its own line and stops the steps after it;
        the task then exits non-zero if anything failed."""
        for name, step in steps:
            try:
                step()
            except SvrchainError as exc:
                self.fail(self.db.name, name, exc)
                break
        self.finish(what)

    def finish(self, what: str) -> None:
        """Raise a non-zero exit when any outcome of this run failed (exit 3 when only unreachable
        hosts failed, else 1)."""
        failed = [o for o in self.outcomes if o.failed]
        if failed:
            hosts = {o.host for o in failed}
            cls = Unreachable if hosts <= self.unreachable else SvrchainError
            raise cls(f"{what}: failed on {', '.join(sorted(hosts))} (see above)")


def tcp_socket(label: str, hostname: str, port: int, inv: inventory.Inventory) -> socket.socket:
    """A TCP connection to ``hostname:port`` with Nagle off; a failure is one line naming ``label``."""
    try:
        sock = socket.create_connection((hostname, port), timeout=inv.connect.timeout)
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
    return sock


def login(session: Session, label: str, r: sshauth.Route, sock: socket.socket | paramiko.Channel) -> Connection:
    """An SSH connection over ``sock`` to ``r``: the host key checked against connect.known_hosts
    (unknown or changed is refused), logged in with the admin's key or ssh-agent."""
    kwargs, agent = session.auth.connect_kwargs()
    conn = Connection(
        # A Config per connection: invoke's Config is not safe to share between threads.
        r.hostname, user=r.user, port=r.port, config=Config(overrides={"load_ssh_configs": False}),
        connect_timeout=session.inv.connect.timeout,
        connect_kwargs={**kwargs, "sock": sock, "banner_timeout": session.inv.connect.timeout,
                        "auth_timeout": session.inv.connect.timeout},
    )
    conn.client.set_missing_host_key_policy(paramiko.RejectPolicy())
    conn.client.load_host_keys(str(session.known_hosts))  # checked for damaged lines by Session.check_files
    try:
        conn.open()
    except (paramiko.SSHException, OSError, EOFError) as exc:
        sock.close()
        raise HostUnreachable(_login_failure(session, label, r, exc, conn.client.get_transport())) from None
    finally:
        if agent is not None:
            agent.close()
    return conn


def _login_failure(session: Session, label: str, r: sshauth.Route, exc: Exception,
                   transport: paramiko.Transport | None = None) -> str:
    """One line for a failed SSH login, naming the host and the fix."""
    kh = session.inv.connect.known_hosts
    if isinstance(exc, paramiko.BadHostKeyException):
        return (f"{label}: host key CHANGED: it offers {exc.key.get_name()} {exc.key.fingerprint}, not the key "
                f"pinned in {kh}; if the change is expected, remove its line from {kh} and run `fab trust-hosts`")
    if isinstance(exc, paramiko.AuthenticationException):
        return (f"{label}: authentication as {r.user} with {session.auth.what or 'the admin key'} failed; "
                "check connect.user/identity in the inventory and the host's authorized_keys")
    if isinstance(exc, TimeoutError):
        return f"{label}: the SSH handshake timed out"
    if "not found in known_hosts" in str(exc):
        return f"{label}: host key unknown: it is not pinned in {kh}; check it and pin it with `fab trust-hosts`"
    if isinstance(exc, paramiko.SSHException):
        return f"{label}: {handshake_problem(exc, session.inv.connect.timeout, transport)}"
    if isinstance(exc, EOFError):
        return f"{label}: {handshake_problem(exc, session.inv.connect.timeout)}"
    return f"{label}: the SSH connection failed: {getattr(exc, 'strerror', None) or exc}"


def _quietly(fn: Callable[[], object]) -> None:
    """Run ``fn``, dropping a HostError: the host remembers it and raises it on first real use."""
    with contextlib.suppress(HostError):
        fn()


def _indent(text: str) -> str:
    return "".join("    " + line for line in text.splitlines(keepends=True))


def apply_files(session: Session, host: Host, step: str, specs: list[FileSpec],
                states: dict[str, FileState], dry_run: bool,
                after: Callable[[list[FileChange]], list[str]] | None = None,
                ok_detail: str = "") -> Outcome:
    """Compare, then (unless dry) write each differing file and run what ``after`` says; one line."""
    change = files_change(specs, states, noop=ok_detail)
    if after:
        change = Change(change.files, tuple(after(list(change.files))), ok_detail)
    return apply(session, host, step, change, dry_run)


def apply(session: Session, host: Host, step: str, change: Change, dry_run: bool) -> Outcome:
    """The one place a change takes effect: "ok" (with why) when it is empty, else shown (dry run:
    the diffs, nothing touched) or applied ("changed"); one line for the step either way."""
    if change.empty:
        return session.report(Outcome(host.name, step, "ok", change.noop))
    return apply_changes(session, host, step, list(change.files), dry_run, change.detail(), change.commands)


def apply_changes(session: Session, host: Host, step: str, changes: list[FileChange], dry_run: bool,
                  detail: str, commands: Iterable[str] = ()) -> Outcome:
    """Show (dry run) or write ``changes`` and run ``commands``; report one line for the step."""
    diffs = [c.diff() for c in changes if c.diff()]
    if dry_run:
        return session.report(Outcome(host.name, step, "would change", detail, diffs), show_diff=True)
    try:
        for c in changes:
            host.write(c)
        for cmd in commands:
            host.check(cmd, what=cmd)
    finally:
        session.forget(host)  # facts read before (or during) this change are stale now
    return session.report(Outcome(host.name, step, "changed", detail, diffs))
