"""The one-line inventory errors as a user sees them: the file, the YAML line, the key's path and the
value, for inventories whose YAML does not have the shape of the data validated (the Ansible inventory
fills in a `web` or `db` given as a list or left empty), a value its YAML tag cannot build beside a
collection carrying a scalar's tag, an unknown key under an optional section or a list's item, and the
whole line refusing shell syntax as root."""

from __future__ import annotations

from pathlib import Path

import pytest

from svrchain.core.inventory import InventoryError, parse, with_ansible
from tests import fastyaml
from tests.paths import LAB_INVENTORY

DB = "db: {script: s, ready: {port: 1}, run: {process: x, user: postgres}}\n"


def error_of(text: str, source: Path) -> str:
    """The whole message of the InventoryError that parsing ``text`` raises."""
    with pytest.raises(InventoryError) as exc:
        parse(text, source)
    return str(exc.value)


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """An Ansible inventory beside the svrchain file (returned): db1, and w1 with a health URL that is no URL."""
    (tmp_path / "hosts.ini").write_text("[db]\ndb1 ansible_host=198.18.0.10\n[web]\n"
                                        "w1 ansible_host=198.18.0.21 svrchain_health_url='not a url'\n")
    return tmp_path / "svrchain.yaml"


HEADER = "ansible: {inventory: hosts.ini}\nconnect: {known_hosts: kh}\n"
BAD_URL = ("web.servers[0].health_url: must be an http:// or https:// URL without spaces "
           "(e.g. http://web1.example.com/health) (got 'not a url')")


@pytest.mark.parametrize("web", ["web: []", 'web: ""', "web:"])
def test_a_web_server_from_ansible_under_a_web_with_no_mapping_is_on_webs_line(site: Path, web: str) -> None:
    # The data has web.servers (from the Ansible inventory) where the YAML's web is a list, a text or empty:
    # the line is web's, the deepest key found.
    assert error_of(HEADER + DB + web + "\n", site) == f"{site}:4: {BAD_URL}"


@pytest.mark.parametrize(("section", "text", "got"), [
    ("db", "db:\n  - [script, 5]\n", "list \"[['script', 5]]\""),  # a list of pairs was read as a mapping
    ("web", DB + "\nweb:\n  - [0, x]\n", "list \"[[0, 'x']]\""),
    ("web", DB + "web: x\n", "str 'x'"),  # was a ValueError's traceback
    ("db", "db: 5\n", "int '5'"),  # was a TypeError's traceback
])
def test_a_db_or_web_that_is_no_mapping_beside_ansible_is_one_line_on_its_line(
        site: Path, section: str, text: str, got: str) -> None:
    line = 1 + (HEADER + text).splitlines().index(next(ln for ln in (HEADER + text).splitlines()
                                                         if ln.startswith(f"{section}:")))
    assert error_of(HEADER + text, site) == (
        f"{site}:{line}: {section}: a mapping of its settings, not {got}; the Ansible inventory fills in its hosts")


def test_a_long_section_that_is_no_mapping_is_cut_to_sixty_characters(site: Path) -> None:
    text = HEADER + "web: " + "x" * 59 + "yz\n"
    assert error_of(text, site) == (f"{site}:3: web: a mapping of its settings, not str '{'x' * 59}y'; the Ansible "
                                    "inventory fills in its hosts")


def test_with_ansible_without_the_yaml_tree_names_no_line(site: Path) -> None:
    # with_ansible's node tree is optional (parse always has one): without it the message has no line.
    with pytest.raises(InventoryError) as exc:
        with_ansible({"ansible": {"inventory": "hosts.ini"}, "db": 5}, site)
    assert str(exc.value) == (f"{site}: db: a mapping of its settings, not int '5'; the Ansible inventory fills in "
                              "its hosts")


WEB_KEYS = "known keys: user, restart_command, restart_shell, health_timeout, servers"


def test_a_key_that_is_a_number_is_named_as_a_key_on_its_own_line(site: Path) -> None:
    # pydantic's location of a key that is no text ends in the key itself: it was shown as a list's index
    # ("web[0]: Keys should be strings (got 0)"), on web's line (the key's text is not the number's).
    site.parent.joinpath("hosts.ini").write_text("[db]\ndb1 ansible_host=198.18.0.10\n[web]\nw1\n")
    assert error_of(HEADER + DB + "\nweb:\n  0: x\n", site) == (
        f"{site}:6: web: the key 0 should be a string; {WEB_KEYS}")


# A whole one-DB inventory, its web section last.
ONE_DB = ("connect: {known_hosts: kh}\n" + DB.replace("db: {", "db: {name: d, address: 198.18.0.10, ")
          + "web:\n  servers:\n    - {name: w1, address: 198.18.0.21, health_url: 'http://x/'}\n")


@pytest.mark.parametrize(("key", "shown"), [
    ("1.5", "1.5"), ("~", "null"), ("null", "null"), ("true", "true"), ("off", "false"), ("2020-01-01", "2020-01-01"),
])
def test_a_key_that_is_no_text_is_named_as_yaml_reads_it(tmp_path: Path, key: str, shown: str) -> None:
    # As YAML read the key (null, true, false: not Python's None, True, False), not as a list's index or
    # as a location with no key in it ("web.None: Keys should be strings"), on the key's own line (it was
    # web's but for 1.5, whose text is the number's).
    source = tmp_path / "i.yaml"
    assert error_of(ONE_DB + f"  {key}: x\n", source) == (
        f"{source}:6: web: the key {shown} should be a string; {WEB_KEYS}")


def test_a_key_that_is_no_text_at_the_top_level_or_in_a_list_item_names_its_place(tmp_path: Path) -> None:
    source = tmp_path / "i.yaml"
    assert error_of(ONE_DB + "5: x\n", source) == (
        f"{source}:6: (top level): the key 5 should be a string; known keys: connect, db, web, key, trigger, harden, "
        "lab, log, ansible")
    assert error_of(ONE_DB.replace("'http://x/'}", "'http://x/', 7: y}"), source) == (
        f"{source}:5: web.servers[0]: the key 7 should be a string; known keys: name, address, port, user, health_url")


def test_a_value_its_tag_cannot_build_is_found_past_a_collection_tagged_as_a_number(tmp_path: Path) -> None:
    # PyYAML builds the mapping's port before the list's items: the !!int list is never built, the port
    # fails first, and the search for the failing value passes the list on its way to it.
    text = "harden:\n  extra:\n    - !!int [1]\nconnect:\n  port: !!int twenty-two\n"
    assert error_of(text, tmp_path / "i.yaml") == (
        f"{tmp_path / 'i.yaml'}:5:9: not valid YAML: 'twenty-two' is no int (does not fit its tag); remove the "
        "tag or fix the value")


LAB_DB = ("db:\n  name: db1\n  address: 198.18.0.10\n  oracle: {home: /u01/app/oracle, sid: ORCL, ownr: oracle}\n"
          "connect: {known_hosts: kh}\n"
          "web:\n  servers:\n    - {name: web1, address: 198.18.0.21, health_url: 'http://x/', adress: y}\n")


def test_an_unknown_key_in_an_optional_section_and_in_a_list_item_names_the_close_key(tmp_path: Path) -> None:
    lines = error_of(LAB_DB, tmp_path / "i.yaml").splitlines()
    assert f"{tmp_path / 'i.yaml'}:4: db.oracle.ownr: unknown key; did you mean 'owner'?" in lines
    assert f"{tmp_path / 'i.yaml'}:8: web.servers[0].adress: unknown key; did you mean 'address'?" in lines


def test_shell_syntax_as_root_is_refused_in_one_whole_line_on_webs_line(tmp_path: Path) -> None:
    data = fastyaml.load(LAB_INVENTORY.read_text())
    data["web"]["restart_command"] = "/usr/sbin/apachectl graceful; true"
    text = fastyaml.dump(data, sort_keys=False)
    source = tmp_path / "i.yaml"
    assert error_of(text, source) == (
        f"{source}:{text.splitlines().index('web:') + 1}: web: restart_command: ';' is shell syntax, which runs as "
        "root (web.user root) with sh -c; give one command (e.g. /usr/sbin/apachectl graceful), or, if it is a "
        "shell line on purpose, say so with web.restart_shell: true")


@pytest.mark.parametrize(("hosts", "expected"), [
    ("[db]\n[web]\nw1\n", "ansible.db_group: the group 'db' of {d}/hosts.ini has 0 hosts (none); it must have one, "
                          "the DB server"),
    ("[db]\ndb1\n[web]\n", "ansible.web_group: the group 'web' of {d}/hosts.ini must have the web servers, and not "
                           "the DB server db1 (it has: none)"),
    ("[db]\ndb1\n[web]\ndb1\nw1\n", "ansible.web_group: the group 'web' of {d}/hosts.ini must have the web servers, "
                                    "and not the DB server db1 (it has: db1, w1)"),
])
def test_the_ansible_groups_refused_in_one_whole_line(site: Path, hosts: str, expected: str) -> None:
    site.parent.joinpath("hosts.ini").write_text(hosts)
    assert error_of(HEADER + DB, site) == f"{site}: {expected.format(d=site.parent)}"


@pytest.mark.parametrize("key", ["name", "address", "port", "user"])
def test_a_db_host_key_given_beside_ansible_is_refused_naming_it(site: Path, key: str) -> None:
    db = DB.replace("db: {", f"db: {{{key}: x, ")
    assert error_of(HEADER + db, site) == (f"{site}: db.{key}: given by the Ansible inventory {site.parent}/hosts.ini; "
                                           "remove it here (hosts are named once)")


@pytest.mark.parametrize(("template", "urls"), [
    (None, ["http://198.18.0.21/", "https://w2.example/ok"]),
    ("'http://{name}:8080/{address}/'", ["http://w1:8080/198.18.0.21/", "https://w2.example/ok"]),
])
def test_each_web_servers_health_url_from_the_template_unless_its_host_says(
        site: Path, template: str | None, urls: list[str]) -> None:
    site.parent.joinpath("hosts.ini").write_text("[db]\ndb1 ansible_host=198.18.0.10\n[web]\n"
                                                 "w1 ansible_host=198.18.0.21\n"
                                                 "w2 ansible_host=198.18.0.22 svrchain_health_url=https://w2.example/ok\n")
    given = f", health_url: {template}" if template else ""
    ansible = f"ansible: {{inventory: hosts.ini{given}}}\n"
    inv = parse(ansible + "connect: {known_hosts: kh}\n" + DB, site)
    assert [(s.name, s.address, s.health_url) for s in inv.web.servers] == [
        ("w1", "198.18.0.21", urls[0]), ("w2", "198.18.0.22", urls[1])]
    assert (inv.db.name, inv.db.address) == ("db1", "198.18.0.10")


def test_every_key_given_twice_is_a_line_of_its_own_against_the_first(tmp_path: Path) -> None:
    text = ("lab: true\nconnect:\n  port: 1\n  port: 2\n  port: 3\nweb:\n  servers:\n    - name: a\n      name: b\n"
            "    - {x: 1, x: 2}\nlab: false\nb: &b {u: 1}\nc:\n  <<: *b\n  <<: *b\n")
    source = tmp_path / "d.yaml"
    said = "(YAML would keep the last silently); keep one"
    assert error_of(text, source).splitlines() == [
        f"{source}:4: connect.port: given twice, on lines 3 and 4 {said}",
        f"{source}:5: connect.port: given twice, on lines 3 and 5 {said}",  # against the first, not the last
        f"{source}:9: web.servers[0].name: given twice, on lines 8 and 9 {said}",
        f"{source}:10: web.servers[1].x: given twice, on lines 10 and 10 {said}",
        f"{source}:11: lab: given twice, on lines 1 and 11 {said}",  # a merge key (<<) twice is YAML's own
    ]


SERVERS = ("web:\n  servers:\n    - &web1\n      name: web1\n      address: 198.18.0.21\n"
           "      health_url: http://198.18.0.21/\n    - <<: *web1\n      name: web2\n      address: 198.18.0.22\n")


def lab_with(servers: str) -> str:
    """The lab inventory's text with ``servers`` (YAML text) as its web.servers."""
    data = fastyaml.load(LAB_INVENTORY.read_text())
    del data["web"]["servers"]
    return fastyaml.dump(data, sort_keys=False).replace("web:\n", servers, 1)


def test_a_key_given_beside_a_yaml_merge_overrides_it_and_is_not_given_twice(tmp_path: Path) -> None:
    inv = parse(lab_with(SERVERS), tmp_path / "i.yaml")
    assert [(s.name, s.address, s.health_url) for s in inv.web.servers] == [
        ("web1", "198.18.0.21", "http://198.18.0.21/"), ("web2", "198.18.0.22", "http://198.18.0.21/")]
    text = lab_with(SERVERS + "      name: web3\n")
    line = text.splitlines().index("      name: web3") + 1
    assert error_of(text, tmp_path / "i.yaml") == (
        f"{tmp_path / 'i.yaml'}:{line}: web.servers[1].name: given twice, on lines {line - 2} and {line} (YAML would "
        "keep the last silently); keep one")


def test_a_web_server_at_the_db_servers_address_is_one_whole_line_at_its_address(tmp_path: Path) -> None:
    data = fastyaml.load(LAB_INVENTORY.read_text())
    db = data["db"]["address"]
    data["web"]["servers"][1]["address"] = db
    text = fastyaml.dump(data, sort_keys=False)
    line = text.splitlines().index(f"  - name: {data['web']['servers'][1]['name']}") + 2
    assert text.splitlines()[line - 1] == f"    address: {db}"
    assert error_of(text, tmp_path / "i.yaml") == (
        f"{tmp_path / 'i.yaml'}:{line}: web.servers[1].address: web2 has the DB server's address {db}; the DB server "
        "cannot be one of its own web servers: give web2's own address")
    data["web"]["servers"][1]["port"] = 2222  # the same address, another port: another host (a forwarded port)
    assert parse(fastyaml.dump(data, sort_keys=False), tmp_path / "i.yaml").web.servers[1].address == db


@pytest.mark.parametrize("text", ["a: &a [*a]\n", "web: &w {servers: [*w]}\n", "db: &d {name: *d}\n"])
def test_an_alias_inside_its_own_anchor_is_lines_not_a_traceback(tmp_path, text):
    """YAML lets an alias refer to its own anchor: the check for keys given twice walked it without end
    (a RecursionError, a traceback). Each node is walked once; the inventory is refused in lines."""
    message = error_of(text, tmp_path / "inv.yaml")
    assert all(line.startswith(f"{tmp_path / 'inv.yaml'}:1: ") for line in message.splitlines()), message


def test_aliases_of_aliases_are_walked_once(tmp_path):
    """Nine levels of ten aliases each (10^9 items once built out): refused in lines, each node walked once."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    message = error_of("\n".join(lines) + "\n", tmp_path / "inv.yaml")
    assert f"{tmp_path / 'inv.yaml'}:9: a8: unknown key" in message, message


def test_a_key_that_is_a_list_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    # The check for keys given twice skips a key that is no scalar (a list is no dict key); YAML refuses it.
    assert error_of("lab: true\n? [a, b]\n: x\n", tmp_path / "i.yaml") == (
        f"{tmp_path / 'i.yaml'}:2:3: not valid YAML: found unhashable key")
