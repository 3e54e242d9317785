"""The command line without real hosts: how the inventory is chosen, Fabric's flags (honoured or
refused in one line), --limit, --yes, exit codes, and the one-line errors of SSH handshakes that fail
(against listeners on loopback addresses that accept TCP and never send an SSH banner). The command
lines run in this process (the ``program`` fixture, tests/unit/conftest.py), except the ones that run
the installed ``fab`` and ``svrchain`` themselves (``run``)."""

from __future__ import annotations

import getpass
import importlib
import os
import selectors
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest
from invoke import Config, Context

import tasks
from svrchain.core.errors import BadInventory, Declined
from svrchain.remote import labguard, runopts
from svrchain.remote.connection import handshake_problem, sudo_problem
from svrchain.remote.runopts import confirm
from tests import fastyaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
STEPS = REPO / "svrchain" / "steps"


def environment(env: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment without INVENTORY, plus ``env``."""
    return {**{k: v for k, v in os.environ.items() if k != "INVENTORY"}, **(env or {})}


def run(*args: str, cwd: Path = REPO, env: dict[str, str] | None = None, stdin: str = "",
        tool: str = "svrchain") -> subprocess.CompletedProcess:
    """The installed program, in a process of its own."""
    return subprocess.run([str(BIN / tool), *args], cwd=cwd, env=environment(env), text=True,
                          input=stdin, capture_output=True, timeout=60)


@pytest.fixture
def cli(program):
    """Like ``run``, in this process."""
    def run_here(*args: str, cwd: Path = REPO, env: dict[str, str] | None = None, stdin: str = "",
                 tool: str = "svrchain") -> subprocess.CompletedProcess:
        return program(tool, *args, cwd=cwd, env=environment(env), stdin=stdin)
    return run_here


class Silent(list):
    """Four loopback listeners that accept TCP connections and never say a word; ``most_open`` is how
    many of their connections were open at once (a client that checks hosts one after another never
    has more than one)."""

    def __init__(self) -> None:
        self.socks = []
        for i in range(4):
            s = socket.socket()
            s.bind((f"127.0.0.{10 + i}", 0))
            s.listen(16)
            self.socks.append(s)
        super().__init__(s.getsockname() for s in self.socks)
        self.most_open, self.done = 0, False
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        sel = selectors.DefaultSelector()
        for s in self.socks:
            sel.register(s, selectors.EVENT_READ, "listen")
        open_ = 0
        while not self.done:
            for key, _ in sel.select(timeout=0.1):
                if key.data == "listen":
                    conn, _ = key.fileobj.accept()
                    sel.register(conn, selectors.EVENT_READ, "conn")
                    open_ += 1
                    self.most_open = max(self.most_open, open_)
                elif not key.fileobj.recv(4096):  # the client hung up
                    sel.unregister(key.fileobj)
                    key.fileobj.close()
                    open_ -= 1

    def close(self) -> None:
        self.done = True
        self.thread.join()
        for s in self.socks:
            s.close()


@pytest.fixture
def silent() -> Iterator[Silent]:
    listeners = Silent()
    yield listeners
    listeners.close()


@pytest.fixture
def refusing() -> Iterator[list[tuple[str, int]]]:
    """Three loopback ports (127.0.0.10-12) bound but not listening: a connection to one is refused at
    once, for the tests whose point is not a timeout (they need no wait)."""
    socks = []
    for i in range(3):
        s = socket.socket()
        s.bind((f"127.0.0.{10 + i}", 0))
        socks.append(s)
    yield [s.getsockname() for s in socks]
    for s in socks:
        s.close()


def write_inventory(tmp_path: Path, hosts: list[tuple[str, int]], known: str = "", timeout: int = 2) -> Path:
    """An inventory of loopback hosts (the first is the DB server), with its key and known_hosts files."""
    if not (tmp_path / "admin_key").exists():  # a real key: the admin's key is read before any host
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "admin_key")], check=True)
    (tmp_path / "known_hosts").write_text(known)
    (db_addr, db_port), *webs = hosts
    data = {
        "connect": {"identity": "admin_key", "known_hosts": "known_hosts", "timeout": timeout},
        "db": {"name": "db", "address": db_addr, "port": db_port, "script": "/bin/true",
               "ready": {"port": 5432}, "run": {"process": "postgres", "user": "postgres"}},
        "web": {"servers": [{"name": f"web{i}", "address": a, "port": p, "health_url": f"http://{a}/"}
                            for i, (a, p) in enumerate(webs, 1)]},
    }
    path = tmp_path / "inv.yaml"
    path.write_text(fastyaml.dump(data))
    return path


# Flags svrchain cannot honour: refused in one line, exit 4, before any inventory is read.
REFUSED = [
    (["-H", "web1"], "-H/--hosts: not supported; svrchain takes its hosts from the inventory"),
    (["-i", "/tmp/k"], "-i/--identity: not supported; did you mean -I FILE (--inventory)? Ansible's -i is "
                       "svrchain's -I"),
    (["-S", "/dev/null"], "-S/--ssh-config: not supported; set connect.ssh_config in the inventory"),
    (["-t", "5"], "-t/--connect-timeout: not supported; set connect.timeout in the inventory"),
    (["-T", "5"], "-T/--command-timeout: not supported; svrchain's waits are in the inventory"),
    (["-e"], "-e/--echo: not supported"),
    (["-w"], "-w/--warn-only: not supported"),
    (["-p"], "-p/--pty: not supported"),
    (["--hide", "both"], "--hide: not supported"),
    (["--prompt-for-login-password"], "--prompt-for-login-password: not supported"),
    (["--prompt-for-passphrase"], "--prompt-for-passphrase: not supported"),
    (["--prompt-for-sudo-password"], "--prompt-for-sudo-password: not supported; svrchain needs passwordless sudo"),
]


@pytest.mark.parametrize(("flags", "line"), REFUSED, ids=[f[0] for f, _ in REFUSED])
def test_flags_svrchain_cannot_honour_are_refused(flags, line, tmp_path, monkeypatch, program):
    monkeypatch.setattr(getpass, "getpass", lambda prompt="": "secret")  # --prompt-for-*: Fabric asks first
    r = program("svrchain", *flags, "verify", "-I", str(tmp_path / "never-read.yaml"))
    code, err = r.returncode, r.stderr
    assert code == 4, err
    assert err.strip().splitlines()[-1].startswith(f"svrchain: {line}"), err
    assert "Traceback" not in err


@pytest.mark.parametrize(("flags", "line"), REFUSED[:3], ids=[f[0] for f, _ in REFUSED[:3]])
def test_fab_refuses_them_too(flags, line, tmp_path, cli):
    r = cli(*flags, "verify", "-I", str(tmp_path / "never-read.yaml"), tool="fab")
    assert r.returncode == 4 and r.stderr.strip().startswith(f"svrchain: {line}"), r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


# (command line after the inventory, exit code, the line on stderr)
USAGE = [
    (["verify", "--limit", "web9"], 4, "svrchain: --limit web9: no web server of that name in"),
    (["verify", "--limit", "db"], 4, "svrchain: --limit db: that is the DB server"),
    (["verify", "--limit", ","], 4, "svrchain: --limit: give web server names separated by commas"),
    (["restart-chain"], 5, "svrchain: Restart the database db (127.0.0.1) and 1 web server(s): confirm with --yes"),
    (["uninstall"], 5, "svrchain: Remove svrchain from the DB server db and 1 web server(s): confirm with --yes"),
]


@pytest.mark.parametrize(("args", "code", "line"), USAGE, ids=[" ".join(a) for a, _, _ in USAGE])
def test_usage_errors(args, code, line, tmp_path, cli):
    inv = write_inventory(tmp_path, [("127.0.0.1", 1), ("127.0.0.2", 1)])
    r = cli(*args, "-I", str(inv))
    assert r.returncode == code, r.stdout + r.stderr
    assert r.stderr.strip().startswith(line), r.stderr


CHANGING = ["trust-hosts", "install-dbora", "gen-key", "push-key", "install-svr-restart", "bootstrap",
            "restart-chain", "rotate-key", "harden-sshd", "uninstall"]


@pytest.mark.parametrize("name", [*CHANGING, "verify"])
def test_fabric_dry_is_the_tasks_dry_run(name, monkeypatch):
    """--dry (and -R, its short form) reaches every changing task as --dry-run; verify ignores it."""
    seen: dict = {}
    run = f"run_{name.replace('-', '_')}"
    # Each task imports its step when it runs (tasks/): the step's own function is the one replaced.
    steps = [importlib.import_module(f"svrchain.steps.{p.stem}") for p in STEPS.glob("*.py")]
    monkeypatch.setattr(next(m for m in steps if hasattr(m, run)), run, lambda c, **kw: seen.update(kw))
    c = Context(Config(overrides={"run": {"dry": True}}))
    tasks.ns[name](c)
    assert seen.get("dry_run") is (True if name in CHANGING else None), seen


def test_dry_gen_key_connects_nowhere_it_would_change(refusing, tmp_path, cli):
    """fab --dry gen-key is a dry run: it fails here only because the host refuses the connection (exit 3)."""
    inv = write_inventory(tmp_path, refusing[:2], timeout=1)
    r = cli("--dry", "gen-key", "-I", str(inv), tool="fab")
    assert r.returncode == 3, r.stdout + r.stderr
    assert r.stdout.splitlines()[0].startswith(f"svrchain: inventory {inv}: db 127.0.0.10, web1 127.0.0.11")


def test_no_inventory_anywhere_is_one_line(tmp_path):
    (tmp_path / "fabric.yaml").write_text("inventory: prod.yaml\n")  # not a way to choose it
    r = run("-r", str(REPO), "bootstrap", cwd=tmp_path, tool="fab")
    assert r.returncode == 4
    assert r.stderr.strip() == ("svrchain: no inventory chosen: pass --inventory FILE (-I FILE), set INVENTORY=FILE, "
                                "or write INVENTORY=FILE in a .env here or next to the fabfile (see "
                                "inventory/example.yaml)")


def test_dotenv_next_to_the_fabfile(tmp_path, cli):
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    project.mkdir()
    elsewhere.mkdir()
    (project / "fabfile.py").write_text("from svrchain.tasks import ns  # noqa: F401\n")
    (project / ".env").write_text("INVENTORY=inventory/prod.yaml\n")
    r = cli("-r", str(project), "verify", cwd=elsewhere, tool="fab")
    assert r.returncode == 4
    assert r.stderr.strip() == (f"svrchain: {project / 'inventory/prod.yaml'}: no such inventory file (given by "
                                f"INVENTORY in {project / '.env'}); check the path (every key is explained in "
                                "inventory/example.yaml)")


def test_first_line_names_the_inventory_and_the_limited_hosts(refusing, tmp_path, cli):
    inv = write_inventory(tmp_path, refusing, timeout=1)
    r = cli("verify", "-I", str(inv), "--limit", "web2")
    assert r.stdout.splitlines()[0] == (f"svrchain: inventory {inv}: db 127.0.0.10, web2 127.0.0.12 "
                                        "(--limit: 1 of 2 web servers)"), r.stdout


def test_banner_less_hosts_one_line_each_in_one_timeout_in_trust_hosts_and_in_a_task(silent, tmp_path, cli):
    """Four hosts that never send a banner: trust-hosts checks them in parallel and says one line for each;
    a task (push-key, in a process of its own, meanwhile: the two wait out their timeouts at once) names
    the DB host in its report. Neither shows a traceback."""
    (tmp_path / "task").mkdir()
    task_inv = write_inventory(tmp_path / "task", (other := Silent())[:2], timeout=1)
    task = subprocess.Popen([str(BIN / "svrchain"), "push-key", "-I", str(task_inv)], cwd=REPO, env=environment(),
                            text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        inv = write_inventory(tmp_path, silent, timeout=1)
        r = cli("trust-hosts", "-I", str(inv))
        out, err = task.communicate(timeout=60)
    finally:
        if task.poll() is None:
            task.kill()
            task.communicate()
        other.close()
    assert r.returncode == 3, r.stdout + r.stderr
    assert silent.most_open == 4, "the hosts were not checked in parallel"
    errors = r.stderr.strip().splitlines()
    assert len(errors) == 4 and "Traceback" not in r.stderr, r.stderr
    for line in errors:
        assert "no SSH banner within 1s: something accepts TCP on that port but does not speak SSH" in line
    assert task.returncode == 3, out + err
    assert f"db (127.0.0.10:{other[0][1]}): no SSH banner within 1s" in out
    assert "Traceback" not in out + err


@pytest.mark.parametrize("line", ["198.18.0.10 ssh-ed25519 AAAAB", "web1 ssh-rsa AAAA!!!!x"])
def test_a_damaged_known_hosts_line_is_named(line, tmp_path):
    inv = write_inventory(tmp_path, [("127.0.0.1", 1), ("127.0.0.2", 1)], known=f"# pinned\n{line}\n")
    r = run("verify", "-I", str(inv))
    assert r.returncode == 4
    assert r.stderr.strip() == (f"svrchain: {tmp_path / 'known_hosts'}:2: a damaged host key line (its key is "
                                "not valid base64); delete that line, then run `svrchain trust-hosts` to pin the host "
                                "again")


HANDSHAKES = [
    (paramiko.SSHException("Error reading SSH protocol banner"), "no SSH banner within 5s"),
    (paramiko.SSHException("No existing session"), "the server closed the SSH session before the login"),
    (EOFError(), "the server closed the connection during the SSH handshake"),
    (paramiko.SSHException("Incompatible version (1.5 instead of 2.0)"), "the server speaks SSH protocol 1 only (1.5)"),
    (paramiko.SSHException("Incompatible ssh peer (no acceptable kex algorithm)"),
     "SSH failed: Incompatible ssh peer (no acceptable kex algorithm)"),
]


@pytest.mark.parametrize(("exc", "text"), HANDSHAKES, ids=[str(e) or "EOF" for e, _ in HANDSHAKES])
def test_handshake_problems_in_plain_words(exc, text):
    said = handshake_problem(exc, 5)
    assert said.startswith(text) and "\n" not in said


def test_no_existing_session_without_a_banner_is_a_silent_port():
    """paramiko says "No existing session" when the handshake's time ran out before any banner came."""
    class NoBanner:
        remote_version = ""
    said = handshake_problem(paramiko.SSHException("No existing session"), 5, NoBanner())
    assert said.startswith("no SSH banner within 5s")


SUDO = [
    ("sh: 1: sudo: not found", "web1: admin is not root and the host has no sudo; install sudo with a NOPASSWD"),
    ("sudo: a password is required", "web1: admin needs passwordless sudo (sudo -n) for svrchain"),
    ("cat: /x: No such file or directory", None),
]


@pytest.mark.parametrize(("stderr", "text"), SUDO)
def test_sudo_problems_in_plain_words(stderr, text):
    said = sudo_problem("web1", "admin", stderr, Path("inv.yaml"))
    assert (said or None) == text or (said and text and said.startswith(text))


def test_the_lab_inventory_refuses_to_run_while_the_lab_is_down(monkeypatch):
    monkeypatch.setattr(labguard, "route_devices", lambda addresses: dict.fromkeys(addresses, "eth0"))
    with pytest.raises(BadInventory, match=r"inventory/lab.yaml is the built-in lab's inventory \(lab: true\) and "
                                           r"the lab is not up \(198.18.0.10 would go through eth0, not the lab's "
                                           r"bridge svrlab0\): run `make lab-up` first"):
        runopts.check_lab(Path("inventory/lab.yaml"), ["198.18.0.10"])
    monkeypatch.setattr(labguard, "route_devices", lambda addresses: dict.fromkeys(addresses, "svrlab0"))
    runopts.check_lab(Path("inventory/lab.yaml"), ["198.18.0.10"])


def test_route_device_reads_the_kernels_route():
    assert runopts.route_device("127.0.0.1") == "lo"


def test_route_devices_asks_once_and_never_passes_a_name_or_a_line_on():
    # One ip for every address (the lab's guard at N = 200 asked 600 times); a value that is not an IP
    # address (a name, or a second line for ip's batch) is never handed to ip: no route.
    got = runopts.route_devices(["127.0.0.1", "::1", "0:0::1", "127.0.0.1", "localhost",
                                 "127.0.0.1\nlink set lo down"])
    assert got == {"127.0.0.1": "lo", "::1": "lo", "0:0::1": "lo", "localhost": None,
                   "127.0.0.1\nlink set lo down": None}


def test_confirmation(monkeypatch):
    """No terminal: --yes or exit 5; on a terminal: only 'y' or 'yes' goes on (else exit 5)."""
    monkeypatch.setattr(sys.stdin, "isatty", lambda: False)
    with pytest.raises(Declined, match=r"^Restart: confirm with --yes \(stdin is not a terminal\)$"):
        confirm("Restart?", yes=False)
    confirm("Restart?", yes=True)
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True)
    for answer, goes_on in [("y", True), ("yes", True), ("", False), ("n", False), ("Y ", True)]:
        monkeypatch.setattr("builtins.input", lambda prompt, a=answer: a)
        if goes_on:
            confirm("Restart?", yes=False)
        else:
            with pytest.raises(Declined, match="not confirmed; nothing was changed"):
                confirm("Restart?", yes=False)


def test_the_lab_bridge_is_the_labs():
    from lab import hosts

    assert hosts.BRIDGE == runopts.LAB_BRIDGE
