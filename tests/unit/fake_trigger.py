"""The trigger as the real bash program it is, run locally against stand-ins.

A temporary root holds what the trigger uses on a DB host (``etc/svrchain/<name>.conf``,
``var/lib/svrchain``, ``run/svrchain``) and the stand-ins on PATH:

- each web server is a loopback address (127.0.0.21, .22, ...) with a real TCP port of its own, which
  accepts connections (the trigger's probe of an owed web server) unless its mode is ``down``;
- ``ssh`` records every call (one line: time, then its arguments, shell-quoted) and answers for each
  web server from ``hosts/<address>/mode``: ``ok`` (the default), ``fail N`` (unreachable for its
  first N restarts), ``says`` (fails, saying ``hosts/<address>/says`` on stderr), ``down`` (unreachable),
  ``hostkey`` (a changed host key), ``hang``, ``lost``
  (restarts, but the answer is lost) or ``slow S``; its gate's ``status`` reports the last restart it
  recorded (``hosts/<address>/restarts``) and ``hosts/<address>/booted`` (default 0);
- the readiness probe (``bin/probe``): ready from its Kth call on (``probe/ready``: K), or never;
- ``logger``, which appends each message to ``syslog``.

The trigger reads its fixed paths under that root through SVRCHAIN_TRIGGER_ROOT, which it honours
only when it does not run as root: when the tests run as root they run it as ``nobody``, owner of
the temporary root. With that root, SVRCHAIN_TRIGGER_MS=N in ``Trigger.env`` makes each second of its
backoff and of its supervisor's wait N ms (the tests of those waits set it).
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from svrchain.core import render, trigger_status
from svrchain.core.inventory import Inventory, parse
from tests import fastyaml

NOBODY = 65534
AS_ROOT = os.geteuid() == 0

FAKE_SSH = r"""#!/bin/bash
H=@ROOT@/hosts
# (bash's own clock and printf -v: no process per argument; the trigger makes a dozen calls a run)
line=${EPOCHREALTIME/,/.}
for a in "$@"; do printf -v q '%q' "$a"; line+=" $q"; done
printf '%s\n' "$line" >>"$H/ssh.log"
case " $* " in
    *" -Q kex "*) printf 'curve25519-sha256\ncurve25519-sha256@libssh.org\n'; exit 0 ;;
esac
# The connection opened in advance leaves its socket (a file, here) at -S's path until told to exit.
args=("$@")
for ((i = 0; i < $#; i++)); do [ "${args[i]}" != -S ] || control=${args[i + 1]}; done
case " $* " in
    *" -O exit "*) rm -f "$control"; exit 0 ;;
    *" -N "*) : >"$control"; exit 0 ;;
esac
verb=${*: -1}
dest=${*: -2:1}
d=$H/${dest#*@}
[ -d "$d" ] || mkdir -p "$d"
read -r mode arg 2>/dev/null <"$d/mode" || mode=ok
refused() { echo "ssh: connect to host ${dest#*@} port 22: Connection refused" >&2; exit 255; }
case $mode in
    hostkey) echo "Host key verification failed." >&2; exit 255 ;;
    says) cat "$d/says" >&2; exit 1 ;;
    down) refused ;;
    hang) sleep 1000 ;;
    slow) sleep "$arg" ;;
    fail)
        if [ "$verb" = restart ]; then
            n=$(cat "$d/failed" 2>/dev/null || echo 0)
            echo $((n + 1)) >"$d/failed"
            [ "$n" -ge "$arg" ] || refused
        else
            [ "$(cat "$d/failed" 2>/dev/null || echo 0)" -gt "$arg" ] || refused
        fi ;;
esac
if [ "$verb" = status ]; then
    last=$(tail -n 1 "$d/restarts" 2>/dev/null)
    echo "last restart: ${last:-never}, exit 0"
    echo "booted: $(cat "$d/booted" 2>/dev/null || echo 0)"
    exit 0
fi
printf '%s\n' "${EPOCHREALTIME/,/.}" >>"$d/restarts"
[ "$mode" != lost ] || exit 255
exit 0
"""

FAKE_PROBE = r"""#!/bin/sh
P=@ROOT@/probe
echo x >>"$P/calls"
read -r k <"$P/ready" || exit 1
[ "$k" != never ] && [ "$(wc -l <"$P/calls")" -ge "$k" ]
"""

FAKE_LOGGER = """#!/bin/sh
printf '%s\\n' "$*" >>@ROOT@/syslog
"""


def inventory(root: Path, webs: int = 2, db: dict | None = None, **trigger: int | str) -> Inventory:
    """An inventory whose trigger uses the stand-ins under ``root``: quick timeouts, ``webs`` web servers;
    ``db`` replaces keys of the DB's section (a key given None is left out)."""
    ports = json.loads((root / "ports.json").read_text()) if (root / "ports.json").exists() else {}
    data = {
        "connect": {"user": "root", "identity": "k", "known_hosts": "kh"},
        "db": {"name": "db", "address": "198.18.0.10", "script": "dbora",
               "ready": {"command": f"{root}/bin/probe", "timeout": 2, "interval": 0.05},
               "run": {"command": f"cat {root}/runid", "interval": 0.1}},
        "web": {"user": "root", "restart_command": "/etc/init.d/apache2 restart",
                "servers": [{"name": f"web{i}", "address": address(i), "health_url": "http://x/",
                             **({"port": ports[address(i)]} if address(i) in ports else {})}
                            for i in range(1, webs + 1)]},
        "key": {"path": f"{root}/key"},
        "trigger": {"known_hosts": f"{root}/known_hosts", "log": f"{root}/trigger.log",
                    "connect_timeout": 1, "retries": 3, "restart_timeout": 5, **trigger},
    }
    data["db"] = {k: v for k, v in {**data["db"], **(db or {})}.items() if v is not None}
    return parse(fastyaml.dump(data), Path("inventory/test.yaml"))


def address(i: int) -> str:
    """Web server ``i``'s address (loopback: the trigger's probe really connects to it)."""
    return f"127.0.0.{20 + i}"


class Port:
    """A web server's TCP port: bound to its address all along (no one else takes it), listening
    (each connection accepted and closed) or not (a connection is refused, as to a stopped sshd)."""

    def __init__(self, addr: str, port: int = 0) -> None:
        self.addr, self.sock = addr, socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((addr, port))
        self.port = self.sock.getsockname()[1]

    def listen(self) -> Port:
        self.sock.listen(64)
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


@dataclass
class Trigger:
    """The trigger installed under a temporary root, and what its stand-ins saw."""

    root: Path
    inv: Inventory
    env: dict[str, str] = field(default_factory=dict)
    ports: dict[str, Port] = field(default_factory=dict)

    @property
    def script(self) -> Path:
        return self.root / "lib" / self.inv.trigger.name

    @property
    def config(self) -> Path:
        return self.root / "etc" / "svrchain" / f"{self.inv.trigger.name}.conf"

    def configure(self, inv: Inventory | None = None, text: bytes | None = None, mode: int = 0o600) -> None:
        """Write the settings (rendered from ``inv``, or ``text`` as given), owned by the trigger's user."""
        if inv is not None:
            self.inv = inv
        if not self.script.exists():  # the trigger finds its settings by its own name
            shutil.copyfile(render.TRIGGER_SOURCE, self.script)
            self.script.chmod(0o755)  # as installed: the watcher starts "$0 start"
        self.config.write_bytes(render.trigger_config(self.inv) if text is None else text)
        self.config.chmod(mode)
        self.own(self.config)

    def own(self, path: Path) -> None:
        if AS_ROOT:
            os.chown(path, NOBODY, NOBODY)

    def command(self, *args: str) -> list[str]:
        drop = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"] if AS_ROOT else []
        return [*drop, "bash", str(self.script), *args]

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(self.command(*args), env=self.env, capture_output=True, text=True, timeout=timeout)

    def popen(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen(self.command(*args), env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)

    def host(self, address: str, mode: str | None = None, booted: float | None = None) -> Path:
        """A web server's stand-in directory; set its mode and boot time when given."""
        d = self.root / "hosts" / address
        d.mkdir(exist_ok=True)
        self.own(d)
        if mode is not None:
            (d / "mode").write_text(mode + "\n")
            self.answer(address, mode != "down")
        if booted is not None:
            (d / "booted").write_text(f"{booted}\n")
        return d

    def answer(self, address: str, up: bool) -> None:
        """Make the web server's port accept connections, or refuse them."""
        old = self.ports.pop(address)
        old.close()
        new = Port(address, old.port)
        self.ports[address] = new.listen() if up else new

    def restarts(self, address: str) -> list[float]:
        f = self.root / "hosts" / address / "restarts"
        return [float(x) for x in f.read_text().split()] if f.exists() else []

    def ssh_calls(self, verb: str | None = None) -> list[tuple[float, list[str]]]:
        """Every ssh call: (time, arguments); only those ending in ``verb`` when given."""
        f = self.root / "hosts" / "ssh.log"
        calls = []
        for line in f.read_text().splitlines() if f.exists() else []:
            t, *args = shlex.split(line)
            if verb is None or args[-1:] == [verb]:
                calls.append((float(t), args))
        return calls

    def probe(self, ready: int | str) -> None:
        """The readiness probe: ready from its ``ready``th call on, or ``never``."""
        (self.root / "probe" / "ready").write_text(f"{ready}\n")

    def set_run(self, run: str) -> None:
        (self.root / "runid").write_text(run + "\n")

    @property
    def status(self) -> trigger_status.TriggerRun:
        f = self.root / "var" / "lib" / "svrchain" / f"{self.inv.trigger.name}.status"
        return trigger_status.parse(f.read_text() if f.exists() else "")

    @property
    def log(self) -> str:
        f = self.root / "syslog"
        return f.read_text() if f.exists() else ""

    @property
    def tick(self) -> Path:
        """The watcher's tick: rewritten ("<epoch> <run>") each time it looks at the database."""
        return self.root / "run" / "svrchain" / f"{self.inv.trigger.name}_watch.tick"

    def looks(self, n: int, timeout: float = 30) -> None:
        """Wait until the watcher has looked at the database ``n`` more times: its tick rewritten ``n``
        times (each rewrite a new modification time; the looks are an interval, 50 ms or more, apart, and
        a look missed by a slow poll only makes the wait longer). ``timeout`` is only a net."""

        def stamp() -> int | None:
            try:
                return self.tick.stat().st_mtime_ns
            except FileNotFoundError:
                return None

        last, seen, end = stamp(), 0, time.monotonic() + timeout
        while seen < n:
            assert time.monotonic() < end, f"the watcher looked {seen} times, not {n}, within {timeout}s:\n{self.log}"
            time.sleep(0.01)
            now = stamp()
            if now != last:
                seen, last = seen + 1, now

    def traced_looks(self, pid: int, n: int = 10) -> list[str]:
        """What process ``pid`` (the watcher) and its children start (fork, vfork, clone, clone3, execve:
        strace's lines) over its next ``n`` looks, counted from strace's attach."""
        out = self.root / f"strace.{pid}"
        with out.open("w") as f:
            strace = subprocess.Popen(["strace", "-f", "-e", "trace=fork,vfork,clone,clone3,execve", "-p", str(pid)],
                                      stdout=subprocess.DEVNULL, stderr=f)
        try:
            end = time.monotonic() + 30
            while "attached" not in out.read_text():
                assert strace.poll() is None and time.monotonic() < end, out.read_text()
                time.sleep(0.01)
            self.looks(n)
        finally:
            strace.send_signal(signal.SIGINT)
            strace.wait(10)
        return [ln for ln in out.read_text().splitlines() if "clone" in ln or "fork" in ln or "execve" in ln]

    def owed(self) -> list[str]:
        d = self.root / "var" / "lib" / "svrchain" / f"{self.inv.trigger.name}.owed"
        return sorted(p.name for p in d.iterdir()) if d.exists() else []


def make(webs: int = 2, **trigger: int | str) -> Trigger:
    """A fresh trigger under a new temporary root (reachable by ``nobody`` when the tests run as root)."""
    root = Path(tempfile.mkdtemp(prefix="svrchain-trigger-", dir="/tmp"))
    for d in ("bin", "lib", "etc/svrchain", "var/lib", "run", "hosts", "probe"):
        (root / d).mkdir(parents=True)
    for name, text in (("ssh", FAKE_SSH), ("probe", FAKE_PROBE), ("logger", FAKE_LOGGER)):
        (root / "bin" / name).write_text(text.replace("@ROOT@", str(root)))
        (root / "bin" / name).chmod(0o755)
    ports = {address(i): Port(address(i)).listen() for i in range(1, webs + 1)}
    (root / "ports.json").write_text(json.dumps({a: p.port for a, p in ports.items()}))
    t = Trigger(root, inventory(root, webs, **trigger), ports=ports)
    t.probe(1)
    t.set_run("1234.5678")
    root.chmod(0o755)
    if AS_ROOT:
        for p in [root, *root.rglob("*")]:
            os.chown(p, NOBODY, NOBODY)
    t.configure()
    t.env = {"PATH": f"{root / 'bin'}:{os.environ['PATH']}", "SVRCHAIN_TRIGGER_ROOT": str(root),
             "LANG": "C.UTF-8"}
    return t


def remove(t: Trigger) -> None:
    """Remove the trigger's root (every run of it has ended: each test waits for its own)."""
    for p in t.ports.values():
        p.close()
    shutil.rmtree(t.root, ignore_errors=True)
