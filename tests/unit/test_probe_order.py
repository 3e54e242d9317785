"""The probe's sections run at once, but those that look at other processes (``first``) run alone,
before any other section starts: run here, as sh runs the probe on a host."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import pytest
import yaml

from svrchain.core.inventory import parse
from svrchain.core.plan import Result
from svrchain.facts.chain import ChainFact
from svrchain.ops import db as ops_db
from svrchain.remote.files import parse_probe, probe_script
from tests.paths import LAB_INVENTORY, ORACLE_INVENTORY, REPO

LABEL = "db (198.18.0.10:22)"


def run(commands: dict[str, str], first: list[int]) -> dict[str, Result]:
    script = probe_script([], list(commands.values()), first=first)
    done = subprocess.run(["sh", "-c", script, "svrchain"], capture_output=True, check=True, timeout=60)
    return parse_probe(LABEL, Result(0, "", "", done.stdout), [], list(commands))[1]


def test_sections_run_at_once(tmp_path):
    # Each waits for the other's file: one after another, the first would give up after 10 s and fail.
    a, b = tmp_path / "a", tmp_path / "b"
    wait = "i=0; while [ ! -e {f} ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; [ -e {f} ]"
    results = run({"a": f"touch {a}; {wait.format(f=b)}", "b": f"touch {b}; {wait.format(f=a)}"}, [])
    assert (results["a"].code, results["b"].code) == (0, 0)


def test_the_first_run_alone_before_the_others(tmp_path):
    marks = tmp_path / "started"
    marks.mkdir()
    others = {f"other{i}": f"touch {marks}/{i}" for i in range(5)}
    # A first section sees no other section started, and leaves its own mark for the next first one.
    look = f"ls {marks}; touch {marks}/first-$1"
    commands = {**others, "procs": look.replace("$1", "procs"), "service": look.replace("$1", "service")}
    results = run(commands, first=[5, 6])
    assert results["procs"].stdout == ""
    assert results["service"].stdout == "first-procs\n"
    assert all(r.code == 0 for r in results.values())
    assert sorted(p.name for p in marks.iterdir()) == ["0", "1", "2", "3", "4", "first-procs", "first-service"]


def test_the_chains_process_checks_are_its_first():
    assert set(ChainFact.first) == {"service", "procs", "run"}
    fact = ChainFact((("dbora", "dbora.service"), ("svr_restart", "s.service"), ("w", "w.service")), [])
    assert set(ChainFact.first) <= set(fact.commands(parse(LAB_INVENTORY.read_text(), LAB_INVENTORY)))


@pytest.mark.parametrize("path", [LAB_INVENTORY, ORACLE_INVENTORY, REPO / "inventory" / "example.yaml"],
                         ids=["lab", "oracle", "example"])
def test_the_services_files_are_in_the_same_places_without_their_content(path):
    for role in (None, {"check": "oracle"} if path == ORACLE_INVENTORY else
                 {"check": "postgres", "psql": "/usr/lib/postgresql/15/bin/psql"}):
        data = yaml.safe_load(path.read_text())
        data["db"]["role"] = role
        inv = parse(yaml.safe_dump(data), path)
        full, bare = ops_db.services(inv), ops_db.services(inv, content=False)
        assert [(s.name, s.unit, s.sysv, s.systemd) for s in bare] == [
            (s.name, s.unit, tuple((n, replace(f, content=b"")) for n, f in s.sysv),
             tuple((n, replace(f, content=b"")) for n, f in s.systemd)) for s in full]
        assert all(f.content for s in full for init in ("sysv", "systemd") for f in s.files(init))
        assert any(n.endswith("role check") for s in bare for n, _ in s.sysv) == bool(role)


def test_the_db_hosts_facts_are_known_before_any_template_is_loaded():
    # The DB host's probe is sent as soon as its lock is held; rendering waits for the probe's answer.
    code = ("import sys; from svrchain.core.inventory import parse; from tests.paths import LAB_INVENTORY as p\n"
            "from svrchain.ops.db import db_facts\n"
            "facts = db_facts(parse(p.read_text(), p)); print(len(facts), 'jinja2' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.stdout.split() == ["8", "False"], done.stderr
