"""SysV registration as data: tests/unit/fixtures/sysv/ holds each case and its expected result."""

from __future__ import annotations

import pytest

from svrchain.core import sysv
from tests.unit.cases import cases

REGISTERED = {"0": "K11dbora", "1": "K11dbora", "2": "K11dbora", "3": "S98dbora", "4": "S98dbora",
              "5": "S98dbora", "6": "K11dbora"}


@pytest.mark.parametrize("case", cases("sysv/headers.yaml"))
def test_chkconfig_header(case):
    want = sysv.Header(*case["header"]) if case["header"] else None
    assert sysv.chkconfig_header(case["script"]) == want


@pytest.mark.parametrize("case", cases("sysv/links.yaml"))
def test_links(case):
    assert sysv.link_lists(case["text"]) == case["lists"]
    assert sysv.parse_links(case["text"]) == case["last"]


@pytest.mark.parametrize("case", cases("sysv/registered.yaml"))
def test_registered(case):
    assert sysv.registered(case["links"]) is case["registered"]


@pytest.mark.parametrize("case", cases("sysv/register.yaml"))
def test_register_commands(case):
    links = REGISTERED if case["links"] == "REGISTERED" else case["links"]
    if "error" in case:
        with pytest.raises(ValueError) as exc:
            sysv.register_commands(case["tool"], "dbora", links, case["changed"])
        assert str(exc.value) == case["error"]
    else:
        assert sysv.register_commands(case["tool"], "dbora", links, case["changed"]) == case["commands"]


@pytest.mark.parametrize("case", cases("sysv/starts_after.yaml"))
def test_starts_after(case):
    assert sysv.starts_after(case["first"], case["second"]) == case["bad"]


@pytest.mark.parametrize("case", cases("sysv/overrides.yaml"))
def test_override_conflict(case):
    assert sysv.override_conflict("dbora", case["script"], case["override"]) == case["conflict"]


@pytest.mark.parametrize(("tool", "commands"), [
    ("chkconfig", ["chkconfig --del dbora", "chkconfig --add dbora"]),
    ("update-rc.d", ["update-rc.d -f dbora remove", "update-rc.d dbora defaults"]),
])
def test_reregister_commands(tool, commands):
    assert sysv.reregister_commands(tool, "dbora") == commands


@pytest.mark.parametrize(("output", "tool"), [
    ("/sbin/chkconfig\n", "chkconfig"), ("/usr/sbin/update-rc.d\n/sbin/chkconfig\n", "update-rc.d"),
    ("chkconfig", "chkconfig"), ("  \n", ""), ("", ""),
])
def test_tool_name(output, tool):
    assert sysv.tool_name(output) == tool


NO_LEVEL = sysv.Header("", 50, 5)


def test_a_header_without_levels_is_checked_as_off_everywhere():
    links = {lv: ["K05x"] for lv in "0123456"}
    off = {"x": {lv: False for lv in "0123456"}}
    assert sysv.chkconfig_check("x", NO_LEVEL, links, off) == (
        True, "K05x in 0 1 2 3 4 5 6; chkconfig --list: on in no level")
    on3 = {"x": {**off["x"], "3": True}}
    assert sysv.chkconfig_check("x", NO_LEVEL, links, on3) == (
        False, "chkconfig --list says 0:off 1:off 2:off 3:on 4:off 5:off 6:off, want on in no level only")


def test_describe_links_puts_starts_first():
    assert sysv.describe_links({"0": "K01t", "2": "S20t", "3": "S99t", "6": "K01t"}) == (
        "S20t in 2, S99t in 3, K01t in 0 6")
