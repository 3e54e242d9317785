"""make test's lab tests in two labs at once (tests/lab_parallel.py, lab/slot.py): how the modules are
split, how each group's outcome is read, and what labs in two slots share in .lab/ (the runs themselves
are make test's)."""

from __future__ import annotations

import json

import pytest

from lab import LabError, hosts, slot
from tests import lab_parallel
from tests.lab_parallel import MEASURED, UNIT, counts, default_files, parse, plan, split


def test_every_lab_module_is_measured_and_split_into_groups_of_about_equal_time():
    files = default_files()
    assert sorted(files) == sorted(MEASURED), "a lab module missing from MEASURED (or gone): measure it"
    groups = split(files, ["1", "2"])
    assert sorted(f for g in groups for f in g.files) == sorted(files)  # each once
    costs = [g.cost() for g in groups]
    assert max(costs) - min(costs) <= max(MEASURED.values())  # longest first: within one module of each other
    assert [g.slot for g in groups] == ["1", "2"]


def test_one_slot_is_one_group_and_a_new_module_counts_the_default():
    [group] = split(["tests/lab/test_new.py", "tests/lab/test_chain.py"], ["3"])
    assert group.files == ["tests/lab/test_chain.py", "tests/lab/test_new.py"]
    assert group.cost() == MEASURED["tests/lab/test_chain.py"] + lab_parallel.DEFAULT
    assert len(split(["tests/lab/test_chain.py"], ["1", "2"])) == 1  # no empty group


def test_the_unit_tests_go_first_in_the_group_with_less_lab_time_and_outside_any_slot():
    groups = split([*default_files(), UNIT], ["1", "2"])
    [group] = [g for g in groups if UNIT in g.files]
    assert group.files[0] == UNIT
    plan(group, "2", ["-k", "x"])
    unit, lab = group.runs
    assert (unit.name, lab.name) == ("unit", f"lab{group.slot}")
    assert unit.argv[-5:] == ["-n", "2", "-m", "not lab", "tests/unit"] and "nsenter" not in unit.argv
    assert lab.argv[:2] == ["nsenter", f"--net=/run/netns/svrctl{group.slot}"]
    assert lab.argv[-len(group.files) + 1:] == group.files[1:] and "-k" in lab.argv


@pytest.mark.parametrize(("line", "want"), [
    ("=========== 2 failed, 98 passed, 7 skipped in 812.30s (0:13:32) ===========",
     {"failed": 2, "passed": 98, "skipped": 7}),
    ("\x1b[32m\x1b[1m1 passed\x1b[0m, \x1b[33m1 error\x1b[0m\x1b[32m in 3.1s\x1b[0m", {"passed": 1, "error": 1}),
    ("==== 1 passed, 2 errors, 3 warnings in 3.1s ====", {"passed": 1, "error": 2}),
    ("============================ no tests ran in 26.52s ============================", {}),
])
def test_a_groups_outcome_is_read_from_pytests_last_line(line, want):
    assert counts(line) == want


def test_slots_come_from_the_arguments_or_lab_slots(monkeypatch):
    monkeypatch.setenv("LAB_SLOTS", "4 5")
    assert parse([]) == (["4", "5"], None, [], [])
    assert parse(["--unit", "2", "1", "--", "tests/lab/test_chain.py", "-k", "sysv"]) == (
        ["1"], "2", ["tests/lab/test_chain.py"], ["-k", "sysv"])
    monkeypatch.delenv("LAB_SLOTS")
    assert parse([])[0] == ["1", "2"]
    with pytest.raises(LabError, match=r"^lab: a slot is a number from 1 to 9"):
        parse(["0"])


def test_a_slots_command_runs_in_its_own_network_namespace():
    assert slot.argv("2", ["pytest", "-m", "lab"]) == [
        "nsenter", "--net=/run/netns/svrctl2", "env", "SVRCHAIN_LAB_SLOT=2", "pytest", "-m", "lab"]
    for bad in ("", "10", "a", "1;id"):
        with pytest.raises(LabError):
            slot.control_netns(bad)


def test_labs_in_two_slots_share_keys_and_each_keeps_its_own_hosts(tmp_path, monkeypatch):
    """Two slots' labs brought up from one checkout: each reads back its own hosts; known_hosts and
    ssh_config name every slot's hosts once (the same name: the same address and key), in plan order."""
    monkeypatch.setattr(hosts, "STATE", tmp_path)
    for h in hosts.plan(3):
        hosts._keypair(tmp_path / "hostkeys" / h.name / "ssh_host_ed25519_key", h.name)
    for n, web, init in (("1", 2, "sysv"), ("2", 3, "systemd")):
        monkeypatch.setattr(hosts, "HOSTS_FILE", tmp_path / f"hosts-slot{n}.json")
        hosts._write_client_files(hosts.plan(web, init))
    assert [h.init for h in hosts.current()] == ["systemd"] * 4  # slot 2's own
    monkeypatch.setattr(hosts, "HOSTS_FILE", tmp_path / "hosts-slot1.json")
    assert [(h.name, h.init) for h in hosts.current()] == [("db", "sysv"), ("web1", "sysv"), ("web2", "sysv")]
    known = (tmp_path / "known_hosts").read_text().splitlines()
    assert [x.split()[0] for x in known] == ["198.18.0.10", "198.18.0.21", "198.18.0.22", "198.18.0.23"]
    assert (tmp_path / "ssh_config").read_text().count("Host ") == 4
    assert not list(tmp_path.glob("*.tmp*"))
    assert json.loads((tmp_path / "hosts-slot2.json").read_text())[3]["name"] == "web3"
