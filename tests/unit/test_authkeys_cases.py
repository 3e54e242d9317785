"""authorized_keys logic as data: each case's input and expected output are in tests/unit/fixtures/authkeys/."""

from __future__ import annotations

import pytest

from svrchain.core import authkeys
from svrchain.core.authkeys import BadKey, PublicKey
from tests.unit.cases import BLOBS, cases

MARK = "svrchain:svr_restart@db"
KEY = PublicKey("ssh-ed25519", BLOBS["OURS"], "root@db")


# The line merge_line puts in (the fixtures' NEW).
NEW = f'restrict,command="/usr/local/sbin/svr-restart-gate" ssh-ed25519 {BLOBS["OURS"]} {MARK}'


@pytest.mark.parametrize("case", cases("authkeys/merge.yaml"))
def test_merge(case):
    keep = frozenset(case.get("keep", []))
    merged = authkeys.merge_line(case["existing"], NEW, BLOBS["OURS"], MARK, keep)
    assert merged == case["expected"].replace("NEW", NEW)
    assert authkeys.merge_line(merged, NEW, BLOBS["OURS"], MARK, keep) == merged  # idempotent


@pytest.mark.parametrize("case", cases("authkeys/remove.yaml"))
def test_remove_and_find(case):
    assert authkeys.remove_lines(case["existing"], BLOBS["OURS"], case["marker"]) == case["removed"]
    assert authkeys.find_lines(case["existing"], BLOBS["OURS"], case["marker"]) == case["found"]


@pytest.mark.parametrize("case", cases("authkeys/lines.yaml"))
def test_line_parts(case):
    assert authkeys.line_blob(case["line"]) == case["blob"]
    if "comment" in case:
        assert authkeys.line_comment(case["line"]) == case["comment"]
    if "options" in case:
        assert authkeys.line_options(case["line"]) == case["options"]


@pytest.mark.parametrize("case", cases("authkeys/public_keys.yaml"))
def test_parse_public_key(case):
    if "error" in case:
        with pytest.raises(BadKey) as exc:
            authkeys.parse_public_key(case["text"])
        assert str(exc.value) == case["error"]
        return
    key = authkeys.parse_public_key(case["text"])
    assert key == PublicKey(**case["key"])
    assert key.text() == case["line"]
    assert key.fingerprint == case["fingerprint"]


@pytest.mark.parametrize("case", cases("authkeys/restricted.yaml"))
def test_restricted_line(case):
    if "error" in case:
        with pytest.raises(BadKey) as exc:
            authkeys.restricted_line(KEY, case["from"], case["command"], True, MARK)
        assert str(exc.value) == case["error"]
        return
    line = authkeys.restricted_line(KEY, case["from"], case["command"], case["restrict"], MARK)
    assert line == case["line"]
    assert authkeys.is_ours(line, "", MARK) and authkeys.is_ours(line, BLOBS["OURS"], None)


@pytest.mark.parametrize("case", cases("authkeys/from.yaml"))
def test_from_covers(case):
    assert authkeys.from_covers(case["pattern"], case["addresses"]) is case["covers"]


@pytest.mark.parametrize("case", cases("authkeys/programs.yaml"))
def test_runs_program(case):
    assert authkeys.runs_program(case["command"], "/etc/init.d/httpd") is case["runs"]


def test_a_program_named_without_its_path():
    assert authkeys.runs_program("sudo -n httpd -k graceful", "httpd")
    assert not authkeys.runs_program("sudo -n httpd2", "httpd")


@pytest.mark.parametrize("case", cases("authkeys/legacy.yaml"))
def test_legacy_reason(case):
    assert authkeys.legacy_reason(case["line"], "/etc/init.d/httpd", ["198.18.0.10"]) == case["reason"]


@pytest.mark.parametrize(("text", "version"), [
    ("OpenSSH_9.2p1 Debian-2+deb12u3, OpenSSL 3.0.15", (9, 2)), ("OpenSSH_10.0p2", (10, 0)),
    ("SSH-2.0-OpenSSH_7.4", (7, 4)), ("dropbear_2022.83", None), ("OpenSSH_9", None),
])
def test_openssh_version(text, version):
    assert authkeys.openssh_version(text) == version


def test_known_hosts_lines():
    assert authkeys.known_hosts_line("198.18.0.21", 22, KEY) == f"198.18.0.21 ssh-ed25519 {BLOBS['OURS']}"
    assert authkeys.known_hosts_line("2001:db8::1", 2222, KEY) == f"[2001:db8::1]:2222 ssh-ed25519 {BLOBS['OURS']}"
