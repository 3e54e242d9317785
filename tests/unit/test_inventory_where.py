"""Where an inventory's problem is (the file, the YAML line) and what makes a from= network wide: the
messages a user reads when the file is missing, unreadable, or a key is missing."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from svrchain.core import inventory
from svrchain.core.inventory import InventoryError, is_wide, load, read_text
from tests.unit.test_inventory import LAB, SRC, changed, error_of


@pytest.mark.parametrize(("entry", "wide"), [
    ("0.0.0.0/0", True), ("10.0.0.0/7", True), ("10.0.0.0/8", False), ("198.18.0.10", False),
    ("::/0", True), ("2001::/16", True), ("2001:db8::/31", True), ("2001:db8::/32", False), ("::1", False),
])
def test_a_wide_from_network(entry: str, wide: bool) -> None:
    """Wider than /8 for IPv4, /32 for IPv6 (a /16 of IPv6 is wide, though it is not for IPv4)."""
    assert is_wide(entry) is wide


def test_a_missing_top_level_key_is_on_the_documents_first_line() -> None:
    data = yaml.safe_load(yaml.safe_dump(LAB))
    del data["db"]
    assert error_of(data, lines=True) == (f"{SRC}:1: db: missing; add it (every key is described in "
                                          "inventory/example.yaml)")
    assert error_of("# the shop's chain\n\n" + yaml.safe_dump(data), lines=True).startswith(f"{SRC}:3: db: missing")


def test_a_list_item_missing_a_key_is_on_the_items_line() -> None:
    data = changed("web.servers.1.name", None)
    line = yaml.safe_dump(data).splitlines().index("  - address: 198.18.0.22") + 1
    assert error_of(data, lines=True) == (f"{SRC}:{line}: web.servers[1].name: missing; add it (every key is "
                                          "described in inventory/example.yaml)")


def test_a_role_check_without_what_it_needs_says_what_to_add() -> None:
    assert error_of(changed("db.role", {"check": "oracle"})) == (
        f"{SRC}: db: role.check oracle asks v$database through db.oracle's home and SID: add oracle")
    assert error_of(changed("db.role", {"check": "postgres"})) == (
        f"{SRC}: db: role.check postgres needs role.psql: the database's own psql (e.g. "
        "/usr/lib/postgresql/15/bin/psql), run as its owner")
    data = changed("db.role", {"check": "postgres", "psql": "/usr/bin/psql"})
    data["db"]["run"] = {"command": "true"}
    assert error_of(data) == f"{SRC}: db: role.check postgres needs run.user: the database's owner, who runs the check"


def test_a_missing_inventory_file_names_what_chose_it_if_anything(tmp_path: Path) -> None:
    gone = tmp_path / "prod.yaml"
    fix = "check the path (every key is explained in inventory/example.yaml)"
    with pytest.raises(InventoryError) as exc:
        read_text(gone)
    assert str(exc.value) == f"{gone}: no such inventory file; {fix}"
    with pytest.raises(InventoryError) as exc:
        load(gone, "SVRCHAIN_INVENTORY")
    assert str(exc.value) == f"{gone}: no such inventory file (given by SVRCHAIN_INVENTORY); {fix}"
    with pytest.raises(InventoryError) as exc:
        load(gone)
    assert str(exc.value) == f"{gone}: no such inventory file; {fix}"


def test_an_unreadable_inventory_file_is_one_line_with_the_systems_words(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    with pytest.raises(InventoryError) as exc:
        inventory.load(tmp_path / "a-file" / "prod.yaml")
    assert str(exc.value) == f"{tmp_path}/a-file/prod.yaml: cannot read the inventory: Not a directory"
    (tmp_path / "latin1.yaml").write_bytes(b"db: caf\xe9\n")
    with pytest.raises(InventoryError) as exc:
        inventory.load(tmp_path / "latin1.yaml")
    assert str(exc.value).startswith(f"{tmp_path}/latin1.yaml: cannot read the inventory: 'utf-8' codec can't decode")
