"""Inventory validation: every problem is one line naming the file, the key's path and the fix."""

from pathlib import Path

import pytest
import yaml

from tasks.inventory import DEFAULT_INVENTORY, InventoryError, parse

LAB = yaml.safe_load(DEFAULT_INVENTORY.read_text())
SRC = Path("inventory/test.yaml")


def load(data: dict):
    return parse(yaml.safe_dump(data), SRC)


def error_of(data: dict | str) -> str:
    with pytest.raises(InventoryError) as exc:
        parse(data if isinstance(data, str) else yaml.safe_dump(data), SRC)
    return str(exc.value)


def changed(path: str, value) -> dict:
    """A copy of the lab inventory with one key (dotted path, [i] for lists) set or removed."""
    data = yaml.safe_load(yaml.safe_dump(LAB))
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
    inv = parse((DEFAULT_INVENTORY.parent / "example.yaml").read_text(), SRC)
    assert inv.db.oracle is not None


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("db.adress", "198.18.0.10", "db.adress: unknown key; did you mean 'address'?"),
        ("web.restart_comand", "x", "web.restart_comand: unknown key; did you mean 'restart_command'?"),
        ("db.address", None, "db.address: missing; add it"),
        ("db.port", "twenty-two", "db.port: Input should be a valid integer"),
        ("db.port", 70000, "db.port: Input should be less than or equal to 65535"),
        ("db.from", ["db.example"], "db.from[0]: from= takes IP addresses"),
        ("web.restart_command", 'echo "hi"', "web.restart_command: must be one line without double quotes"),
        ("db.init", "upstart", "db.init: Input should be 'auto', 'sysv' or 'systemd'"),
        ("key.path", "relative/key", "key.path: must be an absolute path"),
        ("key.type", "dsa", "key.type: Input should be 'ed25519' or 'rsa'"),
        ("web.servers", [], "web.servers: List should have at least 1 item"),
    ],
)
def test_each_problem_is_one_clear_line(path, value, expected):
    data = changed(path, value)
    if path.endswith(("adress", "comand")):  # an unknown key next to the right one
        data[path.split(".")[0]][path.split(".")[1]] = value
    message = error_of(data)
    assert message.startswith(f"{SRC}: {expected}"), message
    assert "\n" not in message and "Traceback" not in message


def test_db_name_address_needs_from():
    message = error_of(changed("db.address", "db.example.com"))
    assert "add 'from' with the DB server's IP" in message


def test_script_and_oracle_are_exclusive():
    data = changed("db.oracle", {"home": "/u01/app/oracle"})
    assert "set exactly one of 'script'" in error_of(data)


def test_duplicate_web_names():
    data = changed("web.servers.1.name", "web1")
    assert "two web servers have the name 'web1'" in error_of(data)


def test_yaml_syntax_error_names_line():
    message = error_of("connect:\n  user: root\n bad: [\n")
    assert message.startswith(f"{SRC}:3:") and "not valid YAML" in message


def test_not_a_mapping():
    assert "expected a mapping" in error_of("- just\n- a list\n")


def test_relative_paths_resolve_next_to_the_file():
    inv = parse(yaml.safe_dump(LAB), Path("/srv/inv/prod.yaml"))
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
