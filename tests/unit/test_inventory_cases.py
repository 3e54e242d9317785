"""Inventory rules as data: tests/unit/fixtures/inventory/ holds changes to the lab inventory and the one
error line (or the values) each must give."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml

from svrchain.core import inventory
from svrchain.core.inventory import InventoryError, load, parse
from tests import fastyaml
from tests.paths import LAB_INVENTORY
from tests.unit.cases import cases

REPO = Path(__file__).resolve().parents[2]
LAB = fastyaml.load((LAB_INVENTORY).read_text())
SRC = Path("inventory/test.yaml")


def changed(change: dict) -> dict:
    """The lab inventory with each dotted path set (a number indexes a list), or deleted when None."""
    data = copy.deepcopy(LAB)
    for path, value in change.items():
        *parents, last = path.split(".")
        node = data
        for p in parents:
            node = node[int(p)] if p.isdigit() else node[p]
        if value is None:
            del node[last]
        else:
            node[int(last) if last.isdigit() else last] = value
    return data


def attribute(inv, path: str):
    value = inv
    for part in path.split("."):
        value = getattr(value, part)
    return value


@pytest.mark.parametrize("case", cases("inventory/errors.yaml"))
def test_each_problem_is_one_exact_line(case):
    with pytest.raises(InventoryError) as exc:
        parse(fastyaml.dump(changed(case["change"])), SRC)
    # (the line number after the file's name is checked in test_inventory.py)
    assert re.sub(r"^([^:]+):[0-9]+: ", r"\1: ", str(exc.value)) == f"{SRC}: {case['error']}"


@pytest.mark.parametrize("case", cases("inventory/valid.yaml"))
def test_valid_changes_load(case):
    inv = parse(fastyaml.dump(changed(case["change"])), SRC)
    for path, want in case["expect"].items():
        assert attribute(inv, path) == want, path


@pytest.mark.parametrize(("text", "error"), [
    ("connect:\n  user: root\n bad: [\n",
     "inventory/test.yaml:3:2: not valid YAML: expected <block end>, but found '<block mapping start>'"),
    ("a: b: c\n", "inventory/test.yaml:1:5: not valid YAML: mapping values are not allowed here"),
    ("a: \x07\n", "inventory/test.yaml: not valid YAML: unacceptable character #x0007: special characters are not "
                  "allowed"),
    ("- just\n- a list\n", "inventory/test.yaml: expected a mapping of settings (connect, db, web, ...)"),
    ("", "inventory/test.yaml: expected a mapping of settings (connect, db, web, ...)"),
])
def test_text_that_is_no_inventory(text, error):
    with pytest.raises(InventoryError) as exc:
        parse(text, SRC)
    assert str(exc.value) == error


def test_several_problems_are_one_line_each():
    data = changed({"trigger.retries": 0, "web.servers.0.name": "-x"})
    with pytest.raises(InventoryError) as exc:
        parse(fastyaml.dump(data), SRC)
    assert str(exc.value).splitlines() == [
        "inventory/test.yaml:36: web.servers[0].name: use letters, digits, '.', '_' or '-' (e.g. web1) (got '-x')",
        "inventory/test.yaml:29: trigger.retries: must be at least 1 (got 0)",
    ]


def test_load_names_the_file_and_the_fix(tmp_path):
    with pytest.raises(InventoryError) as exc:
        load(tmp_path / "nope.yaml")
    assert str(exc.value) == (f"{tmp_path}/nope.yaml: no such inventory file; check the path (every key is "
                              "explained in inventory/example.yaml)")
    with pytest.raises(InventoryError) as exc:
        load(tmp_path)
    assert str(exc.value) == f"{tmp_path}: is a directory, not an inventory file"
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes(b"db: caf\xe9\n")
    with pytest.raises(InventoryError) as exc:
        load(bad)
    assert str(exc.value).startswith(f"{bad}: cannot read the inventory: 'utf-8' codec can't decode byte 0xe9")
    good = tmp_path / "prod.yaml"
    good.write_text(fastyaml.dump(LAB))
    inv = load(good)
    assert inv.source == good and inv.path("keys/admin") == tmp_path / "keys" / "admin"
    assert inv.path("/etc/k") == Path("/etc/k")
    assert inv.path("/etc/../k") == Path("/etc/../k")  # an absolute path is taken as written


def test_libyaml_parses_and_pyyaml_names_what_it_refuses():
    """Issue 23: an inventory is parsed by libyaml (about eight times as fast as PyYAML's own parser); a
    text it refuses is parsed again by PyYAML's, whose messages are the ones above."""
    assert yaml.__with_libyaml__  # PyYAML's wheels carry it
    loader, root = inventory._compose("a: [1, 2]\n")
    assert type(loader) is yaml.CSafeLoader and loader.construct_document(root) == {"a": [1, 2]}
    assert root.value[0][1].start_mark.line == 0
    loader, root = inventory._compose("a: 1\n")
    assert loader.construct_document(root) == {"a": 1}
    with pytest.raises(yaml.YAMLError) as exc:
        inventory._compose("a: b: c\n")
    assert exc.value.problem == "mapping values are not allowed here"  # PyYAML's words (libyaml: "in this context")
