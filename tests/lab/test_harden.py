"""harden-sshd on the lab's real sshd: public keys only, checked on the wire (ssh-audit) and in sshd -T,
rolled back when a setting is rejected or would lock the admin out."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from lab import hosts as labhosts

pytestmark = pytest.mark.lab
WEBS = ("web1", "web2")
DROPIN = "/etc/ssh/sshd_config.d/00-svrchain.conf"
SSH_AUDIT = str(Path(sys.executable).parent / "ssh-audit")


def inventory(tmp_path: Path, name: str, **changes) -> Path:
    data = labhosts.inventory_data()
    for key, value in changes.items():
        section, field = key.split("__")
        data.setdefault(section, {})[field] = value
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def effective(lab, web: str) -> dict[str, str]:
    out = lab.host(web).check_output("sshd -T")
    return dict(line.split(" ", 1) for line in out.splitlines() if " " in line)


def password_offered(web: str) -> str:
    """What the server answers a client that wants to log in with a password."""
    r = subprocess.run(["ssh", "-F", str(labhosts.STATE / "ssh_config"), "-o", "PubkeyAuthentication=no",
                        "-o", "PreferredAuthentications=password,keyboard-interactive", web, "true"],
                       capture_output=True, text=True, timeout=30)
    return r.stderr.strip().splitlines()[-1]


def ssh_audit(address: str) -> dict:
    """ssh-audit's findings (it sees only the wire); printed for the test report."""
    r = subprocess.run([SSH_AUDIT, "-jj", "--skip-rate-test", "--timeout=10", address],
                       capture_output=True, text=True, timeout=120)
    found = json.loads(r.stdout)
    notes = [(sec, a["algorithm"], level, note) for sec in ("kex", "key", "enc", "mac") for a in found[sec]
             for level in ("fail", "warn") for note in a.get("notes", {}).get(level, [])]
    print(f"ssh-audit {address} (exit {r.returncode}):")
    for section, algorithm, level, note in notes:
        print(f"  [{level}] {section} {algorithm}: {note}")
    print("  recommendations:", json.dumps(found["recommendations"]))
    return {"notes": notes, "recommendations": found["recommendations"], "cves": found["cves"]}


def snapshot(lab) -> dict[str, bytes]:
    return {w: lab.host(w).check_output("cat /etc/ssh/sshd_config /etc/ssh/sshd_config.d/*") for w in WEBS}


def listener(lab, web: str) -> str:
    """sshd's listening sockets (their inodes): a reload re-executes sshd in the same PID, but it closes
    them and opens new ones, so these tell whether sshd was reloaded."""
    return lab.console(web, "ls -l /proc/$(cat /run/sshd.pid)/fd 2>/dev/null | grep -o 'socket:\\[[0-9]*\\]' "
                            "| sort | tr '\\n' ' '", check=False).stdout.strip()


def sighups(lab, web: str) -> int:
    return lab.host(web).file("/var/log/auth.log").content_string.count("Received SIGHUP")


def wait_reloaded(lab, web: str, old: str, timeout: float = 30) -> None:
    """Wait until sshd on ``web`` listens on new sockets (it has reloaded since ``old`` was read)."""
    end = time.monotonic() + timeout
    while listener(lab, web) in (old, ""):
        assert time.monotonic() < end, f"{web}: sshd did not reload"
        time.sleep(0.2)


def test_stock_sshd_takes_passwords_and_weak_algorithms(lab):
    assert effective(lab, "web1")["passwordauthentication"] == "yes"
    assert password_offered("web1").endswith("Permission denied (publickey,password).")
    before = ssh_audit("198.18.0.21")
    assert "critical" in before["recommendations"]  # e.g. NIST-curve key exchange, SHA-1 MACs


def test_a_setting_sshd_rejects_is_rolled_back_before_any_reload(lab, tmp_path):
    before = snapshot(lab)
    listening, reloads = listener(lab, "web1"), sighups(lab, "web1")
    assert listening.startswith("socket:[")
    r = lab.fab("harden-sshd", inventory=inventory(tmp_path, "bad", harden__extra=["MaxAuthTries lots"]))
    assert r.returncode == 1
    assert f"{DROPIN}: sshd -t rejects it: {DROPIN} line 13: MaxAuthTries integer value invalid; put back " \
           "as it was, sshd not reloaded" in r.stdout, r.stdout
    assert "web2       harden-sshd          skipped       not tried: it failed on web1" in r.stdout
    assert snapshot(lab) == before
    assert sighups(lab, "web1") == reloads and listener(lab, "web1") == listening  # never reloaded


def test_a_setting_that_locks_the_admin_out_is_rolled_back(lab, tmp_path):
    before = snapshot(lab)
    listening, reloads = listener(lab, "web1"), sighups(lab, "web1")
    r = lab.fab("harden-sshd", inventory=inventory(tmp_path, "lock", harden__extra=["AllowUsers nobody"]))
    assert r.returncode == 1
    # Reloaded with the new setting, then again with the old: what the test above sees when it is not.
    end = time.monotonic() + 10  # syslog writes the lines a moment later
    while sighups(lab, "web1") < reloads + 2 and time.monotonic() < end:
        time.sleep(0.2)
    assert sighups(lab, "web1") == reloads + 2 and listener(lab, "web1") not in (listening, "")
    assert "a fresh login failed after the reload" in r.stdout and "was put back and sshd reloaded: the admin " \
           "can log in again" in r.stdout, r.stdout
    assert snapshot(lab) == before
    assert lab.host("web1").check_output("id -un") == "root"  # a new login, as before
    assert effective(lab, "web1")["passwordauthentication"] == "yes"


def test_harden_sshd_allows_public_keys_only(lab):
    dry = lab.fab("harden-sshd", "--dry-run")
    assert dry.returncode == 0 and "would change" in dry.stdout and "+PasswordAuthentication no" in dry.stdout
    assert not lab.host("web1").file(DROPIN).exists
    r = lab.fab("harden-sshd")
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("sshd -t ok, reloaded, a fresh login works") == 2
    for web in WEBS:
        seen = effective(lab, web)
        assert seen["passwordauthentication"] == "no" and seen["kbdinteractiveauthentication"] == "no"
        assert seen["pubkeyauthentication"] == "yes" and seen["authenticationmethods"] == "publickey"
        assert seen["permitrootlogin"] == "without-password"  # prohibit-password: the admin logs in as root
        assert "hmac-sha1" not in seen["macs"] and "nistp" not in seen["kexalgorithms"]
        assert password_offered(web).endswith("Permission denied (publickey).")
    after = ssh_audit("198.18.0.21")
    assert "critical" not in after["recommendations"] and not [n for n in after["notes"] if n[2] == "fail"]
    assert after["cves"] == []
    again = lab.fab("harden-sshd")
    assert again.returncode == 0 and again.stdout.count("ok            public keys only, in effect") == 2


def test_the_chain_and_its_restrictions_hold_on_hardened_hosts(lab):
    r = lab.fab("bootstrap")
    assert r.returncode == 0, r.stdout + r.stderr
    lab.db_under_service()
    before = lab.host("web1").check_output("cat /var/run/apache2/apache2.pid")
    chain = lab.fab("restart-chain", "--yes")
    assert chain.returncode == 0, chain.stdout + chain.stderr
    assert lab.host("web1").check_output("cat /var/run/apache2/apache2.pid") != before
    attacks = lab.fab("verify", "--attacks")
    assert attacks.returncode == 0, attacks.stdout
    assert "root@198.18.0.21: Permission denied (publickey)." not in attacks.stdout  # nobody@: another user
    assert "nobody@198.18.0.21: Permission denied (publickey)." in attacks.stdout


def test_a_setting_read_before_svrchains_is_flagged(lab):
    early = "/etc/ssh/sshd_config.d/0-early.conf"
    with lab.fault("web2", f"echo 'PasswordAuthentication yes' >{early}", f"rm -f {early}"):
        r = lab.fab("harden-sshd")
    assert r.returncode == 1
    assert "web2 (198.18.0.22:22): svrchain's settings are in place but sshd does not use them " \
           "(PasswordAuthentication is yes, not no)" in r.stdout, r.stdout


def test_without_include_the_settings_go_first_in_sshd_config(lab):
    web2 = lab.host("web2")
    web2.check_output(f"rm {DROPIN} && sed -i 's|^Include /etc/ssh/sshd_config.d/\\*.conf|#&|' /etc/ssh/sshd_config")
    listening = listener(lab, "web2")
    lab.console("web2", "kill -HUP $(cat /run/sshd.pid)")  # back to stock settings
    wait_reloaded(lab, "web2", listening)
    original = web2.file("/etc/ssh/sshd_config").content
    r = lab.fab("harden-sshd")
    assert r.returncode == 0, r.stdout
    text = web2.file("/etc/ssh/sshd_config").content
    assert text.startswith(b"# BEGIN svrchain") and text.endswith(original)
    assert effective(lab, "web2")["passwordauthentication"] == "no"


def test_a_sudo_admin_leaves_root_only_forced_commands(lab, tmp_path):
    inv = inventory(tmp_path, "sudo-admin", connect__user=labhosts.ADMIN_USER)
    r = lab.fab("harden-sshd", inventory=inv)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "sshd -t ok, reloaded, a fresh login works" in r.stdout  # as admin, through sudo -n
    # From here root cannot log in with the admin's key: read the hosts through the lab's console.
    seen = lab.console("web1", "sshd -T").stdout
    assert "permitrootlogin forced-commands-only" in seen.splitlines()
    root = subprocess.run(["ssh", "-F", str(labhosts.STATE / "ssh_config"), "web1", "id"],
                          capture_output=True, text=True, timeout=30)
    assert root.returncode == 255 and "uid=" not in root.stdout, root.stdout + root.stderr
    assert "ROOT LOGIN REFUSED FROM 198.18.0.1" in lab.console("web1", "cat /var/log/auth.log").stdout
    # The DB server's key logs in as root with its forced command: the chain still works.
    before = lab.console("web1", "cat /var/run/apache2/apache2.pid").stdout
    chain = lab.fab("restart-chain", "--yes", inventory=inv)
    assert chain.returncode == 0, chain.stdout + chain.stderr
    assert lab.console("web1", "cat /var/run/apache2/apache2.pid").stdout != before


def test_uninstall_sshd_takes_the_setting_out_safely(lab, tmp_path):
    inv = inventory(tmp_path, "sudo-admin", connect__user=labhosts.ADMIN_USER)
    r = lab.fab("uninstall", "--yes", "--sshd", inventory=inv)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count(f"remove {DROPIN}: sshd -t ok, reloaded, a fresh login works") == 1  # web1
    assert "remove svrchain's block from /etc/ssh/sshd_config: sshd -t ok" in r.stdout  # web2, no Include
    for web in WEBS:
        assert "passwordauthentication yes" in lab.console(web, "sshd -T").stdout.splitlines()
    assert lab.host("web1").check_output("id -un") == "root"  # root logs in with the admin key again
    assert not lab.console("web2", "head -c 16 /etc/ssh/sshd_config").stdout.startswith("# BEGIN")
