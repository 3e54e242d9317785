"""The module structure: layers, each importing only from the layers below it (no upward arrow), the
pure layers free of SSH and CLI libraries, no import cycle, and docs/modules.md drawn from the code.

`make modules` redraws docs/modules.md (``python -m tests.unit.test_layers``).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PICTURE = ROOT / "docs" / "modules.md"
# Bottom to top: each layer is a folder of svrchain/ (or one module). A module may import from its own
# layer and the layers below.
LAYERS: list[tuple[str, str]] = [
    ("core", "pure: the inventory, parsers, rendering, errors, output"),
    ("facts", "pure: a host's state, typed"),
    ("ops", "pure: what should change"),
    ("remote", "SSH and local I/O"),
    ("steps", "each task's work on its hosts"),
    ("cli", "the command line"),
    ("tasks", "task declarations (tasks/, installed as svrchain.tasks)"),
    ("program", "the svrchain command"),
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


def graph() -> dict[str, set[str]]:
    files = [*sorted((ROOT / "svrchain").rglob("*.py")), ROOT / "tasks" / "__init__.py"]
    return {module_name(p): imports(p) for p in files if module_name(p) != "svrchain"}


def layer_of(module: str) -> int:
    """The layer of a module (``core.render``) or folder (``core``): the one named by its first part."""
    return next(i for i, (name, _) in enumerate(LAYERS) if module.split(".")[0] == name)


def test_every_module_has_a_layer():
    assert [m for m in graph() if not any(m.split(".")[0] == name for name, _ in LAYERS)] == []


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
    """docs/modules.md: the layers, and a Mermaid graph of the imports (GitHub draws it)."""
    g = graph()
    lines = ["# svrchain's modules", "", "Generated by `make modules` from the imports; the tests check it is current.",
             "Arrows point down only: a module imports from its own layer or the ones below.", "",
             "```mermaid", "flowchart TB"]
    for i, (name, title) in reversed(list(enumerate(LAYERS))):
        mods = sorted(m for m in g if layer_of(m) == i)
        if mods:
            lines.append(f'    subgraph L{i}["{name}: {title}"]')
            lines += [f"        {m.replace('.', '_')}[{m}]" for m in mods]
            lines.append("    end")
    lines += [f"    {m.replace('.', '_')} --> {d.replace('.', '_')}" for m in sorted(g)
              for d in sorted(g[m] - IO_LIBRARIES)]
    return "\n".join([*lines, "```", ""])


def test_the_picture_is_current():
    assert PICTURE.read_text() == picture(), "run `make modules`"


if __name__ == "__main__":
    PICTURE.write_text(picture())
    sys.exit(0)
