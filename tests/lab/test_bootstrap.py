"""bootstrap on real hosts: dry run touches nothing, the first run sets up everything, a second run
changes nothing, and lines svrchain does not own survive byte for byte."""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.lab

# What svrchain manages, per host: a second run must leave each byte-identical (and unrewritten).
COMMON_DB = ["/usr/local/lib/svrchain/dbora", "/root/.ssh/svr_restart_key", "/root/.ssh/svr_restart_key.pub",
             "/etc/svrchain/known_hosts"]
INIT_FILES = {
    "sysv": ["/etc/init.d/dbora", "/etc/init.d/svr_restart"],
    "systemd": ["/etc/systemd/system/dbora.service", "/etc/systemd/system/svr-restart.service",
                "/usr/local/lib/svrchain/svr_restart"],
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
    """sha256 and mtime (ns) of every managed file, read over SSH; ('-', '-') when missing."""
    out = {}
    for name, paths in managed(lab).items():
        h = lab.host(name)
        for p in paths:
            f = h.file(p)
            out[f"{name}:{p}"] = (f.sha256sum, h.check_output(f"stat -c %Y.%y {p}")) if f.exists else ("-", "-")
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
    diff_line = "+# chkconfig: 345 98 11" if lab.init == "sysv" else "+ExecStart=/usr/local/lib/svrchain/dbora start"
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
    if lab.init == "sysv":
        assert db.file("/etc/init.d/dbora").contains("^# chkconfig: 345 98 11$")
        assert db.file("/etc/init.d/svr_restart").contains("^# chkconfig: 345 99 1$")
        links = db.check_output("ls /etc/rc3.d /etc/rc4.d /etc/rc5.d | grep -E 'dbora|svr_restart'").split()
        assert len(links) == 6
        assert sorted(links, key=lambda s: s[1:3])[:3] == [x for x in links if x.endswith("dbora")]
    else:
        assert db.check_output("systemctl is-enabled dbora.service svr-restart.service").split() == ["enabled"] * 2
        assert "svr-restart.service" in db.check_output("systemctl show -p Wants dbora.service")
        units = "/etc/systemd/system/dbora.service /etc/systemd/system/svr-restart.service"
        verify = db.run(f"systemd-analyze verify {units}")
        assert verify.rc == 0 and "dbora" not in verify.stderr + verify.stdout, verify.stderr


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
    assert v.returncode == 1 and "GAP" in v.stdout and "svrchain: verify:" in v.stderr
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
