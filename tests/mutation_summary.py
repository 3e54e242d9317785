"""make mutation's summary: killed, survived and total mutants per pure module, from mutmut's results.

A mutant counts as killed when a test failed (or timed out) with it; one that no test reaches counts
as a survivor. Mutants listed in tests/mutation-equivalent.md (they cannot change behaviour, each with
its reason) are shown apart and left out of the kill rate. Exits 1 when a module's rate (or the
total) is under --min, or when [tool.mutmut] names a path that matches nothing (an only_mutate pattern
with no module, an also_copy path that does not exist) or a module that mutmut did not mutate: a
layout change must fail loudly, not pass with fewer modules. An equivalents entry that names no mutant,
or a mutant a test kills, is a problem too (mutmut numbers a function's mutants in order: an entry
left behind by a change to its function names another mutant, or none). With --module, only those
modules are shown and judged (make mutation MODULE=...).
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import re
import sys
import tomllib
from collections import Counter
from pathlib import Path

from mutmut.stats import status_by_exit_code

ROOT = Path(__file__).resolve().parent.parent
EQUIVALENT = ROOT / "tests" / "mutation-equivalent.md"
PYPROJECT = ROOT / "pyproject.toml"


def mutmut_config(pyproject: Path = PYPROJECT) -> dict:
    """The [tool.mutmut] table of pyproject.toml."""
    return tomllib.loads(pyproject.read_text())["tool"]["mutmut"]


def config_problems(config: dict, root: Path, mutants: Path) -> list[str]:
    """What in the config names nothing: patterns with no module, missing copies, modules not mutated."""
    sources = sorted(str(p.relative_to(root)) for s in config.get("source_paths", [])
                     for p in (root / s).rglob("*.py"))
    problems = [f"only_mutate: {pattern!r} matches no module under {config.get('source_paths')}"
                for pattern in config.get("only_mutate", [])
                if not any(fnmatch.fnmatch(path, pattern) for path in sources)]
    problems += [f"also_copy: {path!r} does not exist" for path in config.get("also_copy", [])
                 if not (root / path).exists()]
    problems += [f"{path} is in only_mutate but mutmut made no mutants of it (no {path}.meta in {mutants.name}/)"
                 for path in sources if any(fnmatch.fnmatch(path, p) for p in config.get("only_mutate", []))
                 and not (mutants / f"{path}.meta").exists()]
    return problems


def equivalent_names(path: Path = EQUIVALENT) -> set[str]:
    """The mutants named (in backquotes, at the start of a list item) in the equivalents file."""
    if not path.exists():
        return set()
    return set(re.findall(r"^- `([\w.ǁ]+__mutmut_\d+)`", path.read_text(), re.M))


def exit_codes(mutants: Path) -> dict[Path, dict[str, int | None]]:
    """mutmut's result for every mutant (None: not checked yet), by module (``core/webtier.py``)."""
    return {meta.relative_to(mutants / "svrchain").with_suffix(""): json.loads(meta.read_text())["exit_code_by_key"]
            for meta in sorted((mutants / "svrchain").rglob("*.py.meta"))}


def equivalent_problems(mutants: Path, equivalent: set[str]) -> list[str]:
    """Equivalents entries that name no mutant, or a mutant a test kills: left behind by a change."""
    codes = {name: code for by_name in exit_codes(mutants).values() for name, code in by_name.items()}
    return [f"{EQUIVALENT.name}: {name} names no mutant (its function changed? see `mutmut show`)"
            if name not in codes else f"{EQUIVALENT.name}: {name} is killed by a test, so it is not equivalent"
            for name in sorted(equivalent)
            if name not in codes or status_by_exit_code[codes[name]] == "killed"]  # (a timeout proves nothing)


def summary(mutants: Path, equivalent: set[str],
            modules: list[str] | None = None) -> tuple[list[str], dict[str, float]]:
    """The table's lines and each module's kill rate (and the TOTAL's); ``modules`` (``core/webtier``):
    only those."""
    rows, total = [], Counter()
    for meta in sorted((mutants / "svrchain").rglob("*.py.meta")):
        if modules and str(meta.relative_to(mutants / "svrchain")).removesuffix(".py.meta") not in modules:
            continue
        counts: Counter[str] = Counter()
        for name, code in json.loads(meta.read_text())["exit_code_by_key"].items():
            status = status_by_exit_code[code]
            if name in equivalent:
                counts["equivalent"] += 1
            elif status in ("killed", "timeout", "caught by type check"):
                counts["killed"] += 1
            elif status == "not checked":
                counts["not checked"] += 1
            else:  # survived, no tests, suspicious, skipped
                counts["survived"] += 1
        total += counts
        rows.append((str(meta.relative_to(mutants / "svrchain")).removesuffix(".py.meta"), counts))
    rows.append(("TOTAL", total))
    lines, rates = [f"{'module':<20}{'mutants':>9}{'killed':>8}{'survived':>10}{'equivalent':>12}{'kill rate':>11}"], {}
    for module, c in rows:
        counted = c["killed"] + c["survived"] + c["not checked"]
        rates[module] = rate = 100.0 * c["killed"] / counted if counted else 100.0
        lines.append(f"{module:<20}{counted + c['equivalent']:>9}{c['killed']:>8}{c['survived']:>10}"
                     f"{c['equivalent']:>12}{rate:>10.1f}%")
    if total["not checked"]:
        lines.append(f"({total['not checked']} mutant(s) not checked yet: run make mutation to the end)")
    return lines, rates


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mutants", type=Path, default=ROOT / "mutants")
    parser.add_argument("--min", type=float, default=90.0, help="the least kill rate (percent) that passes")
    parser.add_argument("--out", type=Path, help="also write the summary to this file")
    parser.add_argument("--module", action="append", default=[],
                        help="judge only this module (svrchain/core/webtier.py); may be repeated")
    args = parser.parse_args()
    modules = [m.removeprefix("svrchain/").removesuffix(".py") for m in args.module]
    problems = config_problems(mutmut_config(), ROOT, args.mutants)
    problems += equivalent_problems(args.mutants, equivalent_names())
    lines, rates = summary(args.mutants, equivalent_names(), modules)
    problems += [f"--module {m}: no such module among mutmut's results" for m in args.module
                 if m.removeprefix("svrchain/").removesuffix(".py") not in rates]
    text = "\n".join(lines + problems) + "\n"
    sys.stdout.write(text)
    if args.out:
        args.out.write_text(text)
    low = [f"{module} {rate:.1f}%" for module, rate in rates.items() if rate < args.min]
    if low:
        print(f"kill rate under {args.min:.0f}%: {', '.join(low)}: see `mutmut results` and `mutmut show NAME`")
    return 1 if low or problems else 0


if __name__ == "__main__":
    sys.exit(main())
