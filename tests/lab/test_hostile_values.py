"""What hosts say and what the inventory holds, on the lab's real hosts: an account's authorized_keys
full of terminal escapes reaches the admin's terminal, --json and --junit escaped (and parseable);
a readiness check holding a password never shows on any command line of the DB host while the
trigger, restart-chain and verify run it; the lab's inventory never leads anywhere but the lab (an ssh
config's HostName or ProxyJump, a health URL), and no ssh config command runs before that is
checked. SysV hosts."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from lab import hosts as labhosts
from tests.lab.conftest import lab_of

pytestmark = pytest.mark.lab
AK = "/root/.ssh/authorized_keys"


@pytest.fixture(scope="module")
def lab():
    yield from lab_of("sysv")


def test_an_accounts_terminal_escapes_reach_the_admin_escaped(chain, tmp_path):
    # The web account's own authorized_keys: an old line of a key held on the DB server that restarts
    # Apache (verify reports it, with its command), its command full of escapes that would clear the
    # admin's screen and print over the report.
    chain.console("db", "rm -f /root/.ssh/old_key* && ssh-keygen -q -t ed25519 -N '' -f /root/.ssh/old_key")
    blob = chain.console("db", "cut -d' ' -f2 /root/.ssh/old_key.pub").stdout.strip()
    hostile = ('command="/etc/init.d/apache2 restart \\033[2J\\033[H\\rlegacy keys ok\\007" '
               f"ssh-ed25519 {blob} old")
    junit = tmp_path / "verify.xml"
    with chain.fault("db", "true", "rm -f /root/.ssh/old_key /root/.ssh/old_key.pub"), \
            chain.fault("web1", f"cp -a {AK} /root/ak && printf '{hostile}\\n' >>{AK}", f"mv /root/ak {AK}"):
        assert "\x1b[2J" in chain.console("web1", f"cat {AK}").stdout
        r = chain.fab("verify", "--junit", str(junit))
        j = chain.fab("verify", "--json")
    assert r.returncode == 2, r.stdout + r.stderr
    for text in (r.stdout, r.stderr, j.stderr):
        assert not any(c in text for c in "\x1b\r\x07"), repr(text)
    assert "legacy keys" in r.stdout and "restart \\x1b[2J\\x1b[H\\x0dlegacy keys ok\\x07" in r.stdout, r.stdout
    failures = [f.text for f in ET.parse(junit).getroot().iter("failure")]
    assert any("\\x1b[2J" in f for f in failures), failures
    details = [i["detail"] for h in json.loads(j.stdout)["hosts"] for i in h["items"]]
    assert any("\x1b[2J\x1b[H\rlegacy keys ok\x07" in d for d in details)  # JSON: the text itself, JSON-escaped


def secret_inventory(tmp_path: Path) -> Path:
    data = labhosts.inventory_data()
    data["db"]["ready"]["command"] = "PW=Hunter2-lab; " + data["db"]["ready"]["command"]
    path = tmp_path / "secret.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_a_password_in_the_ready_check_never_shows_on_a_command_line(chain, tmp_path):
    inv = secret_inventory(tmp_path)
    watch = ("setsid sh -c 'while :; do grep -l Hunter[2] /proc/[0-9]*/cmdline; sleep 0.02; done' "
             ">/tmp/seen 2>/dev/null </dev/null & echo $!")
    try:
        r = chain.fab("install-svr-restart", inventory=inv)
        assert r.returncode == 0, r.stdout + r.stderr
        pid = chain.console("db", watch).stdout.strip()
        try:
            r = chain.fab("restart-chain", "--yes", inventory=inv)
            assert r.returncode == 0, r.stdout + r.stderr
            chain.settled()
            r = chain.fab("verify", inventory=inv)
            assert r.returncode == 0, r.stdout + r.stderr
        finally:
            chain.console("db", f"kill {pid}", check=False)
        assert "Hunter2-lab" in chain.console("db", "cat /etc/svrchain/svr_restart.conf").stdout  # it was used
        assert chain.console("db", "cat /tmp/seen").stdout == ""
    finally:
        r = chain.fab("install-svr-restart")
        assert r.returncode == 0, r.stdout + r.stderr


ELSEWHERE = "10.99.99.99"  # routed nowhere near the lab's bridge


@pytest.mark.parametrize(("config", "health"), [
    (f"Host web1\n  HostName {ELSEWHERE}\n", None),
    (f"Host web2\n  ProxyJump root@{ELSEWHERE}\n", None),
    ("", f"http://{ELSEWHERE}/"),
], ids=["hostname", "proxyjump", "health-url"])
def test_the_labs_inventory_never_leads_elsewhere(chain, tmp_path, config, health):
    data = labhosts.inventory_data()
    (tmp_path / "ssh_config").write_text(config)
    data["connect"]["ssh_config"] = str(tmp_path / "ssh_config")
    if health:
        data["web"]["servers"][0]["health_url"] = health
    inv = tmp_path / "elsewhere.yaml"
    inv.write_text(yaml.safe_dump(data))
    for task in (("verify",), ("trust-hosts",), ("restart-chain", "--yes")):
        r = chain.fab(*task, inventory=inv)
        assert r.returncode == 4, (task, r.stdout + r.stderr)
        assert f"({ELSEWHERE} would go " in r.stderr and "lab: true" in r.stderr, r.stderr


def test_no_ssh_config_command_runs_before_the_labs_guard(chain, tmp_path):
    data = labhosts.inventory_data()
    pwned = tmp_path / "pwned"
    (tmp_path / "ssh_config").write_text(f'Match exec "touch {pwned}"\n  HostName {ELSEWHERE}\n')
    data["connect"]["ssh_config"] = str(tmp_path / "ssh_config")
    inv = tmp_path / "exec.yaml"
    inv.write_text(yaml.safe_dump(data))
    r = chain.fab("verify", inventory=inv)
    assert r.returncode == 4 and "Match exec" in r.stderr, r.stdout + r.stderr
    assert not pwned.exists()
