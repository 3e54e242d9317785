"""A task's run on an estate: one session per chain (all, or --chain's), one handle (one connection) per
host whatever the chains it is in, a chain's failure not stopping the next, and the web server's lines:
one per DB server that may restart it, a line of a DB server that no longer may removed. Pure: the
hosts are never connected to (the work given to each session does not touch them)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from invoke import Config, Context

from svrchain.core import authkeys, output, render
from svrchain.core.errors import BadInventory, GapFound, HostError, SvrchainError, Unreachable, UsageError
from svrchain.core.plan import FileState
from svrchain.facts.web import WebFacts
from svrchain.ops import web as ops_web
from svrchain.remote import runopts
from svrchain.remote.group import Session, on_hosts
from tests import fastyaml
from tests.unit import test_ops
from tests.unit.test_cli_flags import write_inventory
from tests.unit.test_ops import KEY


def write_estate(tmp_path: Path) -> Path:
    """shop: db1 restarts web1, web2; billing: db2 restarts web2 (the same host), web3. Loopback addresses."""
    one = fastyaml.load(write_inventory(tmp_path, [("127.0.0.10", 22)]).read_text())
    db = one.pop("db")
    web = lambda n: {"name": f"web{n}", "address": f"127.0.0.2{n}", "health_url": f"http://127.0.0.2{n}/"}  # noqa: E731
    one["chains"] = {
        "shop": {"db": {**db, "name": "db1"}, "web": {"servers": [web(1), web(2)]}},
        "billing": {"db": {**db, "name": "db2", "address": "127.0.0.11"}, "web": {"servers": [web(2), web(3)]}},
    }
    del one["web"]
    path = tmp_path / "estate.yaml"
    path.write_text(fastyaml.dump(one, sort_keys=False))
    return path


def context(tmp_path: Path, **options: object) -> tuple[Context, output.Results]:
    results = output.Results("task", human=io.StringIO())
    c = Context(Config())
    o = runopts.RunOptions(inventory=str(write_estate(tmp_path)), **options)  # type: ignore[arg-type]
    runopts.attach(c, runopts.Run(o, results))
    return c, results


def sessions_of(tmp_path: Path, fail: dict[str, Exception] | None = None, **options: object
                ) -> tuple[list[Session], output.Results, Exception | None]:
    """The sessions a task's work gets on the estate (in order), its report, and the task's error."""
    seen: list[Session] = []

    @on_hosts()
    def work(s: Session) -> None:
        seen.append(s)
        if fail and s.chain in fail:
            raise fail[s.chain]

    c, results = context(tmp_path, **options)
    try:
        work(c)
    except SvrchainError as exc:
        return seen, results, exc
    return seen, results, None


def names(s: Session) -> list[str]:
    return [h.name for h in s.hosts]


def test_the_work_runs_once_per_chain_and_a_host_in_two_chains_is_one_handle(tmp_path):
    (shop, billing), results, error = sessions_of(tmp_path)
    assert error is None
    assert (shop.chain, names(shop)) == ("shop", ["db1", "web1", "web2"])
    assert (billing.chain, names(billing)) == ("billing", ["db2", "web2", "web3"])
    assert shop.webs[1] is billing.webs[0]  # web2: one Host, so one connection for the whole run
    assert shop.dialer is billing.dialer
    lines = results.human.getvalue().splitlines()
    heads = [ln for ln in lines if ln.startswith("svrchain: inventory")]
    assert heads == [f"svrchain: inventory {tmp_path / 'estate.yaml'}, chain shop: db1 127.0.0.10, web1 127.0.0.21, "
                     "web2 127.0.0.22", f"svrchain: inventory {tmp_path / 'estate.yaml'}, chain billing: db2 "
                     "127.0.0.11, web2 127.0.0.22, web3 127.0.0.23"]
    assert list(results.hosts) == ["db1", "web1", "web2", "db2", "web3"]


def test_chain_limits_the_run_to_one_chain(tmp_path):
    (billing,), _, error = sessions_of(tmp_path, chain="billing")
    assert error is None and names(billing) == ["db2", "web2", "web3"]


def test_an_unknown_chain_is_one_line_and_nothing_runs(tmp_path):
    seen, _, error = sessions_of(tmp_path, chain="nope")
    assert seen == [] and isinstance(error, BadInventory)
    assert str(error).endswith("--chain 'nope': no chain of that name in "
                               f"{tmp_path / 'estate.yaml'}; its chains are shop, billing")


def test_limit_names_web_servers_of_any_chain_and_runs_only_their_chains(tmp_path):
    (billing,), _, _ = sessions_of(tmp_path, limit=("web3",))
    assert names(billing) == ["db2", "web3"]
    (shop, billing), _, _ = sessions_of(tmp_path, limit=("web2",))
    assert names(shop) == ["db1", "web2"] and names(billing) == ["db2", "web2"]
    seen, _, error = sessions_of(tmp_path, limit=("web9",))
    assert seen == [] and isinstance(error, UsageError) and "--limit web9: no web server of that name" in str(error)
    seen, _, error = sessions_of(tmp_path, limit=("web1",), chain="billing")
    assert seen == [] and isinstance(error, UsageError)


def test_a_failed_chain_does_not_stop_the_next_and_the_run_fails_with_both(tmp_path):
    fail = {"shop": Unreachable("web1: cannot connect"), "billing": GapFound("verify: a gap on web3")}
    seen, _, error = sessions_of(tmp_path, fail=fail)
    assert [s.chain for s in seen] == ["shop", "billing"]
    assert isinstance(error, Unreachable) and error.code == 3  # the worst of the two
    assert str(error) == "chain shop: web1: cannot connect\nchain billing: verify: a gap on web3"


@pytest.mark.parametrize("error", [BadInventory("bad"), UsageError("bad")])
def test_an_error_that_is_not_a_hosts_stops_the_run(tmp_path, error):
    seen, _, raised = sessions_of(tmp_path, fail={"shop": error})
    assert [s.chain for s in seen] == ["shop"] and raised is error


def test_what_a_chain_shares_with_another_stays_until_the_last_of_them(tmp_path):
    """uninstall keeps a web server's gate and account while a chain this run leaves alone restarts it."""
    (shop, billing), _, _ = sessions_of(tmp_path)
    web2 = shop.webs[1]
    assert shop.staying(web2) == ["billing"] and billing.staying(web2) == []
    assert shop.staying(shop.webs[0]) == []
    (billing,), _, _ = sessions_of(tmp_path, chain="billing")
    assert billing.staying(web2) == ["shop"] and billing.staying(billing.webs[1]) == []


def test_each_db_servers_lines_are_kept_on_its_web_servers(tmp_path):
    (shop, _), _, _ = sessions_of(tmp_path)
    assert shop.markers_of(shop.webs[1]) == {"svrchain:svr_restart@db1", "svrchain:svr_restart@db2"}
    assert shop.markers_of(shop.webs[0]) == {"svrchain:svr_restart@db1"}
    one = Session.open(write_inventory(tmp_path, [("127.0.0.10", 22), ("127.0.0.21", 22)]))
    assert one.markers_of(one.webs[0]) is None  # a one-DB inventory touches no other DB server's line


OTHER = ('from="198.18.0.11",no-pty,command="/usr/local/sbin/svr-restart-gate" ssh-ed25519 '
         'AAAAC3NzaC1lZDI1NTE5AAAAIBOTHERKEYOTHERKEYOTHERKEYOTHERKEYOTHERKEY0 svrchain:svr_restart@db2\n')
GONE = OTHER.replace("@db2", "@db9").replace("198.18.0.11", "198.18.0.19")
FOREIGN = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFOREIGNFOREIGNFOREIGNFOREIGNFOREIGNFORE admin@laptop  \r\n"


def test_a_web_servers_file_keeps_the_other_db_servers_line_and_loses_a_removed_ones():
    text = FOREIGN + OTHER + GONE + "# svrchain:svr_restart@db9\n"
    kept = authkeys.without_markers(text, frozenset({"svrchain:svr_restart@db2"}))
    assert kept == FOREIGN + OTHER + "# svrchain:svr_restart@db9\n"  # byte for byte; a comment is no line
    assert authkeys.without_markers(text, frozenset()) == FOREIGN + "# svrchain:svr_restart@db9\n"


def facts_with(text: str) -> WebFacts:
    """root's authorized_keys holding ``text`` (mode 600, ~/.ssh 700)."""
    keys = FileState("/root/.ssh/authorized_keys", True, text.encode(), 0o600, "root", "root")
    return WebFacts("root", "/root", "root", keys, "700 root", None, (), FileState(render.GATE, False),
                    FileState(render.SUDOERS, False))


def test_push_keys_plan_on_a_web_server_of_two_chains():
    """Its own line added beside the other DB server's (each with its own from=); a removed DB's line
    goes; the second run's plan is empty; a one-DB inventory leaves the other lines alone."""
    inv = test_ops.inventory({})
    key = authkeys.parse_public_key(KEY)
    facts = facts_with(FOREIGN + OTHER + GONE)
    markers = frozenset({"svrchain:svr_restart@db2", render.marker(inv)})
    change = ops_web.key_line(inv, key, facts, "SSH-2.0-OpenSSH_9.2p1", markers)
    after = change.paths()["/root/.ssh/authorized_keys"].spec.content.decode()
    assert after.startswith(FOREIGN + OTHER) and GONE not in after
    [own] = [ln for ln in after.splitlines() if ln.endswith(" " + render.marker(inv))]
    assert own.startswith('restrict,from="198.18.0.10",') and f'command="{render.GATE}"' in own
    again = ops_web.key_line(inv, key, facts_with(after), "SSH-2.0-OpenSSH_9.2p1", markers)
    assert not again.files and not again.commands
    alone = ops_web.key_line(inv, key, facts, "SSH-2.0-OpenSSH_9.2p1")
    assert GONE in alone.paths()["/root/.ssh/authorized_keys"].spec.content.decode()


def test_a_hostile_chain_name_on_the_command_line_is_one_line():
    with pytest.raises(UsageError, match=r"^--chain: give one chain's name"):
        runopts.parse_chain("a b")
    with pytest.raises(UsageError):
        runopts.parse_chain("")
    assert runopts.parse_chain(None) is None and runopts.parse_chain(" shop ") == "shop"


def test_host_error_in_one_chain_is_named_with_its_chain(tmp_path):
    _, _, error = sessions_of(tmp_path, fail={"billing": HostError("web3: refused")})
    assert type(error) is HostError and str(error) == "chain billing: web3: refused"


def test_restart_chain_asks_once_before_the_first_chain_naming_every_chain(tmp_path):
    """One question for the whole run (a 'no' to a second one, after the first chain's DB restarted, would
    have said 'nothing was changed'); with --chain, the question names that chain alone."""
    from svrchain.steps.chain import restart_question

    (shop, billing), _, _ = sessions_of(tmp_path)
    assert shop.peers is billing.peers and shop.peers[0] is shop
    assert restart_question(shop.peers) == (
        "Restart the database db1 (127.0.0.10) and 2 web server(s) (chain shop); "
        "then the database db2 (127.0.0.11) and 2 web server(s) (chain billing)?")
    (billing,), _, _ = sessions_of(tmp_path, chain="billing", limit=("web3",))
    assert restart_question(billing.peers) == ("Restart the database db2 (127.0.0.11) and 1 web server(s) "
                                               "(chain billing)?")


def test_json_and_junit_name_each_items_chain_on_an_estate(tmp_path):
    """web2 is in both chains: its one host record holds an item of each, each naming its chain; a
    one-DB run's items carry no chain (its JSON as before)."""
    import json
    import xml.etree.ElementTree as ET

    import jsonschema

    from svrchain.core.plan import Outcome
    from tests.paths import REPO

    results = output.Results("task", human=io.StringIO())
    c = Context(Config())
    runopts.attach(c, runopts.Run(runopts.RunOptions(inventory=str(write_estate(tmp_path))), results))

    @on_hosts()
    def work(s: Session) -> None:
        for h in s.hosts:
            s.report(Outcome(h.name, "step", "ok"))

    work(c)
    doc = results.document(0, None)
    jsonschema.validate(doc, json.loads((REPO / "docs" / "output.schema.json").read_text()))
    chains = {h["name"]: [i["chain"] for i in h["items"]] for h in doc["hosts"]}
    assert chains == {"db1": ["shop"], "web1": ["shop"], "web2": ["shop", "billing"], "db2": ["billing"],
                      "web3": ["billing"]}
    cases = [e.get("name") for e in ET.fromstring(results.junit_xml(0, None)).iter("testcase")]
    assert "step step (chain billing)" in cases and "step step (chain shop)" in cases
    one = output.Results("task", human=io.StringIO())
    one.add("db", output.Item("step", "x", "ok"))
    assert "chain" not in one.document(0, None)["hosts"][0]["items"][0]
