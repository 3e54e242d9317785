"""init and docs (what the command ships), and messages that name the program the user ran."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

from svrchain.core import tell
from svrchain.steps import starter

REPO = Path(__file__).resolve().parents[2]
ENV = {"PATH": os.environ["PATH"], "HOME": "/nonexistent"}


def test_init_writes_the_checkouts_example_and_never_overwrites_without_force(program, tmp_path):
    r = program("svrchain", "init", "prod.yaml", cwd=tmp_path, env=ENV)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "prod.yaml").read_bytes() == (REPO / "inventory/example.yaml").read_bytes()
    assert r.stdout == ("wrote the example inventory to prod.yaml: edit it (every key is explained in its comments), "
                        "then run `svrchain trust-hosts -I prod.yaml`\n")
    (tmp_path / "prod.yaml").write_text("the admin's own\n")
    for tool, flags in (("svrchain", ()), ("fab", ("-r", str(REPO)))):
        r = program(tool, *flags, "init", "prod.yaml", cwd=tmp_path, env=ENV)
        assert r.returncode == 4
        assert r.stderr == ("svrchain: prod.yaml exists; keeping it: choose another name, or pass --force to "
                            "replace it\n")
    assert (tmp_path / "prod.yaml").read_text() == "the admin's own\n"
    r = program("fab", "-r", str(REPO), "init", "--force", "prod.yaml", cwd=tmp_path, env=ENV)
    assert r.returncode == 0 and r.stdout.endswith("then run `fab trust-hosts -I prod.yaml`\n")
    assert (tmp_path / "prod.yaml").read_bytes() == (REPO / "inventory/example.yaml").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prod.yaml"]  # no temporary file left


@pytest.mark.parametrize(("target", "line"), [
    ("{tmp}", "svrchain: {tmp} is a directory; give a file name, e.g. {tmp}/prod.yaml"),
    ("{tmp}/no/such/dir/prod.yaml", "svrchain: cannot write {tmp}/no/such/dir/prod.yaml: No such file or directory"),
])
def test_init_errors_are_one_line(program, tmp_path, target, line):
    r = program("svrchain", "init", target.format(tmp=tmp_path), cwd=tmp_path, env=ENV)
    assert r.returncode in (1, 4) and r.stderr == line.format(tmp=tmp_path) + "\n"


def test_a_link_in_place_of_the_file_is_kept(program, tmp_path):
    """An attacker's link named like the new file (to a file the admin can write) is not followed."""
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    (tmp_path / "prod.yaml").symlink_to(victim)
    r = program("svrchain", "init", "prod.yaml", cwd=tmp_path, env=ENV)
    assert r.returncode == 4 and victim.read_text() == "precious\n"


def test_docs_prints_what_the_messages_point_to(program, tmp_path):
    for name, doc in tell.DOCS.items():
        r = program("svrchain", "docs", name, cwd=tmp_path, env=ENV)
        assert r.returncode == 0 and r.stdout == (REPO / doc).read_text()
        assert program("svrchain", "docs", "--path", name, cwd=tmp_path, env=ENV).stdout == f"{REPO / doc}\n"
    assert set(starter.ABOUT) == set(tell.DOCS)
    r = program("svrchain", "docs", "readme", cwd=tmp_path, env=ENV)
    assert r.returncode == 4 and r.stderr.startswith("svrchain: docs readme: no such doc; the docs are output: ")


def test_messages_name_the_program_that_runs(program, tmp_path):
    fab = program("fab", "-r", str(REPO), "verify", "-I", "nothere.yaml", cwd=tmp_path, env=ENV)
    ours = program("svrchain", "verify", "-I", "nothere.yaml", cwd=tmp_path, env=ENV)
    assert fab.stderr.endswith("(every key is explained in inventory/example.yaml)\n")
    assert ours.stderr.endswith("(every key is explained in the example inventory `svrchain init FILE` writes)\n")
    fab = program("fab", "-r", str(REPO), "verify", cwd=tmp_path, env=ENV)
    ours = program("svrchain", "verify", cwd=tmp_path, env=ENV)
    assert "next to the fabfile" in fab.stderr and "inventory/example.yaml" in fab.stderr
    assert "fabfile" not in ours.stderr and "inventory/example.yaml" not in ours.stderr


def test_tell_names_commands_docs_and_the_example():
    saved = tell.program()
    try:
        tell.use("svrchain")
        assert (tell.command("push-key"), tell.doc("schema")) == ("`svrchain push-key`", "`svrchain docs schema`")
        tell.use("fab")
        assert (tell.command("push-key"), tell.doc("schema")) == ("`fab push-key`", "docs/output.schema.json")
        assert tell.example() == "inventory/example.yaml"
        with pytest.raises(ValueError, match=r"^unknown program 'ansible'; one of fab, svrchain$"):
            tell.use("ansible")
        assert tell.program() == "fab"  # a refused name leaves the program as it was
    finally:
        tell.use(saved)


def _strings(tree: ast.AST) -> list[tuple[int, str]]:
    """The string constants of a module that are not docstrings."""
    docs = {id(n.body[0].value) for n in ast.walk(tree)
            if isinstance(n, ast.Module | ast.ClassDef | ast.FunctionDef) and n.body
            and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    return [(n.lineno, n.value) for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs]


def test_no_message_names_fab_or_a_checkout_path_directly():
    """Every message names a command through tell.command and the example through tell.example."""
    found = []
    for path in sorted((REPO / "svrchain").rglob("*.py")):
        if path.name == "tell.py":
            continue
        for line, text in _strings(ast.parse(path.read_text())):
            if "`fab " in text or "inventory/example.yaml" in text or "docs/output" in text:
                found.append(f"{path.relative_to(REPO)}:{line}: {text[:60]}")
    assert found == []
