"""Finding svrchain's lines and the older lines that bypass the gate, in every account (pure logic)."""

import pytest

from svrchain.core import authkeys, homes
from svrchain.core.homes import KeysFile
from svrchain.core.plan import FileState
from svrchain.facts.web import WebFacts
from tests.unit.test_authkeys import KEY, MARK, OTHER

DB = ["198.18.0.10"]
RESTART = "/etc/init.d/httpd"
OURS = f'from="198.18.0.10",no-pty,command="/usr/local/sbin/svr-restart-gate" ssh-ed25519 {KEY.blob} {MARK}'
HAND_MADE = ('from="198.18.0.10",no-port-forwarding,no-X11-forwarding,no-agent-forwarding,no-pty,'
             f'command="/etc/init.d/httpd restart" ssh-ed25519 {OTHER.blob} root@db')


def facts(*files: KeysFile, user: str = "svr-restart") -> WebFacts:
    return WebFacts(user, f"/var/lib/{user}", user, FileState("/x", False), "700 " + user, None, files,
                    FileState("/usr/local/sbin/svr-restart-gate", False),
                    FileState("/etc/sudoers.d/svrchain", False))


def test_scan_output_is_parsed_per_file_once():
    text = ("F\troot\t/root/.ssh/authorized_keys\nL\tssh-ed25519 AAAA a\r\nL\t# c\n\n"
            "F\ttoor\t/root/.ssh/authorized_keys\nL\tssh-ed25519 AAAA a\n\n"
            "F\tsvr-restart\t/var/lib/svr-restart/.ssh/authorized_keys\n\n")
    assert homes.parse_scan(text) == [
        KeysFile("root", "/root/.ssh/authorized_keys", ("ssh-ed25519 AAAA a", "# c")),
        KeysFile("svr-restart", "/var/lib/svr-restart/.ssh/authorized_keys", ()),
    ]


def test_options_are_read_with_quotes_and_escapes():
    line = 'command="echo \\"a,b\\"",from="10.0.0.1,10.0.0.2",No-Pty ssh-ed25519 AAAA c'
    assert authkeys.line_options(line) == {"command": 'echo "a,b"', "from": "10.0.0.1,10.0.0.2", "no-pty": ""}
    assert authkeys.line_options("ssh-ed25519 AAAA c") == {}
    assert authkeys.line_options("# command=x") == {}


@pytest.mark.parametrize(("pattern", "covers"), [
    ("198.18.0.10", True), ("198.18.0.11", False), ("198.18.0.0/24", True), ("198.18.0.*", True),
    ("10.0.0.1,198.18.0.10", True), ("!198.18.0.10", False), ("*.example.com", False), ("::1", False),
    ("198.18.1.0/24", False),
])
def test_from_patterns_that_admit_the_db_server(pattern, covers):
    assert authkeys.from_covers(pattern, DB) is covers


def test_from_with_a_db_network():
    assert authkeys.from_covers("198.18.0.77", ["198.18.0.0/24"])
    assert not authkeys.from_covers("198.19.0.77", ["198.18.0.0/24"])


@pytest.mark.parametrize(("command", "runs"), [
    ("/etc/init.d/httpd restart", True), ("sudo httpd -k graceful", True), ("service httpd restart", True),
    ("/etc/init.d/httpd2 restart", False), ("echo httpdx", False), ("/usr/local/sbin/svr-restart-gate", False),
])
def test_forced_commands_that_run_the_restart_program(command, runs):
    assert authkeys.runs_program(command, RESTART) is runs


def test_a_hand_made_chain_held_on_the_db_is_a_bypass_and_ours_is_not():
    f = facts(KeysFile("root", "/root/.ssh/authorized_keys",
                       ("# ops", OURS, HAND_MADE, f"ssh-ed25519 {OTHER.blob} admin@ws")))
    found = homes.bypasses(f, (KEY.blob, MARK), {OTHER.blob: "/root/.ssh/id_legacy", KEY.blob: "/k"}, frozenset(),
                           (RESTART, DB), "db").proved
    assert [(x.user, x.path, x.number) for x in found] == [("root", "/root/.ssh/authorized_keys", 3),
                                                          ("root", "/root/.ssh/authorized_keys", 4)]
    assert found[0].fingerprint == OTHER.fingerprint
    assert found[0].where() == (f"/root/.ssh/authorized_keys:3 (root, key {OTHER.fingerprint}) its key is held on "
                                "db (/root/.ssh/id_legacy), runs '/etc/init.d/httpd restart' and admits the DB "
                                "server's address")


def test_an_unrestricted_key_from_the_db_not_held_there_is_only_reported():
    line = f'from="198.18.0.10" ssh-ed25519 {OTHER.blob} x'
    f = facts(KeysFile("www", "/var/www/.ssh/authorized_keys", (line,)))
    found = homes.bypasses(f, (None, MARK), {}, frozenset(), (RESTART, DB), "db")
    assert found.proved == [] and [x.reason for x in found.unproved] == [
        "admits the DB server's address; its key was not found on db"]


def test_ours_in_another_account_is_stale_by_marker_or_by_key():
    mine = KeysFile("svr-restart", "/var/lib/svr-restart/.ssh/authorized_keys", (OURS,))
    old = KeysFile("root", "/root/.ssh/authorized_keys", (f"ssh-ed25519 {KEY.blob} renamed",))
    marked = KeysFile("admin", "/home/admin/.ssh/authorized_keys", (f"ssh-ed25519 {OTHER.blob} {MARK}",))
    other = KeysFile("bob", "/home/bob/.ssh/authorized_keys", (HAND_MADE,))
    f = facts(mine, old, marked, other)
    assert homes.stale(f, KEY.blob, MARK, "svr-restart") == [old, marked]
    assert homes.stale(f, None, MARK, "svr-restart") == [marked]  # the DB key unknown: by marker alone
    assert homes.stale(f, KEY.blob, MARK, None) == [mine, old, marked]  # uninstall: every account


def test_unsafe_homes_are_named():
    ok = FileState("/h/.ssh/authorized_keys", True, b"", 0o600, "u", "u")
    link = FileState("/h/.ssh/authorized_keys", True, unsafe="is a symbolic link")
    from svrchain.core.plan import Result

    fine, bad_dir = Result(0, "700 u", ""), Result(45, "is owned by mallory, not u\n", "")
    assert homes.unsafe_reason("u", "/h", "u", fine, ok) is None
    assert homes.unsafe_reason("u", "/h", "root", fine, ok) is None
    assert homes.unsafe_reason("u", "/h", "mallory", fine, ok) == "/h is owned by mallory, not u or root"
    assert homes.unsafe_reason("u", "/h", "u", bad_dir, ok) == "/h/.ssh is owned by mallory, not u"
    assert homes.unsafe_reason("u", "/h", "u", fine, link) == "/h/.ssh/authorized_keys is a symbolic link"


def test_the_spec_writes_as_the_account():
    spec = homes.spec(FileState("/h/.ssh/authorized_keys", False), "u", "g", "line\n")
    assert (spec.runas, spec.owner, spec.group, spec.mode, spec.parent_mode) == ("u", "u", "g", 0o600, 0o700)
