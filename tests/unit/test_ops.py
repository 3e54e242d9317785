"""Operations as data: each fixture file is an inventory patch and a host's facts, with the change
the operation must plan (files and why, commands, the no-op text), written out by hand.

One runner reads them all, as pyinfra's operation tests do; add a case by adding a file.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from svrchain import authkeys, render
from svrchain.homes import WebFacts
from svrchain.inventory import Inventory, parse
from svrchain.ops import web as ops_web
from svrchain.plan import FileState

FIXTURES = Path(__file__).parent / "fixtures"
LAB = Path(__file__).resolve().parents[2] / "inventory" / "lab.yaml"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG91cnN4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4 root@db"


def merged(base: dict, patch: dict) -> dict:
    """``base`` with ``patch`` laid over it, mapping by mapping."""
    out = dict(base)
    for k, v in patch.items():
        out[k] = merged(base.get(k, {}), v) if isinstance(v, dict) else v
    return out


def inventory(patch: dict) -> Inventory:
    return parse(yaml.safe_dump(merged(yaml.safe_load(LAB.read_text()), patch)), LAB)


def state(path: str, fact: dict | str, installed: bytes, owner: str = "root") -> FileState:
    """A file as a fixture describes it: missing, "as svrchain writes it", or content and mode."""
    if fact == "as svrchain writes it":
        return FileState(path, True, installed, 0o755, "root", "root")
    if not fact.get("exists", True):
        return FileState(path, False)
    return FileState(path, True, fact["content"].encode(), int(fact["mode"], 8), fact.get("owner", owner),
                     fact.get("group", owner))


def web_facts(f: dict, inv: Inventory) -> WebFacts:
    keys = f["keys"]
    return WebFacts(
        f["user"], f["home"], f["group"], state(keys["path"], keys, b"", f["user"]), f["sshdir"], None, (),
        state(render.GATE, f["gate"], render.gate(inv)), state(render.SUDOERS, f["sudoers"], render.sudoers(inv)), {},
    )


def cases(op: str) -> list[Path]:
    return sorted((FIXTURES / op).glob("*.yaml"))


@pytest.mark.parametrize("path", cases("push_key"), ids=lambda p: p.stem)
def test_push_key(path: Path):
    case = yaml.safe_load(path.read_text())
    inv = inventory(case.get("inventory", {}))
    change = ops_web.push_key(inv, authkeys.parse_public_key(KEY), web_facts(case["facts"], inv),
                              case["ssh_version"])
    assert {c.spec.path: list(c.reasons) for c in change.files} == case["files"]
    assert list(change.what) == case["commands"]
    assert change.empty == (not case["files"] and not case["commands"])
    if "noop" in case:
        assert change.noop == case["noop"]
    files = change.paths()
    for p, text in case.get("content", {}).items():
        assert files[p].spec.content.decode() == text
    for p, (owner, group, mode) in case.get("owners", {}).items():
        assert (files[p].spec.owner, files[p].spec.group, f"{files[p].spec.mode:o}") == (owner, group, mode)
    for p, command in case.get("validate", {}).items():
        assert files[p].spec.validate == command
    for p, account in case.get("runas", {}).items():
        assert files[p].spec.runas == account
