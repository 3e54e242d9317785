"""Keys that restart the web server around the gate, found by key on the lab (issue 19, items 2-4).

A line is a bypass when its key is held on the DB server (its private key or .pub there, in any
account or /etc/svrchain), wherever sshd reads it (AuthorizedKeysFile), and only such a line is retired
by ``bootstrap --adopt``: the admin's own key, or a monitoring key, never is, whatever its options say.
Nothing an account plants (a FIFO, a huge file, a link) hangs or floods svrchain.

SysV hosts only: none of this depends on the init system.
"""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.lab.conftest import REPO, dedicated_inventory, lab_of

pytestmark = pytest.mark.lab
ROOT_KEYS = "/root/.ssh/authorized_keys"
ADMIN_KEYS = "/home/admin/.ssh/authorized_keys"
# A run that hangs on what an account planted waits out the 300 s channel timeout: far more than this.
BOUND = 150


@pytest.fixture(scope="module")
def lab():
    yield from lab_of("sysv")


def fab(lab, *args: str) -> subprocess.CompletedProcess:
    """A run bounded in time: one that hangs fails the test instead of hanging it."""
    try:
        return lab.fab(*args, timeout=BOUND)
    except subprocess.TimeoutExpired:
        pytest.fail(f"fab {' '.join(args)} did not end within {BOUND}s (it hangs on what an account planted)")


def fab_ok(lab, *args: str) -> subprocess.CompletedProcess:
    r = fab(lab, *args)
    assert r.returncode == 0, r.stdout + r.stderr
    return r


def admin_blob() -> str:
    return (REPO / ".lab" / "admin_key.pub").read_text().split()[1]


def db_key(lab, path: str, user: str = "root") -> str:
    """A new key made on the DB server by ``user`` (held there); its public line."""
    made = f"ssh-keygen -q -t ed25519 -N '' -C held@db -f {path} && cat {path}.pub"
    return lab.console("db", f"runuser -u {user} -- sh -c {shlex_quote(made)}").stdout.strip()


def shlex_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def restore(path: str) -> tuple[str, str]:
    """(stage, undo) pair parts: save ``path`` before a fault, put it back after."""
    return f"cp -a {path} {path}.saved", f"rm -f {path} && mv {path}.saved {path}"


def test_bootstrap_first(lab):
    fab_ok(lab, "bootstrap")


def test_the_admins_own_line_admitting_the_dbs_subnet_survives_adopt(lab):
    """Measured on 0.2: the admin's line with from="<DB's subnet>/24" was retired, locking the admin out."""
    save, undo = restore(ROOT_KEYS)
    blob = admin_blob()
    stage = f"{save} && sed -i 's|^ssh-ed25519 {blob}|from=\"198.18.0.0/24\" ssh-ed25519 {blob}|' {ROOT_KEYS}"
    with lab.fault("web1", stage, undo):
        before = lab.host("web1").file(ROOT_KEYS).content_string
        assert 'from="198.18.0.0/24"' in before
        r = fab_ok(lab, "bootstrap", "--adopt")
        assert not re.search(r"^web1 +adopt +changed", r.stdout, re.M), r.stdout
        assert lab.host("web1").file(ROOT_KEYS).content_string == before
        fab_ok(lab, "verify")  # the admin still logs in


def test_the_admins_own_key_copied_to_the_db_is_reported_loudly_never_retired(lab):
    """A copy of the admin's private key on the DB server makes its line a key held there: it is a gap
    ("YOUR OWN KEY"), and --adopt keeps it (retiring it would lock the admin out)."""
    save, undo = restore(ROOT_KEYS)
    blob = admin_blob()
    key = (REPO / ".lab" / "admin_key").read_text()
    copy = "/home/admin/.ssh/id_copy"
    lab.console("db", f"cat >{copy} <<'EOF'\n{key}EOF\nchown admin {copy} && chmod 600 {copy}")
    stage = f"{save} && sed -i 's|^ssh-ed25519 {blob}|from=\"198.18.0.0/24\" ssh-ed25519 {blob}|' {ROOT_KEYS}"
    try:
        with lab.fault("web1", stage, undo):
            before = lab.host("web1").file(ROOT_KEYS).content_string
            v = fab(lab, "verify")
            assert v.returncode == 2, v.stdout + v.stderr
            assert re.search(rf"^web1 +legacy keys +GAP +YOUR OWN KEY {ROOT_KEYS}:\d+ .*held on db \({copy}\)",
                             v.stdout, re.M), v.stdout
            r = fab(lab, "bootstrap", "--adopt")
            assert re.search(r"^web1 +adopt +ok +YOUR OWN KEY", r.stdout, re.M), r.stdout
            assert lab.host("web1").file(ROOT_KEYS).content_string == before
            assert fab(lab, "verify").returncode == 2  # still logs in: a gap, not unreachable
    finally:
        lab.console("db", f"rm -f {copy}")


def test_a_monitoring_key_is_neither_flagged_nor_removed(lab):
    mon = lab.console("web1", "rm -f /tmp/mon && ssh-keygen -q -t ed25519 -N '' -C monitoring -f /tmp/mon && "
                              "cat /tmp/mon.pub && rm -f /tmp/mon /tmp/mon.pub").stdout.strip()
    line = f'command="systemctl is-active apache2",no-pty {mon}'
    save, undo = restore(ROOT_KEYS)
    with lab.fault("web1", f"{save} && echo {shlex_quote(line)} >>{ROOT_KEYS}", undo):
        before = lab.host("web1").file(ROOT_KEYS).content_string
        v = fab_ok(lab, "verify")
        assert not re.search(r"^web1 +legacy keys +GAP", v.stdout, re.M), v.stdout
        r = fab_ok(lab, "bootstrap", "--adopt")
        assert not re.search(r"^web1 +adopt +changed", r.stdout, re.M), r.stdout
        assert lab.host("web1").file(ROOT_KEYS).content_string == before


def test_a_db_held_key_without_from_is_a_bypass_and_retired(lab):
    """Measured on 0.2: a DB-held key with command="/usr/local/bin/bounce-web" and no from= was not flagged."""
    pub = db_key(lab, "/var/lib/postgresql/.ssh/id_bounce", "postgres")
    lab.console("db", "chmod 700 /var/lib/postgresql/.ssh")
    line = f'command="/usr/local/bin/bounce-web",no-pty {pub}'
    save, undo = restore(ADMIN_KEYS)
    with lab.fault("web1", f"{save} && echo {shlex_quote(line)} >>{ADMIN_KEYS}", undo):
        before = lab.host("web1").file(ADMIN_KEYS).content_string
        v = fab(lab, "verify")
        assert v.returncode == 2, v.stdout + v.stderr
        assert re.search(rf"^web1 +legacy keys +GAP +{ADMIN_KEYS}:2 \(admin, key SHA256:\S+\) .*held on db "
                         r"\(/var/lib/postgresql/.ssh/id_bounce\)", v.stdout, re.M), v.stdout
        r = fab_ok(lab, "bootstrap", "--adopt")
        assert re.search(rf"^web1 +adopt +changed +retire {ADMIN_KEYS}:2 ", r.stdout, re.M), r.stdout
        assert lab.host("web1").file(ADMIN_KEYS).content_string == before.replace(line + "\n", "")
        fab_ok(lab, "verify")
    lab.console("db", "rm -f /var/lib/postgresql/.ssh/id_bounce /var/lib/postgresql/.ssh/id_bounce.pub")


def test_keys_are_read_where_sshd_reads_them(lab):
    """AuthorizedKeysFile with %u: a DB-held key in /etc/ssh/keys/root is a bypass; a command is reported."""
    pub = db_key(lab, "/root/.ssh/id_elsewhere")
    conf = "/etc/ssh/sshd_config.d/keys.conf"
    stage = (f"mkdir -p /etc/ssh/keys && echo {shlex_quote(pub)} >/etc/ssh/keys/root && "
             f"printf 'AuthorizedKeysFile .ssh/authorized_keys /etc/ssh/keys/%%u\\n' >{conf} && "
             "grep -q '^Include /etc/ssh/sshd_config.d' /etc/ssh/sshd_config || "
             "sed -i '1i Include /etc/ssh/sshd_config.d/*.conf' /etc/ssh/sshd_config")
    with lab.fault("web1", stage, f"rm -rf /etc/ssh/keys {conf}"):
        assert "/etc/ssh/keys/%u" in lab.console("web1", "sshd -T | grep -i ^authorizedkeysfile").stdout
        v = fab(lab, "verify")
        assert v.returncode == 2, v.stdout + v.stderr
        assert re.search(r"^web1 +legacy keys +GAP +/etc/ssh/keys/root:1 \(root, key SHA256:\S+\) .*held on db "
                         r"\(/root/.ssh/id_elsewhere\)", v.stdout, re.M), v.stdout
    lab.console("db", "rm -f /root/.ssh/id_elsewhere /root/.ssh/id_elsewhere.pub")


@pytest.mark.parametrize("stage", [
    "mkfifo {keys}",
    "head -c 2097152 /dev/zero >{keys}",
], ids=["fifo", "2 MiB"])
def test_what_an_account_plants_neither_hangs_nor_floods(lab, stage):
    """Measured on 0.2: `mkfifo ~/.ssh/authorized_keys` in any account hung verify for 300 s."""
    keys = ADMIN_KEYS
    plant = f"mv {keys} {keys}.saved && runuser -u admin -- sh -c {shlex_quote(stage.format(keys=keys))}"
    with lab.fault("web1", plant, f"rm -f {keys} && mv {keys}.saved {keys}"):
        v = fab(lab, "verify")
        assert v.returncode == 2, v.stdout + v.stderr
        assert re.search(rf"^web1 +legacy keys +GAP +.*{keys} \(admin\) not inspected: (is not a regular file|"
                         r"is larger than 1 MiB)", v.stdout, re.M), v.stdout
        assert len(v.stdout) < 20000
        for task in ("push-key", "bootstrap"):
            r = fab(lab, task)
            assert "Traceback" not in r.stdout + r.stderr, r.stdout + r.stderr


def test_the_db_side_scan_is_not_hung_by_a_planted_fifo(lab):
    home = "/var/lib/postgresql/.ssh"
    stage = f"runuser -u postgres -- sh -c 'mkdir -p -m 700 {home} && mkfifo {home}/id_x {home}/id_y.pub'"
    with lab.fault("db", stage, f"rm -f {home}/id_x {home}/id_y.pub"):
        fab_ok(lab, "verify")
        fab_ok(lab, "bootstrap", "--adopt")


def test_a_linked_authorized_keys_is_read_as_its_account_and_reported(lab):
    pub = db_key(lab, "/root/.ssh/id_linked")
    keys = ADMIN_KEYS
    plant = (f"mv {keys} {keys}.saved && echo {shlex_quote(pub)} >/home/admin/other && chown admin /home/admin/other "
             f"&& runuser -u admin -- ln -s /home/admin/other {keys}")
    with lab.fault("web1", plant, f"rm -f {keys} /home/admin/other && mv {keys}.saved {keys}"):
        v = fab(lab, "verify")
        assert v.returncode == 2, v.stdout + v.stderr
        assert re.search(rf"^web1 +legacy keys +GAP +{keys}:1 \(admin, a symbolic link, key SHA256:\S+\) .*held on db",
                         v.stdout, re.M), v.stdout
    lab.console("db", "rm -f /root/.ssh/id_linked /root/.ssh/id_linked.pub")


def test_a_fifo_as_web_users_own_authorized_keys_hangs_no_task(lab, tmp_path_factory):
    """web.user's own file replaced by a FIFO: verify, push-key, rotate-key and uninstall each end with one
    line naming it (measured on 0.2: each hung until the 300 s channel timeout)."""
    user, home = "svr-restart", "/var/lib/svr-restart"
    dedicated = dedicated_inventory(tmp_path_factory, user)
    r = lab.fab("bootstrap", inventory=dedicated, timeout=BOUND)
    assert r.returncode == 0, r.stdout + r.stderr
    keys = f"{home}/.ssh/authorized_keys"
    plant = f"mv {keys} /root/svr-keys.saved && runuser -u {user} -- mkfifo -m 600 {keys}"
    with lab.fault("web1", plant, f"rm -f {keys} && mv /root/svr-keys.saved {keys}"):
        runs = {}
        for args in (("verify",), ("push-key",), ("rotate-key",), ("uninstall", "--dry-run", "--yes")):
            try:
                runs[args[0]] = lab.fab(*args, inventory=dedicated, timeout=BOUND)
            except subprocess.TimeoutExpired:
                pytest.fail(f"fab {' '.join(args)} did not end within {BOUND}s")
        for name, run in runs.items():
            assert "Traceback" not in run.stdout + run.stderr, (name, run.stdout + run.stderr)
            assert run.returncode != 0 or name == "uninstall", (name, run.stdout)
        assert re.search(rf"^web1 +authorized_keys +GAP +UNSAFE: {keys} is not a regular file", runs["verify"].stdout,
                         re.M), runs["verify"].stdout
        assert re.search(rf"^web1 +push-key +failed +.*{keys} is not a regular file", runs["push-key"].stdout,
                         re.M), runs["push-key"].stdout
        assert lab.console("web1", f"stat -c %F {keys}").stdout.strip() == "fifo"
