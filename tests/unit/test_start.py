"""The command starts light (issue 23, "Start fast"): starting it, listing its tasks or reading a task's
help imports no step, no Jinja2 (only a render needs it), and never the lab or the bench. Checked in
sys.modules, never by timing: each case in a process of its own, forked from one interpreter per test
process that has imported only the third-party packages a start loads anyway (Fabric, Invoke, Paramiko,
pydantic, PyYAML: none of what no start may import, and nothing of svrchain's; checked), so each case
loads what it would in a fresh interpreter, and no case sees another's modules. (Whether the command
loads Fabric at all before it connects is test_early.py's, in fresh interpreters.)"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator

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


# One interpreter per test process: the packages every start loads anyway, imported once; then, for
# each case (a JSON line on stdin: its code), a child forked from it runs the code (its output to
# /dev/null) and sends back its sys.modules, or its traceback; one JSON line on stdout per case.
_FORKS = r"""
import json, os, sys, traceback
import fabric, invoke, paramiko, pydantic, yaml
print(json.dumps(sorted(sys.modules)), flush=True)
for line in sys.stdin:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        try:
            exec(compile(json.loads(line), "<case>", "exec"), {"__name__": "__main__"})
            said = {"modules": sorted(sys.modules)}
        except BaseException:
            said = {"error": traceback.format_exc()}
        with os.fdopen(w, "w") as f:
            f.write(json.dumps(said))
        os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        said = f.read()
    os.waitpid(pid, 0)
    print(json.dumps(json.loads(said or '{"error": "the case ended without a word"}')), flush=True)
"""


@pytest.fixture(scope="module")
def started() -> Iterator[Callable[[str], set[str]]]:
    """``started(code)``: the modules loaded after running ``code`` in a child of the preloaded interpreter
    (in the checkout, as ``python -c`` there)."""
    forks = subprocess.Popen([sys.executable, "-c", _FORKS], cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True)
    preloaded = set(json.loads(forks.stdout.readline()))
    assert forbidden(preloaded) == [] and not [m for m in preloaded if m.split(".")[0] in ("svrchain", "tasks")]

    def run(code: str) -> set[str]:
        forks.stdin.write(json.dumps(code) + "\n")
        forks.stdin.flush()
        said = json.loads(forks.stdout.readline())
        assert "error" not in said, said["error"]
        return set(said["modules"])

    yield run
    forks.stdin.close()
    forks.wait(30)


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
def test_starting_imports_no_step_no_jinja2_no_lab_no_bench(code, started):
    loaded = started(code)
    assert "svrchain.cli" in loaded  # the check sees what the start loaded
    assert forbidden(loaded) == []


def test_a_task_imports_its_own_step_when_it_runs(started):
    loaded = started(_run_program("from svrchain.program import run; run()", "docs", "output", "--path"))
    assert "svrchain.steps.starter" in loaded
    assert forbidden(loaded) == ["svrchain.steps", "svrchain.steps.starter"]


def test_jinja2_comes_with_the_first_render(started):
    assert "jinja2" not in started("import svrchain.core.render, svrchain.remote.connection")
    assert "jinja2" in started("from pathlib import Path; from svrchain.core import inventory, render; "
                                     "render.dbora_service(inventory.load(Path('inventory/example.yaml')))")
