"""The command starts light (issue 23, "Start fast"): starting it, listing its tasks or reading a task's
help imports no step, no Jinja2 (only a render needs it), and never the lab or the bench. Checked in a
fresh interpreter's sys.modules, never by timing."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.paths import REPO

# What no start may import: the steps (each task imports its own when it runs), the renderers' Jinja2,
# and the checkout's lab and bench.
NEVER_AT_START = ("svrchain.steps", "jinja2", "lab", "bench")

_SHOW = "import json, sys; print(json.dumps(sorted(sys.modules)), file=sys.__stderr__)"


def modules_after(code: str) -> set[str]:
    """The modules a fresh interpreter has loaded after running ``code`` (in the checkout)."""
    r = subprocess.run([sys.executable, "-c", f"{code}\n{_SHOW}"], cwd=REPO, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    return set(json.loads(r.stderr.strip().splitlines()[-1]))


def forbidden(loaded: set[str]) -> list[str]:
    return sorted(m for m in loaded if any(m == p or m.startswith(p + ".") for p in NEVER_AT_START))


def _run_program(main: str, *argv: str) -> str:
    """Code that runs a command line to its end (its SystemExit caught)."""
    return (f"import sys; sys.argv = {[ 'x', *argv]!r}\n"
            f"try:\n    {main}\nexcept SystemExit:\n    pass")


@pytest.mark.parametrize("code", [
    "import tasks",  # what fabfile.py loads
    "import svrchain.tasks",  # the same, as the installed command has it
    "import fabfile",
    _run_program("from svrchain.program import run; run()", "--list"),
    _run_program("from svrchain.program import run; run()", "--help", "bootstrap"),
    _run_program("from fabric.main import program; program.run()", "--list"),
], ids=["tasks", "svrchain.tasks", "fabfile", "svrchain --list", "svrchain --help bootstrap", "fab --list"])
def test_starting_imports_no_step_no_jinja2_no_lab_no_bench(code):
    loaded = modules_after(code)
    assert "svrchain.cli" in loaded  # the check sees what the start loaded
    assert forbidden(loaded) == []


def test_a_task_imports_its_own_step_when_it_runs():
    loaded = modules_after(_run_program("from svrchain.program import run; run()", "docs", "output", "--path"))
    assert "svrchain.steps.starter" in loaded
    assert forbidden(loaded) == ["svrchain.steps", "svrchain.steps.starter"]


def test_jinja2_comes_with_the_first_render():
    assert "jinja2" not in modules_after("import svrchain.core.render, svrchain.remote.connection")
    assert "jinja2" in modules_after("from pathlib import Path; from svrchain.core import inventory, render; "
                                     "render.dbora_service(inventory.load(Path('inventory/example.yaml')))")
