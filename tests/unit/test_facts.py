"""The facts' parsers and their pure helpers, on what a host's probe could print (the expected values
written here by hand). What the probe's commands do on a real host is the lab's to prove."""

from __future__ import annotations

import grp
import os
import pwd
import subprocess
import time
from pathlib import Path

import pytest

from svrchain.core import render, sshd
from svrchain.core.errors import HostError
from svrchain.core.inventory import Inventory, parse
from svrchain.core.plan import FileState, Result
from svrchain.facts import Fact, Raw, file_state
from svrchain.facts.chain import ChainFact, chain_commands, outside_service, parse_chain, service_problem
from svrchain.facts.db import (
    HeldKeysFact,
    InitFact,
    InitSystem,
    Installed,
    InstalledFact,
    KeyFact,
    KeyFacts,
    ServiceFact,
    init_of,
)
from svrchain.facts.sshd import SshdFact, parse_supported
from svrchain.facts.web import WebFact, parse_web, selinux_paths
from svrchain.remote.facts import read
from svrchain.remote.files import parse_probe, probe_script
from tests import fastyaml
from tests.paths import LAB_INVENTORY


@pytest.fixture(scope="module")
def inv() -> Inventory:
    return parse(LAB_INVENTORY.read_text(), LAB_INVENTORY)


# -- chain: where the database runs (service_probe's output on a systemd host) ----------------------

@pytest.mark.parametrize(("text", "problem"), [
    # db.run.command: `echo active $(systemctl is-active dbora.service)`
    ("active active\n", None),
    ("active\n", "dbora.service is unknown"),  # systemctl printed nothing
    ("active deactivating now\n", "dbora.service is deactivating now"),
    # db.run.process: "pid N", then /proc/N/cgroup
    ("pid\n", None),  # no pid: nothing to tell
    ("some other words\n", None),
    ("pid 42\n", "its process 42 is in no cgroup, not dbora.service"),
    # a cgroup path with a colon in it is still one path
    ("pid 42\n0::/machine.slice/ctr:1/system.slice/lab-db.service\n",
     "its process 42 is in /machine.slice/ctr:1/system.slice/lab-db.service, not dbora.service"),
    ("pid 42\n0::/machine.slice/ctr:1/system.slice/dbora.service\n", None),
    # the units (service or scope) it is in are named, not a longer cgroup of another hierarchy
    ("pid 7\n3:cpu:/a/very/long/path/of/a/controller\n1:name=systemd:/system.slice/lab-db.service\n",
     "its process 7 is in /system.slice/lab-db.service, not dbora.service"),
    ("pid 7\n2:pids:/system.slice/a.service\n1:name=systemd:/user.slice/session-1.scope\n",
     "its process 7 is in /system.slice/a.service, /user.slice/session-1.scope, not dbora.service"),
    # no unit at all: the longest cgroup path
    ("pid 7\n2:pids:/zz\n1:name=systemd:/payload/init\n", "its process 7 is in /payload/init, not dbora.service"),
])
def test_service_problem(inv: Inventory, text: str, problem: str | None) -> None:
    assert service_problem(inv, text) == problem


def test_outside_service_names_the_unit_the_script_and_the_fix(inv: Inventory) -> None:
    assert outside_service(inv) == ("it runs outside dbora.service / /etc/init.d/dbora; stop it and start it "
                                    "through its service once")


def results(**outs: str | tuple[int, str]) -> dict[str, Result]:
    """Command results by name: an output (exit 0), or (exit code, output)."""
    return {name: Result(*(v if isinstance(v, tuple) else (0, v)), "") for name, v in outs.items()}


CHAIN = dict(enabled="enabled\nstatic\n", order="After=dbora.service a=b\nPartOf=dbora.service\nnoise\n",
             chklist="dbora 3:on\n", wup="active\n", wenabled="  enabled \n", run="  101:61.15 \n",
             service="pid 61\n0::/system.slice/dbora.service\n", ready="", status="ok 3 web1\n", going="",
             now="1796185834.018087371\n", tick="1796185833 101:61.15\n", procs="61 101 postgres\n",
             owner="101\n", selinux="disabled\n",
             owed="web1 101:61.15 1796185800\nweb2 a b c\nbroken\nweb3 101:61.15 1796185801\n")


def test_parse_chain_types_every_answer() -> None:
    s = parse_chain(Raw("db", {}, results(**CHAIN)))
    assert s.enabled == ("enabled", "static")
    assert s.order == {"After": "dbora.service a=b", "PartOf": "dbora.service"}
    assert (s.chkconfig_list, s.watcher_up, s.watcher_enabled, s.run) == ("dbora 3:on\n", True, "enabled", "101:61.15")
    assert s.service == "pid 61\n0::/system.slice/dbora.service\n" and s.ready
    assert s.owed == (("web1", "101:61.15", "1796185800"), ("web3", "101:61.15", "1796185801"))
    assert (s.status, s.going, s.now, s.tick) == ("ok 3 web1\n", "", 1796185834.018087371, "1796185833 101:61.15\n")
    assert (s.processes, s.owner, s.selinux) == ("61 101 postgres\n", 101, "disabled\n")


@pytest.mark.parametrize(("changes", "run", "now", "owner", "up"), [
    ({"run": "\n", "now": "garbled", "owner": (1, "id: 'postgres': no such user\n"), "wup": (3, "inactive\n")},
     "none", None, None, False),
    ({"owner": (0, "not-a-number\n")}, "101:61.15", 1796185834.018087371, None, True),
    ({"owner": (1, "7\n")}, "101:61.15", 1796185834.018087371, None, True),  # a failed id printing a number
])
def test_parse_chain_missing_answers(changes: dict, run: str, now: float | None, owner: int | None,
                                     up: bool) -> None:
    s = parse_chain(Raw("db", {}, results(**{**CHAIN, **changes})))
    assert (s.run, s.now, s.owner, s.watcher_up) == (run, now, owner, up)


# -- sshd ----------------------------------------------------------------------------------------------

def test_sshd_fact_parses_the_algorithms_and_the_host_key_types() -> None:
    main, dropin = FileState(sshd.MAIN, True, b"Port 22\n", 0o644, "root", "root"), FileState(sshd.DROPIN, False)
    raw = Raw("web1", {sshd.MAIN: main, sshd.DROPIN: dropin},
              results(effective=(255, "line 3: bad option\n"), supported="kex a b \ncipher c \nmac \n",
                      hostkeys="ssh-ed25519\nssh-rsa\n"))
    f = SshdFact().parse(parse(LAB_INVENTORY.read_text(), LAB_INVENTORY), raw)
    assert (f.main, f.dropin, f.effective_ok, f.effective_text) == (main, dropin, False, "line 3: bad option\n")
    assert f.supported == {"kex": {"a", "b"}, "cipher": {"c"}, "mac": set()}
    assert f.host_key_types == ("ssh-ed25519", "ssh-rsa")
    assert SshdFact().files(parse(LAB_INVENTORY.read_text(), LAB_INVENTORY)) == [sshd.MAIN, sshd.DROPIN]


# -- facts read for real: the probe run as sh on this machine, over files made here ----------------------

class Here:
    """This machine as the host a probe runs on (``remote.facts.read`` asks nothing else of a host)."""

    name = label = "here"

    def run(self, script: str, *args: str, stdin: bytes = b"", timeout: float = 30) -> Result:
        done = subprocess.run(["sh", "-c", script, "svrchain", *args], input=stdin, capture_output=True,
                              timeout=timeout, check=False)
        return Result(done.returncode, "", done.stderr.decode(errors="replace"), done.stdout)


def read_here(inv: Inventory, fact: Fact) -> object:
    """``fact`` read here by the real probe (what its parser raised, raised)."""
    got = next(iter(read(inv, Here(), [fact]).values()))  # type: ignore[arg-type]
    if isinstance(got, Exception):
        raise got
    return got


def test_installed_finds_what_is_ours_and_the_sites_own_first_backup(tmp_path: Path, inv: Inventory) -> None:
    ours, theirs, gone, script = (str(tmp_path / n) for n in ("ours", "theirs", "gone", "init.d/dbora"))
    Path(ours).write_text(f"# {render.MARK}\n")
    Path(theirs).write_text("# the site's\n")
    backups = tmp_path / "backups"
    backups.mkdir()
    name = script.replace("/", "%")
    (backups / f"{name}.20260101T000000.1").write_text("#!/bin/sh\n# the site's dbora\n")
    (backups / f"{name}.20270101T000000.1").write_text("#!/bin/sh\n# a later one\n")
    (backups / f"{name}x.20250101T000000.1").write_text("another file's\n")
    found = read_here(inv, InstalledFact([ours, theirs, gone], str(backups), script))
    assert found == Installed(frozenset({ours, theirs}), frozenset({ours}),
                              str(backups / f"{name}.20260101T000000.1"), found.state_dirs)
    assert set(found.state_dirs) <= {render.STATE_PARENT, f"/run/{inv.trigger.name}"}  # only svrchain's, if any
    assert read_here(inv, InstalledFact([ours], str(backups), None)).original == ""
    (backups / f"{name}.20260101T000000.1").write_text(f"# {render.MARK}: svrchain's own, not the site's\n")
    assert read_here(inv, InstalledFact([ours], str(backups), script)).original == ""


def with_key(tmp_path: Path, inv: Inventory) -> Inventory:
    """The lab's inventory with the restart key in ``tmp_path``."""
    data = fastyaml.load(LAB_INVENTORY.read_text())
    data["key"]["path"] = str(tmp_path / "svr_restart_key")
    return parse(fastyaml.dump(data), LAB_INVENTORY)


def test_the_key_fact_read_here(tmp_path: Path, inv: Inventory) -> None:
    inv = with_key(tmp_path, inv)
    none = read_here(inv, KeyFact())
    assert (none.priv, none.derived, none.pub.exists, none.public_key()) == (None, None, False, None)
    assert none.ssh_version.startswith("OpenSSH_")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "c", "-f", inv.key.path], check=True)
    me = pwd.getpwuid(os.getuid()).pw_name
    got = read_here(inv, KeyFact())
    pub = Path(inv.key.path + ".pub").read_text()
    assert (got.priv, got.pubmode, got.pub.content.decode()) == (f"600 {me}", f"644 {me}", pub)
    assert got.derived.split()[:2] == pub.split()[:2] and got.public_key().blob == pub.split()[1]
    subprocess.run(["ssh-keygen", "-q", "-p", "-a", "1", "-P", "", "-N", "secret", "-f", inv.key.path], check=True,
                   capture_output=True)
    assert read_here(inv, KeyFact()).derived is None  # needs a passphrase


def test_held_keys_that_cannot_be_read_are_one_line_naming_the_host() -> None:
    with pytest.raises(HostError) as err:
        HeldKeysFact().parse(None, Raw("db", {}, results(held=(1, "  awk: not found " + "x" * 300))))  # type: ignore[arg-type]
    assert str(err.value) == "db: reading the keys held there failed: awk: not found " + "x" * 185


# -- the DB server's init system ---------------------------------------------------------------------------

def test_init_fact_parses_the_init_system_the_tool_and_the_links() -> None:
    raw = Raw("db", {}, results(init="\n", tool="/sbin/chkconfig\n",
                                links="3 S98dbora\n3 S99dbora\n0 K11dbora\n"))
    found = InitFact().parse(None, raw)  # type: ignore[arg-type]
    assert (found.found, found.tool) == ("sysv", "chkconfig")
    assert found.last_links("dbora") == {"3": "S99dbora", "0": "K11dbora"}
    assert found.last_links("other") == {}
    assert InitFact().parse(None, Raw("db", {}, results(init="systemd\n", tool="", links=""))).found == "systemd"


@pytest.mark.parametrize(("patch", "found", "tool", "want"), [
    ({}, "systemd", "", ("systemd", "")),
    ({}, "sysv", "chkconfig", ("sysv", "chkconfig")),
    ({"init": "systemd"}, "sysv", "", ("systemd", "")),
    ({"init": "sysv"}, "systemd", "update-rc.d", ("sysv", "update-rc.d")),
    ({}, "sysv", "", "db: neither chkconfig nor update-rc.d is installed; install one (Debian: init-system-helpers "
                     "+ insserv) to register services"),
    ({"unit": "postgresql.service", "script": None}, "sysv", "chkconfig",
     "db: db.unit postgresql.service needs systemd, but this host boots with SysV init; use db.script or "
     "db.oracle instead"),
])
def test_init_of(patch: dict, found: str, tool: str, want: tuple | str) -> None:
    data = fastyaml.load(LAB_INVENTORY.read_text())
    data["db"].update(patch)
    data["db"] = {k: v for k, v in data["db"].items() if v is not None}
    inv = parse(fastyaml.dump(data), LAB_INVENTORY)
    if isinstance(want, str):
        with pytest.raises(HostError) as err:
            init_of(inv, "db", InitSystem(found, tool, {}))
        assert str(err.value) == want
    else:
        assert init_of(inv, "db", InitSystem(found, tool, {})) == want


def test_a_service_fact_reads_its_files_and_chkconfigs_override(inv: Inventory) -> None:
    fact = ServiceFact("dbora", "dbora.service", ["/etc/init.d/dbora", "/a"], running=True)
    assert fact.name == "service-dbora-running" and ServiceFact("x", "x.service", []).name == "service-x"
    assert fact.files(inv) == ["/a", "/etc/chkconfig.d/dbora", "/etc/init.d/dbora"]
    assert fact.commands(inv) == {"enabled": (
        "if [ -d /run/systemd/system ]; then systemctl is-enabled dbora.service; fi"), "up": (
        "if [ -d /run/systemd/system ]; then systemctl is-active dbora.service; else /etc/init.d/dbora status; fi")}
    assert list(ServiceFact("x", "x.service", []).commands(inv)) == ["enabled"]
    state = fact.parse(inv, Raw("db", {}, results(enabled=" enabled\n", up=(3, "stopped\n"))))
    assert (state.enabled, state.up) == ("enabled", False)
    assert ServiceFact("x", "x.service", []).parse(inv, Raw("db", {}, results(enabled="disabled"))).up is False
    assert fact.parse(inv, Raw("db", {}, results(enabled="", up="running\n"))).up is True


# -- a web server -------------------------------------------------------------------------------------

def web_raw(**changes: str | tuple[int, str]) -> Raw:
    """A web server's probe answers for web.user "svr" (home /home/svr), changed as given."""
    file = "644 root root\n#!/bin/sh\n"
    outs = dict(account="/home/svr svr\n", home="svr\n", sshdir="700 svr\n",
                authkeys="600 svr svr\nssh-ed25519 AAAA\n", scan="P\t.ssh/authorized_keys\nC\t/usr/bin/keys %u\n",
                hostkeys="ssh-ed25519 AAAA h1\nssh-rsa BBBB h2\n",
                gate=file, visudo="/usr/bin/sudo\n/usr/sbin/visudo\n", sudoers=(44, ""), gecos="Svr Account\n",
                sudo_list="Matching Defaults\n    (root) NOPASSWD: /x y\n  (root) not a rule\n",
                statedir="directory 755 root root\n", selinux="disabled\n")
    r = results(**{**outs, **changes})
    return Raw("web1", {}, {k: Result(v.code, v.stdout, "", v.stdout.encode()) for k, v in r.items()})


def web_inv(user: str) -> Inventory:
    data = fastyaml.load(LAB_INVENTORY.read_text())
    data["web"]["user"] = user
    return parse(fastyaml.dump(data), LAB_INVENTORY)


def test_parse_web_types_every_answer() -> None:
    f = parse_web(web_inv("svr"), web_raw())
    assert (f.user, f.home, f.group, f.sshdir, f.unsafe) == ("svr", "/home/svr", "svr", "700 svr", None)
    assert f.keys == FileState("/home/svr/.ssh/authorized_keys", True, b"ssh-ed25519 AAAA\n", 0o600, "svr", "svr")
    assert f.gate == FileState(render.GATE, True, b"#!/bin/sh\n", 0o644, "root", "root")
    assert f.sudoers == FileState(render.SUDOERS, False)
    assert (f.keys_command, f.account, f.created, f.sudo) == ("/usr/bin/keys %u", True, False, True)
    assert f.sudo_rules == ("(root) NOPASSWD: /x y",)
    assert (f.statedir, f.statedir_exists) == ("directory 755 root root", True)
    assert f.hostkeys == ("ssh-ed25519 AAAA h1", "ssh-rsa BBBB h2") and f.selinux == "disabled\n"


def test_parse_web_of_an_account_push_key_made_and_of_odd_answers() -> None:
    f = parse_web(web_inv("svr"), web_raw(gecos=f"{render.ACCOUNT_COMMENT}\n", sshdir=(1, "600 svr\n"),
                                          visudo=(1, ""), statedir=(1, "  ")))
    assert (f.created, f.sshdir, f.sudo, f.statedir, f.statedir_exists) == (True, "", False, "", False)
    other = parse_web(web_inv("svr"), web_raw(home="mallory\n", sshdir=(45, "is a symbolic link\n")))
    assert other.unsafe == "/home/svr is owned by mallory, not svr or root"
    assert parse_web(web_inv("svr"), web_raw(sshdir=(45, " is a symbolic link\n"))).unsafe == \
        "/home/svr/.ssh is a symbolic link"


def test_a_missing_dedicated_web_user_is_one_push_key_creates() -> None:
    f = parse_web(web_inv("svr"), web_raw(account=(1, ""), gecos=f"{render.ACCOUNT_COMMENT}\n"))
    assert (f.user, f.home, f.group, f.sshdir, f.unsafe, f.account, f.created) == (
        "svr", "/var/lib/svr", "svr", "", None, False, False)
    assert f.keys == FileState("/var/lib/svr/.ssh/authorized_keys", False)
    assert f.sudo_rules == ("(root) NOPASSWD: /x y",) and f.gate.exists


@pytest.mark.parametrize(("user", "changes", "error"), [
    ("root", {"account": (1, "")}, "web1: no account 'root' (web.user in {inv}); create it or change web.user"),
    ("svr", {"account": "/home/svr\n"}, "web1: no account 'svr' (web.user in {inv}); create it or change web.user"),
    ("svr", {"scan": (2, "x" * 300 + "setpriv: not found\n")},
     "web1: reading the accounts' authorized_keys failed: " + "x" * 182 + "setpriv: not found; install what it "
     "names (awk, setpriv, timeout) and run again"),
])
def test_parse_web_refusals(user: str, changes: dict, error: str) -> None:
    with pytest.raises(HostError) as err:
        parse_web(web_inv(user), web_raw(**changes))
    assert str(err.value) == error.format(inv=LAB_INVENTORY)


def test_the_selinux_paths_of_a_web_server() -> None:
    assert selinux_paths(web_inv("svr"), "/h") == [render.GATE, render.SUDOERS, "/h/.ssh", "/h/.ssh/authorized_keys"]
    assert selinux_paths(web_inv("root"), "/root") == [render.GATE, "/root/.ssh", "/root/.ssh/authorized_keys"]


FAKE_SSH = """#!/bin/sh
# ssh -Q QUERY, as OpenSSH answers it; anything else (a connection) refused
[ "$1" = -Q ] || { echo "fake ssh: not -Q: $*" >&2; exit 255; }
case $2 in kex) printf 'curve25519-sha256\\nsntrup761x25519-sha512\\n';; cipher) echo aes128-ctr;; mac) ;;
*) exit 1;; esac
"""


def test_sshds_algorithm_and_host_key_commands_run_here(tmp_path: Path) -> None:
    """The "supported" command with an ssh that only answers -Q (nothing connects anywhere), and the
    "hostkeys" command with an sshd whose -T names one host key: its type, from its .pub file."""
    (tmp_path / "ssh").write_text(FAKE_SSH)
    (tmp_path / "sshd").write_text(f"#!/bin/sh\n[ \"$1\" = -T ] && echo 'port 22' && echo 'hostkey {tmp_path}/hk'\n")
    for program in ("ssh", "sshd"):
        (tmp_path / program).chmod(0o755)
    (tmp_path / "hk.pub").write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG91cnN4 root@web1\n")
    commands = SshdFact().commands(parse(LAB_INVENTORY.read_text(), LAB_INVENTORY))
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin", "LC_ALL": "C"}  # its ssh first

    def run(name: str) -> str:
        return subprocess.run(["/bin/sh", "-c", commands[name]], env=env, capture_output=True, text=True,
                              timeout=30, check=False).stdout

    assert parse_supported(run("supported")) == {"kex": {"curve25519-sha256", "sntrup761x25519-sha512"},
                                                 "cipher": {"aes128-ctr"}, "mac": set()}
    assert run("hostkeys").split() == ["ssh-ed25519"]


@pytest.mark.parametrize(("check", "ready"), [("exit 0", True), ("test -e /nonexistent/x", False)])
def test_the_readiness_check_comes_on_stdin_and_is_run_by_sh(inv: Inventory, check: str, ready: bool) -> None:
    """The chain's "ready" command runs the check the prelude read from stdin (a password in it never
    goes on a command line)."""
    fact = ChainFact(((inv.db.service, "dbora.service"), ("svr_restart", "svr-restart.service"),
                      ("svr_restart_watch", "svr-restart-watch.service")), [])
    command = fact.commands(inv)["ready"]
    script = probe_script([], [command], prelude=fact.prelude(inv))
    done = subprocess.run(["sh", "-c", script, "svrchain"], input=check.encode(), capture_output=True, timeout=30,
                          check=True)
    _, got = parse_probe("here", Result(0, "", "", done.stdout), [], ["ready"])
    assert got["ready"].ok is ready


def test_the_web_prelude_and_account_commands_run_here() -> None:
    me = pwd.getpwuid(os.getuid())
    inv = web_inv(me.pw_name)
    fact = WebFact()
    names = ["account", "home", "gecos"]
    script = probe_script([], [fact.commands(inv)[n] for n in names], prelude=fact.prelude(inv))
    done = subprocess.run(["sh", "-c", script, "svrchain"], capture_output=True, timeout=30, check=True)
    _, got = parse_probe("here", Result(0, "", "", done.stdout), [], names)
    assert got["account"].stdout.split() == [me.pw_dir, grp.getgrgid(me.pw_gid).gr_name]
    assert got["home"].stdout.strip() == pwd.getpwuid(os.stat(me.pw_dir).st_uid).pw_name  # the home's owner
    assert got["gecos"].stdout.rstrip("\n") == me.pw_gecos


@pytest.mark.parametrize("user", ["me", None])
def test_the_chains_clock_and_owner_commands_run_here(user: str | None) -> None:
    """"now" is the host's clock in seconds; "owner" is db.run.user's uid (root's when unset)."""
    me = pwd.getpwuid(os.getuid())
    data = fastyaml.load(LAB_INVENTORY.read_text())
    data["db"]["run"] = {"process": "^nothing-runs-this$", "user": me.pw_name} if user else {"command": "true"}
    inv = parse(fastyaml.dump(data), LAB_INVENTORY)
    commands = chain_commands(inv, (("dbora", "dbora.service"), ("t", "t.service"), ("w", "w.service")), [])

    def run(name: str) -> str:
        return subprocess.run(["sh", "-c", commands[name]], capture_output=True, text=True, timeout=30,
                              check=True).stdout

    assert abs(float(run("now")) - time.time()) < 60 and "." in run("now")
    assert int(run("owner")) == (me.pw_uid if user else 0)


def test_a_file_a_command_could_not_read_is_one_line_naming_the_host() -> None:
    raw = Raw("web1 (198.18.0.21:22)", {}, {"gate": Result(1, "", "", b"cat: Permission denied\n")})
    with pytest.raises(HostError) as err:
        raw.file("gate", render.GATE)
    assert str(err.value) == f"web1 (198.18.0.21:22): cannot read {render.GATE}: cat: Permission denied"


def test_odd_bytes_in_a_files_answer_are_replaced_not_fatal(inv: Inventory) -> None:
    assert file_state("web1", "/x", 45, b"is a link \xff\n").unsafe == "is a link \ufffd"
    with pytest.raises(HostError) as err:
        file_state("web1", "/x", 1, b"cat: \xff\n")
    assert str(err.value) == "web1: cannot read /x: cat: \ufffd"
    pub = FileState(inv.key.path + ".pub", True, b"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG91cnN4 caf\xe9\n")
    assert KeyFacts("", None, None, pub, "").public_key().comment == "caf\ufffd"
    assert Fact().prelude(inv) == "" and Fact().stdin(inv) == b""  # a fact adds nothing to the probe's shell
