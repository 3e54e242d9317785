"""The module structure: layers (folders of svrchain/), each importing only from itself and the layers
below it (no upward arrow), the pure layers free of SSH and CLI libraries, no import cycle,
docs/modules.md drawn from the code, and README's "How it is built" naming every layer on one screen.

`make modules` redraws docs/modules.md (``python -m tests.unit.test_layers``).
"""

from __future__ import annotations

import ast
import functools
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PICTURE = ROOT / "docs" / "modules.md"
# Bottom to top: each layer is a folder of svrchain/ (or one module): its name, where it lives, what it
# is. A module may import from its own layer and the layers below.
LAYERS: list[tuple[str, str, str]] = [
    ("core", "svrchain/core/", "the inventory, parsers, rendering, errors, output"),
    ("facts", "svrchain/facts/", "a host's state, typed"),
    ("ops", "svrchain/ops/", "what should change (the operations)"),
    ("remote", "svrchain/remote/", "SSH and local I/O"),
    ("steps", "svrchain/steps/", "each task's work on its hosts"),
    ("cli", "svrchain/cli.py", "how a task runs and reports"),
    ("tasks", "tasks/", "the tasks' declarations (installed as svrchain.tasks)"),
    ("program", "svrchain/program.py", "the svrchain command"),
]
PURE = 3  # the first three layers: no SSH, no CLI
IO_LIBRARIES = {"fabric", "paramiko", "invoke"}


def module_name(path: Path) -> str:
    if path == ROOT / "tasks" / "__init__.py":
        return "tasks"  # installed as svrchain.tasks
    parts = path.relative_to(ROOT / "svrchain").with_suffix("").parts
    return ".".join(p for p in parts if p != "__init__") or "svrchain"


def is_package(module: str) -> bool:
    """Whether ``module`` (``svrchain``, ``svrchain.ops``, ...) is a package of svrchain's."""
    return module.split(".")[0] == "svrchain" and (ROOT / Path(*module.split("."))).is_dir()


def imports(path: Path) -> set[str]:
    """The svrchain modules and I/O libraries a module imports when it runs (not for type checking)."""
    found: set[str] = set()
    tree = ast.parse(path.read_text())
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        for n in ast.walk(node):
            if isinstance(n, ast.ImportFrom) and n.module:
                base = n.module.split(".")[0]
                if base in IO_LIBRARIES:
                    found.add(base)
                elif is_package(n.module):  # a module, or a name, of a package
                    package = n.module.removeprefix("svrchain").lstrip(".")
                    for a in n.names:
                        sub = f"{package}.{a.name}".lstrip(".")
                        where = ROOT / "svrchain" / Path(*sub.split("."))
                        is_module = where.with_suffix(".py").exists() or (where / "__init__.py").exists()
                        found.add(sub if is_module else package)
                elif base == "svrchain":
                    found.add(n.module.removeprefix("svrchain."))
            elif isinstance(n, ast.Import):
                found |= {a.name.split(".")[0] for a in n.names if a.name.split(".")[0] in IO_LIBRARIES}
    return found


@functools.cache  # read once a run: the tests below each look at it (the files do not change meanwhile)
def graph() -> dict[str, set[str]]:
    files = [*sorted((ROOT / "svrchain").rglob("*.py")), ROOT / "tasks" / "__init__.py"]
    return {module_name(p): imports(p) for p in files if module_name(p) != "svrchain"}


def layer_of(module: str) -> int:
    """The layer of a module (``core.render``) or folder (``core``): the one named by its first part."""
    return next(i for i, (name, _, _) in enumerate(LAYERS) if module.split(".")[0] == name)


def test_every_module_has_a_layer():
    assert [m for m in graph() if not any(m.split(".")[0] == name for name, _, _ in LAYERS)] == []


def test_an_import_names_the_module_not_its_package(tmp_path):
    code = tmp_path / "m.py"
    code.write_text("from svrchain import remote\nfrom svrchain.core import render\nfrom svrchain.remote import files\n"
                    "from svrchain.remote.group import Session\nfrom svrchain.ops import Change\n")
    assert imports(code) == {"remote", "core.render", "remote.files", "remote.group", "ops"}


def test_no_upward_arrow():
    upward = [f"{m} -> {d}" for m, deps in graph().items() for d in deps - IO_LIBRARIES
              if layer_of(d) > layer_of(m)]
    assert upward == []


def test_pure_layers_use_no_ssh_or_cli_library():
    assert [(m, deps & IO_LIBRARIES) for m, deps in graph().items()
            if layer_of(m) < PURE and deps & IO_LIBRARIES] == []


def test_no_import_cycle():
    g = {m: deps - IO_LIBRARIES for m, deps in graph().items()}
    done: set[str] = set()

    def visit(m: str, path: tuple[str, ...]) -> None:
        assert m not in path, " -> ".join((*path, m))
        if m not in done:
            for d in sorted(g[m]):
                visit(d, (*path, m))
            done.add(m)

    for m in g:
        visit(m, ())


def test_tasks_only_declare():
    """tasks/ imports nothing but invoke and svrchain."""
    tree = ast.parse((ROOT / "tasks" / "__init__.py").read_text())
    bases = {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert bases <= {"__future__", "invoke", "svrchain"}


def picture() -> str:
    """docs/modules.md: the layers top to bottom, where each lives, what it is and the layers its modules
    import from (measured), then each folder's modules."""
    g = graph()
    rows = [("layer", "where", "what", "imports from")]
    for i, (name, place, what) in reversed(list(enumerate(LAYERS))):
        used = {LAYERS[layer_of(d)][0] for m in g if layer_of(m) == i for d in g[m] - IO_LIBRARIES}
        rows.append((name, place, what, ", ".join(n for n, _, _ in reversed(LAYERS) if n in used) or "-"))
        if i == PURE:
            rows.append(("", "", f"--- pure below: no {', '.join(sorted(IO_LIBRARIES))} ---", ""))
    w = [max(len(r[k]) for r in rows) for k in range(3)]
    table = [f"{a:<{w[0]}}  {b:<{w[1]}}  {c:<{w[2]}}  {d}".rstrip() for a, b, c, d in rows]
    folders = [f"{place:<{w[1]}}  {' '.join(m.split('.', 1)[1] for m in sorted(g) if m.startswith(name + '.'))}"
               for name, place, _ in reversed(LAYERS) if any(m.startswith(name + ".") for m in g)]
    return "\n".join([
        "# svrchain's layers", "",
        "Top to bottom. A module imports only from its own layer and the layers below it, never up; the",
        "pure layers touch no host and no command line. `tests/unit/test_layers.py` enforces it (no upward",
        "import, no import cycle, no SSH or CLI library in a pure layer) and checks that this page, drawn",
        "by `make modules`, is current.", "",
        "```text", *table, "```", "",
        "The modules of each folder:", "",
        "```text", *folders, "```", ""])


def test_the_picture_is_current():
    assert PICTURE.read_text() == picture(), "run `make modules`"


def test_the_readme_shows_every_layer_on_one_screen():
    """README's "How it is built" fits on a terminal (40 lines) and names every layer that exists."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## How it is built"):].split("\n## ")[0].rstrip("\n").splitlines()
    assert len(section) <= 40
    present = [place for _, place, _ in LAYERS if (ROOT / place).exists()]
    missing = [place for place in present if place not in "\n".join(section)]
    assert missing == [], "README.md, How it is built: add a line for each layer missing"


if __name__ == "__main__":
    PICTURE.write_text(picture())
    sys.exit(0)
