"""Least privilege on the lab (SysV and systemd hosts): the key logs in as an unprivileged account whose one
sudo rule is the restart."""

from __future__ import annotations

import base64
import re

import pytest
import yaml

from svrchain.core import render
from svrchain.core.errors import HostError
from svrchain.core.inventory import parse
from svrchain.core.plan import FileSpec, file_change
from svrchain.remote.files import probe, write
from svrchain.remote.group import Session
from tests.lab.conftest import dedicated_inventory
from tests.lab.scenarios import Bytes, Call, Case, Console, Fab, Manifest, run_case, take_baseline

pytestmark = pytest.mark.lab
USER = "svr-restart"
WEBS = ("web1", "web2")


@pytest.fixture(scope="module")
def inventory(lab, tmp_path_factory):
    return dedicated_inventory(tmp_path_factory, USER)


@pytest.fixture(scope="module")
def dedicated(lab, inventory):
    lab.before = {h: lab.manifest(h) for h in ("db", *WEBS)}
    r = lab.fab("bootstrap", inventory=inventory)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "create svr-restart (system account" in r.stdout
    lab.db_under_service()
    return lab


def test_push_key_creates_the_account_and_its_one_rule(dedicated, inventory):
    for web in WEBS:
        h = dedicated.host(web)
        user = h.user(USER)
        assert user.exists and user.home == f"/var/lib/{USER}" and user.shell == "/bin/sh"
        assert user.gecos == "svrchain restart trigger"
        assert h.check_output(f"getent shadow {USER} | cut -d: -f2") == "*"  # no password, not locked
        keys = h.file(f"/var/lib/{USER}/.ssh/authorized_keys")
        assert keys.user == USER and 'command="/usr/local/sbin/svr-restart-gate"' in keys.content_string
        assert "svrchain:" not in h.file("/root/.ssh/authorized_keys").content_string
        rule = h.file("/etc/sudoers.d/svrchain")
        assert rule.mode == 0o440 and rule.user == "root"
        # What the account may run as root: the restart, with exactly its arguments; nothing else.
        as_user = f"su -s /bin/sh {USER} -c"
        assert h.run(f"{as_user} 'sudo -n -l /etc/init.d/apache2 restart'").rc == 0
        for other in ("/etc/init.d/apache2 stop", "/bin/sh", "/bin/true", "/etc/init.d/apache2 restart now"):
            r = h.run(f"{as_user} 'sudo -n {other}'")
            assert (r.rc != 0 and "sorry" in (r.stderr + r.stdout).lower()) or "password is required" in r.stderr, other
    again = dedicated.fab("bootstrap", inventory=inventory)
    assert again.returncode == 0 and " changed " not in again.stdout, again.stdout


def test_the_sudo_rule_allows_no_other_arguments(dedicated, inventory):
    h = dedicated.host("web1")
    assert h.run(f"sudo -n -l -U {USER} /etc/init.d/apache2 restart").rc == 0
    for extra in ("/etc/init.d/apache2 restart now", "/etc/init.d/apache2 restart --force", "/etc/init.d/apache2",
                  "/etc/init.d/apache2 stop"):
        assert h.run(f"sudo -n -l -U {USER} {extra}").rc != 0, extra
    # A command without arguments: in sudoers a bare command allows any arguments; the rule says "".
    data = yaml.safe_load(inventory.read_text())
    data["web"]["restart_command"] = "/usr/sbin/apachectl"
    rule = render.sudoers(parse(yaml.safe_dump(data), inventory)).replace(b"svrchain (", b"svrchain test (")
    path = "/etc/sudoers.d/zz-svrchain-bare"
    stage = f"echo {base64.b64encode(rule).decode()} | base64 -d >{path} && chmod 440 {path} && visudo -c"
    with dedicated.fault("web1", stage, f"rm -f {path}"):
        assert h.run(f"sudo -n -l -U {USER} /usr/sbin/apachectl").rc == 0
        for extra in ("graceful", "stop", "-k start"):
            assert h.run(f"sudo -n -l -U {USER} /usr/sbin/apachectl {extra}").rc != 0, extra
        assert '(root) NOPASSWD: /usr/sbin/apachectl ""' in h.check_output(f"sudo -n -l -U {USER}")


def test_the_chain_restarts_the_web_servers_through_sudo(dedicated, inventory):
    before = {w: dedicated.host(w).check_output("cat /var/run/apache2/apache2.pid") for w in WEBS}
    r = dedicated.fab("restart-chain", "--yes", inventory=inventory)
    rows = re.findall(r"^web[12] +web +restarted by the chain ", r.stdout, re.M)  # the table's rows
    assert r.returncode == 0 and len(rows) == 2, r.stdout + r.stderr
    for web in WEBS:
        h = dedicated.host(web)
        assert h.check_output("cat /var/run/apache2/apache2.pid") != before[web]
        log = dedicated.wait_log(web, "svr-restart-gate: from 198.18.0.10: restart: exit 0")
        assert f"forced-command (key-option) '/usr/local/sbin/svr-restart-gate' for {USER} from 198.18.0.10" in log
        assert "svr-restart-gate: from 198.18.0.10: restart: exit 0" in log


def test_the_attack_matrix_holds_for_the_account(dedicated, inventory):
    r = dedicated.fab("verify", "--attacks", inventory=inventory)
    print(r.stdout)
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"^web1 +least privilege +ok ", r.stdout, re.M)
    assert "the key for another user" in r.stdout and "root@198.18.0.21: Permission denied" in r.stdout


def visudo_rejects(lab, ctx) -> None:
    """A rule visudo rejects, written through svrchain's own session: refused, the old rule left in place."""
    path = "/etc/sudoers.d/svrchain"
    with Session.open(ctx.base) as s:
        web = s.webs[0]
        states, _ = probe(web, [path])
        bad = FileSpec(path, f"{USER} ALL=(root) NOPASSWD /bin/true\n".encode(), 0o440,
                       validate='visudo -c -f "$1"')
        with pytest.raises(HostError, match=r"writing /etc/sudoers.d/svrchain failed: the new content was "
                                            r"rejected \(.*syntax error\); /etc/sudoers.d/svrchain was left as it was"):
            write(web, file_change(bad, states[path]))
    assert ".svrchain." not in lab.host("web1").check_output("ls -a /etc/sudoers.d")


WIDE = "/etc/sudoers.d/zz-wide"
# Faults of the dedicated account's sudo rules: flagged or refused, nothing else changed.
CASES = [
    Case(
        "verify-flags-a-wider-sudo-rule",
        stage=(Console("web1", f"echo '{USER} ALL=(ALL) NOPASSWD: ALL' >{WIDE} && chmod 440 {WIDE}", f"rm -f {WIDE}"),),
        steps=(Fab(("verify",), 2, lab=True, out=(
            r"^web1 +least privilege +GAP +svr-restart may run: \(root\) NOPASSWD: /etc/init.d/apache2 "
            r"restart; \(ALL\) NOPASSWD: ALL",)),),
        unchanged=tuple(Manifest(h) for h in ("db", *WEBS)),
    ),
    Case(
        "a-rule-visudo-rejects-never-takes-effect",
        steps=(Call(visudo_rejects),),
        unchanged=(Bytes("web1", "/etc/sudoers.d/svrchain"), Manifest("web1")),
    ),
]


@pytest.fixture(scope="module")
def baseline(dedicated, inventory):
    return take_baseline(dedicated, inventory, warm=False)  # no case restarts a web server


@pytest.mark.parametrize("case", CASES, ids=str)
def test_sudo_rule_fault(dedicated, baseline, case, tmp_path):
    run_case(dedicated, baseline, case, tmp_path)


def test_uninstall_removes_the_account_and_its_rule(dedicated, inventory):
    r = dedicated.fab("uninstall", "--yes", inventory=inventory)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "remove the account svr-restart and its home /var/lib/svr-restart (push-key created them)" in r.stdout
    assert "remove /etc/sudoers.d/svrchain" in r.stdout
    for h in ("db", *WEBS):  # /etc/passwd, group, shadow, sudoers.d, ... byte for byte
        assert dedicated.manifest(h) == dedicated.before[h], h
