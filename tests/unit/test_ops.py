"""Operations as data: each fixture file is an inventory patch and a host's facts, with the change
the operation must plan (files and why, commands, the no-op text), written out by hand.

One runner reads them all, as pyinfra's operation tests do; add a case by adding a file.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from svrchain.core import authkeys, render
from svrchain.core.errors import SvrchainError
from svrchain.core.homes import WebFacts
from svrchain.core.inventory import Inventory, parse
from svrchain.core.plan import FileState
from svrchain.ops import db as ops_db
from svrchain.ops import key as ops_key
from svrchain.ops import web as ops_web
from svrchain.steps import uninstall
from tests.paths import LAB_INVENTORY

FIXTURES = Path(__file__).parent / "fixtures"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG91cnN4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4 root@db"


def merged(base: dict, patch: dict) -> dict:
    """``base`` with ``patch`` laid over it, mapping by mapping; null in the patch removes the key."""
    out = dict(base)
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merged(base.get(k, {}), v) if isinstance(v, dict) else v
    return out


def inventory(patch: dict) -> Inventory:
    return parse(yaml.safe_dump(merged(yaml.safe_load(LAB_INVENTORY.read_text()), patch)), LAB_INVENTORY)


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



@pytest.mark.parametrize("path", cases("db_services"), ids=lambda p: p.stem)
def test_db_services(path: Path):
    case = yaml.safe_load(path.read_text())
    inv = inventory(case.get("inventory", {}))
    got = [{"name": s.name, "unit": s.unit,
            **{init: [[label, spec.path, f"{spec.mode:o}"] for label, spec in s.named(init)]
               for init in ("sysv", "systemd")}}
           for s in ops_db.services(inv)]
    assert got == case["services"]
    assert ops_db.every_path(inv) == case["uninstall"]


@pytest.mark.parametrize("path", cases("uninstall_db"), ids=lambda p: p.stem)
def test_uninstall_db(path: Path):
    case = yaml.safe_load(path.read_text())
    inv = inventory(case.get("inventory", {}))
    f = case["facts"]
    facts = uninstall.DbFacts(f["init"], f["tool"], frozenset(f["present"]), frozenset(f["ours"]), f["links"],
                              f["original"], tuple(f["state_dirs"]))
    got = [[a.what, list(a.remove), a.command] for a in uninstall.db_actions(inv, facts, uninstall.db_paths(inv))]
    assert got == case["actions"]


@pytest.mark.parametrize("path", cases("install_service"), ids=lambda p: p.stem)
def test_install_service(path: Path):
    case = yaml.safe_load(path.read_text())
    inv = inventory(case.get("inventory", {}))
    svc = {"dbora": ops_db.dbora, "trigger": ops_db.trigger, "watcher": ops_db.watcher}[case["service"]](inv)
    f = case["facts"]
    specs = {spec.path: spec for init in ("sysv", "systemd") for spec in svc.files(init)}
    states = {p: FileState(p, False) for p in specs}
    for p, fact in f["present"].items():
        states[p] = state(p, fact, specs[p].content) if fact != "as svrchain writes it" else FileState(
            p, True, specs[p].content, specs[p].mode, "root", "root")
    facts = ops_db.ServiceFacts(f["init"], f["tool"], states, f["links"], f["enabled"], f["up"])
    change = ops_db.install(svc, facts, case.get("running", False), case.get("restart", False))
    assert {c.spec.path: list(c.reasons) for c in change.files} == case["files"]
    assert list(change.commands) == case["commands"]
    if "noop" in case:
        assert change.noop == case["noop"]


@pytest.mark.parametrize("path", cases("gen_key"), ids=lambda p: p.stem)
def test_gen_key(path: Path):
    case = yaml.safe_load(path.read_text())
    inv = inventory(case.get("inventory", {}))
    f = case["facts"]
    pub_path = inv.key.path + ".pub"
    pub = FileState(pub_path, False)
    if f["pub"]:
        pub = FileState(pub_path, True, f["pub"].encode(), 0o644, "root", "root")
    facts = ops_key.KeyFacts(f["ssh_version"], f["priv"], f["derived"], pub, f["pubmode"])
    if "error" in case:
        with pytest.raises(SvrchainError) as exc:
            ops_key.key(inv, facts, case.get("rotate", False))
        assert str(exc.value) == case["error"]
        return
    change = ops_key.key(inv, facts, case.get("rotate", False))
    assert {c.spec.path: list(c.reasons) for c in change.files} == case["files"]
    assert list(change.what or change.commands) == case["commands"]
    if "noop" in case:
        assert change.noop == case["noop"]
    if "keygen" in case:
        assert f"ssh-keygen -q -t {case['keygen']} " in change.commands[0]
    for p, text in case.get("content", {}).items():
        assert change.paths()[p].spec.content.decode() == text


RSA_PUB = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7 root@db"


@pytest.mark.parametrize(("current", "want"), [
    (KEY, "ed25519"),
    # gen-key fell back to RSA on an OpenSSH that predates ed25519: the rotated key is RSA too.
    (RSA_PUB, "rsa"),
    # A type gen-key never makes (e.g. put there by hand): the inventory's.
    ("ssh-dss AAAAB3NzaC1kc3MAAACBAP root@db", "ed25519"),
])
def test_rotation_keeps_the_type_gen_key_chose(current: str, want: str) -> None:
    inv = inventory({})
    assert inv.key.type == "ed25519"
    key = authkeys.PublicKey(*current.split()[:2])
    kind = ops_key.rotation_type(inv, key)
    assert kind == want
    assert f"ssh-keygen -q -t {want} " in ops_key.keygen_script(kind, inv.key.bits)
