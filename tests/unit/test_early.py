"""The early connect (issue 23, "Start fast"): a task that connects starts its TCP connections before
Fabric, Paramiko and the inventory's models are imported, and only when the command line and the
inventory are plainly valid; a hostile value anywhere, or the lab's guard, means no packet at all.
Real sockets on loopback (a listener stands for each host); never timed."""

from __future__ import annotations

import concurrent.futures
import functools
import io
import os
import re
import selectors
import socket
import subprocess
import sys
from pathlib import Path

import paramiko
import pytest

from svrchain.core import early
from svrchain.core.errors import HostUnreachable
from svrchain.core.inventory import parse
from svrchain.remote import early as remote_early
from svrchain.remote import labguard
from svrchain.remote.connection import Dialer
from tests import fastyaml
from tests.paths import REPO
from tests.unit.test_start import modules_after

# What the command must not have imported when its first connection opens.
HEAVY = ("fabric", "paramiko", "invoke", "pydantic", "cryptography", "jinja2", "dotenv", "svrchain.core.inventory",
         "svrchain.cli", "svrchain.tasks")


def flags_of(task: str) -> dict[str, bool]:
    """A task's real flags (as Invoke parses them) and whether each takes a value."""
    from tasks import ns

    out = {}
    for arg in ns[task].get_arguments():
        for n in arg.names:
            out[f"-{n}" if len(n) == 1 else f"--{n}"] = arg.takes_value
    return out


@pytest.mark.parametrize("task", sorted(early.EARLY_TASKS))
def test_the_early_tasks_flags_are_the_tasks_own(task):
    assert early.EARLY_TASKS[task] == flags_of(task)


@pytest.mark.parametrize(("argv", "wanted"), [
    (["bootstrap"], early.Wanted("bootstrap", None, ())),
    (["bootstrap", "-I", "x.yaml", "--dry-run", "-v"], early.Wanted("bootstrap", "x.yaml", ())),
    (["verify", "--inventory=x.yaml", "--limit", "web1, web2", "--json"],
     early.Wanted("verify", "x.yaml", ("web1", "web2"))),
    (["verify", "-l", "web2", "--junit", "r.xml"], early.Wanted("verify", None, ("web2",))),
])
def test_a_connecting_task_is_read_from_the_command_line(argv, wanted):
    assert early.wanted(argv) == wanted


@pytest.mark.parametrize("argv", [
    [], ["--list"], ["--help", "bootstrap"], ["bootstrap", "--help"], ["bootstrap", "-h"], ["-d", "bootstrap"],
    ["init", "x.yaml"], ["docs", "output"], ["restart-chain", "--yes"], ["bootstrap", "verify"],
    ["bootstrap", "--bogus"], ["bootstrap", "-dv"], ["bootstrap", "-I"], ["bootstrap", "-I", "--dry-run"],
    ["bootstrap", "--dry-run=yes"], ["bootstrap", "--limit", "web1"], ["verify", "-Ix.yaml"],
    ["verify", "--chain", "shop"], ["bootstrap", "--chain=shop"],
])
def test_anything_else_connects_the_usual_way(argv):
    assert early.wanted(argv) is None


def inventory_data(*webs: str, db: str = "127.0.0.1", port: int = 22, lab: bool = False) -> dict:
    servers = [{"name": f"web{i}", "address": a, "health_url": f"http://{a}/"} for i, a in enumerate(webs, 1)]
    return {"lab": lab, "connect": {"known_hosts": "kh", "port": port}, "db": {"name": "db", "address": db},
            "web": {"servers": servers}}


def test_the_hosts_of_a_plain_inventory():
    p = early.plan(inventory_data("127.0.0.2", "::1", port=2222))
    assert p is not None
    assert [(t.name, t.address, t.port) for t in p.targets] == [
        ("db", "127.0.0.1", 2222), ("web1", "127.0.0.2", 2222), ("web2", "::1", 2222)]
    data = inventory_data("127.0.0.2", "0:0::1")
    data["web"]["servers"][1]["port"] = 2200
    assert [(t.address, t.port) for t in early.plan(data, ("web2",)).targets] == [("127.0.0.1", 22), ("::1", 2200)]


def hostile(change) -> dict:
    data = inventory_data("127.0.0.2", "127.0.0.3")
    change(data)
    return data


HOSTILE = {
    "option as address": lambda d: d["web"]["servers"][1].update(address="-oProxyCommand=touch /tmp/x"),
    "newline in a name": lambda d: d["web"]["servers"][0].update(name="web1\nweb9"),
    "blank in a name": lambda d: d["db"].update(name="db x"),
    "newline after an address": lambda d: d["db"].update(address="127.0.0.1\n"),
    "a host name": lambda d: d["db"].update(address="db.example.org"),
    "an IPv6 scope": lambda d: d["db"].update(address="fe80::1%lo"),
    "a port as text": lambda d: d["connect"].update(port="22"),
    "a port as bool": lambda d: d["connect"].update(port=True),
    "a port out of range": lambda d: d["db"].update(port=70000),
    "two hosts at one address": lambda d: d["web"]["servers"][1].update(address="127.0.0.1"),
    "two hosts of one name": lambda d: d["web"]["servers"][1].update(name="db"),
    "a huge host list": lambda d: d["web"].update(servers=[
        {"name": f"w{i}", "address": f"127.1.{i // 250}.{i % 250 + 1}", "health_url": "http://127.0.0.1/"}
        for i in range(early.MAX_HOSTS)]),
    "no web servers": lambda d: d["web"].update(servers=[]),
    "a bad health URL": lambda d: d["web"]["servers"][0].update(health_url="http://x y/"),
    "an ssh config": lambda d: d["connect"].update(ssh_config="~/.ssh/config"),
    "an Ansible inventory": lambda d: d.update(ansible={"inventory": "hosts.ini"}),
    "lab as text": lambda d: d.update(lab="no"),
    "a typo of lab": lambda d: d.update(Lab=True),
    "a list of servers as text": lambda d: d["web"].update(servers="127.0.0.2"),
}


@pytest.mark.parametrize("change", HOSTILE.values(), ids=HOSTILE.keys())
def test_a_hostile_or_unplain_value_anywhere_means_no_early_connection(change):
    assert early.plan(inventory_data("127.0.0.2", "127.0.0.3")) is not None
    assert early.plan(hostile(change)) is None


def test_a_limit_naming_no_web_server_means_no_early_connection():
    assert early.plan(inventory_data("127.0.0.2"), ("web9",)) is None
    assert early.plan(inventory_data("127.0.0.2"), ("db",)) is None


def test_the_early_top_keys_are_the_inventorys_but_ansible():
    from svrchain.core.inventory import Inventory

    keys = {f.alias or n for n, f in Inventory.model_fields.items()} - {"source"}
    assert keys - early.TOP_KEYS == {"ansible"}
    assert keys >= early.TOP_KEYS


@pytest.mark.parametrize("text", ["lab: true\nlab: false\n", "db:\n  address: 127.0.0.1\n  address: 127.0.0.2\n",
                                  "web:\n  servers:\n  - {name: a, name: b}\n",
                                  "!!python/object/apply:os.system [id]\n"])
def test_the_early_read_refuses_a_key_given_twice_and_any_tag(text):
    with pytest.raises(Exception, match=r"twice|constructor"):
        remote_early.load_yaml(text.encode())


def test_a_lab_inventory_whose_lab_key_is_given_twice_sends_no_packet(hosts, tmp_path):
    inv = write_inventory(tmp_path, hosts.places(), lab=True)
    inv.write_text(inv.read_text() + "lab: false\n")  # the last would win in YAML; the full check refuses it
    assert remote_early.start(["bootstrap", "-I", str(inv)], {}) == 0
    assert hosts.accepted() == [0, 0, 0]


def test_the_early_names_are_the_inventorys():
    from svrchain.core.inventory import NAME_RE

    assert early.NAME_RE.pattern == NAME_RE.pattern


class Hosts:
    """Loopback listeners standing for a DB host and two web hosts; each counts the connections it got."""

    def __init__(self) -> None:
        self.socks = []
        self.kept: list[socket.socket] = []
        for a in ("127.0.0.1", "127.0.0.2", "127.0.0.3"):
            s = socket.create_server((a, 0))
            s.setblocking(False)
            self.socks.append(s)

    def places(self) -> list[tuple[str, int]]:
        return [s.getsockname()[:2] for s in self.socks]

    def accepted(self, hang_up: bool = True, quiet: float = 0.1) -> list[int]:
        """How many connections each listener has been sent (each accepted and, with ``hang_up``, closed):
        every listener is watched at once until none has been sent one for ``quiet`` seconds. Each test asks
        once what could connect has returned (an in-process start, whose connects are begun before it
        returns, or a process that has ended): on loopback the kernel completes a handshake within the
        connect itself, so each connection is already waiting to be accepted and ``quiet`` is only a margin."""
        counts = [0] * len(self.socks)
        with selectors.DefaultSelector() as sel:
            for i, s in enumerate(self.socks):
                sel.register(s, selectors.EVENT_READ, i)
            while ready := sel.select(quiet):
                for key, _ in ready:
                    try:
                        conn, _ = key.fileobj.accept()
                    except BlockingIOError:
                        continue
                    counts[key.data] += 1
                    if hang_up:
                        conn.close()
                    else:
                        self.kept.append(conn)  # (open until the end of the test)
        return counts

    def accepted_until(self, proc: subprocess.Popen) -> list[int]:
        """``accepted()`` while ``proc`` runs and once it has ended, each connection kept open and sent an SSH-1
        banner as it comes: the run fails at once on it (an SSH client refuses protocol 1) where a silent
        listener leaves it to its banner timeout, and a connection hung up on would be opened anew."""
        counts = [0] * len(self.socks)
        while True:
            ended = proc.poll() is not None
            seen = len(self.kept)
            counts = [a + b for a, b in zip(counts, self.accepted(hang_up=False, quiet=0.02), strict=True)]
            for conn in self.kept[seen:]:
                conn.sendall(b"SSH-1.5-test\r\n")
            if ended:
                return counts

    def close(self) -> None:
        for s in self.socks + self.kept:
            s.close()


@pytest.fixture
def hosts():
    h = Hosts()
    yield h
    h.close()
    remote_early.discard()


@functools.cache
def _admin_key() -> bytes:
    """A real RSA key's private key file, made once for this module's tests (50 ms of CPU each)."""
    out = io.StringIO()
    paramiko.RSAKey.generate(2048).write_private_key(out)
    return out.getvalue().encode()


def write_inventory(tmp_path: Path, places: list[tuple[str, int]], lab: bool = False, **web1: str) -> Path:
    """A whole, valid inventory for hosts at ``places`` (the DB, then two web servers), its key and known_hosts."""
    data = fastyaml.load((REPO / "inventory" / "lab.yaml").read_text())
    key = tmp_path / "admin_key"
    if not key.exists():
        key.write_bytes(_admin_key())
        key.chmod(0o600)
        (tmp_path / "known_hosts").write_text("")
    data["lab"] = lab
    data["connect"].update(identity=str(key), known_hosts=str(tmp_path / "known_hosts"), timeout=1)
    data["db"].update(address=places[0][0], port=places[0][1], script=str(REPO / "lab" / "files" / "dbora"))
    data["web"]["servers"] = [{"name": f"web{i}", "address": a, "port": p, "health_url": f"http://{a}/"}
                              for i, (a, p) in enumerate(places[1:], 1)]
    data["web"]["servers"][0].update(web1)
    path = tmp_path / "inv.yaml"
    path.write_text(fastyaml.dump(data))
    parse(path.read_text(), path)  # whole and valid, as the usual path reads it
    return path


def test_every_host_is_connected_at_once_and_the_run_takes_its_socket(hosts, tmp_path):
    inv = write_inventory(tmp_path, hosts.places())
    assert remote_early.start(["verify", "-I", str(inv)], {}) == 3
    assert hosts.accepted(hang_up=False) == [1, 1, 1]  # every SYN sent before the run takes a socket
    dialer = Dialer(parse(inv.read_text(), inv))
    address, port = hosts.places()[1]
    sock = dialer.tcp("web1", address, port)
    assert sock.getpeername()[:2] == (address, port)
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    assert len(remote_early.pending()) == 2
    again = dialer.tcp("web1", address, port)  # taken once: a second connection is a new one, as before
    assert hosts.accepted() == [0, 1, 0]
    sock.close(), again.close()
    remote_early.discard()
    assert remote_early.pending() == []


def test_a_connection_the_host_closed_meanwhile_is_opened_anew(hosts, tmp_path):
    """As sshd does when its LoginGraceTime passes while the run waits (e.g. for another admin's host lock)."""
    inv = write_inventory(tmp_path, hosts.places())
    assert remote_early.start(["bootstrap", "-I", str(inv)], {}) == 3
    assert hosts.accepted() == [1, 1, 1]  # accepted and closed at once
    dialer = Dialer(parse(inv.read_text(), inv))
    sock = dialer.tcp("db", *hosts.places()[0])
    assert hosts.accepted(hang_up=False) == [1, 0, 0]  # a new connection
    assert sock.send(b"SSH-2.0-x\r\n") == 11
    sock.close()


def test_the_inventory_from_the_environment_and_only_the_run_s_hosts(hosts, tmp_path):
    inv = write_inventory(tmp_path, hosts.places())
    assert remote_early.start(["verify", "--limit", "web2"], {"INVENTORY": str(inv)}) == 2
    assert hosts.accepted() == [1, 0, 1]


@pytest.mark.parametrize("value", [{"address": "-oProxyCommand=touch /tmp/pwned"}, {"name": "web1\nweb9"},
                                   {"address": "127.0.0.2\n"}])
def test_a_hostile_value_sends_no_packet(hosts, tmp_path, value):
    inv = write_inventory(tmp_path, hosts.places())
    data = fastyaml.load(inv.read_text())
    data["web"]["servers"][0].update(value)
    inv.write_text(fastyaml.dump(data))
    assert remote_early.start(["bootstrap", "-I", str(inv)], {}) == 0
    assert hosts.accepted() == [0, 0, 0]


def test_no_packet_unless_the_labs_guard_passes(hosts, tmp_path, monkeypatch):
    inv = write_inventory(tmp_path, hosts.places(), lab=True)
    assert remote_early.start(["bootstrap", "-I", str(inv)], {}) == 0  # loopback is not the lab's bridge
    assert hosts.accepted() == [0, 0, 0]
    asked = []
    monkeypatch.setattr(labguard, "route_devices", lambda a: asked.extend(a) or dict.fromkeys(a, labguard.LAB_BRIDGE))
    assert remote_early.start(["bootstrap", "-I", str(inv)], {}) == 3
    assert sorted(set(asked)) == sorted({a for a, _ in hosts.places()})  # every address and health URL host
    assert hosts.accepted() == [1, 1, 1]


def test_a_refused_or_timed_out_connection_says_what_it_always_said(tmp_path):
    closed = socket.create_server(("127.0.0.1", 0))
    place = closed.getsockname()[:2]
    closed.close()
    inv = write_inventory(tmp_path, [place, ("127.0.0.2", 1), ("127.0.0.3", 1)])
    dialer = Dialer(parse(inv.read_text(), inv))
    with pytest.raises(HostUnreachable) as usual:
        dialer.tcp("db", *place)
    remote_early.start(["bootstrap", "-I", str(inv)], {})
    with pytest.raises(HostUnreachable) as early_one:
        dialer.tcp("db", *place)
    assert str(early_one.value) == str(usual.value)
    assert "connection refused; is sshd running" in str(usual.value)
    remote_early.discard()


def test_the_first_connection_opens_before_anything_heavy_is_imported(hosts, tmp_path):
    inv = write_inventory(tmp_path, hosts.places())
    code = (f"import sys\nfrom svrchain.remote import early\n"
            f"assert early.start(['bootstrap', '-I', {str(inv)!r}], {{}}) == 3, 'no early connection'")
    loaded = modules_after(code)
    assert "svrchain.remote.early" in loaded
    assert sorted(m for m in loaded if any(m == h or m.startswith(h + ".") for h in HEAVY)) == []
    assert hosts.accepted() == [1, 1, 1]
    assert not any(m.split(".")[0] in ("fabric", "paramiko", "invoke", "yaml") for m in
                   modules_after("import svrchain.program"))


@pytest.mark.parametrize("argv", [["--list"], ["--help", "bootstrap"], ["bootstrap", "--help"],
                                  ["docs", "output", "--path"], ["bootstrap", "--bogus"]])
def test_listing_help_local_tasks_and_typos_connect_nowhere(hosts, tmp_path, argv, program):
    """The console script's run (its early start, then the program) in this process: what it connects to
    does not depend on a fresh interpreter (the real command's connections are test_the_command_...)."""
    inv = write_inventory(tmp_path, hosts.places())
    r = program("svrchain", *argv, env={**os.environ, "INVENTORY": str(inv)}, early=True)
    assert "Traceback" not in r.stderr
    assert hosts.accepted() == [0, 0, 0]


def test_the_command_hands_its_sockets_to_ssh_and_fails_as_it_always_did(tmp_path):
    """Listeners that speak SSH-1 only: through the svrchain command (early connect) and through fab (none),
    run at the same time, each against listeners of its own, the same clear lines and exit code; one
    connection per host either way."""
    runs = {}
    try:
        for tool in ("svrchain", "fab"):
            (tmp_path / tool).mkdir()
            hosts = Hosts()
            inv = write_inventory(tmp_path / tool, hosts.places())
            runs[tool] = (hosts, inv, subprocess.Popen(
                [str(Path(sys.executable).parent / tool), "verify", "-I", str(inv)], cwd=REPO,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        said, counts = {}, {}
        with concurrent.futures.ThreadPoolExecutor() as pool:
            for tool, (hosts, _, proc) in runs.items():
                counts[tool] = pool.submit(hosts.accepted_until, proc)
        for tool, (_, inv, proc) in runs.items():
            out, err = proc.communicate(timeout=120)
            lines = out.splitlines() + err.splitlines()
            said[tool] = (proc.returncode, [re.sub(r" \(\d+\.\d+s\)$", "", re.sub(r":\d+\)", ":PORT)", ln)).replace(
                str(inv), "INVENTORY") for ln in lines if "protocol 1" in ln or "svrchain:" in ln])
            assert counts[tool].result() == [1, 1, 1], tool
    finally:
        for hosts, _, proc in runs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            hosts.close()
    assert said["svrchain"][0] == 3
    # (the same lines; the web servers' in the order they failed)
    assert said["svrchain"][1] and sorted(said["svrchain"][1]) == sorted(ln.replace("fab ", "svrchain ")
                                                                      for ln in said["fab"][1])


# Run the svrchain command's entry point with the socket's connect watched: what was imported when the
# first connection was started.
_AT_FIRST_CONNECT = """
import json, socket, sys
seen = []
def watch(name):
    real = getattr(socket.socket, name)
    def watched(self, address):
        if not seen:
            seen.append(sorted(sys.modules))
        return real(self, address)
    setattr(socket.socket, name, watched)
watch("connect")
watch("connect_ex")
sys.argv = ["svrchain", "bootstrap", "-I", sys.argv[1]]
from svrchain.program import run
try:
    run()
except SystemExit:
    pass
print(json.dumps(seen[0] if seen else None), file=sys.__stderr__)
"""


def test_the_command_connects_before_it_imports_fabric_paramiko_or_the_inventory_models(hosts, tmp_path):
    inv = write_inventory(tmp_path, hosts.places())
    proc = subprocess.Popen([sys.executable, "-c", _AT_FIRST_CONNECT, str(inv)], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert hosts.accepted_until(proc) == [1, 1, 1]  # one connection each
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
        proc.wait()
    loaded = fastyaml.load(err.strip().splitlines()[-1])
    assert loaded is not None, err  # the command started a connection
    assert "svrchain.remote.early" in loaded
    assert sorted(m for m in loaded if any(m == h or m.startswith(h + ".") for h in HEAVY)) == []
    # (the listeners speak SSH-1 only: the run fails as it always did, in one line, on the DB host it needs first)
    assert "svrchain: bootstrap: failed on db (see above)" in err
    assert "speaks SSH protocol 1 only (1.5)" in out, out


def test_an_estate_connects_the_usual_way_not_early():
    """An estate (chains:) is read whole first: each host once for the run (remote.group.Hosts), never early;
    one chain of it (--chain) likewise."""
    estate = Path(__file__).resolve().parents[2] / "inventory" / "estate.yaml"
    assert early.plan(remote_early.load_yaml(estate.read_bytes())) is None
    assert early.wanted(["bootstrap", "-I", str(estate), "--chain", "shop"]) is None
