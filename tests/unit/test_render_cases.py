"""What render names and writes for the lab inventory, written out here and in tests/unit/fixtures/render/."""

from __future__ import annotations

from pathlib import Path

import pytest

from svrchain.core import render
from svrchain.core.errors import SvrchainError
from svrchain.core.inventory import load
from tests.paths import LAB_INVENTORY

INV = load(LAB_INVENTORY)
EXPECTED = Path(__file__).resolve().parent / "fixtures" / "render" / "lab"


def with_changes(inv, section: str, **changes):
    return inv.model_copy(update={section: getattr(inv, section).model_copy(update=changes)})


UNIT = with_changes(INV, "db", script=None, unit="oracle@ORCL.service")
RENAMED = with_changes(with_changes(INV, "trigger", name="chain_go"), "db", service="pg")


@pytest.mark.parametrize(("name", "inv", "value"), [
    ("impl_path", INV, "/usr/local/lib/svrchain/dbora"),
    ("impl_path", RENAMED, "/usr/local/lib/svrchain/pg"),
    ("db_unit", INV, "dbora.service"),
    ("db_unit", UNIT, "oracle@ORCL.service"),
    ("trigger_unit", INV, "svr-restart.service"),
    ("trigger_unit", RENAMED, "chain-go.service"),
    ("watch_name", INV, "svr_restart_watch"),
    ("watch_unit", INV, "svr-restart-watch.service"),
    ("watch_unit", RENAMED, "chain-go-watch.service"),
    ("owed_dir", INV, "/var/lib/svrchain/svr_restart.owed"),
    ("watch_pidfile", INV, "/run/svrchain/svr_restart_watch.pid"),
    ("ready_check", INV, "pg_isready -q -h 127.0.0.1"),
    ("sudo_command", INV, "/etc/init.d/apache2 restart"),
])
def test_names(name, inv, value):
    assert getattr(render, name)(inv) == value


def test_the_trigger_and_its_settings_are_the_same_on_every_host():
    assert render.trigger_path(INV) == "/usr/local/lib/svrchain/svr_restart"
    assert render.trigger_config_path(INV) == "/etc/svrchain/svr_restart.conf"


def test_a_tcp_probe_and_the_gate_state():
    tcp = with_changes(INV, "db", ready=INV.db.ready.model_copy(update={"command": None, "port": 1521,
                                                                         "host": "198.18.0.10"}))
    assert render.ready_check(tcp) == "timeout 2 bash -c 'exec 3<>/dev/tcp/198.18.0.10/1521'"
    assert render.gate_state_dir("svr-restart") == "/var/lib/svrchain/gate/svr-restart"
    assert render.gate_state_dir("root", "/tmp/g") == "/tmp/g/root"


@pytest.mark.parametrize(("value", "quoted"), [
    ("plain", "'plain'"), ("it's", "'it'\"'\"'s'"), ("", "''"), (22, "'22'"), ("$(id) `x` \"y\"", "'$(id) `x` \"y\"'"),
])
def test_quote(value, quoted):
    assert render.quote(value) == quoted


def test_ssh_options_in_order():
    assert render.ssh_options(INV) == [
        "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none",
        "-o", "GSSAPIAuthentication=no", "-o", "StrictHostKeyChecking=yes",
        "-o", "UserKnownHostsFile=/etc/svrchain/known_hosts", "-o", "GlobalKnownHostsFile=/dev/null",
        "-o", "ConnectTimeout=3"]


@pytest.mark.parametrize(("command", "rule"), [
    ("/usr/sbin/apachectl", '/usr/sbin/apachectl ""'),
    ("/usr/bin/systemctl restart --job-mode=fail a:b,c", "/usr/bin/systemctl restart --job-mode\\=fail a\\:b\\,c"),
    ("/usr/bin/x a\\b", "/usr/bin/x a\\\\b"),  # (the inventory refuses backslashes; escaped all the same)
    ("/usr/bin/X11/xrestart Xvfb", "/usr/bin/X11/xrestart Xvfb"),
])
def test_the_sudo_rule_escapes_what_sudoers_reads(command, rule):
    inv = with_changes(INV, "web", user="svr-restart", restart_command=command)
    assert render.sudo_command(inv) == rule
    assert render.sudoers(inv).decode() == (
        "# Written by svrchain (fab push-key). Edit the inventory, not this file.\n"
        "# svr-restart (the DB server's restart key) may run the web server's restart command as root,\n"
        "# with exactly these arguments, and nothing else.\n"
        "Defaults:svr-restart !requiretty\n"
        f"svr-restart ALL=(root) NOPASSWD: {rule}\n")


@pytest.mark.parametrize(("render_it", "expected"), [
    (lambda: render.dbora_service(INV), "dbora.service"),
    (lambda: render.svr_restart_service(INV), "svr-restart.service"),
    (lambda: render.watch_service(INV), "svr-restart-watch.service"),
    (lambda: render.trigger_init(INV), "svr_restart"),
    (lambda: render.trigger_config(INV), "svr_restart.conf"),
], ids=["dbora.service", "svr-restart.service", "svr-restart-watch.service", "svr_restart", "svr_restart.conf"])
def test_rendered_files(render_it, expected):
    assert render_it().decode() == (EXPECTED / expected).read_text()


def lines(content: bytes) -> list[str]:
    return content.decode().splitlines()


def test_the_sysv_scripts_name_their_parts():
    init = lines(render.dbora_init(INV))
    assert "IMPL='/usr/local/lib/svrchain/dbora'" in init and "TRIGGER='/etc/init.d/svr_restart'" in init
    hook = '            setsid "$TRIGGER" start </dev/null >/dev/null 2>&1 &'
    assert hook in init and hook not in lines(render.dbora_init(INV, False))
    watch = lines(render.watch_init(INV))
    assert "TRIGGER='/usr/local/lib/svrchain/svr_restart'" in watch
    assert "PIDFILE='/run/svrchain/svr_restart_watch.pid'" in watch
    assert "# Provides:          svr_restart_watch" in watch
    assert "# description: svr_restart_watch: notices every new run of the database dbora, however it" in watch
    conf = lines(render.trigger_config(INV))
    for line in ("key=/root/.ssh/svr_restart_key", "known_hosts=/etc/svrchain/known_hosts",
                 "log=/var/log/svr_restart.log", "connect_timeout=3", "retries=3", "restart_timeout=60",
                 "web=web1 198.18.0.21 22 root", "web=web2 198.18.0.22 22 root"):
        assert line in conf


def test_a_site_script_that_cannot_be_read(tmp_path):
    inv = with_changes(INV.model_copy(update={"source": tmp_path / "prod.yaml"}), "db", script="nope.sh")
    with pytest.raises(SvrchainError) as exc:
        render.dbora_impl(inv)
    assert str(exc.value) == (f"{tmp_path}/prod.yaml: db.script: cannot read {tmp_path}/nope.sh: "
                              "No such file or directory; fix the path")
    (tmp_path / "site.sh").write_bytes(b"#!/bin/sh\necho site\n")
    assert render.dbora_impl(with_changes(inv, "db", script="site.sh")) == b"#!/bin/sh\necho site\n"


def test_the_oracle_check_names_the_instance():
    from svrchain.core.inventory import Oracle

    inv = with_changes(INV, "db", script=None, oracle=Oracle(home="/u01/app/oracle", sid="ORCL", pdb="APP"))
    text = lines(render.oracle_ready(inv))
    assert "ORACLE_HOME='/u01/app/oracle'" in text and "ORACLE_SID='ORCL'" in text
    assert "OWNER='oracle'" in text and "PDB='APP'" in text


@pytest.mark.parametrize(("user", "command", "line"), [
    ("root", "cat -- '/root/.ssh/authorized_keys'", "cat -- '/root/.ssh/authorized_keys'"),
    ("svr-restart", "cat -- x",
     'setpriv --reuid=svr-restart --regid="$(id -g -- svr-restart)" --init-groups -- cat -- x'),
    ("a b", "true", "setpriv --reuid='a b' --regid=\"$(id -g -- 'a b')\" --init-groups -- true"),
])
def test_a_command_as_an_account(user, command, line):
    assert render.as_account(user, command) == line


def test_the_marker_names_the_trigger_and_the_db():
    assert render.marker(INV) == "svrchain:svr_restart@db"
    assert render.marker(RENAMED) == "svrchain:chain_go@db"


@pytest.mark.parametrize(("interval", "written"), [
    (1, "1"), (2.0, "2"), (0.5, "0.5"), (1.25, "1.25"), (10.1, "10.1"), (0.000001, "0.000001"), (60, "60"),
])
def test_the_trigger_reads_seconds_as_plain_digits(interval, written):
    inv = with_changes(INV, "db", ready=INV.db.ready.model_copy(update={"interval": interval}))
    assert ("ready_interval", written) in render.trigger_settings(inv)


@pytest.mark.parametrize("brk", ["\n", "\r"])
def test_a_setting_with_a_line_break_is_refused(brk):
    inv = with_changes(INV, "db", ready=INV.db.ready.model_copy(update={"command": f"pg_isready{brk}reboot"}))
    with pytest.raises(SvrchainError) as exc:
        render.trigger_config(inv)
    assert str(exc.value) == f"{INV.source}: the trigger's ready_command holds a line break"


def test_the_role_check_is_written_whole_for_each_database():
    """The role check (db.role) names itself, and asks PostgreSQL on the socket directory, port and database
    of the inventory, or Oracle with its home and SID; exactly the expected files."""
    from svrchain.core.inventory import Oracle, Role

    pg = with_changes(INV, "db", role=Role(check="postgres", psql="/usr/lib/postgresql/15/bin/psql",
                                           socket_dir="/run/pg-main", port=5433, database="app"))
    assert render.role_check(pg).decode() == (EXPECTED / "svr_restart-role.postgres").read_text()
    ora = with_changes(INV, "db", script=None, role=Role(check="oracle"),
                       oracle=Oracle(home="/u01/app/oracle/product/19.0.0/dbhome_1", sid="ORCL"))
    assert render.role_check(ora).decode() == (EXPECTED / "svr_restart-role.oracle").read_text()
