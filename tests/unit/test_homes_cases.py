"""The pure parts of homes: the scan's output, the spec, and which lines are svrchain's or bypass the gate."""

from __future__ import annotations

import pytest

from svrchain.core import homes
from svrchain.core.homes import KeysFile, Legacy
from svrchain.core.plan import FileState, Result
from svrchain.facts.web import WebFacts
from tests.unit.cases import BLOBS

MARK = "svrchain:svr_restart@db"
OURS, OTHER, OLDER = BLOBS["OURS"], BLOBS["OTHER"], BLOBS["OLDER"]
RESTART = "/etc/init.d/httpd"


def facts(*files: KeysFile, unsafe: str | None = None) -> WebFacts:
    return WebFacts("u", "/h", "u", FileState("/h/.ssh/authorized_keys", False), "700 u", unsafe, files,
                    FileState("/usr/local/sbin/svr-restart-gate", False), FileState("/etc/sudoers.d/svrchain", False))


@pytest.mark.parametrize(("text", "files"), [
    ("F\tu\t/h/a\tb\nL\tssh-ed25519 AAAA a  \r\nL\t\n\n", [KeysFile("u", "/h/a\tb", ("ssh-ed25519 AAAA a  ", ""))]),
    ("L\tbefore any file\nF\tu\t/h/k\n", [KeysFile("u", "/h/k", ())]),
    ("F\tu\t/h/k\nL\tssh-ed25519 AAAA X\r\n", [KeysFile("u", "/h/k", ("ssh-ed25519 AAAA X",))]),
    ("", []),
    ("F\troot\t/root/k\nF\ttoor\t/root/k\nL\tx\n", [KeysFile("root", "/root/k", ())]),
])
def test_parse_scan(text, files):
    assert homes.parse_scan(text) == files


def test_spec_keeps_every_byte_and_writes_as_the_account():
    spec = homes.spec(FileState("/h/.ssh/authorized_keys", True), "u", "g", "caf\udce9\n")
    assert (spec.path, spec.content, spec.mode, spec.owner, spec.group, spec.parent_mode, spec.runas) == (
        "/h/.ssh/authorized_keys", b"caf\xe9\n", 0o600, "u", "g", 0o700, "u")


def test_unsafe_reasons():
    ok, fine = FileState("/h/.ssh/authorized_keys", True), Result(0, "700 u", "")
    assert homes.unsafe_reason("u", "/h", "", fine, ok) is None  # the owner could not be read
    assert homes.unsafe_reason("u", "/h", "www", fine, ok) == "/h is owned by www, not u or root"
    assert homes.unsafe_reason("u", "/h", "u", Result(45, " is a symbolic link\n", ""), ok) == (
        "/h/.ssh is a symbolic link")


def test_refusal_names_the_host_the_reason_and_the_fix():
    err = homes.refusal("web1 (198.18.0.21:22)", facts(unsafe="/h/.ssh is a symbolic link"))
    assert str(err) == (
        "web1 (198.18.0.21:22): /h/.ssh is a symbolic link; svrchain never follows a link or acts through another "
        "account's file in u's home (it could make root touch a file the account must not reach): check who made "
        "it and why, remove it, then run push-key again")


OURS_BY_KEY = f'from="198.18.0.10",command="{RESTART} restart" ssh-ed25519 {OURS} renamed'
OURS_BY_MARK = f'from="198.18.0.10",command="{RESTART} restart" ssh-ed25519 {OLDER} {MARK}'
HAND_MADE = f'from="198.18.0.10",command="{RESTART} restart" ssh-ed25519 {OTHER} root@db'
ODD = f'from="198.18.0.10" ssh-ed25519 XXXX {MARK}-not'


SHAPE = (RESTART, ["198.18.0.10"])


def test_bypasses_skip_our_lines_by_key_and_by_marker():
    f = facts(KeysFile("root", "/root/.ssh/authorized_keys", (OURS_BY_KEY, OURS_BY_MARK, HAND_MADE, ODD)))
    held = {OURS: "/root/.ssh/svr_restart_key", OLDER: "/root/.ssh/old", OTHER: "/root/.ssh/id_legacy"}
    found = homes.bypasses(f, (OURS, MARK), held, frozenset(), SHAPE, "db")
    assert [(x.number, x.blob, x.reason) for x in found.proved] == [
        (3, OTHER, f"its key is held on db (/root/.ssh/id_legacy), runs '{RESTART} restart' and admits the DB "
                   "server's address")]
    assert [(x.number, x.reason) for x in found.unproved] == [
        (4, "admits the DB server's address; its key was not found on db")]
    unknown = homes.bypasses(f, (None, MARK), held, frozenset(), SHAPE, "db")  # our key unknown: by marker alone
    assert [x.number for x in unknown.proved] == [1, 3]
    assert [x.number for x in unknown.unproved] == [4]  # a damaged key is never taken for our unknown one


def test_only_a_key_held_on_the_db_server_is_a_bypass():
    admin = f'from="198.18.0.0/24" ssh-ed25519 {OLDER} admin@ws'
    monitoring = f'command="systemctl is-active httpd",no-pty ssh-ed25519 {OURS} nagios'
    bounce = f'command="/usr/local/bin/bounce-web" ssh-ed25519 {OTHER} x'
    f = facts(KeysFile("root", "/root/.ssh/authorized_keys", (admin, monitoring)),
              KeysFile("www", "/etc/ssh/keys/www", (bounce,), note="a symbolic link"))
    found = homes.bypasses(f, (None, MARK), {OTHER: "/home/oracle/.ssh/id_bounce"}, frozenset({OLDER}), SHAPE, "db")
    assert [x.where() for x in found.proved] == [
        f"/etc/ssh/keys/www:1 (www, a symbolic link, key {found.proved[0].fingerprint}) its key is held on db "
        "(/home/oracle/.ssh/id_bounce)"]
    assert [x.number for x in found.unproved] == [2]  # reported, never retired
    assert found.own == [] and found.unread == []


def test_the_admins_own_key_held_on_the_db_is_never_retired():
    line = f'from="198.18.0.0/24" ssh-ed25519 {OLDER} admin@ws'
    f = facts(KeysFile("root", "/root/.ssh/authorized_keys", (line,)), KeysFile("a", "/a", (), unread="is a FIFO"))
    found = homes.bypasses(f, (None, MARK), {OLDER: "/root/.ssh/copy"}, frozenset({OLDER}), SHAPE, "db")
    assert found.proved == [] and [x.line for x in found.own] == [line]
    assert homes.unread_where(found.unread) == "/a (a) not inspected: is a FIFO"


def test_the_db_servers_held_keys_are_parsed():
    text = (f"K\t/root/.ssh/id.pub\tssh-ed25519 {OTHER} x\nK\t/root/.ssh/id\tssh-ed25519 {OTHER}\n"
            f"K\t/root/.ssh/b\tssh-ed25519 {OLDER}\nK\t/root/.ssh/b.pub\tssh-ed25519 {OLDER} y\n"
            "K\t/x.pub\tgarbage\nU\t/home/o/.ssh/enc\ta private key with a passphrase and no .pub\n")
    held = homes.parse_held(text)
    assert held.keys == {OTHER: "/root/.ssh/id", OLDER: "/root/.ssh/b"}  # the private key's path preferred
    assert held.unread == ["/home/o/.ssh/enc: a private key with a passphrase and no .pub"]


def test_what_sshd_reads_is_parsed():
    text = "P\t.ssh/authorized_keys /etc/ssh/keys/%u\nC\t/usr/bin/sss_ssh_authorizedkeys\n"
    assert homes.scan_settings(text) == (".ssh/authorized_keys /etc/ssh/keys/%u", "/usr/bin/sss_ssh_authorizedkeys")
    assert homes.scan_settings("P\t.ssh/authorized_keys\nC\tnone\n") == (".ssh/authorized_keys", "")
    scan = ("X\tu\t/h/.ssh/authorized_keys\nN\tis not a regular file\nL\tignored\n"
            "F\tv\t/v/k\nN\ta symbolic link\nL\tssh-ed25519 AAAA\n\n")
    assert homes.parse_scan(scan) == [KeysFile("u", "/h/.ssh/authorized_keys", (), unread="is not a regular file"),
                                      KeysFile("v", "/v/k", ("ssh-ed25519 AAAA",), note="a symbolic link")]


def test_stale_without_our_key_matches_by_marker_only():
    odd = KeysFile("a", "/a", (f"ssh-ed25519 XXXX {MARK}-not",))
    marked = KeysFile("b", "/b", (f"ssh-ed25519 {OLDER} {MARK}",))
    assert homes.stale(facts(odd, marked), None, MARK, None) == [marked]


def test_a_legacy_line_without_a_key():
    assert Legacy("u", "/p", 1, "# no key", "x").blob == ""
    assert Legacy("u", "/p", 1, "ssh-ed25519 AAAAA x", "x").fingerprint == "(damaged key)"
    assert Legacy("u", "/p", 1, f"ssh-ed25519 {OURS} x", "x").fingerprint == (
        "SHA256:K+1PUYqFEITNgfho4wTWuaCWB8N6mVlr77hYMF7WBnA")  # as ssh-keygen -l prints it


def test_an_unproved_line_is_reported_where_it_is():
    """A line that only looks like a bypass is named by its account, file, number and text, with the
    file's note (a symbolic link), as the report shows it."""
    f = facts(KeysFile("www", "/etc/ssh/keys/www", ("# ops", HAND_MADE), note="a symbolic link"))
    (found,) = homes.bypasses(f, (OURS, MARK), {}, frozenset(), SHAPE, "db").unproved
    assert (found.user, found.path, found.number, found.line) == ("www", "/etc/ssh/keys/www", 2, HAND_MADE)
    assert found.where() == (
        f"/etc/ssh/keys/www:2 (www, a symbolic link, key {found.fingerprint}) runs '{RESTART} restart' and "
        "admits the DB server's address; its key was not found on db")


def test_a_file_the_scan_could_not_read_without_a_reason_is_still_unread():
    files = homes.parse_scan("X\tu\t/h/.ssh/authorized_keys\nX\tv\t/v/k\nN\tis a FIFO\n")
    assert files == [KeysFile("u", "/h/.ssh/authorized_keys", (), unread="not read"),
                     KeysFile("v", "/v/k", (), unread="is a FIFO")]
    assert homes.unread_where(files) == ("/h/.ssh/authorized_keys (u) not inspected: not read; "
                                         "/v/k (v) not inspected: is a FIFO")


def test_tabs_inside_a_value_stay_in_it():
    """Only the first tab after the tag (and the path) separates: an AuthorizedKeysCommand with a tab
    before its argument (older sshd -T print the line as written), a public key whose comment holds one."""
    text = "P\t.ssh/authorized_keys\nC\t/usr/bin/sss_ssh_authorizedkeys\t%u\n"
    assert homes.scan_settings(text) == (".ssh/authorized_keys", "/usr/bin/sss_ssh_authorizedkeys\t%u")
    held = homes.parse_held(f"K\t/root/.ssh/id.pub\tssh-ed25519 {OTHER} root@db\tbackup\n")
    assert held.keys == {OTHER: "/root/.ssh/id.pub"}


def test_the_first_path_of_a_key_held_twice_is_kept_unless_a_private_key_comes_later():
    text = (f"K\t/root/.ssh/a.pub\tssh-ed25519 {OTHER} x\nK\t/etc/svrchain/b.pub\tssh-ed25519 {OTHER} x\n"
            f"K\t/root/.ssh/c\tssh-ed25519 {OLDER}\nK\t/home/o/.ssh/d\tssh-ed25519 {OLDER}\n"
            f"K\t/home/o/.ssh/e.pub\tssh-ed25519 {OLDER} y\n")
    assert homes.parse_held(text).keys == {OTHER: "/root/.ssh/a.pub", OLDER: "/root/.ssh/c"}
