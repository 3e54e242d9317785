"""The pure parts of homes: the scan's output, the spec, and which lines are svrchain's or bypass the gate."""

from __future__ import annotations

import pytest

from svrchain import homes
from svrchain.homes import KeysFile, Legacy, WebFacts
from svrchain.plan import FileState, Result
from tests.unit.cases import BLOBS

MARK = "svrchain:svr_restart@db"
OURS, OTHER, OLDER = BLOBS["OURS"], BLOBS["OTHER"], BLOBS["OLDER"]
RESTART = "/etc/init.d/httpd"


def facts(*files: KeysFile, unsafe: str | None = None) -> WebFacts:
    return WebFacts("u", "/h", "u", FileState("/h/.ssh/authorized_keys", False), "700 u", unsafe, files,
                    FileState("/usr/local/sbin/svr-restart-gate", False), FileState("/etc/sudoers.d/svrchain", False),
                    {})


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


def test_legacy_skips_our_lines_by_key_and_by_marker():
    f = facts(KeysFile("root", "/root/.ssh/authorized_keys", (OURS_BY_KEY, OURS_BY_MARK, HAND_MADE, ODD)))
    found = homes.legacy(f, OURS, MARK, RESTART, ["198.18.0.10"])
    assert [(x.number, x.blob, x.reason) for x in found] == [
        (3, OTHER, f"runs '{RESTART} restart' and admits the DB server's address"),
        (4, "XXXX", "admits the DB server's address")]
    unknown = homes.legacy(f, None, MARK, RESTART, ["198.18.0.10"])  # our key unknown: by marker alone
    assert [x.number for x in unknown] == [1, 3, 4]


def test_stale_without_our_key_matches_by_marker_only():
    odd = KeysFile("a", "/a", (f"ssh-ed25519 XXXX {MARK}-not",))
    marked = KeysFile("b", "/b", (f"ssh-ed25519 {OLDER} {MARK}",))
    assert homes.stale(facts(odd, marked), None, MARK, None) == [marked]


def test_a_legacy_line_without_a_key():
    assert Legacy("u", "/p", 1, "# no key", "x").blob == ""
    assert Legacy("u", "/p", 1, "ssh-ed25519 AAAAA x", "x").fingerprint == "(damaged key)"
    assert Legacy("u", "/p", 1, f"ssh-ed25519 {OURS} x", "x").fingerprint == (
        "SHA256:K+1PUYqFEITNgfho4wTWuaCWB8N6mVlr77hYMF7WBnA")  # as ssh-keygen -l prints it
