"""PHP's ini syntax as svrchain/core/webtier.py reads it, value by value (expected values by hand)."""

from __future__ import annotations

import pytest

from svrchain.core.webtier import Read, ini_value, parse_ini


@pytest.mark.parametrize(("raw", "value"), [
    ("  60 ; the default", "60"), ('  "a;b" ; c', "a;b"), ('"unterminated', "unterminated"), ('""', ""),
    ("On", "1"), ("YES", "1"), ("true", "1"), ("On ; x", "1"), ("Off", ""), ("no", ""), ("FALSE", ""),
    ("none", ""), ("onx", "onx"), ("", ""), ("  ", ""), ("a\"b", "a\"b"),
])
def test_ini_value(raw: str, value: str) -> None:
    assert ini_value(raw) == value


def _ini(text: str) -> Read:
    return Read("ini", "ok", 0o644, "root", "/etc/php.ini", text.encode())


def test_parse_ini_lines_sections_and_comments() -> None:
    text = ("; a comment\n\n Oci8.Ping_Interval = 0 ; off\r[PATH=/www]\nx = 1\n[host = a]\ny=2\n[oci8]\r\n"
            "\tz = 3\n=4\nnoequals\nw =\n")
    assert parse_ini(_ini(text)) == [("oci8.ping_interval", "0", "/etc/php.ini:3"), ("z", "3", "/etc/php.ini:9"),
                                     ("w", "", "/etc/php.ini:12")]


def test_a_special_section_with_blanks_after_its_bracket_is_skipped_too() -> None:
    # PHP's ini scanner eats the blanks after "[": "[ host = a ]" is a [HOST=] section, for CGI only.
    text = "[ host = a ]\ny = 2\n[\tPATH=/www]\nx = 1\n[ oci8 ]\nz = 3\n"
    assert parse_ini(_ini(text)) == [("z", "3", "/etc/php.ini:6")]


def test_parse_ini_cuts_a_long_value() -> None:
    assert parse_ini(_ini("k = " + "v" * 200 + "\n")) == [("k", "v" * 80, "/etc/php.ini:1")]
