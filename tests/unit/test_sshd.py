"""harden-sshd's settings and where they go (pure logic)."""

from hypothesis import given
from hypothesis import strategies as st

from svrchain.core import sshd
from tests.unit.test_sshd_cases import ALL  # what ssh -Q lists on OpenSSH 9.2, written out


def as_dict(settings):
    return dict(settings)


def test_modern_openssh_public_keys_only():
    s = as_dict(sshd.settings((9, 2), True, ALL, ["ssh-ed25519"], True))
    assert s["PasswordAuthentication"] == "no" and s["KbdInteractiveAuthentication"] == "no"
    assert s["AuthenticationMethods"] == "publickey" and s["PermitRootLogin"] == "prohibit-password"
    assert "Protocol" not in s and "ChallengeResponseAuthentication" not in s
    assert "nistp" not in s["KexAlgorithms"] and "sha1" not in s["MACs"] and "cbc" not in s["Ciphers"]
    assert s["HostKeyAlgorithms"] == "ssh-ed25519"


def test_old_openssh_gets_protocol_2_and_the_old_keyword():
    s = as_dict(sshd.settings((7, 4), True, ALL, ["ssh-rsa", "ssh-ed25519"], True))
    assert s["Protocol"] == "2" and s["ChallengeResponseAuthentication"] == "no"
    assert "KbdInteractiveAuthentication" not in s
    assert s["HostKeyAlgorithms"] == "rsa-sha2-512,rsa-sha2-256,ssh-ed25519"


def test_only_algorithms_the_server_has_and_none_without_host_key_coverage():
    s = as_dict(sshd.settings((9, 2), False, {"kex": {"curve25519-sha256", "ecdh-sha2-nistp256"}},
                              ["ecdsa-sha2-nistp256"], True))
    assert s["KexAlgorithms"] == "curve25519-sha256"
    assert "Ciphers" not in s and "HostKeyAlgorithms" not in s  # nothing known: OpenSSH's own lists
    assert s["PermitRootLogin"] == "forced-commands-only"  # the admin logs in as a sudo user
    assert "KexAlgorithms" not in as_dict(sshd.settings((9, 2), True, ALL, ["ssh-ed25519"], False))


def test_dropins_included_or_not():
    assert sshd.includes_dropins("# x\nInclude /etc/ssh/sshd_config.d/*.conf\nPort 22\n")
    assert sshd.includes_dropins("include sshd_config.d/*.conf\n")
    assert not sshd.includes_dropins("#Include /etc/ssh/sshd_config.d/*.conf\n")


def test_block_goes_first_and_comes_out_byte_for_byte():
    main = "Port 22\r\n# comment\nPasswordAuthentication yes"
    s = [("PasswordAuthentication", "no")]
    once = sshd.with_block(main, s)
    assert once.startswith("# BEGIN svrchain (fab harden-sshd): edit the inventory, not these lines\n"
                           "PasswordAuthentication no\n# END svrchain\n")
    assert sshd.with_block(once, s) == once
    assert sshd.without_block(once) == main


@given(st.text())
def test_without_block_never_touches_other_lines(text):
    if sshd.BEGIN in text:
        return
    assert sshd.without_block(sshd.with_block(text, [("X", "y")])) == text


def test_effective_settings_are_compared_as_sshd_prints_them():
    seen = sshd.effective("permitrootlogin without-password\npasswordauthentication yes\nport 22\n")
    s = [("Protocol", "2"), ("PermitRootLogin", "prohibit-password"), ("PasswordAuthentication", "no")]
    assert sshd.mismatches(s, seen) == ["PasswordAuthentication is yes, not no"]
