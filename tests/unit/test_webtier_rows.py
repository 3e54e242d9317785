"""doctor's judgement (svrchain/core/webtier.py) pinned whole, function by function: each row's check, ok
and words, the restart command's kinds, the modules a configuration loads, the probe's frames and PHP's
ini lines, on values a probe could give (hostile ones included). The mutants of issue 21's webtier run
that survived the whole-host tests of test_doctor.py showed which of these nothing pinned. Expected
values written here by hand."""

from __future__ import annotations

import pytest

from svrchain.core import webtier
from svrchain.core.webtier import Directive, Finding, Mpm, Php, Read, Setting

APACHE2 = "/usr/lib/apache2/modules"


def conf(text: str, name: str = "a.conf") -> list[Directive]:
    return webtier.directives([Read("conf", "ok", 0o644, "root", name, text.encode())])


def cmd(name: str, text: str, status: str = "0") -> Read:
    return Read("cmd", status, None, "-", name, text.encode())


# -- the restart command ----------------------------------------------------------------------------------

GRACEFUL = ("graceful: each child finishes the request it is serving, then is replaced; the listening sockets stay "
            "open, so no request in flight is cut and no connection refused")
HUP = ("a restart (SIGHUP): Apache kills its children at once, cutting every request in flight (the sockets stay "
       "open, new connections wait)")
STOP = "a stop and a start: every request in flight is cut and new connections are refused until Apache is up again"
UNKNOWN = "svrchain cannot tell what it does to requests in flight"
FIX = ("; fix: web.restart_command: /usr/sbin/apachectl graceful (or systemctl reload apache2), then svrchain "
       "push-key")


@pytest.mark.parametrize(("command", "kind", "text"), [
    ("/usr/bin/sudo -n /usr/sbin/apachectl graceful", "graceful", GRACEFUL),
    ("/usr/sbin/apache2 -k graceful", "graceful", GRACEFUL),
    ("/usr/sbin/apache2 -k restart", "hup", HUP),
    ("apachectl stop", "stop", STOP),
    ("apachectl start", "stop", STOP),
    ("service apache2 graceful", "graceful", GRACEFUL),
    ("systemctl try-restart apache2", "stop", STOP),
    ("systemctl reload-or-restart apache2", "graceful", GRACEFUL),
    ("systemctl try-reload-or-restart apache2", "graceful", GRACEFUL),
    ("/usr/local/bin/bounce-web", "unknown", UNKNOWN),
])
def test_every_restart_verb_and_what_it_does_to_requests(command: str, kind: str, text: str) -> None:
    assert webtier.restart_kind(command) == (kind, text)


def test_the_restart_row_whole_with_the_fix_only_when_not_graceful() -> None:
    good = "/usr/sbin/apachectl graceful"
    assert webtier.restart_finding(good) == Finding("restart command", True, f"{good}: {GRACEFUL}")
    bad = "systemctl restart apache2"
    assert webtier.restart_finding(bad) == Finding("restart command", False, f"{bad}: {STOP}{FIX}")


# -- the MPM row -------------------------------------------------------------------------------------------

def test_the_mpm_row_when_apache_names_no_mpm_and_the_workers_when_it_is_not_running() -> None:
    assert webtier.mpm_finding(Mpm(None, 0, 0, 1, "", None), True) == Finding(
        "apache mpm", False, "cannot tell Apache's MPM (apache2 -V said none): check that Apache is installed and "
        "its configuration passes apache2 -t")
    assert webtier.workers_text(Mpm("prefork", 150, 150, 1, "", None)) == (
        "up to 150 requests (one per worker holding a dead connection; Apache is not running now)")


def test_mpm_limits_their_defaults_and_the_old_name_for_threaded_mpms() -> None:
    m = webtier.mpm(conf("ServerLimit 300\n"), "prefork", 2)
    assert (m.workers, m.why, m.running) == (
        256, "MaxRequestWorkers 256 (default), ServerLimit 300 (a.conf:1)", 2)
    m = webtier.mpm(conf("ThreadsPerChild 0\nMaxClients 100\n"), "event", 3)
    assert (m.workers, m.processes, m.threads, m.running) == (16, 16, 1, 3)  # 16 processes of 1 thread
    assert m.why == "MaxRequestWorkers 100 (a.conf:2), ServerLimit 16 (default), ThreadsPerChild 1 (a.conf:1)"
    m = webtier.mpm(conf("MaxRequestWorkers 0\n"), "prefork", None)
    assert (m.workers, m.why) == (0, "MaxRequestWorkers 0 (a.conf:1), ServerLimit 256 (default)")
    m = webtier.mpm(conf("MaxRequestWorkers many\n"), "prefork", None)
    assert m.why == "MaxRequestWorkers 256 (default (a.conf:1: 'many' is not a number)), ServerLimit 256 (default)"


def test_a_bare_loadmodule_line_names_no_mpm_and_a_process_line_is_read_whole() -> None:
    assert webtier.mpm_name("", conf("LoadModule\nLoadModule mpm_event_module x.so\n")) == "event"
    assert webtier.mpm_name("", conf("LoadModule\n")) is None
    assert webtier.processes("100 1 0 apache2\n") == [webtier.Proc(100, 1, 0, "apache2")]


# -- Apache's configuration: lines, sections, modules ----------------------------------------------------------

def test_continuation_lines_join_as_apache_joins_them() -> None:
    # The next line's indentation stays (it separates words); three lines make one.
    found = conf("MaxRequestWorkers\\\n    42\nphp_value a\\\n  b\\\n  c\n")
    assert [(d.name, d.args, d.where) for d in found] == [
        ("maxrequestworkers", ("42",), "a.conf:1"), ("php_value", ("a", "b", "c"), "a.conf:3")]


def test_directives_keep_comments_out_and_each_section_around_them_verbatim() -> None:
    found = conf("# MaxRequestWorkers 5\n<IfModule php_module>\n  <Directory /srv/X>\n    php_value a 1\n"
                 "  </Directory>\n</IfModule>\n<Xfilter on>\n  Timeout 5\n</Xfilter>\n")
    assert found == [Directive("php_value", ("a", "1"), "a.conf:4", "IfModule php_module\x00Directory /srv/X"),
                     Directive("timeout", ("5",), "a.conf:8", "Xfilter on")]
    assert [d.scope for d in webtier.effective(found, {"php_module"})] == ["<Directory /srv/X>", ""]


def test_a_directives_words_as_apache_quotes_them() -> None:
    found = conf('php_value error_log "/var/log/php errors.log"\nphp_value session.name a#b\n')
    assert [d.args for d in found] == [("error_log", "/var/log/php errors.log"), ("session.name", "a#b")]


def test_the_modules_a_configuration_loads_by_every_name_ifmodule_may_use() -> None:
    found = conf(f"LoadModule php_module {APACHE2}/libphp8.2.so\nLoadModule SSL_module modules/MOD_SSL.SO\n"
                 "php_value include_path /srv/lib\n")
    assert webtier.loaded_modules(found, "event") == {
        "core.c", "http_core.c", "mod_so.c", "so_module", "core_module",
        "php_module", "libphp8.2.c", "mod_php.c", "mod_php8.c", "php8_module",
        "ssl_module", "mod_ssl.c",
        "mpm_event_module", "event.c", "mod_mpm_event.c"}


def test_the_php_module_apache_loads_when_the_running_one_is_not_seen() -> None:
    # The last LoadModule whose module (not its file: /opt/php holds others) is PHP's, in any case.
    found = conf("LoadModule php_module /a/libphp.so\nLoadModule PHP7_module /b/libphp7.so\nLoadModule php_module\n"
                 "LoadModule x_module /opt/php/mod_x.so\nLoadModule ssl_module /a/mod_ssl.so\n"
                 "php_admin_value php.x /c/libphp9.so\n")
    assert webtier.php_module("", found) == "/b/libphp7.so"
    assert webtier.php_module("", conf("LoadModule php_module /a/libphp.so\n")) == "/a/libphp.so"
    assert webtier.php_module("", conf("LoadModule ssl_module /a/mod_ssl.so\n")) is None


# -- Apache's rows ---------------------------------------------------------------------------------------------

NO_APACHE = ("no Apache server program of root's (/usr/sbin/apache2 with /etc/apache2/envvars, or /usr/sbin/httpd; "
             "none others can write): its configuration not read")


def test_the_apache_config_row_for_each_way_its_test_can_fail() -> None:
    ctl = cmd("ctl", "/usr/sbin/apache2\n")
    assert webtier.apache_findings([])[0] == [Finding("apache config", False, NO_APACHE)]
    assert webtier.apache_findings([ctl])[0] == [Finding(
        "apache config", False, "/usr/sbin/apache2 -t -D DUMP_INCLUDES failed (exit ?): not run; fix the "
        "configuration")]
    assert webtier.apache_findings([ctl, cmd("includes", "", "1")])[0] == [Finding(
        "apache config", False, "/usr/sbin/apache2 -t -D DUMP_INCLUDES failed (exit 1): no output; fix the "
        "configuration")]
    long = "AH00526: " + "x" * 250
    assert webtier.apache_findings([ctl, cmd("includes", f"first\n{long}\n", "1")])[0] == [Finding(
        "apache config", False, f"/usr/sbin/apache2 -t -D DUMP_INCLUDES failed (exit 1): {long[:200]}; fix the "
        "configuration")]


def test_the_apache_config_row_names_every_file_others_can_change() -> None:
    reads = [cmd("ctl", "/usr/sbin/apache2\n"), cmd("includes", ""),
             Read("conf", "ok", 0o666, "root", "/etc/apache2/a.conf", b""),
             Read("conf", "unreadable", None, "root", "/etc/apache2/b.conf", b"")]
    assert webtier.apache_findings(reads)[0] == [Finding(
        "apache config", False, "2 files read; /etc/apache2/a.conf can be changed by its group or everyone (owner "
        "root, mode 666): whoever can write it sets PHP's settings; make it root's, not writable by others; "
        "/etc/apache2/b.conf could not be read within 10 s")]


def test_a_built_in_mpm_counts_as_loaded_for_its_ifmodule() -> None:
    reads = [cmd("ctl", "/usr/sbin/httpd\n"), cmd("version", "Server MPM:     prefork\n"), cmd("includes", ""),
             Read("conf", "ok", 0o644, "root", "/etc/httpd/conf/httpd.conf",
                  b"<IfModule mpm_prefork_module>\n  MaxRequestWorkers 5\n</IfModule>\n")]
    assert webtier.apache_findings(reads)[2].workers == 5


def test_a_file_with_no_mode_is_shown_as_mode_zero() -> None:
    r = Read("ini", "ok", None, "www-data", "/etc/php.ini", b"")
    assert webtier._file_problem(r) == (
        "/etc/php.ini can be changed by www-data (owner www-data, mode 0): whoever can write it sets PHP's "
        "settings; make it root's, not writable by others")


# -- the probe's frames --------------------------------------------------------------------------------------

MARK = b"\n@@svrchain-doctor@@ "


def test_a_name_is_read_whole_after_the_fifth_space_in_any_bytes() -> None:
    raw = MARK + b"conf ok 644 root 1 /etc/apache2/my site.conf\nx" + MARK + b"conf ok 644 root 0  lead.conf\n"
    raw += MARK + b"conf ok 644 root 0 /etc/\xff.conf\n"
    reads, whole = webtier.frames(raw)
    assert whole
    assert [r.name for r in reads] == ["/etc/apache2/my site.conf", " lead.conf", "/etc/\ufffd.conf"]


def test_a_header_cut_short_or_garbage_between_frames_ends_the_reading() -> None:
    one = MARK + b"cmd 0 - - 1 ctl\nx"
    assert webtier.frames(one + MARK + b"cmd 0 - - 5 ctl") == ([Read("cmd", "0", None, "-", "ctl", b"x")], False)
    # What seems a frame after garbage is not read: the garbage is as long as the marker.
    garbage = b"y" * len(MARK) + b"cmd 0 - - 0 env\n"
    assert webtier.frames(one + garbage) == ([Read("cmd", "0", None, "-", "ctl", b"x")], False)


def test_the_probe_row_when_the_answer_was_cut() -> None:
    rows = webtier.diagnose(MARK + b"cmd 0 - - 9 ctl\nx", "/usr/sbin/apachectl graceful")
    assert rows[-1] == Finding("probe", False, "the host's answer was cut short or garbled: what follows it was not "
                               "read")


# -- PHP's ini files -------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("raw", "value"), [('"a" b "c"', "a"), ("a;b;c", "a")])
def test_ini_value_ends_at_the_first_quote_or_semicolon(raw: str, value: str) -> None:
    assert webtier.ini_value(raw) == value


def test_parse_ini_comments_the_first_equals_sign_and_the_first_semicolon() -> None:
    text = b"; pgsql.auto_reset_persistent = On\nuser_agent = SVRX\nerror_prepend_string = a = b\nx = 1;2;3\n"
    assert webtier.parse_ini(Read("ini", "ok", 0o644, "root", "p.ini", text)) == [
        ("user_agent", "SVRX", "p.ini:2"), ("error_prepend_string", "a = b", "p.ini:3"), ("x", "1", "p.ini:4")]


def test_ini_files_skip_a_missing_file_and_scan_folders_lose_their_trailing_slash() -> None:
    module = f"{APACHE2}/libphp8.2.so"
    reads = {"/srv/php/php-apache2handler.ini": Read("ini", "missing", None, "-", "x", b""),
             "/srv/php/php.ini": Read("ini", "ok", 0o644, "root", "x", b"")}
    env = "PHPRC=/srv/php\nPHP_INI_SCAN_DIR=/srv/php.d/:/srv/ini.X/\n"
    assert webtier.ini_files(module, env, None, reads) == ("/srv/php/php.ini", ["/srv/php.d", "/srv/ini.X"])


def test_scanned_files_in_byte_order_even_for_bytes_that_are_no_utf8() -> None:
    # \udcff is the byte 0xff (surrogateescape), after every UTF-8 lead byte (\ue000 is 0xee 0x80 0x80).
    names = ["/etc/php.d/\udcff.ini", "/etc/php.d/\ue000.ini"]
    reads = {n: Read("ini", "ok", 0o644, "root", n, b"") for n in names}
    assert webtier._scanned(["/etc/php.d"], reads) == names[::-1]


def test_a_file_php_cannot_read_gives_no_settings_even_if_the_answer_carries_some() -> None:
    module = f"{APACHE2}/libphp8.2.so"
    reads = {"/etc/php/8.2/apache2/php.ini": Read("ini", "big", 0o644, "root", "/etc/php/8.2/apache2/php.ini",
                                                  b"extension=pgsql\n"),
             "/etc/php/8.2/apache2/conf.d/10-opcache.ini": Read(
                 "ini", "ok", 0o644, "root", "/etc/php/8.2/apache2/conf.d/10-opcache.ini",
                 b"zend_extension=opcache.so\n")}
    p = webtier.php([], module + "\n", "", reads)
    assert (p.extensions, p.settings) == ({"opcache"}, {})


def test_apache_sets_php_values_with_each_of_its_four_directives() -> None:
    long = "v" * 90
    found = conf(f"php_value a 1\nphp_flag b on\nphp_admin_value c 2\nphp_admin_flag d off\nphp_value e\n"
                 f"Header set X\nphp_value f {long}\n")
    p = Php("m")
    webtier._apache_values(p, found)
    assert {k: s.value for k, s in p.settings.items()} == {"a": "1", "b": "1", "c": "2", "d": "", "f": long[:80]}


def test_a_setting_no_file_sets_is_phps_default_or_empty() -> None:
    assert webtier.setting(Php("m"), "oci8.ping_interval") == Setting("60")
    assert webtier.setting(Php("m"), "session.name") == Setting("")


@pytest.mark.parametrize(("value", "on"), [("off", False), ("No", False), ("0", False), ("", False), (" 1", True),
                                           ("yes", True)])
def test_on_as_php_reads_a_boolean(value: str, on: bool) -> None:
    assert webtier._on(value) is on


def test_an_unset_number_is_its_default() -> None:
    assert webtier._int("", 1) == 1
    assert webtier._int("", 0) == 0


@pytest.mark.parametrize(("value", "detail"), [
    ("", "Off (php.ini:9): no limit: each worker may hold any number of sessions, all reopened together after a DB "
         "restart; a limit (pgsql.max_persistent = 1 or 2) bounds the reconnection storm"),
    ("0", "0 (php.ini:9): at most 0 per worker: the DB must accept workers x 0 sessions when they reconnect"),
])
def test_max_persistent_set_but_empty_or_zero(value: str, detail: str) -> None:
    assert webtier._max_persistent("pgsql.max_persistent", Setting(value, "php.ini:9", value)) == Finding(
        "pgsql.max_persistent", True, detail)


# -- the PHP rows ------------------------------------------------------------------------------------------------

M = Mpm("prefork", 150, 150, 1, "", 3)
NO_DRIVER = Finding("php drivers", True, "neither oci8 nor pgsql is loaded in Apache's PHP (PDO's persistent "
                    "connections are set in code, not inspected)")


def test_the_php_rows_without_php_without_a_file_and_without_a_driver() -> None:
    assert webtier.php_findings(Php(None), M) == [
        Finding("php", True, "Apache loads no PHP module: no PHP persistent connection to go stale")]
    p = Php("m", problems=["a is odd", "b is odd"], per_request=[f"k{i}=1" for i in range(6)])
    assert webtier.php_findings(p, M) == [
        Finding("php ini", False, "m (Apache's PHP, not the CLI's) loads no ini file; a is odd; b is odd"), NO_DRIVER,
        Finding("php per vhost", True, "also set for some requests only: k0=1; k1=1; k2=1; k3=1; k4=1")]


@pytest.mark.parametrize("driver", ["oci8", "pgsql"])
def test_one_driver_gives_its_rows_after_the_ini_row_and_no_driver_row(driver: str) -> None:
    rows = webtier.php_findings(Php("m", files=["/etc/php.ini"], extensions={driver}), M)
    assert rows[0] == Finding("php ini", True, "m (Apache's PHP, not the CLI's) loads /etc/php.ini + 0 scanned")
    assert NO_DRIVER not in rows
    assert all(r.check.startswith(f"{driver}.") for r in rows[1:])
