"""SysV registration plans: the exact commands for chkconfig and update-rc.d."""

from tasks import sysv

REGISTERED = {"0": "K11dbora", "1": "K11dbora", "2": "K11dbora", "3": "S98dbora", "4": "S98dbora",
              "5": "S98dbora", "6": "K11dbora"}


def test_parse_links():
    text = "3 S98dbora\n3 S99svr_restart\n0 K01svr_restart\n3 README\n"
    assert sysv.parse_links(text) == {
        "dbora": {"3": "S98dbora"}, "svr_restart": {"3": "S99svr_restart", "0": "K01svr_restart"},
    }


def test_chkconfig_commands_on_a_fresh_host():
    assert sysv.register_commands("chkconfig", "dbora", {}, True) == [
        "chkconfig --add dbora", "chkconfig --level 345 dbora on",
    ]


def test_chkconfig_rereads_a_changed_header():
    assert sysv.register_commands("chkconfig", "dbora", REGISTERED, True) == [
        "chkconfig --del dbora", "chkconfig --add dbora", "chkconfig --level 345 dbora on",
    ]


def test_nothing_to_do_when_registered_and_unchanged():
    assert sysv.register_commands("chkconfig", "dbora", REGISTERED, False) == []
    assert sysv.register_commands("update-rc.d", "dbora", REGISTERED, False) == []


def test_update_rc_d_commands():
    assert sysv.register_commands("update-rc.d", "dbora", {}, True) == ["update-rc.d dbora defaults"]
    wrong = {**REGISTERED, "3": "K11dbora"}
    assert sysv.register_commands("update-rc.d", "dbora", wrong, False) == [
        "update-rc.d -f dbora remove", "update-rc.d dbora defaults",
    ]


def test_tool_name():
    assert sysv.tool_name("/sbin/chkconfig\n") == "chkconfig"
    assert sysv.tool_name("/usr/sbin/update-rc.d\n") == "update-rc.d"
    assert sysv.tool_name("") == ""


def test_starts_after():
    trig = {lv: "S99svr_restart" for lv in "345"}
    assert sysv.starts_after(REGISTERED, trig) == []
    assert sysv.starts_after(REGISTERED, {**trig, "4": "S10svr_restart"}) == ["4"]
    assert sysv.starts_after({}, trig) == ["3", "4", "5"]
