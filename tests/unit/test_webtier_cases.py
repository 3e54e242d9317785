"""doctor's judgement (svrchain/core/webtier.py) function by function, on values a probe could give:
the edges the whole-host cases of test_doctor.py do not reach. Expected values written here by hand."""

from __future__ import annotations

import pytest

from svrchain.core import webtier
from svrchain.core.webtier import Php, Setting

WORKERS = "up to 150 requests"
FIX = "fix: oci8.ping_interval = 0 (a ping before each reuse), in the php.ini above"


def oci8(**settings: str) -> dict[str, webtier.Finding]:
    p = Php("libphp8.2.so", settings={k: Setting(v, "php.ini:9", v) for k, v in settings.items()})
    return {f.check: f for f in webtier.oci8_findings(p, WORKERS)}


@pytest.mark.parametrize(("value", "ok", "detail"), [
    # set but empty: PHP's default, 60
    ("", False, "Off (php.ini:9): a connection used again within 60s is not checked (on a busy server, every one): "
                f"after a DB restart {WORKERS} can fail; {FIX}"),
    ("1", False, "1 (php.ini:9): a connection used again within 1s is not checked (on a busy server, every one): "
                 f"after a DB restart {WORKERS} can fail; {FIX}"),
    ("-1", False, "-1 (php.ini:9): dead connections are never detected before use: after a DB restart "
                  f"{WORKERS} fail (ORA-03113/ORA-03135) until the chain restarts Apache; {FIX}"),
])
def test_oci8_ping_interval_edges(value: str, ok: bool, detail: str) -> None:
    row = oci8(**{"oci8.ping_interval": value})["oci8.ping_interval"]
    assert (row.ok, row.detail) == (ok, detail)


def test_oci8_events_off_says_what_to_set_with_rac() -> None:
    assert oci8()["oci8.events"].detail == (
        "Off (not set: PHP default): off: Oracle FAN notices are ignored; with RAC, Data Guard or Oracle Restart set "
        "oci8.events = On so dead connections are dropped when the database goes down")


@pytest.mark.parametrize(("value", "detail"), [
    ("", "Off (php.ini:9): idle persistent connections are kept until the process ends"),  # set but empty: -1
    ("-1", "-1 (php.ini:9): idle persistent connections are kept until the process ends"),
    ("0", "0 (php.ini:9): a connection idle 0s is closed"),
])
def test_oci8_persistent_timeout(value: str, detail: str) -> None:
    assert oci8(**{"oci8.persistent_timeout": value})["oci8.persistent_timeout"].detail == detail


def test_oci8_events_on_says_dead_connections_are_dropped_at_once() -> None:
    assert oci8(**{"oci8.events": "1"})["oci8.events"].detail == (
        "1 (php.ini:9): FAN events on: connections to a failed instance are dropped at once")


def pgsql(**settings: str) -> list[webtier.Finding]:
    p = Php("libphp8.2.so", settings={k: Setting(v, "php.ini:9", v) for k, v in settings.items()})
    return webtier.pgsql_findings(p, WORKERS)


NO_LIMIT = ("-1 (not set: PHP default): no limit: each worker may hold any number of sessions, all reopened together "
            "after a DB restart; a limit (pgsql.max_persistent = 1 or 2) bounds the reconnection storm")


def test_pgsql_rows_whole_for_each_state_of_its_two_switches() -> None:
    F = webtier.Finding
    assert pgsql(**{"pgsql.allow_persistent": "0"}) == [
        F("pgsql.allow_persistent", True, "0 (php.ini:9): pg_pconnect opens a new connection per request: a DB "
          "restart fails only the requests in flight")]
    kept = F("pgsql.allow_persistent", True, "On (not set: PHP default): persistent connections are kept per worker")
    assert pgsql(**{"pgsql.auto_reset_persistent": "1"}) == [
        kept, F("pgsql.auto_reset_persistent", True, "1 (php.ini:9): a broken persistent connection is detected "
                "(pg_ping) and reopened before use"),
        F("pgsql.max_persistent", True, NO_LIMIT)]
    # ok is False (a finding), not merely falsy: the report and the exit code read it as such.
    assert pgsql() == [
        kept, F("pgsql.auto_reset_persistent", False, "Off (not set: PHP default): a persistent connection broken "
                f"by a DB restart is handed to the next request unchecked: {WORKERS} fail until the chain restarts "
                "Apache; fix: pgsql.auto_reset_persistent = On in the php.ini above"),
        F("pgsql.max_persistent", True, NO_LIMIT)]
    assert pgsql()[1].ok is False


# -- Apache's sections: which directives take effect (effective) ------------------------------------------------

def scopes(conf: str, loaded: set[str]) -> list[tuple[str, str]]:
    """(name, scope) of each directive of ``conf`` that takes effect with the ``loaded`` modules."""
    found = webtier.directives([webtier.Read("conf", "ok", 0o644, "root", "a.conf", conf.encode())])
    return [(d.name, d.scope) for d in webtier.effective(found, loaded)]


def test_a_section_whose_argument_has_spaces_is_still_per_request() -> None:
    conf = ('<Directory "/var/www/my site">\n  php_admin_value a 1\n</Directory>\n'
            "<VirtualHost 198.18.0.21:80 [2001:db8::21]:80>\n  php_value b 1\n</VirtualHost>\n")
    assert scopes(conf, set()) == [("php_admin_value", '<Directory "/var/www/my site">'),
                                   ("php_value", "<VirtualHost 198.18.0.21:80 [2001:db8::21]:80>")]


def test_ifmodule_quoted_negated_and_the_conditions_doctor_does_not_judge() -> None:
    conf = ('<IfModule "php_module">\n  Quoted 1\n</IfModule>\n'
            "<IfModule !php_module>\n  NotPhp 1\n</IfModule>\n"
            "<IfModule !mod_ssl.c>\n  NoSsl 1\n</IfModule>\n"
            "<IfModule mod_ssl.c>\n  Ssl 1\n</IfModule>\n"
            # Only the quotes and the '!' come off a module's name: one that starts with an X keeps it.
            "<IfModule XSendFile_module>\n  X 1\n</IfModule>\n<IfModule !XSendFile_module>\n  NotX 1\n</IfModule>\n"
            # Conditions doctor cannot know (-D flags, the version) are taken as true: their directives count.
            "<IfDefine SSL>\n  Defined 1\n</IfDefine>\n<IfVersion >= 2.4>\n  Version 1\n</IfVersion>\n")
    assert scopes(conf, {"php_module", "xsendfile_module"}) == [
        ("quoted", ""), ("nossl", ""), ("x", ""), ("defined", ""), ("version", "")]


# -- PHP's ini files (ini_files) ------------------------------------------------------------------------------

MODULE = "/usr/lib/apache2/modules/libphp8.2.so"


def ini(name: str) -> webtier.Read:
    return webtier.Read("ini", "ok", 0o644, "root", name, b"")


def test_phprc_naming_a_file_is_that_file_and_a_folder_is_searched() -> None:
    # PHP takes $PHPRC ending in .ini as the file itself, before the built-in folder's php.ini.
    reads = {p: ini(p) for p in ("/srv/php/site.ini", "/srv/php/php.ini", "/etc/php/8.2/apache2/php.ini")}
    scan = ["/etc/php/8.2/apache2/conf.d"]
    assert webtier.ini_files(MODULE, "PHPRC=/srv/php/site.ini\n", None, reads) == ("/srv/php/site.ini", scan)
    assert webtier.ini_files(MODULE, "PHPRC=/srv/php\n", None, reads) == ("/srv/php/php.ini", scan)
