"""Operations at their edges, beyond tests/unit/fixtures/<operation>/: the bytes of a foreign
sshd_config kept, the owner and mode of a rewritten one, the algorithms harden-sshd picks from what
the server supports, the key's script run as a real program, the proof's command line. Expected
values written here by hand."""

from __future__ import annotations

import shlex
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

from svrchain.core import authkeys, render, sshd
from svrchain.core.errors import SvrchainError
from svrchain.core.inventory import Inventory, parse
from svrchain.core.plan import FileSpec, FileState, Result
from svrchain.facts.db import KeyFacts
from svrchain.facts.sshd import SshdFacts
from svrchain.facts.web import WebFacts
from svrchain.ops import db as ops_db
from svrchain.ops import files_change, removal
from svrchain.ops import key as ops_key
from svrchain.ops import sshd as ops_sshd
from svrchain.ops import web as ops_web
from tests.paths import LAB_INVENTORY

VERSION = "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3"
BLOCK_MAIN = b"Port 22\n# caf\xe9: a Latin-1 comment\n"  # no Include: svrchain's block goes in sshd_config


@pytest.fixture(scope="module")
def inv() -> Inventory:
    return parse(LAB_INVENTORY.read_text(), LAB_INVENTORY)


def facts(main: FileState, dropin: FileState | None = None, supported: dict[str, set[str]] | None = None,
          host_key_types: tuple[str, ...] = ("ssh-ed25519",)) -> SshdFacts:
    return SshdFacts(main, dropin or FileState(sshd.DROPIN, False), True, "pidfile /run/sshd.pid\n",
                     supported or {}, host_key_types)


# -- harden-sshd / uninstall --sshd --------------------------------------------------------------------

@pytest.mark.parametrize(("text", "line"), [
    ("", "no output"), ("\n   \n", "no output"),
    ("\n  /etc/ssh/sshd_config line 3: Bad configuration option: Foo.\nnext\n",
     "/etc/ssh/sshd_config line 3: Bad configuration option: Foo"),
    ("ends in X.", "ends in X"),
    ("e" * 201, "e" * 200),
])
def test_first_line_is_the_first_line_that_says_something(text: str, line: str) -> None:
    assert ops_sshd.first_line(text) == line


def test_overridden_names_every_setting_that_lost() -> None:
    assert ops_sshd.overridden(["A is x, not y", "B is z, not w"]).startswith("(A is x, not y; B is z, not w): ")


def test_a_foreign_sshd_config_keeps_its_bytes_owner_and_mode(inv: Inventory) -> None:
    main = FileState(sshd.MAIN, True, BLOCK_MAIN, 0o600, "root", "sshd")
    change = ops_sshd.harden(inv, facts(main), VERSION, True)
    spec = change.paths()[sshd.MAIN].spec
    assert spec.content.startswith(sshd.BEGIN.encode()) and spec.content.endswith(b"# END svrchain\n" + BLOCK_MAIN)
    assert (spec.mode, spec.owner, spec.group) == (0o600, "root", "sshd")
    assert change.said == "" and change.detail().startswith(f"{sshd.MAIN} (")
    undone = ops_sshd.unharden(facts(FileState(sshd.MAIN, True, spec.content, 0o600, "root", "sshd")))
    back = undone.paths()[sshd.MAIN].spec
    assert (back.content, back.mode, back.owner, back.group) == (BLOCK_MAIN, 0o600, "root", "sshd")
    assert undone.detail() == f"remove svrchain's block from {sshd.MAIN}"
    check = next(c for c in undone.commands if c.problem)  # sshd must accept it; no setting of ours required
    assert check.problem(Result(0, "passwordauthentication yes\n", "")) is None


def test_a_sshd_config_of_unknown_owner_and_mode_is_written_roots_644(inv: Inventory) -> None:
    change = ops_sshd.harden(inv, facts(FileState(sshd.MAIN, True, b"Port 22\n")), VERSION, True)
    spec = change.paths()[sshd.MAIN].spec
    assert (spec.mode, spec.owner, spec.group) == (0o644, "root", "root")
    undone = ops_sshd.unharden(facts(FileState(sshd.MAIN, True, spec.content)))
    back = undone.paths()[sshd.MAIN].spec
    assert (back.content, back.mode, back.owner, back.group) == (b"Port 22\n", 0o644, "root", "root")


def test_the_drop_in_makes_its_directory_755(inv: Inventory) -> None:
    main = FileState(sshd.MAIN, True, b"Include /etc/ssh/sshd_config.d/*.conf\n", 0o644, "root", "root")
    spec = ops_sshd.harden(inv, facts(main), VERSION, True).paths()[sshd.DROPIN].spec
    assert spec.parent_mode == 0o755


def test_uninstall_of_the_drop_in_says_so_and_its_check_only_wants_sshd_to_accept_it() -> None:
    dropin = FileState(sshd.DROPIN, True, b"PasswordAuthentication no\n", 0o644, "root", "root")
    change = ops_sshd.unharden(facts(FileState(sshd.MAIN, True, b"", 0o644, "root", "root"), dropin))
    assert change.detail() == f"remove {sshd.DROPIN}"
    check = next(c for c in change.commands if c.problem)
    assert check.problem(Result(0, "passwordauthentication yes\n", "")) is None


def test_a_missing_sshd_config_is_refused(inv: Inventory) -> None:
    with pytest.raises(SvrchainError) as err:
        ops_sshd.harden(inv, facts(FileState(sshd.MAIN, False)), VERSION, True)
    assert str(err.value) == f"{sshd.MAIN} does not exist; is this sshd configured elsewhere?"


def test_harden_requires_the_strongest_algorithms_the_server_supports(inv: Inventory) -> None:
    assert inv.harden.algorithms
    supported = {"kex": {"curve25519-sha256", "diffie-hellman-group1-sha1"}, "cipher": {"aes128-ctr", "3des-cbc"},
                 "mac": {"hmac-sha1"}}
    main = FileState(sshd.MAIN, True, b"Include /etc/ssh/sshd_config.d/*.conf\n", 0o644, "root", "root")
    f = facts(main, supported=supported, host_key_types=("ssh-rsa", "ssh-ed25519"))
    text = ops_sshd.harden(inv, f, VERSION, True).paths()[sshd.DROPIN].spec.content.decode()
    assert "\nKexAlgorithms curve25519-sha256\n" in text and "\nCiphers aes128-ctr\n" in text
    assert "MACs" not in text  # none of the wanted MACs: sshd's own list stays
    assert "\nHostKeyAlgorithms rsa-sha2-512,rsa-sha2-256,ssh-ed25519\n" in text


# -- the key -----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("banner", "kind"), [
    ("OpenSSH_6.4p1, OpenSSL 1.0.1e", "rsa"), ("OpenSSH_6.5p1, OpenSSL 1.0.1f", "ed25519"),
    ("OpenSSH_9.2p1 Debian-2+deb12u3, OpenSSL 3.0.15", "ed25519"), ("no version", "ed25519"),
])
def test_key_type_falls_back_to_rsa_only_before_openssh_6_5(inv: Inventory, banner: str, kind: str) -> None:
    assert ops_key.key_type(inv, banner) == kind


@pytest.mark.parametrize(("kind", "bits", "listed"), [("ed25519", 4096, "256"), ("rsa", 1024, "1024")])
def test_the_key_script_run_here_makes_both_halves_in_place(tmp_path: Path, kind: str, bits: int,
                                                            listed: str) -> None:
    key = tmp_path / "keys" / "svr_restart_key"
    subprocess.run(["sh", "-c", ops_key.keygen_script(kind, bits), "svrchain", str(key), "a comment"],
                   check=True, timeout=60, capture_output=True)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and stat.S_IMODE(key.with_suffix(".pub").stat().st_mode) == 0o644
    assert stat.S_IMODE(key.parent.stat().st_mode) == 0o700
    assert sorted(p.name for p in key.parent.iterdir()) == ["svr_restart_key", "svr_restart_key.pub"]
    fingerprint = subprocess.run(["ssh-keygen", "-l", "-f", str(key)], check=True, capture_output=True, text=True)
    assert fingerprint.stdout.split()[0] == listed and fingerprint.stdout.rstrip().endswith(
        f"a comment ({kind.upper()})")


def test_the_proof_asks_the_gate_for_status_with_the_key_and_nothing_else(inv: Inventory) -> None:
    argv = shlex.split(ops_key.proof_command(inv, "198.18.0.21", 2222, "/tmp/new_key"))
    assert argv[:6] == ["ssh", "-n", "-i", "/tmp/new_key", "-p", "2222"]
    assert argv[-2:] == ["root@198.18.0.21", "status"]
    assert "IdentitiesOnly=yes" in argv


# -- the others ----------------------------------------------------------------------------------------

def test_a_removal_shows_every_path() -> None:
    gone = removal(FileState("/a", True), FileState("/b", True))
    assert gone.shown == "remove /a, /b" and [s.path for s in gone.removes] == ["/a", "/b"]


def test_the_sudo_rule_is_440_in_a_750_directory_checked_by_visudo(inv: Inventory) -> None:
    spec = ops_web.sudoers_spec(inv)
    assert (spec.mode, spec.parent_mode, spec.validate) == (0o440, 0o750, 'visudo -c -f "$1"')


def test_a_services_other_files_are_the_scripts_it_runs(inv: Inventory) -> None:
    trigger = ops_db.trigger(inv)
    assert trigger.other_files() == ["/etc/svrchain/svr_restart.conf", "/usr/local/lib/svrchain/svr_restart"]
    assert ops_db.watcher(inv).other_files() == []


# -- push-key's parts, as verify plans them one by one ------------------------------------------------------

KEY = authkeys.PublicKey("ssh-ed25519", "AAAAC3NzaC1lZDI1NTE5AAAAIG91cnN4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4")
OLDER = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG9sZGVyeHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4"


def web_facts(inv: Inventory, keys: bytes) -> WebFacts:
    gate = FileState(render.GATE, True, render.gate(inv), 0o755, "root", "root")
    return WebFacts("root", "/root", "root", FileState("/root/.ssh/authorized_keys", True, keys, 0o600, "root", "root"),
                    "700 root", None, (), gate, FileState(render.SUDOERS, False))


def test_the_line_replaces_an_older_key_of_ours_and_keeps_foreign_bytes(inv: Inventory) -> None:
    foreign = b"# caf\xe9 \xff: the admin's own notes\nssh-rsa AAAAB3Nza admin@laptop\n"
    facts = web_facts(inv, foreign + f"{OLDER} {render.marker(inv)}\n".encode())
    change = ops_web.key_line(inv, KEY, facts, VERSION)
    content = change.paths()["/root/.ssh/authorized_keys"].spec.content
    assert content.startswith(foreign) and OLDER.encode() not in content
    assert content.endswith(f"{KEY.blob} {render.marker(inv)}\n".encode())
    done = ops_web.key_line(inv, KEY, web_facts(inv, content), VERSION)
    assert done.empty and done.noop == "the line in /root/.ssh/authorized_keys"


def test_the_gate_in_place_is_ok_and_is_made_in_a_755_directory(inv: Inventory) -> None:
    change = ops_web.gate_and_rule(inv, web_facts(inv, b""))
    assert change.empty and change.noop == render.GATE
    assert ops_web.gate_spec(inv).parent_mode == 0o755


@pytest.mark.parametrize(("override", "problem"), [
    (None, ""),
    (b"# chkconfig: 345 98 11\n", ""),
    (b"# chkconfig: 2345 20 80\n# \xff\n", "/etc/chkconfig.d/dbora overrides dbora's '# chkconfig: 345 98 11' with "
     "'# chkconfig: 2345 20 80', and chkconfig --add uses it; remove it (or make it say the same) so that dbora is "
     "registered as svrchain installs it"),
])
def test_chkconfigs_override_file(override: bytes | None, problem: str) -> None:
    state = FileState("/etc/chkconfig.d/dbora", False) if override is None else \
        FileState("/etc/chkconfig.d/dbora", True, override, 0o644, "root", "root")
    assert ops_db.override_problem("dbora", b"#!/bin/sh\n# chkconfig: 345 98 11\n", state) == problem


def test_a_pub_file_that_is_no_key_is_rewritten_from_the_private_key(inv: Inventory) -> None:
    derived = f"{KEY.type} {KEY.blob}\n"
    for pub in (b"not a key\n", b"\xff\xfe not UTF-8\n", f"{OLDER} x\n".encode()):
        facts = KeyFacts("OpenSSH_9.2p1", "600 root", derived, FileState(inv.key.path + ".pub", True, pub, 0o644,
                                                                         "root", "root"), "644 root")
        spec = ops_key.key(inv, facts).paths()[inv.key.path + ".pub"].spec
        assert spec.content == f"{KEY.type} {KEY.blob} {render.marker(inv)}\n".encode()


# -- a service's install -----------------------------------------------------------------------------------

LINKS = {"0": "K11dbora", "1": "K11dbora", "2": "K11dbora", "3": "S98dbora", "4": "S98dbora", "5": "S98dbora",
         "6": "K11dbora"}


def service_facts(svc: ops_db.Service, init: str, up: bool = True, **changed: bytes) -> ops_db.ServiceFacts:
    """``svc``'s files as svrchain writes them (those in ``changed``, by path: with that content), registered
    and enabled."""
    states = {s.path: FileState(s.path, True, changed.get(s.path, s.content), s.mode, "root", "root")
              for s in svc.files(init)}
    return ops_db.ServiceFacts(init, "chkconfig" if init == "sysv" else "", states, LINKS, "enabled", up)


def commands(change) -> list[str]:
    return [c.run for c in change.commands]


def test_install_in_place_runs_nothing_and_says_so(inv: Inventory) -> None:
    dbora = ops_db.dbora(inv)
    assert commands(ops_db.install(dbora, service_facts(dbora, "sysv", up=False))) == []  # not asked to run it
    watcher = ops_db.watcher(inv)
    change = ops_db.install(watcher, service_facts(watcher, "systemd"), running=True)
    assert commands(change) == [] and change.noop == "svr-restart-watch.service in place, enabled (systemd), running"


@pytest.mark.parametrize(("which", "want"), [
    # the start script changed, the init script (whose header registers it) not: registered as it is
    ("start", ["/etc/init.d/dbora restart"]),
    # the init script's mode only: not re-registered either
    ("mode", ["/etc/init.d/dbora restart"]),
    # the init script's content: re-registered from its header
    ("init", ["chkconfig --del dbora", "chkconfig --add dbora", "chkconfig --level 345 dbora on",
              "/etc/init.d/dbora restart"]),
])
def test_a_sysv_service_is_registered_again_only_when_its_init_script_changed(inv: Inventory, which: str,
                                                                               want: list[str]) -> None:
    dbora = ops_db.dbora(inv)
    start = next(p for p in dbora.other_files() if p != "/etc/init.d/dbora")
    facts = service_facts(dbora, "sysv", **({"start": {start: b"#!/bin/sh\nold\n"},
                                              "init": {"/etc/init.d/dbora": b"#!/bin/sh\n# chkconfig: 345 98 11\n"},
                                              "mode": {}}[which]))
    if which == "mode":
        facts.states["/etc/init.d/dbora"] = FileState("/etc/init.d/dbora", True,
                                                      facts.states["/etc/init.d/dbora"].content, 0o700, "root", "root")
    assert commands(ops_db.install(dbora, facts, running=True)) == want


def test_gen_keys_command_run_here_makes_the_key_at_key_path_with_the_marker(tmp_path: Path) -> None:
    data = yaml.safe_load(LAB_INVENTORY.read_text())
    data["key"].update(path=str(tmp_path / "svr_restart_key"), bits=3072)
    inv = parse(yaml.safe_dump(data), LAB_INVENTORY)
    none = KeyFacts("OpenSSH_9.2p1", None, None, FileState(inv.key.path + ".pub", False), "")
    (make,) = ops_key.key(inv, none).commands
    subprocess.run(["sh", "-c", make.run], check=True, timeout=60, capture_output=True)
    assert Path(inv.key.path + ".pub").read_text().split()[2:] == [render.marker(inv)]
    # an OpenSSH before ed25519 gets RSA, of the inventory's size
    (old,) = ops_key.key(inv, KeyFacts("OpenSSH_6.4p1", None, None, none.pub, "")).commands
    assert "ssh-keygen -q -t rsa -b 3072 " in old.run and old.shown.startswith(f"create {inv.key.path} (rsa,")


def test_a_changes_line_names_each_file_and_why() -> None:
    specs = [FileSpec("/a", b"new\n", 0o600), FileSpec("/b", b"x\n", 0o644)]
    states = {"/a": FileState("/a", True, b"old\n", 0o644, "root", "root"), "/b": FileState("/b", False)}
    change = files_change(specs, states)
    assert change.detail() == "/a (content, mode 644->600), /b (create)"
    assert files_change(specs[:1], {"/a": FileState("/a", True, b"new\n", 0o600, "root", "root")}).noop == ""


@pytest.mark.parametrize(("banner", "restrict"), [("SSH-2.0-OpenSSH_7.2p2 Ubuntu-4", True),
                                                  ("SSH-2.0-OpenSSH_7.1p1", False)])
def test_restrict_from_openssh_7_2(inv: Inventory, banner: str, restrict: bool) -> None:
    assert ops_web.restricted_line(inv, KEY, banner).startswith("restrict,") is restrict


def test_a_key_in_place_changes_nothing(inv: Inventory) -> None:
    pub = f"{KEY.type} {KEY.blob} {render.marker(inv)}\n".encode()
    facts = KeyFacts("OpenSSH_9.2p1", "600 root", f"{KEY.type} {KEY.blob}\n",
                     FileState(inv.key.path + ".pub", True, pub, 0o644, "root", "root"), "644 root")
    change = ops_key.key(inv, facts)
    assert change.empty and change.noop.startswith(f"{inv.key.path} ssh-ed25519 SHA256:")
    # its own key with another comment (written by hand): left as it is
    own = FileState(inv.key.path + ".pub", True, f"{KEY.type} {KEY.blob} root@db\n".encode(), 0o644, "root", "root")
    assert ops_key.key(inv, KeyFacts(facts.ssh_version, facts.priv, facts.derived, own, facts.pubmode)).empty
