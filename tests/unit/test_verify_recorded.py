"""verify's DB server checks without the lab: the facts recorded on a bootstrapped chkconfig lab
(tests/record_facts.py wrote tests/unit/fixtures/facts/lab_chkconfig.json) parsed by the facts' own
parsers, then checked; each case changes one recorded answer as a host could, and names the check
that must then be a gap."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest

from svrchain.core.plan import FileState, Result
from svrchain.facts import Raw
from svrchain.ops import db as ops_db
from svrchain.steps import verify
from tests.unit.test_ops import inventory

RECORDED = json.loads((Path(__file__).parent / "fixtures" / "facts" / "lab_chkconfig.json").read_text())
INV = inventory({})
SESSION = SimpleNamespace(inv=INV, db=SimpleNamespace(name="db", label="db (198.18.0.10:22)"))


# The files svrchain writes, as this checkout renders them: a recorded file's bytes are today's (the
# templates change; its mode and owner are the recording's), so that only the runtime answers are recorded.
WRITTEN = {spec.path: spec.content for svc in ops_db.services(INV) for init in ("sysv", "systemd")
           for spec in svc.files(init)}


def raw(host: str, name: str, label: str = "db (198.18.0.10:22)") -> Raw:
    """What the fact ``name``'s probe gave on ``host`` when it was recorded."""
    d = RECORDED[host][name]
    states = {p: FileState(p, False) if v is None else
              FileState(p, True, WRITTEN.get(p, v["content"].encode()), int(v["mode"], 8), v["owner"], v["group"])
              for p, v in d["files"].items()}
    results = {n: Result(r["code"], r["out"], "", r["out"].encode()) for n, r in d["results"].items()}
    return Raw(label, states, results)


def found(**changed: Result | FileState) -> verify.DbFound:
    """The recorded DB facts, parsed, with some command results (by "fact/command") or files (by
    path) changed."""
    parsed = []
    for fact in verify.db_verify_facts(INV):
        r = raw("db", fact.name)
        for key, value in changed.items():
            name, _, command = key.partition("/")
            if isinstance(value, Result) and name == fact.name:
                r.results[command] = value
            elif isinstance(value, FileState) and value.path in r.states:
                r.states[value.path] = value
        parsed.append(fact.parse(INV, r))
    return verify.assemble(INV, SESSION.db.label, parsed)


PINS = {"web1": [], "web2": []}  # (the pinned host keys' check compares them: none asked for here)


def statuses(f: verify.DbFound) -> dict[str, bool]:
    return {c.check: c.ok for c in verify.db_checks_of(SESSION, f, PINS)}


def test_the_recorded_lab_has_no_gap():
    checks = verify.db_checks_of(SESSION, found(), PINS)
    assert len(checks) > 15
    assert [c for c in checks if not c.ok] == []


def ok(stdout: str) -> Result:
    return Result(0, stdout, "", stdout.encode())


def failed(stdout: str = "", code: int = 1) -> Result:
    return Result(code, stdout, "", stdout.encode())




@pytest.mark.parametrize(("changed", "gap"), [
    ({"chain/wup": failed("svr_restart_watch is not running")}, "watcher"),
    ({"chain/tick": ok("")}, "watcher"),
    ({"key/priv": ok("644 root\n")}, "key"),
    ({"key/pubmode": ok("600 root\n")}, "key"),
    ({"key/priv": failed("stat: cannot statx")}, "key"),
    ({"key/derived": failed("incorrect passphrase")}, "key"),
    ({"chain/owed": ok("web2 4242.1 1700000000.5\n")}, "owed restarts"),
    ({"init/links": ok("")}, "dbora boot"),
    ({"chain/procs": ok("")}, "database run"),
    ({"chain/owner": failed("id: 'postgres': no such user")}, "database run"),
])
def test_a_changed_answer_is_a_gap(changed: dict, gap: str):
    assert statuses(found(**changed))[gap] is False
    assert statuses(found())[gap] is True


def test_a_changed_file_is_a_gap_named_by_what_install_would_do():
    script = next(spec for _, spec in ops_db.dbora(INV).named("sysv") if spec.path == "/etc/init.d/dbora")
    edited = FileState(script.path, True, script.content + b"# edited\n", 0o755, "root", "root")
    checks = {c.check: c for c in verify.db_checks_of(SESSION, found(**{"file": edited}), PINS)}
    assert not checks["dbora init script"].ok
    assert checks["dbora init script"].detail == "/etc/init.d/dbora: content (not as svrchain installs it)"
    mode = replace(edited, content=script.content, mode=0o644)
    checks = {c.check: c for c in verify.db_checks_of(SESSION, found(**{"file": mode}), PINS)}
    assert checks["dbora init script"].detail == "/etc/init.d/dbora: mode 644->755 (not as svrchain installs it)"
