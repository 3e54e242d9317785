"""The admin side's run log (--log FILE, or the inventory's log:) and -v's command lines, run in this
process (the ``program`` fixture); the lab's test_scenarios.py shows both on real hosts."""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

from svrchain.remote.connection import shown_command
from tests.paths import LAB_INVENTORY

STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z verify\[\d+\] "


def run(program, *args: str, inventory: Path) -> object:
    return program("fab", *args, env={**os.environ, "INVENTORY": str(inventory)})


def no_identity(tmp_path: Path, extra: str = "") -> Path:
    """An inventory that loads and then stops the run (its admin key does not exist)."""
    text = LAB_INVENTORY.read_text().replace("../.lab/admin_key", str(tmp_path / "nokey"))
    inv = tmp_path / "inv.yaml"
    inv.write_text(text.replace("lab: true", "lab: false") + extra)
    return inv


def test_log_appends_every_line_with_a_timestamp_mode_600(program, tmp_path):
    inv, log = no_identity(tmp_path), tmp_path / "runs.log"
    r = run(program, "verify", "--log", str(log), inventory=inv)
    assert r.returncode == 4
    lines = log.read_text().splitlines()
    assert all(re.match(STAMP, ln) for ln in lines), lines
    said = [re.sub(STAMP, "", ln) for ln in lines]
    assert said == [f"run: verify --log {log}",
                    f"svrchain: {inv}: connect.identity: {tmp_path / 'nokey'} does not exist; point it at the "
                    "admin's private key",
                    said[2]]
    assert re.fullmatch(r"exit 4 \(bad-inventory, \d+\.\ds\)", said[2])
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    run(program, "verify", "--log", str(log), inventory=inv)
    assert len(log.read_text().splitlines()) == 6  # appended: the first run's lines kept


def test_the_inventory_names_the_log_relative_to_itself(program, tmp_path):
    inv = no_identity(tmp_path, "log: logs/svrchain.log\n")
    (tmp_path / "logs").mkdir()
    assert run(program, "verify", inventory=inv).returncode == 4
    text = (tmp_path / "logs" / "svrchain.log").read_text()
    assert "connect.identity" in text and "exit 4" in text
    other = tmp_path / "other.log"  # --log wins over the inventory's
    run(program, "verify", "--log", str(other), inventory=inv)
    assert other.exists() and (tmp_path / "logs" / "svrchain.log").read_text() == text


def test_with_json_the_log_has_the_human_lines_not_the_document(program, tmp_path):
    inv, log = no_identity(tmp_path), tmp_path / "runs.log"
    r = run(program, "verify", "--json", "--log", str(log), inventory=inv)
    assert json.loads(r.stdout)["exit_code"] == 4
    text = log.read_text()
    assert "connect.identity" in text and '"schema"' not in text


def test_a_log_that_cannot_be_written_is_one_line_exit_4(program, tmp_path):
    inv = no_identity(tmp_path)
    r = run(program, "verify", "--log", str(tmp_path / "no" / "such" / "dir.log"), inventory=inv)
    assert r.returncode == 4
    assert r.stderr.strip() == (f"svrchain: --log: cannot append to the run log {tmp_path}/no/such/dir.log: No such "
                                "file or directory; fix the path or its directory's permissions")


def test_verbose_shows_a_command_on_one_line():
    assert shown_command("root", "set -e\n  cat \"$1\"\n", ("/etc/a b",), b"") == "sh -c 'set -e [+1 lines]' '/etc/a b'"
    assert shown_command("admin", "id", (), b"xyz") == "sudo -n sh -c id < 3 bytes"
    long = shown_command("root", "x", ("y" * 500,), b"")
    assert long.endswith("y...") and len(long) < 230


def test_every_task_has_log_and_verbose(program):
    for task in ("verify", "bootstrap", "trust-hosts", "uninstall"):
        out = program("fab", "-h", task).stdout
        assert "--log=STRING" in out and "-v, --verbose" in out, out
