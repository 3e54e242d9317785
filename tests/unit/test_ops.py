"""Operations as data: each fixture file is an inventory patch and a host's facts, with the change
the operation must plan, written out by hand. One runner reads them all, as pyinfra's operation
tests do; add a case by adding a file under ``fixtures/<operation>/``.

One schema for every operation::

    doc: what the case shows
    inventory: {patch laid over inventory/lab.yaml}
    args: {the operation's own arguments}
    facts: {the facts the operation takes}
    files: {path: [why it differs]}          # the files the change writes
    commands: [[shown, run], ...]             # then, in order: what the report says and what runs
    noop: the "ok" line's text                # (optional)
    error: the refusal's text                 # (instead of files and commands)
    content / owners / validate / runas: {path: ...}   # (optional) the files' specs
    checks: [{code, stdout, stderr, problem}]          # (optional) what the change's check says of a result

A command's ``run`` is the shell command, the list of paths it removes, or ``{contains: text}``; a
command given as a bare string is shown as itself.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import pytest

from svrchain.core import authkeys, render, sshd
from svrchain.core.errors import SvrchainError
from svrchain.core.inventory import Inventory, parse
from svrchain.core.plan import FileState, Result
from svrchain.facts.sshd import SshdFacts
from svrchain.facts.web import WebFacts
from svrchain.ops import Change, Command
from svrchain.ops import db as ops_db
from svrchain.ops import key as ops_key
from svrchain.ops import sshd as ops_sshd
from svrchain.ops import web as ops_web
from svrchain.steps import uninstall
from tests import fastyaml
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


LAB = fastyaml.load(LAB_INVENTORY.read_text())


def inventory(patch: dict) -> Inventory:
    return parse(fastyaml.dump(merged(copy.deepcopy(LAB), patch)), LAB_INVENTORY)


def state(path: str, fact: dict | str | None, installed: bytes, owner: str = "root") -> FileState:
    """A file as a fixture describes it: missing (null, or exists: false), "as svrchain writes it"
    (mode 755), or content and mode."""
    if fact == "as svrchain writes it":
        return FileState(path, True, installed, 0o755, "root", "root")
    if fact is None or not fact.get("exists", True):
        return FileState(path, False)
    return FileState(path, True, fact["content"].encode(), int(fact.get("mode", "644"), 8),
                     fact.get("owner", owner), fact.get("group", owner))


# --- each operation: its facts from the fixture, and the call ----------------------------------


def push_key(inv: Inventory, f: dict, args: dict) -> Change:
    keys = f["keys"]
    facts = WebFacts(
        f["user"], f["home"], f["group"], state(keys["path"], keys, b"", f["user"]), f["sshdir"], None, (),
        state(render.GATE, f["gate"], render.gate(inv)), state(render.SUDOERS, f["sudoers"], render.sudoers(inv)),
    )
    return ops_web.push_key(inv, authkeys.parse_public_key(KEY), facts, args["ssh_version"])


def gen_key(inv: Inventory, f: dict, args: dict) -> Change:
    pub_path = inv.key.path + ".pub"
    pub = FileState(pub_path, False)
    if f["pub"]:
        pub = FileState(pub_path, True, f["pub"].encode(), 0o644, "root", "root")
    facts = ops_key.KeyFacts(f["ssh_version"], f["priv"], f["derived"], pub, f["pubmode"])
    return ops_key.key(inv, facts, args.get("rotate", False))


def install_service(inv: Inventory, f: dict, args: dict) -> Change:
    svc = {"dbora": ops_db.dbora, "trigger": ops_db.trigger, "watcher": ops_db.watcher}[args["service"]](inv)
    specs = {spec.path: spec for init in ("sysv", "systemd") for spec in svc.files(init)}
    states = {p: FileState(p, False) for p in specs}
    for p, fact in f["present"].items():
        states[p] = state(p, fact, specs[p].content, "root")
        if fact == "as svrchain writes it":
            states[p] = FileState(p, True, specs[p].content, specs[p].mode, "root", "root")
    facts = ops_db.ServiceFacts(f["init"], f["tool"], states, f["links"], f["enabled"], f["up"])
    return ops_db.install(svc, facts, args.get("running", False), args.get("restart", False))


def uninstall_db(inv: Inventory, f: dict, args: dict) -> Change:
    facts = uninstall.DbFacts(f["init"], f["tool"], frozenset(f["present"]), frozenset(f["ours"]), f["links"],
                              f["original"], tuple(f["state_dirs"]))
    return uninstall.db_actions(inv, facts, uninstall.db_paths(inv))


def sshd_facts(f: dict) -> SshdFacts:
    return SshdFacts(state(sshd.MAIN, f["main"], b""), state(sshd.DROPIN, f.get("dropin"), b""),
                     f.get("effective_ok", True), f["effective"],
                     {q: set(algs) for q, algs in f.get("supported", {}).items()}, tuple(f["host_key_types"]))


def harden_sshd(inv: Inventory, f: dict, args: dict) -> Change:
    return ops_sshd.harden(inv, sshd_facts(f), args["server_version"], args["admin_is_root"])


def uninstall_sshd(inv: Inventory, f: dict, args: dict) -> Change:
    return ops_sshd.unharden(sshd_facts(f))


OPERATIONS: dict[str, Callable[[Inventory, dict, dict], Change]] = {
    "push_key": push_key, "gen_key": gen_key, "install_service": install_service, "uninstall_db": uninstall_db,
    "harden_sshd": harden_sshd, "uninstall_sshd": uninstall_sshd,
}


def cases() -> list[Path]:
    return sorted(p for op in OPERATIONS for p in (FIXTURES / op).glob("*.yaml"))


def command_data(c: Command, want: object) -> object:
    """A planned command as a fixture writes it (``want``: the fixture's entry, for its shorthand)."""
    run: object = [s.path for s in c.removes] if c.removes else c.run
    if isinstance(want, str) and c.shown == c.run:
        return c.run
    if isinstance(want, list) and isinstance(want[1], dict):
        return [c.shown, {"contains": want[1]["contains"]} if want[1]["contains"] in c.run else c.run]
    return [c.shown, run]


@pytest.mark.parametrize("path", cases(), ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_operation(path: Path):
    case = fastyaml.load(path.read_text())
    inv = inventory(case.get("inventory", {}))
    op = OPERATIONS[path.parent.name]
    if "error" in case:
        with pytest.raises(SvrchainError) as exc:
            op(inv, case["facts"], case.get("args", {}))
        assert str(exc.value) == case["error"]
        return
    change = op(inv, case["facts"], case.get("args", {}))
    assert {c.spec.path: list(c.reasons) for c in change.files} == case["files"]
    want = case["commands"]
    assert [command_data(c, w) for c, w in zip(change.commands, want, strict=False)] == want[:len(change.commands)]
    assert len(change.commands) == len(want)
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
    checks = [c for c in change.commands if c.problem]
    for seen in case.get("checks", []):  # what each check makes of a result it may get
        result = Result(seen.get("code", 0), seen.get("stdout", ""), seen.get("stderr", ""))
        assert [c.problem(result) for c in checks if c.problem] == [seen["problem"]]


@pytest.mark.parametrize("path", sorted((FIXTURES / "db_services").glob("*.yaml")), ids=lambda p: p.stem)
def test_db_services(path: Path):
    """The DB server's services as declared (not an operation: what install, verify and uninstall share)."""
    case = fastyaml.load(path.read_text())
    inv = inventory(case.get("inventory", {}))
    got = [{"name": s.name, "unit": s.unit,
            **{init: [[label, spec.path, f"{spec.mode:o}"] for label, spec in s.named(init)]
               for init in ("sysv", "systemd")}}
           for s in ops_db.services(inv)]
    assert got == case["services"]
    assert ops_db.every_path(inv) == case["uninstall"]


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
