"""make mutation's checks of its own config: a path that names nothing fails loudly, not silently."""

from __future__ import annotations

from pathlib import Path

from tests.mutation_summary import ROOT, config_problems, mutmut_config


def _tree(tmp_path: Path) -> Path:
    """A repository with two modules (one mutated by mutmut) and a docs folder."""
    for name in ("pkg/core/a.py", "pkg/core/b.py", "docs/x.md", "mutants/pkg/core/a.py.meta"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("")
    return tmp_path


def test_the_projects_config_names_real_paths() -> None:
    problems = config_problems(mutmut_config(), ROOT, ROOT / "no-mutants-here")
    assert [p for p in problems if p.startswith(("only_mutate:", "also_copy:"))] == []


def test_a_pattern_that_matches_no_module_is_a_problem(tmp_path: Path) -> None:
    config = {"source_paths": ["pkg/"], "only_mutate": ["pkg/core/a.py", "pkg/old.py"], "also_copy": ["docs/"]}
    assert config_problems(config, _tree(tmp_path), tmp_path / "mutants") == [
        "only_mutate: 'pkg/old.py' matches no module under ['pkg/']"]


def test_a_missing_copy_is_a_problem(tmp_path: Path) -> None:
    config = {"source_paths": ["pkg/"], "only_mutate": ["pkg/core/a.py"], "also_copy": ["docs/", "tasks/"]}
    assert config_problems(config, _tree(tmp_path), tmp_path / "mutants") == ["also_copy: 'tasks/' does not exist"]


def test_a_module_mutmut_did_not_mutate_is_a_problem(tmp_path: Path) -> None:
    config = {"source_paths": ["pkg/"], "only_mutate": ["pkg/core/*.py"], "also_copy": []}
    assert config_problems(config, _tree(tmp_path), tmp_path / "mutants") == [
        "pkg/core/b.py is in only_mutate but mutmut made no mutants of it (no pkg/core/b.py.meta in mutants/)"]
