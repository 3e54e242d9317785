"""Inventory validation: every problem is one line naming the file, the key's path and the fix."""

import copy
import re
from pathlib import Path

import pytest

from svrchain.core.inventory import Inventory, InventoryError, parse
from tests import fastyaml
from tests.paths import LAB_INVENTORY

LAB = fastyaml.load(LAB_INVENTORY.read_text())
SRC = Path("inventory/test.yaml")
ORACLE_READY = "/usr/local/lib/svrchain/oracle-ready"  # where svrchain installs its Oracle check


def load(data: dict):
    return parse(fastyaml.dump(data), SRC)


def error_of(data: dict | str, lines: bool = False) -> str:
    """The error's message; without ``lines``, the YAML line numbers are taken out (tested on their own)."""
    with pytest.raises(InventoryError) as exc:
        parse(data if isinstance(data, str) else fastyaml.dump(data), SRC)
    return str(exc.value) if lines else re.sub(rf"^{re.escape(str(SRC))}:\d+: ", f"{SRC}: ", str(exc.value), flags=re.M)


def changed(path: str, value) -> dict:
    """A copy of the lab inventory with one key (dotted path, [i] for lists) set or removed."""
    data = copy.deepcopy(LAB)
    *parents, last = path.split(".")
    node = data
    for p in parents:
        node = node[int(p)] if p.isdigit() else node[p]
    if value is None:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return data


def test_lab_inventory_loads():
    inv = load(LAB)
    assert inv.db.from_addresses == ["198.18.0.10"]
    assert [s.name for s in inv.web.servers] == ["web1", "web2"]
    assert inv.key.type == "ed25519"


def test_example_inventory_loads():
    inv = parse((LAB_INVENTORY.parent / "example.yaml").read_text(), SRC)
    assert inv.db.oracle is not None


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("db.adress", "198.18.0.10", "db.adress: unknown key; did you mean 'address'?"),
        ("web.restart_comand", "x", "web.restart_comand: unknown key; did you mean 'restart_command'?"),
        ("db.address", None, "db.address: missing; add it"),
        ("db.port", "twenty-two", "db.port: must be a whole number (got 'twenty-two')"),
        ("db.port", 70000, "db.port: must be at most 65535 (got 70000)"),
        ("connect.timeout", 0, "connect.timeout: must be at least 1 (got 0)"),
        ("db.ready.interval", "fast", "db.ready.interval: must be a number (got 'fast')"),
        ("lab", "yes", "lab: must be true or false (got 'yes')"),
        ("connect.user", ["root"], "connect.user: must be text"),
        ("web.servers.0.health_url", "ftp://web1/", "web.servers[0].health_url: must be an http:// or https:// URL"),
        ("db.unit", "oracle",
         "db.unit: must be a systemd service unit's name, ending in .service (e.g. oracle.service) (got 'oracle')"),
        ("key", "rsa", "key: must be a mapping ('key: value' lines indented under it)"),
        ("key.bits", 1024, "key.bits: must be at least 3072 (got 1024)"),
        ("web.servers.1.address", "198.18.0.10",
         "web.servers[1].address: web2 has the DB server's address 198.18.0.10"),
        ("db.from", ["db.example"], "db.from[0]: from= takes IP addresses"),
        ("web.restart_command", 'echo "hi"', "web.restart_command: must be one line without double quotes"),
        ("db.init", "upstart", "db.init: must be one of 'auto', 'sysv' or 'systemd' (got 'upstart')"),
        ("key.path", "relative/key", "key.path: must be an absolute path"),
        ("key.type", "dsa", "key.type: must be one of 'ed25519' or 'rsa' (got 'dsa')"),
        ("web.servers", [], "web.servers: must list at least 1"),
    ],
)
def test_each_problem_is_one_clear_line(path, value, expected):
    data = changed(path, value)
    if path.endswith(("adress", "comand")):  # an unknown key next to the right one
        data[path.split(".")[0]][path.split(".")[1]] = value
    message = error_of(data)
    assert message.startswith(f"{SRC}: {expected}"), message
    assert "\n" not in message and "Traceback" not in message
    for leak in ("Input should", "String should", "pattern", "^", "[^", "valid integer", "List should"):
        assert leak not in message.removeprefix(f"{SRC}: {expected}"), message


LINES = """\
connect:
  identity: k
  known_hosts: kh
  port: 99999
db:
  name: db
  adress: 10.0.0.5
web:
  servers:
    - name: web1
      address: 10.0.0.21
      health_url: http://10.0.0.21/
    - name: web2
      address: 10.0.0.22
      health_url: gopher://x
"""


def test_each_problem_names_its_yaml_line():
    message = error_of(LINES, lines=True)
    assert f"{SRC}:4: connect.port: must be at most 65535 (got 99999)" in message.splitlines(), message
    assert f"{SRC}:7: db.adress: unknown key; did you mean 'address'?" in message.splitlines(), message
    assert f"{SRC}:15: web.servers[1].health_url: must be an http:// or https:// URL" in message, message
    assert re.search(rf"^{re.escape(str(SRC))}:5: db.address: missing", message, re.M), message


def test_db_name_address_needs_from():
    message = error_of(changed("db.address", "db.example.com"))
    assert "add 'from' with the DB server's IP" in message


def test_script_and_oracle_are_exclusive():
    data = changed("db.oracle", {"home": "/u01/app/oracle", "sid": "ORCL"})
    assert "set exactly one of 'script'" in error_of(data)


def oracle_data(**db) -> dict:
    data = changed("db.oracle", {"home": "/u01/app/oracle", "sid": "ORCL"})
    del data["db"]["script"], data["db"]["ready"], data["db"]["run"]
    data["db"].update(db)
    return data


def test_oracle_is_ready_by_sql_and_a_run_is_a_pmon_process():
    inv = Inventory.model_validate(oracle_data())
    assert (inv.db.ready.command, inv.db.ready.successes, inv.db.ready.port) == (ORACLE_READY, 3, None)
    assert inv.db.run.process == "^ora_pmon_ORCL$"
    assert inv.db.run.user == "oracle"  # pmon is oracle.owner's: nobody else's ora_pmon_ORCL is a run
    owned = Inventory.model_validate(oracle_data(oracle={"home": "/u01", "sid": "ORCL", "owner": "ora19"},
                                                 run={"process": "^ora_pmon_ORCL$", "interval": 2}))
    assert (owned.db.run.user, owned.db.run.interval) == ("ora19", 2)
    tuned = Inventory.model_validate(oracle_data(ready={"timeout": 900}, run={"command": "echo 1"}))
    assert (tuned.db.ready.command, tuned.db.ready.timeout, tuned.db.run.command) == (ORACLE_READY, 900, "echo 1")


def test_oracle_refuses_a_port_readiness_and_says_why():
    message = error_of(oracle_data(ready={"port": 1521}))
    assert "listener accepts connections long before the database is open" in message
    assert "ORA-01033" in message and "\n" not in message


def test_oracle_needs_its_sid():
    data = oracle_data()
    del data["db"]["oracle"]["sid"]
    assert error_of(data) == f"{SRC}: db.oracle.sid: missing; add it (every key is described in inventory/example.yaml)"


@pytest.mark.parametrize(("run", "expected"), [
    ({}, "set exactly one of 'process'"),
    ({"process": "^x$", "command": "echo"}, "set exactly one of 'process'"),
    ({"process": "a\nb", "user": "postgres"}, "must be one shell command line"),
    ({"process": "^/usr/bin/postgres"}, "'process' needs 'user': the account the DB's main process runs as"),
    ({"process": "^x$", "user": "Bad user"}, "db.run.user: must not contain spaces"),
    ({"process": "^x$", "user": "postgres", "executable": "bin/postgres"}, "db.run.executable: must be an absolute"),
    ({"command": "echo", "user": "postgres"}, "'user' and 'executable' go with 'process' only"),
    ({"command": "echo", "interval": 0}, "must be at least 0.1"),
])
def test_run_settings(run, expected):
    assert expected in error_of(changed("db.run", run))


def test_duplicate_web_names():
    data = changed("web.servers.1.name", "web1")
    assert "two web servers have the name 'web1'" in error_of(data)


def test_yaml_syntax_error_names_line():
    message = error_of("connect:\n  user: root\n bad: [\n")
    assert message.startswith(f"{SRC}:3:") and "not valid YAML" in message


def test_not_a_mapping():
    assert "expected a mapping" in error_of("- just\n- a list\n")


def test_relative_paths_resolve_next_to_the_file():
    inv = parse(fastyaml.dump(LAB), Path("/srv/inv/prod.yaml"))
    assert inv.path("../keys/admin") == Path("/srv/keys/admin")


def test_a_dedicated_account_needs_a_command_sudo_can_match():
    data = changed("web.user", "svr-restart")
    assert load(data).web.dedicated
    data["web"]["restart_command"] = "apachectl graceful"
    assert "must be a program's absolute path and plain arguments" in error_of(data)
    data["web"]["restart_command"] = "/usr/sbin/apachectl -t && /usr/sbin/apachectl graceful"
    assert "without shell syntax" in error_of(data)
    assert not load(LAB).web.dedicated  # root, the seed's default: any command, run by sh


def test_harden_extra_lines_are_single_sshd_settings():
    assert load(changed("harden", {"extra": ["MaxAuthTries 3"]})).harden.extra == ["MaxAuthTries 3"]
    for bad in ["MaxAuthTries", "Match User x", "Include /tmp/x", "X 1\nPasswordAuthentication yes"]:
        assert "must be one sshd_config line" in error_of(changed("harden", {"extra": [bad]})), bad


# Where an address, a name or a from= entry goes: one word, no IPv6 scope ID, nothing that would
# change the shape of a shell line or of the authorized_keys line.
ONE_WORD_KEYS = ["db.address", "web.servers.0.address", "db.ready.host", "web.servers.0.name", "db.name",
                 "web.user", "trigger.name", "db.service", "key.path", "trigger.known_hosts"]


@pytest.mark.parametrize("path", ONE_WORD_KEYS)
@pytest.mark.parametrize("bad", ["\n", " ", "\t", "\x1b", "\x00", "\r", "\x85", "\u2028"])
def test_whitespace_and_control_characters_are_refused_in_one_clear_line(path, bad):
    good = {"db.address": "198.18.0.10", "web.servers.0.address": "198.18.0.21", "db.ready.host": "127.0.0.1",
            "key.path": "/root/k", "trigger.known_hosts": "/etc/kh"}.get(path, "svrx")
    data = changed(path, f"{good}{bad}x" if bad != "\n" else f"{good}\n")
    message = error_of(data)
    assert message.startswith(f"{SRC}: {path.replace('.0.', '[0].')}: "), message
    assert "\n" not in message and "Traceback" not in message


@pytest.mark.parametrize("path", ["db.address", "web.servers.0.address", "db.ready.host"])
@pytest.mark.parametrize("value", ["fe80::1%eth0", "fe80::1%$(id)", "fe80::1%25lo"])
def test_an_ipv6_scope_id_is_refused(path, value):
    message = error_of(changed(path, value))
    assert message.startswith(f"{SRC}: {path.replace('.0.', '[0].')}: must not have an IPv6 scope ID"), message
    assert "\n" not in message


def test_a_from_entry_is_one_word_without_a_scope_id():
    for bad in ["fe80::1%eth0", "198.18.0.10\n", "198.18.0.10 ", "198.18.0.0/24\tx"]:
        message = error_of(changed("db.from", [bad]))
        assert message.startswith(f"{SRC}: db.from[0]: "), message
        assert "\n" not in message


def test_addresses_and_from_entries_are_stored_in_canonical_form():
    data = changed("db.address", "::FFFF:198.18.0.10")
    data["db"]["from"] = ["0:0:0:0:0:ffff:c612:a", "2001:DB8:0:0::/64"]
    data["web"]["servers"][0]["address"] = "2001:0db8::0001"
    inv = load(data)
    assert inv.db.address == "::ffff:c612:a"
    assert inv.db.from_addresses == ["::ffff:c612:a", "2001:db8::/64"]
    assert inv.web.servers[0].address == "2001:db8::1"


def test_web_user_and_oracle_owner_are_account_names():
    for bad in ["ALL", "Root", "1abc", "-x", "a" * 33, "svr.restart"]:
        message = error_of(changed("web.user", bad))
        assert message.startswith(f"{SRC}: web.user: must be an account name: lower-case letters, digits"), message
    data = changed("db.script", None)
    data["db"]["oracle"] = {"home": "/u01/app/oracle", "owner": "ALL"}
    assert "db.oracle.owner: must be an account name" in error_of(data)
    assert load(changed("web.user", "_svr-restart2")).web.user == "_svr-restart2"


def test_a_sudo_program_path_must_not_end_in_a_slash():
    data = changed("web.user", "svr-restart")
    data["web"]["restart_command"] = "/usr/sbin/ graceful"
    message = error_of(data)
    assert "'/usr/sbin/' ends in '/', which a sudo rule reads as every program in that directory" in message
    assert "\n" not in message


def test_ready_command_is_one_shell_line_with_quotes_allowed():
    command = "echo 'select status from v$instance;' | su - oracle -c \"sqlplus -s -L / as sysdba\" | grep -qw OPEN"
    data = changed("db.ready.command", command)
    assert load(data).db.ready.command == command
    for bad in ["pg_isready\nid", "pg_isready\tx", "x\x00", " ", "pg_isready\n"]:
        message = error_of(changed("db.ready.command", bad))
        assert message.startswith(f"{SRC}: db.ready.command: must be one shell command line (run with sh -c)")
        assert "\n" not in message


def test_restart_command_is_one_line():
    for bad in ["/etc/init.d/apache2 restart\n", "/etc/init.d/apache2\trestart", "/x\x1b"]:
        assert "web.restart_command: must be one line" in error_of(changed("web.restart_command", bad))


def test_max_parallel_defaults_and_bounds():
    inv = load(LAB)
    assert inv.connect.max_parallel == 32 and inv.trigger.max_parallel == 32
    assert load(changed("trigger.max_parallel", 500)).trigger.max_parallel == 500
    assert load(changed("connect.max_parallel", 1)).connect.max_parallel == 1
    for section in ("connect", "trigger"):
        for bad in (0, -3, 1001):
            err = error_of(changed(f"{section}.max_parallel", bad))
            assert f"{SRC}" in err and f"{section}.max_parallel: " in err and len(err.splitlines()) == 1
        err = error_of(changed(f"{section}.max_parallel", "many"))
        assert f"{section}.max_parallel: " in err and len(err.splitlines()) == 1


def test_a_key_given_twice_is_refused_with_both_lines():
    """YAML keeps the last of two equal keys silently: an admin's second `user:` would win unseen."""
    text = LAB_INVENTORY.read_text()
    twice = text.replace("\nweb:\n", "\nweb:\n  user: svr-restart\n", 1)  # the file's own web.user follows
    first = next(i for i, line in enumerate(twice.splitlines(), 1) if line == "  user: svr-restart")
    message = error_of(twice, lines=True)
    assert message == (f"{SRC}:{first + 1}: web.user: given twice, on lines {first} and {first + 1} (YAML would "
                       "keep the last silently); keep one"), message
    nested = fastyaml.dump(changed("web.servers", [{"name": "web1", "address": "198.18.0.21",
                                                     "health_url": "http://198.18.0.21/"}]))
    nested = nested.replace("- address: 198.18.0.21\n", "- address: 198.18.0.21\n    address: 198.18.0.99\n")
    assert "web.servers[0].address: given twice, on lines" in error_of(nested)
    assert "given twice" in error_of("connect: 1\nconnect: 2\n")
    assert "given twice" not in error_of("base: &b {user: root}\nconnect:\n  <<: *b\n  <<: *b\n")


@pytest.mark.parametrize("syntax", [";", "&&", "|", "`", "$(", ">", "<", "&"])
def test_shell_syntax_as_root_only_when_the_inventory_says_so(syntax):
    line = f"/etc/init.d/apache2 restart {syntax} touch /tmp/x"
    data = changed("web.restart_command", line)
    message = error_of(data)
    shown = "$(" if syntax == "$(" else syntax[0]
    assert f"web: restart_command: '{shown}' is shell syntax, which runs as root" in message, message
    assert "web.restart_shell: true" in message
    data["web"]["restart_shell"] = True
    assert load(data).web.restart_command == line
    assert load(LAB).web.restart_shell is False  # a plain command needs nothing
