"""SysV registration plans: the exact commands for chkconfig and update-rc.d."""

import subprocess
from pathlib import Path

import pytest

from svrchain.core import sysv

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


# What chkconfig 1.33 prints on a lab chkconfig host after `chkconfig --add` of svrchain's two scripts
# (`chkconfig --list dbora; chkconfig --list svr_restart` with stderr), and the rc links it made.
LISTED = ("dbora          \t0:off\t1:off\t2:off\t3:on\t4:on\t5:on\t6:off\n"
          "svr_restart    \t0:off\t1:off\t2:off\t3:on\t4:on\t5:on\t6:off\n")
LINKS = "".join(f"{lv} K01svr_restart\n{lv} K11dbora\n" for lv in "0126") + "".join(
    f"{lv} S98dbora\n{lv} S99svr_restart\n" for lv in "345")
MEMO_DBORA = sysv.Header("345", 98, 11)


def test_chkconfig_header_is_read_as_chkconfig_reads_it():
    script = "#!/bin/sh\n#\n# chkconfig: 345 98 11\n# description: db\n### BEGIN INIT INFO\n# Default-Start: 2 3 4 5\n"
    assert sysv.chkconfig_header(script) == MEMO_DBORA
    assert sysv.chkconfig_header("#!/bin/bash\n# chkconfig: 345 99 1\n") == sysv.Header("345", 99, 1)
    assert sysv.chkconfig_header("#!/bin/sh\n# chkconfig: - 50 50\n") == sysv.Header("", 50, 50)
    assert sysv.chkconfig_header("#!/bin/sh\n### BEGIN INIT INFO\n# Default-Start: 3 4 5\n") is None


def test_chkconfig_links_follow_the_header_with_kill_links_in_level_2():
    assert sysv.chkconfig_links("dbora", MEMO_DBORA) == {
        "0": "K11dbora", "1": "K11dbora", "2": "K11dbora", "3": "S98dbora", "4": "S98dbora", "5": "S98dbora",
        "6": "K11dbora"}
    assert sysv.chkconfig_links("svr_restart", sysv.Header("345", 99, 1))["2"] == "K01svr_restart"
    assert set(sysv.chkconfig_links("x", sysv.Header("", 50, 5)).values()) == {"K05x"}


def test_parse_list_reads_services_and_skips_errors_and_notes():
    text = LISTED + ("error reading information on service nosuch: No such file or directory\n"
                     "service rc does not support chkconfig\n"
                     "Note: This output shows SysV services only and does not include native\n")
    listed = sysv.parse_list(text)
    assert listed == {"dbora": {lv: lv in "345" for lv in "0123456"},
                      "svr_restart": {lv: lv in "345" for lv in "0123456"}}
    assert sysv.parse_list("ssh            \t0:off\t1:off\t2:on\t3:on\t4:on\t5:on\t6:off\n")["ssh"]["2"] is True


def test_chkconfig_check_accepts_exactly_what_chkconfig_add_makes():
    ok, detail = sysv.chkconfig_check("dbora", MEMO_DBORA, sysv.link_lists(LINKS)["dbora"], sysv.parse_list(LISTED))
    assert ok, detail
    assert detail == "S98dbora in 3 4 5, K11dbora in 0 1 2 6; chkconfig --list: on in 3 4 5"


def test_chkconfig_check_names_each_wrong_link_and_list_state():
    def check(links: str, listed: str = LISTED) -> tuple[bool, str]:
        return sysv.chkconfig_check("dbora", MEMO_DBORA, sysv.link_lists(links).get("dbora", {}),
                                    sysv.parse_list(listed))

    # What insserv makes from the LSB block: other numbers.
    insserv = LINKS.replace("S98dbora", "S02dbora").replace("K11dbora", "K01dbora")
    assert check(insserv) == (False, "; ".join(
        [f"rc{lv}.d has K01dbora, want K11dbora" for lv in "012"]
        + [f"rc{lv}.d has S02dbora, want S98dbora" for lv in "345"] + ["rc6.d has K01dbora, want K11dbora"]))
    # A site's `chkconfig dbora on` for level 2 as well (2345).
    on2 = LINKS.replace("2 K11dbora", "2 S98dbora")
    assert check(on2) == (False, "rc2.d has S98dbora, want K11dbora")
    # A second, stray start link: rc would start the database twice.
    assert check(LINKS + "3 S20dbora\n") == (False, "rc3.d has S98dbora S20dbora, want S98dbora")
    assert check("") == (False, "; ".join(f"rc{lv}.d has no link, want {w}" for lv, w in
                                         zip("0123456", ["K11dbora"] * 3 + ["S98dbora"] * 3 + ["K11dbora"],
                                             strict=True)))
    # The links are right but chkconfig does not know the service (its script is gone) or disagrees.
    assert check(LINKS, "") == (False, "chkconfig --list does not show dbora")
    off = LISTED.replace("dbora          \t0:off\t1:off\t2:off\t3:on", "dbora          \t0:off\t1:off\t2:off\t3:off")
    assert check(LINKS, off) == (
        False, "chkconfig --list says 0:off 1:off 2:off 3:off 4:on 5:on 6:off, want on in 3 4 5 only")


def test_link_lists_keep_every_link_of_a_level():
    assert sysv.link_lists("3 S98dbora\n3 S20dbora\n0 K11dbora\n3 README\n") == {
        "dbora": {"3": ["S98dbora", "S20dbora"], "0": ["K11dbora"]}}
    assert sysv.parse_links("3 S98dbora\n3 S20dbora\n")["dbora"] == {"3": "S20dbora"}


def test_an_override_that_says_the_same_is_no_conflict():
    script = "#!/bin/sh\n# chkconfig: 345 98 11\n# description: db\n"
    assert sysv.override_conflict("dbora", script, None) == ""
    assert sysv.override_conflict("dbora", script, "# chkconfig: 345 98 11\n") == ""


def test_an_override_that_registers_otherwise_is_named_with_the_fix():
    script = "#!/bin/sh\n# chkconfig: 345 98 11\n# description: db\n"
    assert sysv.override_conflict("dbora", script, "# chkconfig: 2345 98 11\n") == (
        "/etc/chkconfig.d/dbora overrides dbora's '# chkconfig: 345 98 11' with '# chkconfig: 2345 98 11', and "
        "chkconfig --add uses it; remove it (or make it say the same) so that dbora is registered as svrchain "
        "installs it")
    lsb = "### BEGIN INIT INFO\n# Default-Start: 2 3 4 5\n### END INIT INFO\n"
    assert "with other levels, and chkconfig --add uses it" in sysv.override_conflict("dbora", script, lsb)
    # The same chkconfig line, but LSB levels that chkconfig applies after it.
    assert sysv.override_conflict("dbora", script, "# chkconfig: 345 98 11\n" + lsb) != ""


@pytest.mark.skipif(Path("/run/systemd/system").is_dir(), reason="systemd is this machine's init")
def test_a_systemd_only_command_runs_nothing_off_systemd(tmp_path):
    """A host with another init gets no output and exit 0 (the command would have failed loudly);
    its init is told by the same test the probe's "init" uses."""
    ran = tmp_path / "ran"
    command = sysv.on_systemd(f"touch {ran}; echo enabled; exit 3")
    done = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=10)
    assert (done.returncode, done.stdout, done.stderr, ran.exists()) == (0, "", "", False)
    init = subprocess.run(["sh", "-c", sysv.PROBE["init"]], capture_output=True, text=True, timeout=10)
    assert init.stdout == "sysv\n"
    assert sysv.on_systemd("x").startswith(f"if {sysv.SYSTEMD}; then ")
