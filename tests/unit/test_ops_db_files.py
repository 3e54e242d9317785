"""The DB server's services as ops/db.py declares them: every file's place, mode and the mode of the
directory made for it, and what the facts, verify's SELinux check and uninstall take from them without
rendering a single file."""

from __future__ import annotations

from pathlib import Path

import pytest

from svrchain.core import estate
from svrchain.core.errors import SvrchainError
from svrchain.core.inventory import Inventory, load
from svrchain.ops import db
from tests.paths import LAB_INVENTORY, ORACLE_INVENTORY, REPO

LIB, UNITS = "/usr/local/lib/svrchain", "/etc/systemd/system"
# (the name verify shows, path, mode, the mode of its directory when svrchain makes it)
DBORA = [("dbora start script", f"{LIB}/dbora", 0o755, 0o755)]
ORACLE = [("oracle readiness", f"{LIB}/oracle-ready", 0o755, 0o755)]
TRIGGER = [("svr_restart settings", "/etc/svrchain/svr_restart.conf", 0o600, 0o755),  # root's alone
           ("svr_restart script", f"{LIB}/svr_restart", 0o755, 0o755)]


def table(inv: Inventory, init: str) -> list[list[tuple[str, str, int, int | None]]]:
    return [[(name, spec.path, spec.mode, spec.parent_mode) for name, spec in svc.named(init)]
            for svc in db.services(inv)]


@pytest.mark.parametrize(("path", "oracle"), [(LAB_INVENTORY, []), (ORACLE_INVENTORY, ORACLE)])
def test_every_file_of_the_db_servers_services_with_its_mode(path: Path, oracle: list) -> None:
    inv = load(path)
    assert table(inv, "sysv") == [
        [*DBORA, *oracle, ("dbora init script", "/etc/init.d/dbora", 0o755, None)],
        [*TRIGGER, ("svr_restart init script", "/etc/init.d/svr_restart", 0o755, None)],
        [("svr_restart_watch script", "/etc/init.d/svr_restart_watch", 0o755, None)]]
    assert table(inv, "systemd") == [
        [*DBORA, *oracle, ("dbora.service", f"{UNITS}/dbora.service", 0o644, None)],
        [*TRIGGER, ("svr-restart.service", f"{UNITS}/svr-restart.service", 0o644, None)],
        [("svr-restart-watch.service", f"{UNITS}/svr-restart-watch.service", 0o644, None)]]


def test_a_primary_standby_pairs_trigger_has_its_role_check_first() -> None:
    chain = estate.load(REPO / "inventory" / "lab-pair.yaml").chains[0].inv
    role = ("svr_restart role check", f"{LIB}/svr_restart-role", 0o755, 0o755)
    assert table(chain, "sysv")[1][:3] == [role, *TRIGGER] and table(chain, "systemd")[1][:3] == [role, *TRIGGER]


def test_the_facts_verify_and_uninstall_need_no_file_rendered(tmp_path: Path) -> None:
    """A site script the admin's machine no longer has: installing it fails, but the paths to read,
    check and remove are all there (uninstall must work then)."""
    inv = load(LAB_INVENTORY)
    gone = inv.model_copy(update={"source": tmp_path / "prod.yaml",
                                  "db": inv.db.model_copy(update={"script": "gone.sh"})})
    with pytest.raises(SvrchainError, match="cannot read"):
        db.services(gone)
    paths = db.every_path(gone)
    assert paths == db.every_path(inv) and f"{LIB}/dbora" in paths and "/etc/init.d/dbora" in paths
    facts = db.service_facts(gone)
    assert [(f.service, f.unit, f.paths, f.running) for f in facts] == [
        ("dbora", "dbora.service", sorted([f"{LIB}/dbora", "/etc/init.d/dbora", f"{UNITS}/dbora.service"]), False),
        ("svr_restart", "svr-restart.service", sorted([*(p for _, p, _, _ in TRIGGER), "/etc/init.d/svr_restart",
                                                        f"{UNITS}/svr-restart.service"]), False),
        ("svr_restart_watch", "svr-restart-watch.service",
         sorted(["/etc/init.d/svr_restart_watch", f"{UNITS}/svr-restart-watch.service"]), True)]
    assert [f.commands(gone)["enabled"] for f in facts] == [
        f"if [ -d /run/systemd/system ]; then systemctl is-enabled {u}; fi"
        for u in ("dbora.service", "svr-restart.service", "svr-restart-watch.service")]
    chain = db.chain_fact(gone)
    assert chain.services == (("dbora", "dbora.service"), ("svr_restart", "svr-restart.service"),
                              ("svr_restart_watch", "svr-restart-watch.service"))
    assert chain.selinux_paths == db.selinux_paths(gone)
    assert db.selinux_paths(gone) == [*paths, "/etc/svrchain/known_hosts", "/root/.ssh",
                                      "/root/.ssh/svr_restart_key", "/root/.ssh/svr_restart_key.pub"]
