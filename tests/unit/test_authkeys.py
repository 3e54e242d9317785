"""authorized_keys lines: built exactly, merged without touching anybody else's lines."""

import base64
import struct

import pytest

from svrchain.core import authkeys
from svrchain.core.authkeys import BadKey, PublicKey


def make_key(tag: bytes, key_type: str = "ssh-ed25519") -> PublicKey:
    blob = struct.pack(">I", len(key_type)) + key_type.encode() + struct.pack(">I", 32) + tag.ljust(32, b"x")
    return PublicKey(key_type, base64.b64encode(blob).decode(), "root@db")


KEY = make_key(b"ours")
OTHER = make_key(b"other")
MARK = "svrchain:svr_restart@db"


def test_restricted_line_is_exact():
    line = authkeys.restricted_line(KEY, ["198.18.0.10"], "/etc/init.d/httpd restart", False, MARK)
    assert line == (
        'from="198.18.0.10",no-port-forwarding,no-X11-forwarding,no-agent-forwarding,no-pty,'
        f'command="/etc/init.d/httpd restart" ssh-ed25519 {KEY.blob} {MARK}'
    )


def test_restrict_is_added_where_supported_and_from_has_no_spaces():
    line = authkeys.restricted_line(KEY, ["198.18.0.10", "198.18.0.11"], "x", True, MARK)
    assert line.startswith('restrict,from="198.18.0.10,198.18.0.11",')


@pytest.mark.parametrize("bad", ['a"b', "a\nb", "a\\b"])
def test_command_cannot_break_out(bad):
    with pytest.raises(BadKey):
        authkeys.restricted_line(KEY, ["198.18.0.10"], bad, False, MARK)


def test_parse_public_key_checks_blob_type():
    assert authkeys.parse_public_key(KEY.text()) == KEY
    with pytest.raises(BadKey):
        authkeys.parse_public_key(f"ssh-rsa {KEY.blob}")
    with pytest.raises(BadKey):
        authkeys.parse_public_key("ssh-ed25519 !!!notbase64")
    with pytest.raises(BadKey):
        authkeys.parse_public_key("hello world")


def test_line_blob_understands_options_with_quoted_spaces():
    line = f'command="echo a b",from="198.18.0.1" ssh-ed25519 {OTHER.blob} c d'
    assert authkeys.line_blob(line) == OTHER.blob
    assert authkeys.line_comment(line) == "c d"
    assert authkeys.line_blob("# ssh-ed25519 AAAA") is None
    assert authkeys.line_blob("") is None


OTHERS = (
    "# admins\r\n"
    f"ssh-ed25519 {OTHER.blob} alice@laptop\n"
    "\n"
    f'no-pty,command="echo \\"hi there\\"" {make_key(b"bob").text()}\n'
    "garbage that is not a key\n"
)


def test_merge_appends_and_keeps_every_other_byte():
    line = authkeys.restricted_line(KEY, ["198.18.0.10"], "x", True, MARK)
    merged = authkeys.merge_line(OTHERS, line, KEY.blob, MARK)
    assert merged == OTHERS + line + "\n"


def test_merge_never_adds_a_byte_to_a_last_line_without_newline():
    merged = authkeys.merge_line("ssh-ed25519 AAAA last-line-without-newline", "NEW", KEY.blob, MARK)
    assert merged == "NEW\nssh-ed25519 AAAA last-line-without-newline"


def test_lines_end_at_newlines_only_as_sshd_reads_them():
    assert authkeys.lines("a\rb\r\nc\x0bd\u2028e\n\nlast") == ["a\rb\r\n", "c\x0bd\u2028e\n", "\n", "last"]
    assert authkeys.lines("") == [] and authkeys.lines("\n") == ["\n"]


def test_merge_after_a_lone_carriage_return_puts_the_line_where_sshd_reads_it_whole():
    """A file holding "\\r" and no newline: sshd reads one line "\\r"; ours must not be glued after it
    (found by make fuzz: str.splitlines took the carriage return for a line's end)."""
    assert authkeys.merge_line("\r", "NEW", KEY.blob, MARK) == "NEW\n\r"
    assert authkeys.merge_line("x\ry", "NEW", KEY.blob, MARK) == "NEW\nx\ry"


def test_merge_replaces_in_place_and_drops_duplicates():
    old = f"no-pty {KEY.text()}\n"
    text = OTHERS[:10] + old + OTHERS[10:] + old
    line = authkeys.restricted_line(KEY, ["198.18.0.10"], "x", True, MARK)
    merged = authkeys.merge_line(text, line, KEY.blob, MARK)
    assert merged == OTHERS[:10] + line + "\n" + OTHERS[10:]
    assert authkeys.merge_line(merged, line, KEY.blob, MARK) == merged  # idempotent


def test_merge_replaces_an_older_key_of_ours_by_its_marker():
    older = make_key(b"older")
    text = OTHERS + authkeys.restricted_line(older, ["198.18.0.10"], "x", True, MARK) + "\n"
    line = authkeys.restricted_line(KEY, ["198.18.0.10"], "x", True, MARK)
    assert authkeys.merge_line(text, line, KEY.blob, MARK) == OTHERS + line + "\n"


def test_remove_lines_keeps_the_rest():
    line = authkeys.restricted_line(KEY, ["198.18.0.10"], "x", True, MARK)
    assert authkeys.remove_lines(OTHERS + line + "\n", KEY.blob, MARK) == OTHERS


def test_versions_and_known_hosts():
    assert authkeys.openssh_version("OpenSSH_9.2p1 Debian-2+deb12u3, OpenSSL 3.0") == (9, 2)
    assert authkeys.openssh_version("OpenSSH_7.1p2") == (7, 1)
    assert authkeys.openssh_version("dropbear") is None
    assert authkeys.known_hosts_line("198.18.0.21", 22, KEY) == f"198.18.0.21 ssh-ed25519 {KEY.blob}"
    assert authkeys.known_hosts_line("198.18.0.21", 2222, KEY).startswith("[198.18.0.21]:2222 ")


def test_rotation_keeps_the_old_line_until_it_is_removed_by_blob():
    old = make_key(b"old")
    old_line = authkeys.restricted_line(old, ["198.18.0.10"], "x", True, MARK)
    new_line = authkeys.restricted_line(KEY, ["198.18.0.10"], "x", True, MARK)
    both = authkeys.merge_line(OTHERS + old_line + "\n", new_line, KEY.blob, MARK, keep=frozenset({old.blob}))
    assert both == OTHERS + old_line + "\n" + new_line + "\n"
    assert authkeys.remove_lines(both, old.blob, None) == OTHERS + new_line + "\n"
    assert authkeys.remove_lines(both, KEY.blob, None) == OTHERS + old_line + "\n"  # a rollback


def test_without_markers_keeps_commented_out_and_unknown_type_lines_with_a_stale_marker():
    """Only key lines are svrchain's: a line an admin commented out, or one of a key type sshd does not
    know, keeps its bytes even when its last word is a removed DB server's marker."""
    ours = authkeys.restricted_line(KEY, ["198.18.0.19"], "/usr/local/sbin/svr-restart-gate", False,
                                    "svrchain:svr_restart@db9") + "\n"
    disabled = "#" + ours
    unknown = ours.replace("ssh-ed25519", "ssh-unknown-type")
    text = disabled + unknown + ours
    assert authkeys.without_markers(text, frozenset()) == disabled + unknown


def test_without_markers_compares_the_whole_marker():
    """A kept DB server's line stays whatever its name ends with (its marker is read whole, without the
    line ending only); a line whose marker only starts like a kept one goes."""
    kept = authkeys.restricted_line(KEY, ["198.18.0.10"], "/g", False, "svrchain:svr_restart@ORAX") + "\r\n"
    gone = authkeys.restricted_line(OTHER, ["198.18.0.11"], "/g", False, "svrchain:svr_restart@ORAXX") + "\n"
    assert authkeys.without_markers(kept + gone, frozenset({"svrchain:svr_restart@ORAX"})) == kept
