"""The svrchain command, installed from a wheel into a fresh venv, run from another directory.

The wheels of svrchain and its runtime dependencies (at requirements.lock's versions) are built or
fetched once (pip's cache, or the network the first time), then installed with --no-index: nothing
but the wheel directory reaches the new venv. About 10 s.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

pytestmark = pytest.mark.install
REPO = Path(__file__).resolve().parents[2]
PIP = [sys.executable, "-m", "pip"]
SKIP = (".git", ".venv", ".lab", ".hypothesis", ".pytest_cache", ".ruff_cache", "build", "dist", "*.egg-info",
        "__pycache__", "results")


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv with only svrchain (and its dependencies) installed; its bin directory."""
    base = tmp_path_factory.mktemp("install")
    source, wheels, venv = base / "source", base / "wheels", base / "venv"
    # Built from a copy: setuptools writes build/ and *.egg-info into the tree it builds.
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(*SKIP))
    built = subprocess.run([*PIP, "wheel", "--wheel-dir", str(wheels), "-c", str(REPO / "requirements.lock"),
                            str(source)], check=True, capture_output=True, text=True, timeout=240)
    (base / "wheel.log").write_text(built.stdout + built.stderr)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    subprocess.run([*PIP, "--python", str(venv / "bin" / "python"), "install", "-q", "--no-index",
                    "--find-links", str(wheels), "svrchain"], check=True, capture_output=True, timeout=120)
    return venv / "bin"


def svrchain(bin_dir: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(cwd)}  # no INVENTORY, no checkout on the path
    return subprocess.run([str(bin_dir / "svrchain"), *args], cwd=cwd, env=env, text=True,
                          capture_output=True, timeout=60)


def test_version_names_svrchain(installed, tmp_path):
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    r = svrchain(installed, "--version", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == f"svrchain {version}"
    assert r.stdout.splitlines()[1].startswith("Fabric ")


def test_tasks_are_built_in(installed, tmp_path):
    r = svrchain(installed, "--list", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    for name in ("bootstrap", "verify", "trust-hosts", "restart-chain", "uninstall"):
        assert name in r.stdout
    assert "-I STRING, --inventory=STRING" in svrchain(installed, "-h", "bootstrap", cwd=tmp_path).stdout


def test_no_inventory_is_one_line_and_exit_4(installed, tmp_path):
    r = svrchain(installed, "verify", cwd=tmp_path)
    assert r.returncode == 4
    assert r.stderr.strip().startswith("svrchain: no inventory chosen: pass --inventory FILE (-I FILE)")
    bad = tmp_path / "prod.yaml"
    bad.write_text("db:\n  adress: 1\n")
    r = svrchain(installed, "bootstrap", "-I", "prod.yaml", cwd=tmp_path)
    assert r.returncode == 4 and "prod.yaml:2: db.adress: unknown key; did you mean 'address'?" in r.stderr


def test_only_svrchain_is_installed(installed):
    site = next((installed.parent / "lib").glob("python3*/site-packages"))
    assert (site / "svrchain" / "tasks" / "__init__.py").is_file()
    assert (site / "svrchain" / "templates").is_dir()
    assert not any((site / name).exists() for name in ("tasks", "lab", "bench", "tests"))


def test_the_build_prints_no_setuptools_warning(installed):
    """Package data declared as setuptools wants it: no "Package would be ignored", no warning at all."""
    log = (installed.parent.parent / "wheel.log").read_text()
    assert "Building wheel for svrchain" in log  # the build's own output is there (pip wheel without -q)
    for warning in ("would be ignored", "is absent from the `packages` configuration", "Warning", "WARNING: svrchain"):
        assert warning not in log, log


def test_init_writes_the_example_inventory_and_keeps_a_file(installed, tmp_path):
    r = svrchain(installed, "init", "prod.yaml", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "prod.yaml").read_bytes() == (REPO / "inventory/example.yaml").read_bytes()
    assert r.stdout.strip().endswith("then run `svrchain trust-hosts -I prod.yaml`")
    (tmp_path / "prod.yaml").write_text("mine\n")
    r = svrchain(installed, "init", "prod.yaml", cwd=tmp_path)
    assert r.returncode == 4 and (tmp_path / "prod.yaml").read_text() == "mine\n"
    assert r.stderr.strip() == ("svrchain: prod.yaml exists; keeping it: choose another name, or pass --force to "
                                "replace it")
    assert svrchain(installed, "init", "--force", "prod.yaml", cwd=tmp_path).returncode == 0
    assert (tmp_path / "prod.yaml").read_bytes() == (REPO / "inventory/example.yaml").read_bytes()


def test_the_docs_messages_point_to_are_installed(installed, tmp_path):
    site = next((installed.parent / "lib").glob("python3*/site-packages"))
    for name, doc in (("output", "docs/output.md"), ("schema", "docs/output.schema.json")):
        where = svrchain(installed, "docs", "--path", name, cwd=tmp_path).stdout.strip()
        assert Path(where).is_relative_to(site)  # the installed copy, not a checkout's
        r = svrchain(installed, "docs", name, cwd=tmp_path)
        assert r.returncode == 0 and r.stdout == (REPO / doc).read_text()


def test_messages_name_svrchain_commands_not_the_checkout(installed, tmp_path):
    r = svrchain(installed, "verify", "-I", "nothere.yaml", cwd=tmp_path)
    assert r.returncode == 4
    assert r.stderr.strip() == ("svrchain: nothere.yaml: no such inventory file (given by --inventory); check the path "
                                "(every key is explained in the example inventory `svrchain init FILE` writes)")
    r = svrchain(installed, "verify", cwd=tmp_path)
    assert "inventory/example.yaml" not in r.stderr and "fabfile" not in r.stderr
    assert "`svrchain init FILE`" in r.stderr
    assert "`docs schema`" in svrchain(installed, "-h", "verify", cwd=tmp_path).stdout


def test_every_subpackage_is_packaged():
    """pyproject lists packages by hand (tasks/ is mapped to svrchain.tasks): none may be left out."""
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {"svrchain." + ".".join(p.parent.relative_to(REPO / "svrchain").parts)
             for p in (REPO / "svrchain").rglob("__init__.py") if p.parent != REPO / "svrchain"}
    data = {"svrchain.templates", "svrchain.files", "svrchain.docs", "svrchain.example"}  # no Python: data only
    assert found | {"svrchain", "svrchain.tasks"} | data == listed
