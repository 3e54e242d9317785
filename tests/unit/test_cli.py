"""The fab command line without hosts: task list, help, and bad inventories as one clear line. The
runs are in this process (the ``program`` fixture, tests/unit/conftest.py), except the one that runs
the installed ``fab`` itself."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.paths import LAB_INVENTORY

REPO = Path(__file__).resolve().parents[2]
FAB = str(Path(sys.executable).parent / "fab")


def environment(inventory: Path | str | None = None) -> dict[str, str]:
    env = {**os.environ}
    if inventory is not None:
        env["INVENTORY"] = str(inventory)
    return env


@pytest.fixture
def fab(program):
    """``fab(*args, inventory=None)``: fab in the checkout, in this process, INVENTORY set when given."""
    return lambda *args, inventory=None: program("fab", *args, env=environment(inventory))


def test_every_task_is_listed_with_its_docstring(fab):
    r = fab("--list")
    assert r.returncode == 0
    for name in ("bootstrap", "install-dbora", "gen-key", "push-key", "install-svr-restart",
                 "restart-chain", "verify", "trust-hosts"):
        assert name in r.stdout
    assert "--dry-run" in fab("-h", "bootstrap").stdout


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("connect: {user: root}\n", "connect.known_hosts: missing; add it"),
        ("db:\n  adress: 1\n", "unknown key; did you mean 'address'?"),
        ("connect: [\n", "not valid YAML"),
    ],
)
def test_bad_inventory_is_one_line_and_exit_4(fab, tmp_path, text, expected):
    inv = tmp_path / "bad.yaml"
    inv.write_text(text)
    r = fab("verify", inventory=inv)
    assert r.returncode == 4
    first = r.stderr.strip().splitlines()[0]
    assert first.startswith(f"svrchain: {inv}") and expected in r.stderr, r.stderr
    assert "Traceback" not in r.stderr + r.stdout


def test_missing_inventory_file(tmp_path):
    """The installed fab itself, in a process of its own: exactly one line on stderr, and nothing else."""
    r = subprocess.run([FAB, "bootstrap"], cwd=REPO, env=environment(tmp_path / "nope.yaml"), text=True,
                       capture_output=True, timeout=60)
    assert r.returncode == 4
    assert r.stderr.strip() == f"svrchain: {tmp_path / 'nope.yaml'}: no such inventory file (given by " \
        "INVENTORY); check the path (every key is explained in inventory/example.yaml)"


def test_inventory_from_dotenv(program, tmp_path):
    (tmp_path / ".env").write_text(f"INVENTORY={tmp_path / 'from-dotenv.yaml'}\n")
    env = {k: v for k, v in os.environ.items() if k != "INVENTORY"}
    r = program("fab", "-r", str(REPO), "verify", cwd=tmp_path, env=env)
    assert r.returncode == 4
    assert "from-dotenv.yaml: no such inventory file" in r.stderr


def test_missing_identity_file(fab, tmp_path):
    text = (LAB_INVENTORY).read_text().replace("../.lab/admin_key", str(tmp_path / "nokey"))
    text = text.replace("lab: true", "lab: false")  # not the lab's own: the lab need not be up
    inv = tmp_path / "inv.yaml"
    inv.write_text(text)
    r = fab("verify", inventory=inv)
    assert r.returncode == 4
    assert f"connect.identity: {tmp_path / 'nokey'} does not exist" in r.stderr
