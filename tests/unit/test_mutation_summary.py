"""make mutation's checks of its own config: a path that names nothing fails loudly, not silently."""

from __future__ import annotations

import json
from pathlib import Path

from tests.mutation_summary import ROOT, config_problems, equivalent_problems, mutmut_config, summary


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


def _results(tmp_path: Path, codes: dict[str, int | None]) -> Path:
    """A mutants/ folder whose one module, core/a.py, has these results."""
    meta = tmp_path / "mutants" / "svrchain" / "core" / "a.py.meta"
    meta.parent.mkdir(parents=True)
    meta.write_text(json.dumps({"exit_code_by_key": codes}))
    return tmp_path / "mutants"


def test_an_equivalent_entry_that_names_no_mutant_or_a_killed_one_is_a_problem(tmp_path: Path) -> None:
    mutants = _results(tmp_path, {"svrchain.core.a.x_f__mutmut_1": 0, "svrchain.core.a.x_f__mutmut_2": 1,
                                  "svrchain.core.a.x_f__mutmut_3": -24})
    # a timeout (SIGXCPU: on a loaded machine too) proves nothing either way
    assert equivalent_problems(mutants, {"svrchain.core.a.x_f__mutmut_1", "svrchain.core.a.x_f__mutmut_3"}) == []
    assert equivalent_problems(mutants, {"svrchain.core.a.x_f__mutmut_2", "svrchain.core.a.x_g__mutmut_1"}) == [
        "mutation-equivalent.md: svrchain.core.a.x_f__mutmut_2 is killed by a test, so it is not equivalent",
        "mutation-equivalent.md: svrchain.core.a.x_g__mutmut_1 names no mutant (its function changed? see "
        "`mutmut show`)"]


def test_the_rate_leaves_equivalents_out_and_counts_unchecked_mutants_as_survivors(tmp_path: Path) -> None:
    mutants = _results(tmp_path, {"m_1": 1, "m_2": 0, "m_3": 36, "m_4": None, "m_5": 0})
    lines, rates = summary(mutants, {"m_5"})
    assert rates == {"core/a": 50.0, "TOTAL": 50.0}
    assert lines[1].split() == ["core/a", "5", "2", "1", "1", "50.0%"]
    assert lines[-1] == "(1 mutant(s) not checked yet: run make mutation to the end)"
    assert summary(mutants, set(), ["core/b"])[1] == {"TOTAL": 100.0}
