"""The facts' parsers and their pure helpers, on what a host's probe could print (the expected values
written here by hand). What the probe's commands do on a real host is the lab's to prove."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from svrchain.core import render, sshd
from svrchain.core.inventory import Inventory, parse
from svrchain.core.plan import FileState, Result
from svrchain.facts import Fact, Raw
from svrchain.facts.chain import outside_service, parse_chain, service_problem
from svrchain.facts.db import Installed, InstalledFact
from svrchain.facts.sshd import SshdFact
from svrchain.remote.facts import read
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
    assert read_here(inv, InstalledFact([ours], str(backups), None)).original == ""
    (backups / f"{name}.20260101T000000.1").write_text(f"# {render.MARK}: svrchain's own, not the site's\n")
    assert read_here(inv, InstalledFact([ours], str(backups), script)).original == ""
