"""doctor's pure judgement (svrchain/core/webtier.py) on recorded and crafted probe outputs, hostile ones
included (huge values, odd bytes, missing or unreadable files, a garbled or cut answer, a look-alike
Apache of the web account's), and the probe's file reader run as the real shell on a FIFO, a huge
file and a name with a line break. The expected values are written here by hand."""

from __future__ import annotations

import gzip
import os
import pwd
import subprocess
from pathlib import Path

import pytest

from svrchain.core import webtier
from svrchain.core.output import shown

APACHES = "(Apache's PHP, not the CLI's)"
FIXTURES = Path(__file__).parent / "fixtures" / "doctor"
GRACEFUL = "/usr/sbin/apachectl graceful"
PHP_INI = "/etc/php/8.2/apache2/php.ini"
SCAN = "/etc/php/8.2/apache2/conf.d"
MODULE = "/usr/lib/apache2/modules/libphp8.2.so"


def frame(kind: str, status: str, name: str, data: bytes = b"", mode: str = "644", owner: str = "root") -> bytes:
    """One piece of the probe's output, as its emit() writes it."""
    return f"\n@@svrchain-doctor@@ {kind} {status} {mode} {owner} {len(data)} {name}\n".encode() + data


def cmd(name: str, data: bytes | str, status: str = "0") -> bytes:
    return frame("cmd", status, name, data.encode() if isinstance(data, str) else data, "-", "-")


VERSION = "Server version: Apache/2.4.68 (Debian)\nServer MPM:     prefork\n  threaded:     no\n"
PS = "100 1 0 apache2\n101 100 33 apache2\n102 100 33 apache2\n103 100 33 apache2\n"


def host(ini: str = "extension=pgsql\npgsql.auto_reset_persistent = Off\n", scan: dict[str, str] | None = None,
         confs: dict[str, str] | None = None, env: str = "", ps: str = PS, version: str = VERSION,
         extra: bytes = b"") -> bytes:
    """A Debian web server's probe output: apachectl's answers, the config files, the processes, the
    running Apache's environment and memory map, and PHP's ini files."""
    confs = confs if confs is not None else {
        "/etc/apache2/apache2.conf": "Timeout 300\n",
        "/etc/apache2/mods-enabled/mpm_prefork.load":
            "LoadModule mpm_prefork_module /usr/lib/apache2/modules/mod_mpm_prefork.so\n",
        "/etc/apache2/mods-enabled/php8.2.load": f"LoadModule php_module {MODULE}\n",
        "/etc/apache2/mods-enabled/mpm_prefork.conf":
            "<IfModule mpm_prefork_module>\n\tStartServers 5\n\tMaxRequestWorkers 150\n</IfModule>\n",
    }
    out = cmd("ctl", "/usr/sbin/apache2\n") + cmd("version", version)
    out += cmd("includes", "Included configuration files:\n" + "".join(f"  (1) {p}\n" for p in confs))
    out += b"".join(frame("conf", "ok", p, t.encode()) for p, t in confs.items())
    out += cmd("ps", ps) + cmd("env", env) + cmd("maps", MODULE + "\n")
    out += frame("ini", "ok", PHP_INI, ini.encode())
    out += b"".join(frame("ini", "ok", f"{SCAN}/{n}", t.encode()) for n, t in (scan or {}).items())
    return out + extra


def rows(raw: bytes, restart: str = GRACEFUL) -> dict[str, webtier.Finding]:
    return {f.check: f for f in webtier.diagnose(raw, restart)}


def findings(raw: bytes, restart: str = GRACEFUL) -> list[str]:
    return [f.check for f in webtier.diagnose(raw, restart) if not f.ok]


# -- the lab's web1, recorded (Debian 12, Apache 2.4 prefork, PHP 8.2 with pgsql) ---------------------

def test_recorded_lab_host():
    raw = gzip.decompress((FIXTURES / "web1-debian12.probe.gz").read_bytes())
    r = rows(raw, "/etc/init.d/apache2 restart")
    assert [c for c, f in r.items() if not f.ok] == ["pgsql.auto_reset_persistent", "restart command"]
    assert r["apache config"].detail == "40 files read"
    assert r["apache mpm"].detail.startswith(
        "prefork: 150 workers at most (150 processes; MaxRequestWorkers 150 "
        "(/etc/apache2/mods-enabled/mpm_prefork.conf:11), ServerLimit 256 (default)); 5 children running now")
    assert r["php ini"].detail == f"{MODULE} {APACHES} loads {PHP_INI} + 21 scanned"
    assert r["pgsql.auto_reset_persistent"].detail.startswith(f"Off ({PHP_INI}:1313): a persistent connection "
                                                              "broken by a DB restart is handed to the next request")
    assert "up to 150 requests (one per worker holding a dead connection; 5 running now)" in \
        r["pgsql.auto_reset_persistent"].detail
    assert r["restart command"].detail.startswith("/etc/init.d/apache2 restart: a stop and a start: every request "
                                                  "in flight is cut and new connections are refused")
    assert "fix: web.restart_command: /usr/sbin/apachectl graceful" in r["restart command"].detail


def test_recorded_lab_host_with_the_reset_on_and_a_graceful_restart_is_clean():
    raw = gzip.decompress((FIXTURES / "web1-debian12.probe.gz").read_bytes())
    clean = raw + frame("ini", "ok", f"{SCAN}/90-lab-doctor.ini", b"[PostgreSQL]\npgsql.auto_reset_persistent = On\n")
    assert findings(clean) == []
    assert rows(clean)["pgsql.auto_reset_persistent"].detail.startswith(f"On ({SCAN}/90-lab-doctor.ini:2)")


# -- PHP: which files, in which order, which value wins --------------------------------------------

def test_scan_dir_overrides_php_ini_in_byte_order():
    raw = host(scan={"20-pgsql.ini": "extension=pgsql.so\n", "99-z.ini": "pgsql.auto_reset_persistent=Off\n",
                     "90-a.ini": "pgsql.auto_reset_persistent = On\n"})
    assert rows(raw)["pgsql.auto_reset_persistent"].detail.startswith(f"Off ({SCAN}/99-z.ini:1)")


def test_php_admin_value_at_server_level_wins_and_a_vhost_value_is_only_noted():
    confs = {"/etc/apache2/mods-enabled/php8.2.load": f"LoadModule php_module {MODULE}\n",
             "/etc/apache2/sites-enabled/app.conf":
                 '<IfModule php_module>\n  php_admin_flag pgsql.auto_reset_persistent on\n</IfModule>\n'
                 '<VirtualHost *:80>\n  php_admin_value pgsql.auto_reset_persistent 0\n</VirtualHost>\n'}
    r = rows(host(confs=confs))
    assert r["pgsql.auto_reset_persistent"].ok
    assert r["pgsql.auto_reset_persistent"].detail.startswith("on (/etc/apache2/sites-enabled/app.conf:2)")
    assert r["php per vhost"].detail == ("also set for some requests only: pgsql.auto_reset_persistent=0 in "
                                         "<VirtualHost *:80> (/etc/apache2/sites-enabled/app.conf:5)")


def test_the_cli_ini_is_never_the_apache_modules():
    cli = frame("ini", "ok", "/etc/php/8.2/cli/php.ini", b"pgsql.auto_reset_persistent = On\n")
    assert findings(host(extra=cli)) == ["pgsql.auto_reset_persistent"]


def test_phprc_and_php_ini_scan_dir_of_the_running_apache():
    extra = frame("ini", "ok", "/srv/php/php.ini", b"extension=pgsql\npgsql.auto_reset_persistent=1\n")
    extra += frame("ini", "ok", "/srv/php.d/10-x.ini", b"pgsql.max_persistent = 2\n")
    extra += frame("ini", "ok", f"{SCAN}/50-y.ini", b"pgsql.allow_persistent = On\n")
    r = rows(host(env="PHPRC=/srv/php\nPHP_INI_SCAN_DIR=/srv/php.d:\n", extra=extra))
    assert r["php ini"].detail == f"{MODULE} {APACHES} loads /srv/php/php.ini + 2 scanned"
    assert r["pgsql.auto_reset_persistent"].detail.startswith("1 (/srv/php/php.ini:2)")
    assert r["pgsql.max_persistent"].detail.startswith("2 (/srv/php.d/10-x.ini:1): at most 2 per worker")


def test_phpinidir_is_the_only_place_searched():
    confs = {"/etc/apache2/mods-enabled/php8.2.load": f"LoadModule php_module {MODULE}\nPHPINIDir /opt/php\n"}
    extra = frame("ini", "ok", "/opt/php/php-apache2handler.ini", b"extension=pgsql\n")
    r = rows(host(confs=confs, env="PHPRC=/elsewhere\n", extra=extra))
    assert r["php ini"].detail == f"{MODULE} {APACHES} loads /opt/php/php-apache2handler.ini + 0 scanned"
    assert r["pgsql.auto_reset_persistent"].detail.startswith("Off (not set: PHP default)")


def test_no_php_ini_at_all_means_php_defaults():
    raw = host(scan={"20-pgsql.ini": "extension=pgsql\n"}).replace(
        frame("ini", "ok", PHP_INI, b"extension=pgsql\npgsql.auto_reset_persistent = Off\n"), b"")
    r = rows(raw)
    assert not r["php ini"].ok and "no php.ini found" in r["php ini"].detail
    assert r["pgsql.auto_reset_persistent"].detail.startswith("Off (not set: PHP default)")


def test_rhel_layout():
    confs = {"/etc/httpd/conf.modules.d/00-mpm.conf":
             "#LoadModule mpm_event_module modules/mod_mpm_event.so\n"
             "LoadModule mpm_prefork_module modules/mod_mpm_prefork.so\n",
             "/etc/httpd/conf.modules.d/20-php.conf": "LoadModule php_module modules/libphp.so\n"}
    raw = host(confs=confs, version="Server version: Apache/2.4.57 (Red Hat Enterprise Linux)\n")
    raw = raw.replace(cmd("maps", MODULE + "\n"), cmd("maps", "/usr/lib64/httpd/modules/libphp.so\n"))
    raw += frame("ini", "ok", "/etc/php.ini", b"[PostgreSQL]\npgsql.auto_reset_persistent = Off\n")
    raw += frame("ini", "ok", "/etc/php.d/20-pgsql.ini", b"extension=pgsql\n")
    r = rows(raw)
    assert r["php ini"].detail == f"/usr/lib64/httpd/modules/libphp.so {APACHES} loads /etc/php.ini + 1 scanned"
    assert r["apache mpm"].detail.startswith("prefork: 256 workers at most")
    assert not r["pgsql.auto_reset_persistent"].ok


def test_no_driver_loaded():
    r = rows(host(ini="pgsql.auto_reset_persistent = Off\n"))
    assert findings(host(ini="")) == []
    assert "neither oci8 nor pgsql" in r["php drivers"].detail


def test_no_php_module():
    confs = {"/etc/apache2/apache2.conf": "Timeout 300\n"}
    raw = host(confs=confs).replace(cmd("maps", MODULE + "\n"), cmd("maps", ""))
    assert rows(raw)["php"].detail.startswith("Apache loads no PHP module")


def test_pgsql_persistent_off_is_clean():
    r = rows(host(ini="extension=pgsql\npgsql.allow_persistent = Off\n"))
    assert r["pgsql.allow_persistent"].ok and "a DB restart fails only the requests in flight" in \
        r["pgsql.allow_persistent"].detail
    assert "pgsql.auto_reset_persistent" not in r


# -- OCI8 ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("ini", "ok", "start"), [
    ("oci8.ping_interval = -1", False, "-1 (/etc/php/8.2/apache2/php.ini:2): dead connections are never detected "
                                       "before use"),
    ("oci8.ping_interval = 0", True, "0 (/etc/php/8.2/apache2/php.ini:2): every persistent connection is pinged "
                                     "before reuse and replaced if dead"),
    ("", False, "60 (not set: PHP default): a connection used again within 60s is not checked (on a busy server, "
                "every one): after a DB restart up to 150 requests"),
    ("oci8.ping_interval = 3600 ; hourly", False, "3600 (/etc/php/8.2/apache2/php.ini:2): a connection used again "
                                                  "within 3600s is not checked"),
    ('oci8.ping_interval = "abc"', True, '"abc" (/etc/php/8.2/apache2/php.ini:2): every persistent connection'),
    ("oci8.ping_interval = " + "9" * 5000, False, "9999999999"),
])
def test_oci8_ping_interval(ini, ok, start):
    r = rows(host(ini=f"extension=oci8.so\n{ini}\n"))
    assert r["oci8.ping_interval"].ok is ok
    assert r["oci8.ping_interval"].detail.startswith(start)
    if not ok:
        assert "fix: oci8.ping_interval = 0" in r["oci8.ping_interval"].detail


def test_oci8_other_settings_are_notes():
    r = rows(host(ini="extension=/usr/lib/php/20220829/oci8.so\noci8.events = On\noci8.persistent_timeout = 300\n"
                      "oci8.max_persistent = 2\noci8.ping_interval = 0\n"))
    assert [c for c in r if c.startswith("oci8.")] == ["oci8.ping_interval", "oci8.events", "oci8.persistent_timeout",
                                                      "oci8.max_persistent"]
    assert all(r[c].ok for c in r)
    assert "FAN events on" in r["oci8.events"].detail
    assert "a connection idle 300s is closed" in r["oci8.persistent_timeout"].detail
    assert "at most 2 per worker" in r["oci8.max_persistent"].detail


# -- Apache's MPM -----------------------------------------------------------------------------------

def test_event_mpm_defaults_and_limits():
    confs = {"/etc/apache2/mods-enabled/mpm_event.load":
             "LoadModule mpm_event_module /usr/lib/apache2/modules/mod_mpm_event.so\n",
             "/etc/apache2/mods-enabled/mpm_event.conf":
             "<IfModule mpm_event_module>\n  ThreadsPerChild 25\n  MaxRequestWorkers 150\n</IfModule>\n"
             "<IfModule mpm_prefork_module>\n  MaxRequestWorkers 5\n</IfModule>\n"}
    m = rows(host(confs=confs, version="Server MPM:     event\n"))["apache mpm"].detail
    assert m.startswith("event: 150 workers at most (6 processes x 25 threads; MaxRequestWorkers 150 "
                        "(/etc/apache2/mods-enabled/mpm_event.conf:3), ServerLimit 16 (default), ThreadsPerChild 25 "
                        "(/etc/apache2/mods-enabled/mpm_event.conf:2))")
    assert webtier.mpm([], "worker", None).workers == 400


def test_server_limit_caps_prefork_and_the_old_name_counts():
    d = [webtier.Directive("maxclients", ("900",), "a:1", ""), webtier.Directive("serverlimit", ("300",), "a:2", "")]
    m = webtier.mpm(d, "prefork", 3)
    assert (m.workers, m.processes, m.running) == (300, 300, 3)


def test_a_negated_ifmodule_and_a_continuation_line():
    conf = "<IfModule !mpm_prefork_module>\n  MaxRequestWorkers 7\n</IfModule>\nMaxRequest\\\nWorkers 42\n"
    confs = {"/etc/apache2/apache2.conf": conf,
             "/etc/apache2/mods-enabled/php8.2.load": f"LoadModule php_module {MODULE}\n"}
    assert "prefork: 42 workers at most" in rows(host(confs=confs))["apache mpm"].detail


def test_the_mpm_row_says_whether_requests_can_fail():
    exposed = rows(host())["apache mpm"].detail
    assert exposed.endswith("3 children running now: after a DB restart up to 150 requests can fail (one per worker "
                            "holding a dead persistent connection) before the chain restarts Apache"), exposed
    safe = rows(host(ini="extension=pgsql\npgsql.auto_reset_persistent = On\n"))["apache mpm"].detail
    assert safe.endswith("no persistent connection reaches a request unchecked (see the PHP rows), so a DB restart "
                         "fails only the requests in flight"), safe
    oci = rows(host(ini="extension=oci8\nextension=pgsql\npgsql.auto_reset_persistent = On\n"))["apache mpm"].detail
    assert "up to 150 requests can fail" in oci  # OCI8's default ping_interval (60) leaves them exposed


def test_apache_not_running():
    assert "no children running now" in rows(host(ps=""))["apache mpm"].detail
    assert "Apache is not running now" in rows(host(ps=""))["pgsql.auto_reset_persistent"].detail


def test_the_web_accounts_look_alike_apache_is_not_the_server():
    """A process of www-data named apache2, orphaned (its parent is init), with children of its own:
    never taken for Apache's main process, whose children are counted."""
    ps = "500 1 33 apache2\n501 500 33 apache2\n502 500 33 apache2\n" + PS
    assert webtier.children(webtier.processes(ps)) == 3
    assert webtier.children(webtier.processes("500 1 33 apache2\n")) is None
    assert webtier.children(webtier.processes("x y z\n1 2\n\xff 1 0 apache2\n")) is None


# -- the restart command ------------------------------------------------------------------------------

@pytest.mark.parametrize(("command", "kind"), [
    ("/usr/sbin/apachectl graceful", "graceful"),
    ("/usr/sbin/apache2ctl -k graceful", "graceful"),
    ("/usr/bin/systemctl reload apache2", "graceful"),
    ("systemctl --no-block reload httpd.service", "graceful"),
    ("service apache2 reload", "graceful"),
    ("/etc/init.d/apache2 force-reload", "graceful"),
    ("/etc/rc.d/init.d/httpd reload", "graceful"),
    ("/usr/sbin/apachectl restart", "hup"),
    ("/usr/sbin/httpd -k restart", "hup"),
    ("/etc/init.d/apache2 restart", "stop"),
    ("systemctl restart apache2", "stop"),
    ("service httpd restart", "stop"),
    ("sudo -n /usr/sbin/apachectl graceful", "graceful"),
    ("/usr/local/bin/bounce-web", "unknown"),
    ("", "unknown"),
    ("'unbalanced", "unknown"),
])
def test_restart_kinds(command, kind):
    assert webtier.restart_kind(command)[0] == kind


def test_restart_texts_say_what_happens_to_requests_in_flight():
    assert rows(host(), "/usr/sbin/apachectl graceful")["restart command"].ok
    hup = rows(host(), "/usr/sbin/apachectl restart")["restart command"]
    assert not hup.ok and "kills its children at once, cutting every request in flight" in hup.detail
    odd = rows(host(), "/usr/local/bin/bounce-web")["restart command"]
    assert not odd.ok and "cannot tell what it does to requests in flight" in odd.detail


# -- hostile answers ------------------------------------------------------------------------------------

def test_a_frame_marker_inside_a_file_is_content():
    """A file (say one the web account can write) holding the frame marker cannot forge a file or a
    command's answer: the frames are read by length."""
    forged = (frame("ini", "ok", f"{SCAN}/99-forged.ini", b"pgsql.max_persistent = 1\n")
              + b"\npgsql.auto_reset_persistent = Off\n")
    reads, whole = webtier.frames(host(ini="extension=pgsql\n" + forged.decode()))
    assert whole and f"{SCAN}/99-forged.ini" not in [r.name for r in reads]
    r = rows(host(ini="extension=pgsql\n" + forged.decode()))
    assert not r["pgsql.auto_reset_persistent"].ok and "probe" not in r
    assert r["pgsql.max_persistent"].detail.startswith(f"1 ({PHP_INI}:4)")  # a line of php.ini, as PHP reads it


def test_cut_and_garbled_answers():
    raw = host()
    for cut in (raw[: len(raw) // 2], raw[:-3], raw + b"\n@@svrchain-doctor@@ ini ok 644 root 99999999 /x\nabc",
                raw + b"\n@@svrchain-doctor@@ garbage\n", raw + b"trailing junk"):
        r = rows(cut)
        assert not r["probe"].ok and "cut short or garbled" in r["probe"].detail
    assert "probe" not in rows(raw)
    assert webtier.frames(b"") == ([], True)
    assert rows(b"")["apache config"].detail.startswith("no Apache server program of root's")


def test_huge_values_and_odd_bytes():
    huge = "9" * 200_000
    ini = (f"extension=pgsql\npgsql.auto_reset_persistent = \x1b[2J\x9bOWNED\x07{huge}\rpgsql.allow_persistent = 1\n"
           "pgsql.max_persistent = \xff\xfe\u202e\n")
    r = rows(host(ini=ini))
    detail = r["pgsql.auto_reset_persistent"].detail
    assert len(detail) < 1000 and r["pgsql.auto_reset_persistent"].ok  # a non-empty value is on, as PHP reads it
    assert "\x1b" not in shown(detail, keep="") and "\\x1b[2J\\x9bOWNED\\x07" in shown(detail, keep="")
    assert r["pgsql.allow_persistent"].detail.startswith(f"1 ({PHP_INI}:3)")  # after a lone CR: a line of its own
    assert r["pgsql.max_persistent"].detail.startswith("\xff\xfe\u202e")
    assert "\\u202e" in shown(r["pgsql.max_persistent"].detail, keep="")
    binary = bytes(range(256)) * 100
    assert rows(host(ini="extension=pgsql\n", scan={"00-bin.ini": binary.decode("latin-1")}))


def test_files_that_could_not_be_read_or_others_can_write():
    extra = frame("ini", "big", f"{SCAN}/30-huge.ini", b"", "644", "root")
    extra += frame("ini", "notfile", f"{SCAN}/40-fifo.ini", b"", "-", "-")
    extra += frame("ini", "ok", f"{SCAN}/50-web.ini", b"pgsql.auto_reset_persistent = On\n", "644", "www-data")
    extra += frame("ini", "ok", f"{SCAN}/60-wide.ini", b"", "666", "root")
    extra += frame("ini", "oddname", f"{SCAN}/70-a?b.ini", b"", "-", "-")
    extra += frame("ini", "missing", f"{SCAN}/80-gone.ini", b"", "-", "-")
    extra += frame("conf", "ok", "/var/www/conf/site.conf", b"", "644", "www-data")
    r = rows(host(extra=extra))
    d = r["php ini"].detail
    assert not r["php ini"].ok
    assert f"{SCAN}/30-huge.ini is larger than 1 MiB: not read" in d
    assert f"{SCAN}/40-fifo.ini is not a regular file: not read" in d
    assert f"{SCAN}/50-web.ini can be changed by www-data (owner www-data, mode 644)" in d
    assert f"{SCAN}/60-wide.ini can be changed by its group or everyone" in d
    assert f"{SCAN}/70-a?b.ini has a line break in its name" in d
    assert "80-gone" not in d
    assert "/var/www/conf/site.conf can be changed by www-data" in r["apache config"].detail


def test_the_configuration_test_failing_or_hanging():
    listed = cmd("includes", "Included configuration files:\n" + "".join(
        f"  (1) {p}\n" for p in ["/etc/apache2/apache2.conf", "/etc/apache2/mods-enabled/mpm_prefork.load",
                                 "/etc/apache2/mods-enabled/php8.2.load",
                                 "/etc/apache2/mods-enabled/mpm_prefork.conf"]))
    bad = host().replace(listed, cmd("includes", "AH00526: Syntax error on line 3\n", "1"))
    assert rows(bad)["apache config"].detail == ("/usr/sbin/apache2 -t -D DUMP_INCLUDES failed (exit 1): AH00526: "
                                                 "Syntax error on line 3; fix the configuration")
    hung = host().replace(listed, cmd("includes", "  (9) /var/www/conf/a.conf\n", "124"))
    assert rows(hung)["apache config"].detail.startswith(
        "/usr/sbin/apache2 -t -D DUMP_INCLUDES failed (exit 124): did not finish within 20s (its last line: "
        "(9) /var/www/conf/a.conf; an included file that blocks, a FIFO?)")


# -- the probe's reader, run as the real shell ---------------------------------------------------------

def read_with_probe(*paths: str) -> list[webtier.Read]:
    script = webtier.HELPERS + "\n" + "\n".join(f'put ini "$({_quote(p)})"' for p in paths)
    out = subprocess.run(["sh", "-c", script], capture_output=True, timeout=60, check=True).stdout
    reads, whole = webtier.frames(out)
    assert whole
    return reads


def _quote(p: str) -> str:
    return "printf '%s' '" + p.replace("'", "'\\''") + "'"


def test_probe_reader_on_a_fifo_a_huge_file_a_link_and_an_odd_name(tmp_path):
    (tmp_path / "ok.ini").write_bytes(b"a = 1\n\x00\xff" + webtier.MARK + b"x")
    os.mkfifo(tmp_path / "fifo.ini")
    (tmp_path / "huge.ini").write_bytes(b"x" * (webtier.MAXB + 1))
    (tmp_path / "link.ini").symlink_to(tmp_path / "ok.ini")
    odd = tmp_path / "a\nb.ini"
    odd.write_text("a = 2\n")
    reads = read_with_probe(*(str(tmp_path / n) for n in ("ok.ini", "fifo.ini", "huge.ini", "link.ini", "gone.ini")),
                            str(odd))
    got = [(r.status, r.name.removeprefix(str(tmp_path) + "/"), r.data) for r in reads]
    content = b"a = 1\n\x00\xff" + webtier.MARK + b"x"
    assert got == [("ok", "ok.ini", content), ("notfile", "fifo.ini", b""), ("big", "huge.ini", b""),
                   ("ok", "link.ini", content), ("missing", "gone.ini", b""), ("oddname", "a?b.ini", b"")]
    me = pwd.getpwuid(os.geteuid()).pw_name
    assert (reads[0].mode, reads[0].owner) == ((tmp_path / "ok.ini").stat().st_mode & 0o7777, me)
