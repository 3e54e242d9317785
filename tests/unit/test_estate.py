"""An estate: chains in one inventory, validated as a whole; today's one-DB inventories are one chain."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from svrchain.core import estate
from svrchain.core.inventory import InventoryError
from tests import fastyaml
from tests.paths import LAB_INVENTORY

INVENTORIES = LAB_INVENTORY.parent
SRC = Path("inventory/estate-test.yaml")
EXAMPLE = fastyaml.load((INVENTORIES / "estate.yaml").read_text())


def parse(data: dict | str) -> estate.Estate:
    return estate.parse_estate(data if isinstance(data, str) else fastyaml.dump(data, sort_keys=False), SRC)


def error_of(data: dict | str) -> str:
    with pytest.raises(InventoryError) as exc:
        parse(data)
    return str(exc.value)


def example() -> dict:
    return copy.deepcopy(EXAMPLE)


def web(name: str, address: str) -> dict:
    return {"name": name, "address": address, "health_url": f"http://{address}/"}


@pytest.mark.parametrize("name", ["lab.yaml", "lab-oracle.yaml", "example.yaml"])
def test_todays_inventories_are_one_chain_named_after_their_db(name):
    e = estate.parse_estate((INVENTORIES / name).read_text(), INVENTORIES / name)
    assert not e.named
    [chain] = e.chains
    assert chain.name == chain.inv.db.name
    assert e.chosen(None) == [chain] == e.chosen(chain.name)


def test_the_example_estate_has_two_chains_sharing_web2():
    e = estate.load(INVENTORIES / "estate.yaml")
    assert [c.name for c in e.chains] == ["shop", "billing"]
    shop, billing = e.chains
    assert [s.name for s in shop.inv.web.servers] == ["web1", "web2"]
    assert [s.name for s in billing.inv.web.servers] == ["web2", "web3"]
    assert (shop.inv.db.name, billing.inv.db.name) == ("db1", "db2")
    assert shop.inv.connect == billing.inv.connect
    assert [c.name for c in e.restarters("web2")] == ["shop", "billing"]
    assert e.markers("web2") == {"svrchain:svr_restart@db1", "svrchain:svr_restart@db2"}
    assert e.markers("web1") == {"svrchain:svr_restart@db1"}


def test_a_chains_sections_are_merged_over_the_shared_ones():
    data = example()
    data["chains"]["billing"]["trigger"] = {"name": "svr_billing"}
    data["chains"]["billing"]["web"]["health_timeout"] = 5
    shop, billing = parse(data).chains
    assert (billing.inv.trigger.name, billing.inv.trigger.retries) == ("svr_billing", 3)
    assert (shop.inv.trigger.name, shop.inv.web.health_timeout) == ("svr_restart", 30)
    assert billing.inv.web.health_timeout == 5


def test_chain_chooses_one_and_an_unknown_name_is_one_line():
    e = parse(example())
    assert [c.name for c in e.chosen("billing")] == ["billing"]
    with pytest.raises(InventoryError, match=r"^--chain 'nope': no chain of that name in .*; its chains are shop, "
                       r"billing$"):
        e.chosen("nope")


def set_in(data: dict, path: str, value) -> dict:
    node = data
    *parents, last = path.split("/")
    for p in parents:
        node = node[int(p)] if p.isdigit() else node[p]
    node[int(last) if last.isdigit() else last] = value
    return data


@pytest.mark.parametrize(("path", "value", "expected"), [
    ("chains/billing/web/servers/0/health_url", "http://198.18.0.22/x",
     "web2: given differently in chains shop and billing"),
    ("chains/billing/web/servers/0/address", "198.18.0.29",
     "web2: address 198.18.0.29 in chain billing, 198.18.0.22 in chain shop"),
    ("chains/billing/web/servers/1/name", "web1",
     "web1: address 198.18.0.23 in chain billing, 198.18.0.21 in chain shop; a host has one address"),
    ("chains/billing/web/servers/1/address", "198.18.0.21",
     "198.18.0.21:22: named web1 in chain shop and web3 in chain billing; one host, one name"),
    ("chains/billing/db/name", "db1",
     "db1: address 198.18.0.11 in chain billing, 198.18.0.10 in chain shop"),
    ("chains/billing/db/name", "web1", "web1: address 198.18.0.11 in chain billing"),
    ("chains/billing/web/restart_command", "/usr/sbin/apachectl graceful",
     "web2: web.restart_command is '/etc/init.d/httpd restart' in chain shop and '/usr/sbin/apachectl graceful' "
     "in chain billing; it has one gate"),
    ("chains/billing/web/user", "svr-restart", "web2: web.user is 'root' in chain shop and 'svr-restart'"),
    ("chains/billing/db/address", "198.18.0.10",
     "db2 and db1 (chains shop, billing) are on one host 198.18.0.10 and share key.path /root/.ssh/svr_restart_key"),
    ("chains/billing/db/address", "198.18.0.21", "198.18.0.21:22: named web1 in chain shop and db2 in chain billing"),
])
def test_contradictions_between_chains_are_one_clear_line(path, value, expected):
    message = error_of(set_in(example(), path, value))
    assert "\n" not in message and message.startswith(f"{SRC}: ")
    assert expected in message


def test_a_db_server_in_two_chains_is_refused():
    data = example()
    data["chains"]["billing"]["db"] = copy.deepcopy(data["chains"]["shop"]["db"])
    assert "db1: the DB server of chains shop and billing; a DB server has one trigger" in error_of(data)


def test_two_db_servers_on_one_host_need_their_own_key_trigger_log_and_service():
    data = set_in(example(), "chains/billing/db/address", "198.18.0.10")
    data["chains"]["billing"]["key"] = {"path": "/root/.ssh/svr_billing"}
    assert "share trigger.name svr_restart" in error_of(data)
    data["chains"]["billing"]["trigger"] = {"name": "svr_billing"}
    assert "share trigger.log /var/log/svr_restart.log" in error_of(data)
    data["chains"]["billing"]["trigger"]["log"] = "/var/log/svr_billing.log"
    assert "share db.service dbora" in error_of(data)
    data["chains"]["billing"]["db"]["service"] = "dbbilling"
    assert [c.inv.key.path for c in parse(data).chains] == ["/root/.ssh/svr_restart_key", "/root/.ssh/svr_billing"]


@pytest.mark.parametrize("name", ["../x", "a b", "-x", "x;rm", "x\n", "é", "a" * 64, "x.y", "$(id)", ""])
def test_a_hostile_chain_name_is_refused(name):
    data = example()
    data["chains"] = {name: data["chains"]["shop"]}
    message = error_of(data)
    assert "\n" not in message.rstrip("\n") and "a chain's name uses letters, digits" in message


@pytest.mark.parametrize(("change", "expected"), [
    ({"chains": {}}, "chains: must be a mapping of chain names"),
    ({"chains": ["shop"]}, "chains: must be a mapping of chain names"),
    ({"db": {"name": "x"}}, "db: not with chains: give each chain its own db"),
    ({"ansible": {"inventory": "hosts.ini"}}, "ansible: not with chains"),
])
def test_an_estates_shape_is_checked(change, expected):
    assert expected in error_of({**example(), **change})


def test_a_chains_unknown_key_and_bad_value_name_the_chain_and_the_line():
    data = example()
    data["chains"]["shop"]["webs"] = {}
    assert "chains.shop: webs: unknown key; a chain has db, web, key, trigger" in error_of(data)
    data = set_in(example(), "chains/billing/db/address", "not an address")
    message = error_of(data)
    line = fastyaml.dump(data, sort_keys=False).splitlines().index("      address: not an address") + 1
    assert message == f"{SRC}:{line}: chains.billing.db.address: must not contain spaces, tabs, newlines or other " \
                      "control characters (got 'not an address')"


def test_an_unknown_key_in_a_chain_names_the_close_key_as_in_a_one_db_inventory():
    data = example()
    data["chains"]["shop"]["db"]["nmae"] = "db1"
    data["chains"]["shop"]["web"]["servers"][0]["helth_url"] = "http://x/"
    text = fastyaml.dump(data, sort_keys=False).splitlines()
    assert error_of(data).splitlines() == [
        f"{SRC}:{text.index('      nmae: db1') + 1}: chains.shop.db.nmae: unknown key; did you mean 'name'?",
        f"{SRC}:{text.index('        helth_url: http://x/') + 1}: chains.shop.web.servers[0].helth_url: unknown key; "
        "did you mean 'health_url'?",
    ]


def test_a_key_that_is_a_number_in_a_chain_is_named_as_a_key_on_its_own_line():
    data = example()
    data["chains"]["shop"]["db"][0] = "x"
    text = fastyaml.dump(data, sort_keys=False).splitlines()
    assert error_of(data) == (
        f"{SRC}:{text.index('      0: x') + 1}: chains.shop.db: the key 0 should be a string; known keys: name, "
        "address, port, user, from, wide_from, service, init, script, oracle, unit, ready, run, role")


def test_a_shared_sections_bad_value_names_the_shared_key():
    data = example()
    data["trigger"]["retries"] = 99
    assert f"{SRC}:" in error_of(data) and ": trigger.retries: must be at most 10" in error_of(data)


def test_a_chain_cannot_list_its_own_db_as_a_web_server():
    data = example()
    data["chains"]["shop"]["web"]["servers"].append(web("web9", "198.18.0.10"))
    assert "web9 has the address of the chain's own DB server" in error_of(data)


def test_an_estate_is_connected_the_usual_way_not_early():
    """The early connect (issue 23) reads one-DB inventories only: an estate's hosts are validated whole first."""
    from svrchain.core import early

    assert early.plan(example()) is None
