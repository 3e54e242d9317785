"""fab doctor on the lab's real web hosts: web1 keeps Debian's php.ini (pgsql.auto_reset_persistent = Off:
a finding), web2 has the reset on (lab/hosts.py: clean); the inventory's restart command graceful or
not; read-only (every file under /etc, /usr/local, /root, /home as it was), one SSH connection and one
command per web server; --json valid against the schema; --strict and an unreachable web server's
exit codes; and the web account as an attacker (a config directory it may write, a FIFO there, a
look-alike Apache of its own, programs it planted). doctor reads files and /proc only, so it does not
depend on the init system: SysV hosts."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import jsonschema
import pytest
import yaml

from lab import hosts as labhosts
from tests.lab.conftest import REPO, lab_of

pytestmark = pytest.mark.lab
SCHEMA = json.loads((REPO / "docs" / "output.schema.json").read_text())
PHP_INI = "/etc/php/8.2/apache2/php.ini"
LAB_INI = "/etc/php/8.2/apache2/conf.d/90-lab-doctor.ini"
AS_WEB = "setpriv --reuid=www-data --regid=www-data --clear-groups --"


# What the web account plants (run as www-data): a config file with terminal escapes in a value, one of
# 2 MiB, a PHP scan directory and programs named as the tools an admin might run, each leaving a mark.
PLANT = r"""
set -e
printf 'php_admin_value pgsql.max_persistent "7\033[2J\033[H\r\007"\n' >/var/www/conf/a.conf
yes '# padding, as many lines as it takes' | head -c 2100000 >/var/www/conf/b.conf
printf 'pgsql.auto_reset_persistent = On\n' >/var/www/evil/99.ini
for p in php apachectl apache2ctl head stat timeout find; do
    printf '#!/bin/sh\ntouch /tmp/doctor-pwned\n' >/var/www/bin/$p
    chmod 755 /var/www/bin/$p
done
cp /bin/sleep /var/www/bin/apache2
"""


@pytest.fixture(scope="module")
def lab():
    yield from lab_of("sysv")


def inventory(tmp_path: Path, restart: str = "/usr/sbin/apachectl graceful", more_webs: int = 0) -> Path:
    data = labhosts.inventory_data()
    data["web"]["restart_command"] = restart
    for n in range(more_webs):
        data["web"]["servers"].append({"name": f"web{9 - n}", "address": f"198.18.0.{29 - n}",
                                       "health_url": f"http://198.18.0.{29 - n}/"})
    path = tmp_path / "doctor.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def table(stdout: str) -> dict[tuple[str, str], tuple[str, str]]:
    """doctor's table: (host, check) -> (result, detail)."""
    rows = re.findall(r"^(web\d)\s{2,}(\S.*?)\s{2,}(ok|FINDING)\s{2,}(.*)$", stdout, re.M)
    return {(h, c): (r, d) for h, c, r, d in rows}


def test_one_web_server_has_a_finding_the_other_is_clean(lab, tmp_path):
    r = lab.fab("doctor", inventory=inventory(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    t = table(r.stdout)
    assert t[("web1", "pgsql.auto_reset_persistent")][0] == "FINDING"
    assert t[("web1", "pgsql.auto_reset_persistent")][1].startswith(
        f"Off ({PHP_INI}:1313): a persistent connection broken by a DB restart is handed to the next request "
        "unchecked: up to 150 requests (one per worker holding a dead connection; 5 running now) fail")
    assert t[("web2", "pgsql.auto_reset_persistent")] == (
        "ok", f"On ({LAB_INI}:3): a broken persistent connection is detected (pg_ping) and reopened before use")
    assert [k for k, v in t.items() if v[0] != "ok"] == [("web1", "pgsql.auto_reset_persistent")]
    assert t[("web2", "apache mpm")][1].startswith("prefork: 150 workers at most (150 processes; MaxRequestWorkers "
                                                   "150 (/etc/apache2/mods-enabled/mpm_prefork.conf:11)")
    assert t[("web1", "apache mpm")][1].endswith("after a DB restart up to 150 requests can fail (one per "
                                                 "worker holding a dead persistent connection) before the chain "
                                                 "restarts Apache")
    assert t[("web2", "apache mpm")][1].endswith("so a DB restart fails only the requests in flight")
    assert t[("web2", "restart command")][1].startswith("/usr/sbin/apachectl graceful: graceful: each child finishes")
    assert re.search(r"^web1 +FINDING +1 of 7 checks: pgsql.auto_reset_persistent", r.stdout, re.M), r.stdout
    assert re.search(r"^web2 +ok +7 checks", r.stdout, re.M), r.stdout
    assert "doctor: 1 finding(s) on web1" in r.stdout
    strict = lab.fab("doctor", "--strict", inventory=inventory(tmp_path))
    assert strict.returncode == 2 and "1 finding(s) on web1" in strict.stderr, strict.stdout + strict.stderr
    only2 = lab.fab("doctor", "--strict", "--limit", "web2", inventory=inventory(tmp_path))
    assert only2.returncode == 0 and "doctor: 7 checks, no finding" in only2.stdout, only2.stdout + only2.stderr


def test_the_labs_restart_is_not_graceful(lab):
    r = lab.fab("doctor")
    assert r.returncode == 0, r.stdout + r.stderr
    t = table(r.stdout)
    for web in ("web1", "web2"):
        result, detail = t[(web, "restart command")]
        assert result == "FINDING" and detail.startswith(
            "/etc/init.d/apache2 restart: a stop and a start: every request in flight is cut and new connections "
            "are refused until Apache is up again; fix: web.restart_command: /usr/sbin/apachectl graceful"), detail


def test_json_follows_the_schema(lab, tmp_path):
    r = lab.fab("doctor", "--json", "--junit", str(tmp_path / "doctor.xml"), inventory=inventory(tmp_path))
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.FormatChecker()).validate(doc)
    hosts = {h["name"]: h for h in doc["hosts"]}
    assert (doc["task"], doc["result"], doc["totals"]["finding"]) == ("doctor", "ok", 1)
    assert (hosts["web1"]["status"], hosts["web2"]["status"], hosts["db"]["items"]) == ("finding", "ok", [])
    assert [i["name"] for i in hosts["web1"]["items"] if i["status"] == "finding"] == ["pgsql.auto_reset_persistent"]
    assert "finding: Off" in (tmp_path / "doctor.xml").read_text()


def logins(lab, web: str) -> int:
    """How many SSH logins the web host's sshd has logged (read through the console: no login itself)."""
    return int(lab.console(web, "grep -c 'Accepted publickey' /var/log/auth.log", check=False).stdout.strip() or 0)


def test_read_only_one_connection_and_one_command_per_web_server(lab, tmp_path):
    before = {w: lab.manifest(w) for w in ("web1", "web2")}
    seen = {w: logins(lab, w) for w in ("web1", "web2")}
    r = lab.fab("doctor", "-v", inventory=inventory(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    assert {w: lab.manifest(w) for w in ("web1", "web2")} == before
    for w in ("web1", "web2"):
        assert len(re.findall(rf"^{w} +\$ ", r.stdout, re.M)) == 1, r.stdout  # one remote command
        end = time.monotonic() + 10
        while logins(lab, w) <= seen[w] and time.monotonic() < end:  # syslog writes it a little later
            time.sleep(0.2)
        time.sleep(1)
        assert logins(lab, w) == seen[w] + 1  # one SSH connection


def test_an_unreachable_web_server_is_exit_3(lab, tmp_path):
    r = lab.fab("doctor", inventory=inventory(tmp_path, more_webs=1))
    assert r.returncode == 3, r.stdout + r.stderr
    assert re.search(r"^web9 +UNREACHABLE ", r.stdout, re.M) and "web1 " in r.stdout, r.stdout


def test_the_web_account_as_an_attacker(lab, tmp_path):
    """The site includes a directory the web account may write (unwise, and said so): what it plants
    there is read bounded and shown escaped; a look-alike Apache of its own with its own PHP_INI_SCAN_DIR
    changes nothing; nothing it planted runs."""
    plant = ("mkdir -p /var/www/conf /var/www/evil /var/www/bin && chown -R www-data: /var/www/conf /var/www/evil "
             "/var/www/bin && echo 'IncludeOptional /var/www/conf/*.conf' >/etc/apache2/conf-enabled/zz-site.conf")
    lab.console("web1", plant)
    lab.console("web1", f"cat >/tmp/plant.sh <<'EOF'\n{PLANT}EOF\n{AS_WEB} sh /tmp/plant.sh")
    lab.console("web1", f"cd /var/www && {AS_WEB} env PHP_INI_SCAN_DIR=/var/www/evil PHPRC=/var/www/evil "
                        "PATH=/var/www/bin:/usr/bin:/bin setsid /var/www/bin/apache2 600 </dev/null >/dev/null 2>&1 &")
    try:
        r = lab.fab("doctor", "--limit", "web1", inventory=inventory(tmp_path))
        j = lab.fab("doctor", "--limit", "web1", "--json", inventory=inventory(tmp_path))
        pwned = lab.console("web1", "ls /tmp/doctor-pwned", check=False).returncode == 0
    finally:
        lab.console("web1", "pkill -u www-data -x apache2; rm -rf /etc/apache2/conf-enabled/zz-site.conf /var/www/conf "
                            "/var/www/evil /var/www/bin /tmp/doctor-pwned /tmp/plant.sh")
    assert r.returncode == 0 and not pwned, r.stdout + r.stderr
    t = table(r.stdout)
    config = t[("web1", "apache config")]
    assert config[0] == "FINDING"
    assert "/var/www/conf/a.conf can be changed by www-data (owner www-data, mode 644)" in config[1]
    assert "/var/www/conf/b.conf is larger than 1 MiB: not read" in config[1]
    assert t[("web1", "pgsql.max_persistent")][1].startswith("7\\x1b[2J\\x1b[H\\x0d\\x07 (/var/www/conf/a.conf:1)")
    assert not any(c in r.stdout + r.stderr for c in "\x1b\r\x07")
    assert t[("web1", "pgsql.auto_reset_persistent")][0] == "FINDING"  # the look-alike's scan dir is not Apache's
    assert "5 running now" in t[("web1", "pgsql.auto_reset_persistent")][1]
    details = [i["detail"] for h in json.loads(j.stdout)["hosts"] for i in h["items"]]
    assert any(d.startswith("7\x1b[2J\x1b[H\r\x07 (/var/www/conf/a.conf:1)") for d in details)


def test_a_fifo_in_an_included_directory_hangs_nothing(lab, tmp_path):
    lab.console("web1", "mkdir -p /var/www/conf && chown www-data: /var/www/conf && "
                        "echo 'IncludeOptional /var/www/conf/*.conf' >/etc/apache2/conf-enabled/zz-site.conf")
    lab.console("web1", f"{AS_WEB} mkfifo /var/www/conf/a.conf")
    try:
        start = time.monotonic()
        r = lab.fab("doctor", "--limit", "web1", inventory=inventory(tmp_path), timeout=150)
        took = time.monotonic() - start
    finally:
        lab.console("web1", "rm -rf /etc/apache2/conf-enabled/zz-site.conf /var/www/conf")
    assert r.returncode == 0, r.stdout + r.stderr
    assert took < 120
    config = table(r.stdout)[("web1", "apache config")]
    assert config[0] == "FINDING" and config[1].startswith(
        "/usr/sbin/apache2 -t -D DUMP_INCLUDES failed (exit 124): did not finish within 20s"), config
