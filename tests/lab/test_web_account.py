"""The web account as an attacker, on the lab: root never follows what it controls; svrchain's line lives
in web.user's account only; older lines that bypass the gate are found and retired; changing runs of
two admins do not interleave; a private key is never backed up.

SysV hosts only: none of this depends on the init system (the account, sshd and the files are the same).
"""

from __future__ import annotations

import os
import re
import subprocess

import pytest

from tests.lab.conftest import FAB, REPO, dedicated_inventory, lab_of
from tests.paths import LAB_INVENTORY

pytestmark = pytest.mark.lab
USER = "svr-restart"
HOME = f"/var/lib/{USER}"
LEGACY_KEY = "/root/.ssh/id_legacy"
MARK = "svrchain:svr_restart@db"


@pytest.fixture(scope="module")
def lab():
    yield from lab_of("sysv")


@pytest.fixture(scope="module")
def dedicated(lab, tmp_path_factory):
    return dedicated_inventory(tmp_path_factory, USER)


def stat(lab, host: str, path: str) -> str:
    """Owner, group, mode and checksum of a path on a host, read through the console (no SSH)."""
    return lab.console(host, f"stat -c '%U:%G %a' {path}; sha256sum {path} 2>/dev/null || ls -la {path}").stdout


def fab_ok(lab, *args: str, **kw) -> subprocess.CompletedProcess:
    r = lab.fab(*args, **kw)
    assert r.returncode == 0, r.stdout + r.stderr
    return r


def test_root_to_dedicated_moves_the_line_out_of_root(lab, dedicated):
    fab_ok(lab, "bootstrap")
    r = fab_ok(lab, "bootstrap", inventory=dedicated)
    assert re.search(rf"^web1 +stale-lines +changed +remove svrchain's line from root \(/root/.ssh/authorized_keys\): "
                     rf"web.user is {USER}$", r.stdout, re.M), r.stdout
    for web in ("web1", "web2"):
        assert MARK not in lab.host(web).file("/root/.ssh/authorized_keys").content_string
        assert MARK in lab.host(web).file(f"{HOME}/.ssh/authorized_keys").content_string
    again = fab_ok(lab, "bootstrap", inventory=dedicated)
    assert " changed " not in again.stdout and "stale-lines" not in again.stdout, again.stdout


def test_a_planted_ssh_dir_link_is_refused_and_root_touches_nothing(lab, dedicated):
    # The account replaces its ~/.ssh with a link to a directory only root may use.
    target = "/etc/svrchain-secret"
    lab.console("web1", f"mkdir -m 700 {target} && echo secret >{target}/x")
    before = stat(lab, "web1", target) + stat(lab, "web1", f"{target}/x")
    stage = f"mv {HOME}/.ssh {HOME}/ssh.saved && runuser -u {USER} -- ln -s {target} {HOME}/.ssh"
    with lab.fault("web1", stage, f"rm -f {HOME}/.ssh && mv {HOME}/ssh.saved {HOME}/.ssh"):
        r = lab.fab("push-key", inventory=dedicated)
        assert r.returncode == 1
        assert re.search(rf"^web1 +push-key +failed +web1 \(198.18.0.21:22\): {HOME}/.ssh is a symbolic link; "
                         "svrchain never follows a link", r.stdout, re.M), r.stdout
        assert "Traceback" not in r.stdout + r.stderr
        v = lab.fab("verify", inventory=dedicated)
        assert v.returncode == 2
        assert re.search(r"^web1 +authorized_keys +GAP +UNSAFE: .*symbolic link", v.stdout, re.M), v.stdout
        assert not re.search(r"^web1 +modes ", v.stdout, re.M)  # not a "modes" gap that invites a repair
    assert stat(lab, "web1", target) + stat(lab, "web1", f"{target}/x") == before
    assert re.search(r"^web2 +push-key +ok ", r.stdout, re.M)  # the other host is unaffected


@pytest.mark.parametrize("stage", [
    f"runuser -u {USER} -- sh -c 'rm -f {HOME}/.ssh/authorized_keys && ln -s /etc/shadow {HOME}/.ssh/authorized_keys'",
    f"chown nobody {HOME}/.ssh/authorized_keys",
], ids=["link to /etc/shadow", "owned by another account"])
def test_a_planted_authorized_keys_is_refused(lab, dedicated, stage):
    keys = f"{HOME}/.ssh/authorized_keys"
    lab.console("web1", f"cp -a {keys} /root/keys.saved")
    shadow = stat(lab, "web1", "/etc/shadow")
    with lab.fault("web1", stage, f"rm -f {keys} && mv /root/keys.saved {keys}"):
        planted = lab.console("web1", f"stat -c '%U %a %N' {keys}").stdout
        r = lab.fab("push-key", inventory=dedicated)
        assert r.returncode == 1
        assert re.search(rf"^web1 +push-key +failed +.*{keys} (is a symbolic link|is owned by nobody, not {USER})",
                         r.stdout, re.M), r.stdout
        assert lab.console("web1", f"stat -c '%U %a %N' {keys}").stdout == planted  # nothing changed
    assert stat(lab, "web1", "/etc/shadow") == shadow


def test_the_account_is_written_as_itself(lab, dedicated):
    """push-key's repair of the account's files runs as the account: a drifted ~/.ssh mode is fixed and
    the new file is the account's, with no root-owned temp file or chown left behind."""
    lab.console("web1", f"chmod 755 {HOME}/.ssh && sed -i '/{MARK}/d' {HOME}/.ssh/authorized_keys")
    r = fab_ok(lab, "push-key", inventory=dedicated)
    assert re.search(r"^web1 +push-key +changed +.*authorized_keys \(content\)", r.stdout, re.M), r.stdout
    assert stat(lab, "web1", f"{HOME}/.ssh").startswith(f"{USER}:{USER} 700")
    assert stat(lab, "web1", f"{HOME}/.ssh/authorized_keys").startswith(f"{USER}:{USER} 600")
    assert lab.console("web1", f"find {HOME} ! -user {USER}").stdout == ""


def test_a_line_of_ours_in_another_account_is_flagged_and_removed(lab, dedicated):
    line = lab.console("web1", f"grep {MARK} {HOME}/.ssh/authorized_keys").stdout
    lab.console("web1", f"cat >>/home/admin/.ssh/authorized_keys <<'EOF'\n{line}EOF")
    v = lab.fab("verify", inventory=dedicated)
    assert v.returncode == 2
    want = (r"^web1 +other accounts +GAP +svrchain's line is also in admin "
            rf"\(/home/admin/.ssh/authorized_keys\), which is not web.user \({USER}\)")
    assert re.search(want, v.stdout, re.M), v.stdout
    r = fab_ok(lab, "push-key", inventory=dedicated)
    assert "remove svrchain's line from admin (/home/admin/.ssh/authorized_keys)" in r.stdout
    assert MARK not in lab.host("web1").file("/home/admin/.ssh/authorized_keys").content_string
    fab_ok(lab, "verify", inventory=dedicated)


def test_dedicated_back_to_root_leaves_no_working_line_in_the_account(lab, dedicated):
    r = fab_ok(lab, "bootstrap")
    assert f"remove svrchain's line from {USER} ({HOME}/.ssh/authorized_keys): web.user is root" in r.stdout
    for web in ("web1", "web2"):
        assert MARK not in lab.host(web).file(f"{HOME}/.ssh/authorized_keys").content_string
    # The key no longer logs in as the account.
    out = lab.console("db", f"ssh -i /root/.ssh/svr_restart_key -o BatchMode=yes -o UserKnownHostsFile="
                            f"/etc/svrchain/known_hosts {USER}@198.18.0.21 status", check=False)
    assert out.returncode == 255 and "Permission denied" in out.stderr


def legacy_line(lab) -> str:
    pub = lab.console("db", f"ssh-keygen -q -t ed25519 -N '' -C legacy@db -f {LEGACY_KEY} && cat {LEGACY_KEY}.pub")
    return ('from="198.18.0.10",no-port-forwarding,no-X11-forwarding,no-agent-forwarding,no-pty,'
            f'command="/etc/init.d/apache2 restart" {pub.stdout.strip()}')


def test_a_hand_made_chain_is_flagged_and_retired_only_with_adopt(lab):
    line = legacy_line(lab)
    lab.console("web1", f"cat >>/root/.ssh/authorized_keys <<'EOF'\n{line}\nEOF")
    before = lab.host("web1").file("/root/.ssh/authorized_keys").content_string
    legacy_ssh = (f"ssh -i {LEGACY_KEY} -o BatchMode=yes -o UserKnownHostsFile=/etc/svrchain/known_hosts "
                  "root@198.18.0.21 anything")
    assert lab.console("db", legacy_ssh, check=False).returncode == 0  # the old key restarts Apache, no gate

    v = lab.fab("verify")
    assert v.returncode == 2
    assert re.search(r"^web1 +legacy keys +GAP +/root/.ssh/authorized_keys:\d+ \(root, key SHA256:\S+\) its key is "
                     r"held on db \(/root/.ssh/id_legacy\), runs '/etc/init.d/apache2 restart' and admits the DB "
                     r"server's address: it bypasses the gate; "
                     r"retire it with `fab bootstrap --adopt`", v.stdout, re.M), v.stdout
    plain = lab.fab("bootstrap")
    assert plain.returncode == 2 and "run again with --adopt to retire it" in plain.stdout, plain.stdout
    assert lab.host("web1").file("/root/.ssh/authorized_keys").content_string == before  # never silently

    dry = fab_ok(lab, "bootstrap", "--adopt", "--dry-run")
    assert "-" + line in dry.stdout and lab.host("web1").file("/root/.ssh/authorized_keys").content_string == before
    r = fab_ok(lab, "bootstrap", "--adopt")
    assert re.search(rf"^web1 +adopt +changed +retire /root/.ssh/authorized_keys:\d+ .* held on db \({LEGACY_KEY}\).* "
                     r"\(delete the private key on db once nothing else uses it\)", r.stdout, re.M), r.stdout
    after = lab.host("web1").file("/root/.ssh/authorized_keys").content_string
    assert after == before.replace(line + "\n", "")
    backups = lab.console("web1", "cat /var/backups/svrchain/%root%.ssh%authorized_keys.*").stdout
    assert line in backups
    out = lab.console("db", legacy_ssh, check=False)
    assert out.returncode == 255 and "Permission denied" in out.stderr
    assert " changed " not in fab_ok(lab, "bootstrap").stdout


def test_two_admins_changing_at_once_take_turns(lab):
    """Two gen-key runs started together while another run holds the DB server's lock: they wait, then
    one creates the key and the other finds it."""
    lab.console("db", "rm -f /root/.ssh/svr_restart_key /root/.ssh/svr_restart_key.pub")
    lab.console("db", "mkdir -p -m 700 /run/svrchain && "
                      "(flock /run/svrchain/admin.lock sleep 3 </dev/null >/dev/null 2>&1 &) && "
                      "timeout 10 sh -c 'until ! flock -n /run/svrchain/admin.lock true; do sleep 0.05; done'")  # held
    env = {**os.environ, "INVENTORY": str(LAB_INVENTORY)}
    runs = [subprocess.Popen([*FAB, "gen-key"], cwd=REPO, env=env, text=True, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE) for _ in range(2)]
    while True:
        made = lab.console("db", "test -e /root/.ssh/svr_restart_key", check=False).returncode == 0
        if lab.console("db", "pgrep -fx 'sleep 3'", check=False).returncode != 0:
            break
        assert not made  # the key was there while the other run still held the lock
    outs = [p.communicate(timeout=120) for p in runs]
    assert all(p.returncode == 0 for p in runs), outs
    stdout = "".join(o[0] for o in outs)
    assert stdout.count(" changed ") == 1 and stdout.count(" ok ") == 1, stdout
    final = lab.console("db", "ssh-keygen -l -f /root/.ssh/svr_restart_key.pub").stdout.split()[1]
    assert "create /root/.ssh/svr_restart_key" in stdout and stdout.count(final) == 1, stdout  # the other found it
    assert stat(lab, "db", "/root/.ssh/svr_restart_key.pub").startswith("root:root 644")
    fab_ok(lab, "push-key")


def test_uninstall_never_backs_up_a_private_key(lab):
    r = fab_ok(lab, "uninstall", "--yes")
    assert "remove /root/.ssh/svr_restart_key (a private key: not backed up)" in r.stdout
    found = lab.console("db", "grep -l 'PRIVATE KEY' /var/backups/svrchain/* 2>/dev/null; true").stdout
    assert found == ""
    assert not lab.host("db").file("/root/.ssh/svr_restart_key").exists

