"""bootstrap on real hosts: dry run touches nothing, the first run sets up everything, a second run
changes nothing, and lines svrchain does not own survive byte for byte."""

from __future__ import annotations

import re

import pytest

from tests.lab.conftest import CORE_INITS, lab_fixture

pytestmark = pytest.mark.lab
lab = lab_fixture(*CORE_INITS)

# What svrchain manages, per host: a second run must leave each byte-identical (and unrewritten).
COMMON_DB = ["/usr/local/lib/svrchain/dbora", "/root/.ssh/svr_restart_key", "/root/.ssh/svr_restart_key.pub",
             "/etc/svrchain/known_hosts", "/usr/local/lib/svrchain/svr_restart", "/etc/svrchain/svr_restart.conf"]
INIT_FILES = {
    "sysv": ["/etc/init.d/dbora", "/etc/init.d/svr_restart"],
    "chkconfig": ["/etc/init.d/dbora", "/etc/init.d/svr_restart"],
    "systemd": ["/etc/systemd/system/dbora.service", "/etc/systemd/system/svr-restart.service"],
}


def managed(lab) -> dict[str, list[str]]:
    web = ["/root/.ssh/authorized_keys", "/usr/local/sbin/svr-restart-gate"]
    return {"db": COMMON_DB + INIT_FILES[lab.init], "web1": web, "web2": web}
# Someone else's lines in web1's authorized_keys, with a comment, options holding quoted spaces,
# a CRLF line and no final newline: all must survive byte for byte.
FOREIGN = (
    "# operators\r\n"
    'no-pty,command="echo \\"hello there\\"" ssh-ed25519 '
    "AAAAC3NzaC1lZDI1NTE5AAAAIEJvYkJvYkJvYkJvYkJvYkJvYkJvYkJvYkJvYkJvYkJvYkJv bob@ops\n"
    "\n"
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEFsaWNlQWxpY2VBbGljZUFsaWNlQWxpY2VBbGljZUFs alice@ops"
)


def snapshot(lab) -> dict[str, tuple[str, str]]:
    """sha256 and mtime (ns) of every managed file, read over SSH, one command per host; ('-', '-') when
    missing."""
    out = {}
    for name, paths in managed(lab).items():
        text = lab.host(name).check_output(
            f"for p in {' '.join(paths)}; do if [ -e $p ]; then sha256sum $p | cut -d' ' -f1; stat -c %Y.%y $p; "
            "else echo -; echo -; fi; done")
        lines = text.splitlines()
        assert len(lines) == 2 * len(paths), text
        out |= {f"{name}:{p}": (lines[2 * i], lines[2 * i + 1]) for i, p in enumerate(paths)}
    return out


def test_dry_run_on_a_fresh_lab_changes_nothing(lab):
    admin_keys = lab.host("web1").file("/root/.ssh/authorized_keys").content
    lab.console("web1", "cat >> /root/.ssh/authorized_keys <<'EOF'\n" + FOREIGN + "\nEOF\n"
                "truncate -s -1 /root/.ssh/authorized_keys")  # no final newline
    assert lab.host("web1").file("/root/.ssh/authorized_keys").content == admin_keys + FOREIGN.encode()
    before = snapshot(lab)
    r = lab.fab("bootstrap", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "would change" in r.stdout and "changed " not in r.stdout
    # the diff of the file it would write
    diff_line = "+# chkconfig: 345 98 11" if lab.init != "systemd" else "+ExecStart=/usr/local/lib/svrchain/dbora start"
    assert diff_line in r.stdout
    assert snapshot(lab) == before
    assert not lab.host("db").file(INIT_FILES[lab.init][0]).exists


def test_bootstrap_from_scratch(lab):
    r = lab.fab("bootstrap")
    assert r.returncode == 0, r.stdout + r.stderr
    for step in ("install-dbora", "gen-key", "push-key", "pin-host-keys", "install-svr-restart"):
        assert re.search(rf"^\S+\s+{step}\s+changed\b", r.stdout, re.M), (step, r.stdout)
    assert "GAP" not in r.stdout
    db = lab.host("db")
    key = db.file("/root/.ssh/svr_restart_key")
    assert key.mode == 0o600 and key.user == "root"
    assert db.run("ssh-keygen -y -P '' -f /root/.ssh/svr_restart_key").rc == 0  # no passphrase
    if lab.init == "chkconfig":
        assert_chkconfig_registration(lab, r.stdout)
    elif lab.init == "sysv":
        assert db.file("/etc/init.d/dbora").contains("^# chkconfig: 345 98 11$")
        assert db.file("/etc/init.d/svr_restart").contains("^# chkconfig: 345 99 1$")
        links = db.check_output("ls /etc/rc3.d /etc/rc4.d /etc/rc5.d | grep -E 'dbora$|svr_restart$'").split()
        assert len(links) == 6
        assert sorted(links, key=lambda s: s[1:3])[:3] == [x for x in links if x.endswith("dbora")]
    else:
        assert db.check_output("systemctl is-enabled dbora.service svr-restart.service").split() == ["enabled"] * 2
        assert "svr-restart.service" in db.check_output("systemctl show -p Wants dbora.service")
        units = "/etc/systemd/system/dbora.service /etc/systemd/system/svr-restart.service"
        verify = db.run(f"systemd-analyze verify {units}")
        assert verify.rc == 0 and "dbora" not in verify.stderr + verify.stdout, verify.stderr


def test_verify_reports_a_database_that_runs_outside_its_service(lab):
    """On systemd the lab's database was started before svrchain, by the DBA's own unit (lab-db.service):
    bootstrap says the hand-over is left to do (not a gap: it cannot do it), verify reports the gap that
    `restart-chain` would otherwise meet ("the service restart did not restart the database"), with the
    same advice; once the database is handed over to dbora.service, verify is ok. (SysV: the init
    script stops and starts the process itself, whoever started it: nothing to report.)"""
    if lab.init != "systemd":
        assert "under its service" not in lab.fab("verify").stdout
        return
    r = lab.fab("bootstrap")
    handover = (r"^db\s+under its service\s+SKIPPED\s+the database its process \d+ is in "
                r"\S*/system.slice/lab-db.service, not dbora.service")
    assert r.returncode == 0 and re.search(handover, r.stdout, re.M), r.stdout
    v = lab.fab("verify")
    assert v.returncode == 2, v.stdout + v.stderr
    row = re.search(r"^db\s+under its service\s+GAP\s+(.*)$", v.stdout, re.M)
    assert row and "a restart of the service would not restart it; it runs outside dbora.service / " \
                   "/etc/init.d/dbora; stop it and start it through its service once" in row.group(1), v.stdout
    lab.db_under_service()
    v = lab.fab("verify")
    assert v.returncode == 0 and re.search(r"^db\s+under its service\s+ok\s+run \S+ is dbora.service's", v.stdout,
                                           re.M), v.stdout + v.stderr


# What chkconfig 1.33 makes of the memo's headers (345 98 11, 345 99 1): start links in 3 4 5, kill links
# in every other level, 2 included.
CHKCONFIG_LINKS = {lv: "K01svr_restart K11dbora" for lv in "0126"} | {lv: "S98dbora S99svr_restart" for lv in "345"}


def rc_links(lab) -> dict[str, str]:
    """svrchain's rc links per level on the DB host, read from RHEL's /etc/rc.d/rcN.d."""
    out = lab.host("db").check_output(
        "for n in 0 1 2 3 4 5 6; do echo $n $(ls /etc/rc.d/rc$n.d | grep -E 'dbora$|svr_restart$'); done")
    return dict(line.split(" ", 1) for line in out.splitlines())


def assert_chkconfig_registration(lab, output: str) -> None:
    """Registered by chkconfig, and only chkconfig could have: the memo's exact numbers."""
    db = lab.host("db")
    assert "chkconfig --add dbora, chkconfig --level 345 dbora on" in output
    assert "chkconfig --add svr_restart, chkconfig --level 345 svr_restart on" in output
    assert db.run("command -v update-rc.d || command -v insserv").rc == 1
    assert db.file("/etc/init.d").linked_to == "/etc/rc.d/init.d"
    assert rc_links(lab) == CHKCONFIG_LINKS
    listed = db.check_output("chkconfig --list dbora; chkconfig --list svr_restart").splitlines()
    assert [ln.split() for ln in listed] == [
        [s, "0:off", "1:off", "2:off", "3:on", "4:on", "5:on", "6:off"] for s in ("dbora", "svr_restart")]
    assert db.check_output("readlink /etc/rc3.d/S98dbora") == "../init.d/dbora"


def test_the_line_is_exact_and_foreign_lines_survive(lab):
    pub = lab.host("db").file("/root/.ssh/svr_restart_key.pub").content_string.split()
    web1 = lab.host("web1")
    content = web1.file("/root/.ssh/authorized_keys").content
    line = (
        'restrict,from="198.18.0.10",no-port-forwarding,no-X11-forwarding,no-agent-forwarding,no-pty,'
        f'command="/usr/local/sbin/svr-restart-gate" {pub[0]} {pub[1]} svrchain:svr_restart@db\n'
    )
    # The file did not end with a newline: the line goes first, and every other byte stays as it was.
    assert content.startswith(line.encode()) and content[len(line):].endswith(FOREIGN.encode())
    f = web1.file("/root/.ssh/authorized_keys")
    assert (f.mode, f.user) == (0o600, "root")
    assert web1.file("/root/.ssh").mode == 0o700
    gate = web1.file("/usr/local/sbin/svr-restart-gate")
    assert (gate.mode, gate.user) == (0o755, "root")
    assert gate.contains("^RESTART_COMMAND='/etc/init.d/apache2 restart'$")


def test_second_run_changes_nothing(lab):
    before = snapshot(lab)
    r = lab.fab("bootstrap")
    assert r.returncode == 0, r.stdout + r.stderr
    steps = [ln for ln in r.stdout.splitlines() if re.match(r"^\S+\s+[a-z-]+\s+(ok|changed|would)", ln)]
    assert steps and all(re.match(r"^\S+\s+[a-z-]+\s+ok\b", ln) for ln in steps), r.stdout
    assert snapshot(lab) == before  # same bytes, and not even rewritten (same mtime)


def test_drift_is_shown_by_dry_run_and_repaired(lab):
    web2 = lab.host("web2")
    lab.console("web2", "sed -i '/svrchain:/d' /root/.ssh/authorized_keys; chmod 644 /root/.ssh/authorized_keys")
    v = lab.fab("verify")
    assert v.returncode == 2 and "GAP" in v.stdout and "svrchain: verify:" in v.stderr
    drifted = web2.file("/root/.ssh/authorized_keys").content
    r = lab.fab("push-key", "--dry-run")
    assert r.returncode == 0 and re.search(r"^web2\s+push-key\s+would change", r.stdout, re.M)
    assert "+restrict,from=" in r.stdout
    assert web2.file("/root/.ssh/authorized_keys").content == drifted
    r = lab.fab("push-key")
    assert re.search(r"^web2\s+push-key\s+changed", r.stdout, re.M), r.stdout
    assert re.search(r"^web1\s+push-key\s+ok", r.stdout, re.M)
    assert web2.file("/root/.ssh/authorized_keys").mode == 0o600
    assert lab.fab("verify").returncode == 0
    backups = web2.check_output("ls /var/backups/svrchain")
    assert "%root%.ssh%authorized_keys." in backups  # the old file was kept


def test_gen_key_keeps_an_existing_key(lab):
    before = lab.host("db").file("/root/.ssh/svr_restart_key").sha256sum
    r = lab.fab("gen-key")
    assert r.returncode == 0 and re.search(r"^db\s+gen-key\s+ok", r.stdout, re.M)
    assert lab.host("db").file("/root/.ssh/svr_restart_key").sha256sum == before


def test_one_ssh_connection_per_host_per_run(lab):
    def accepted() -> dict[str, int]:  # read through the lab console, so no SSH login is counted
        return {h: int(lab.console(h, "grep -c 'Accepted publickey' /var/log/auth.log || true").stdout)
                for h in ("db", "web1", "web2")}

    before = accepted()
    r = lab.fab("bootstrap")
    assert r.returncode == 0, r.stdout + r.stderr
    after = accepted()
    assert {h: after[h] - before[h] for h in after} == {"db": 1, "web1": 1, "web2": 1}


def test_chkconfig_reregisters_a_changed_header(lab):
    """A site's older dbora, registered by chkconfig from another header (2345 20 80, and an LSB block
    agreeing: chkconfig 1.33 reads both, Default-Stop taking levels out): verify names every wrong link,
    install-dbora registers it afresh from svrchain's header."""
    if lab.init != "chkconfig":
        pytest.skip("chkconfig hosts only")
    chkconfig_line = "s/^# chkconfig: 345 98 11$/# chkconfig: 2345 20 80/"
    lab.console("db", f"sed -i '{chkconfig_line}' /etc/init.d/dbora && chkconfig --del dbora && chkconfig --add dbora")
    # chkconfig 1.33 reads the LSB block after the chkconfig line: its Default-Stop (0 1 2 6) takes level 2 out.
    assert rc_links(lab)["2"] == "K01svr_restart K80dbora"
    lsb = "s/^# Default-Start: .*/# Default-Start: 2 3 4 5/; s/^# Default-Stop: .*/# Default-Stop: 0 1 6/"
    lab.console("db", f"sed -i '{lsb}' /etc/init.d/dbora && chkconfig --del dbora && chkconfig --add dbora")
    assert rc_links(lab)["2"] == "K01svr_restart S20dbora"
    v = lab.fab("verify")
    assert v.returncode == 2
    assert re.search(r"^db\s+dbora boot\s+GAP\s+rc0.d has K80dbora, want K11dbora; .*"
                     r"rc2.d has S20dbora, want K11dbora; rc3.d has S20dbora, want S98dbora", v.stdout, re.M), v.stdout
    r = lab.fab("install-dbora")
    assert r.returncode == 0, r.stdout + r.stderr
    assert ("/etc/init.d/dbora (content), chkconfig --del dbora, chkconfig --add dbora, "
            "chkconfig --level 345 dbora on") in r.stdout, r.stdout
    assert rc_links(lab) == CHKCONFIG_LINKS
    v = lab.fab("verify")
    assert v.returncode == 0, v.stdout
    assert re.search(r"^db\s+dbora boot\s+ok\s+S98dbora in 3 4 5, K11dbora in 0 1 2 6; chkconfig --list: on in 3 4 5$",
                     v.stdout, re.M), v.stdout
    assert re.search(r"^db\s+svr_restart boot\s+ok\s+S99svr_restart in 3 4 5, K01svr_restart in 0 1 2 6", v.stdout,
                     re.M), v.stdout


def test_a_chkconfig_override_is_refused_in_one_line_and_flagged(lab):
    """A site's override in /etc/chkconfig.d (2345): chkconfig --add follows it; install-dbora says so in
    one line rather than registering dbora again on every run, verify flags it; without it, all is repaired."""
    if lab.init != "chkconfig":
        pytest.skip("chkconfig hosts only")
    lab.console("db", "mkdir -p /etc/chkconfig.d && echo '# chkconfig: 2345 98 11' >/etc/chkconfig.d/dbora && "
                      "chkconfig --del dbora && chkconfig --add dbora")
    links = rc_links(lab)
    assert links["2"] == "K01svr_restart S98dbora"  # chkconfig's own behaviour: the override wins
    r = lab.fab("install-dbora")
    assert r.returncode == 1
    assert re.search(r"^db\s+install-dbora\s+failed\s+db \(198\.18\.0\.10:22\): /etc/chkconfig.d/dbora overrides "
                     r"dbora's '# chkconfig: 345 98 11' with '# chkconfig: 2345 98 11', and chkconfig --add uses it; "
                     r"remove it", r.stdout, re.M), r.stdout
    assert "Traceback" not in r.stderr and rc_links(lab) == links
    v = lab.fab("verify")
    assert v.returncode == 2
    assert re.search(r"^db\s+dbora boot\s+GAP\s+rc2.d has S98dbora, want K11dbora; /etc/chkconfig.d/dbora overrides",
                     v.stdout, re.M), v.stdout
    lab.console("db", "rm -r /etc/chkconfig.d")
    r = lab.fab("install-dbora")
    assert r.returncode == 0 and "chkconfig --del dbora, chkconfig --add dbora" in r.stdout, r.stdout
    assert rc_links(lab) == CHKCONFIG_LINKS
    assert lab.fab("verify").returncode == 0
