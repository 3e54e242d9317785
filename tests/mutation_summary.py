"""make mutation's summary: killed, survived and total mutants per pure module, from mutmut's results.

A mutant counts as killed when a test failed (or timed out) with it; one that no test reaches counts
as a survivor. Mutants listed in tests/mutation-equivalent.md (they cannot change behaviour, each with
its reason) are shown apart and left out of the kill rate. Exits 1 when the rate is under --min.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from pathlib import Path

from mutmut.stats import status_by_exit_code

ROOT = Path(__file__).resolve().parent.parent
EQUIVALENT = ROOT / "tests" / "mutation-equivalent.md"


def equivalent_names(path: Path = EQUIVALENT) -> set[str]:
    """The mutants named (in backquotes, at the start of a list item) in the equivalents file."""
    if not path.exists():
        return set()
    return set(re.findall(r"^- `([\w.ǁ]+__mutmut_\d+)`", path.read_text(), re.M))


def summary(mutants: Path, equivalent: set[str]) -> tuple[list[str], float]:
    rows, total = [], Counter()
    for meta in sorted((mutants / "svrchain").rglob("*.py.meta")):
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
    lines = [f"{'module':<16}{'mutants':>9}{'killed':>8}{'survived':>10}{'equivalent':>12}{'kill rate':>11}"]
    for module, c in rows:
        counted = c["killed"] + c["survived"] + c["not checked"]
        rate = 100.0 * c["killed"] / counted if counted else 100.0
        lines.append(f"{module:<16}{counted + c['equivalent']:>9}{c['killed']:>8}{c['survived']:>10}"
                     f"{c['equivalent']:>12}{rate:>10.1f}%")
    if total["not checked"]:
        lines.append(f"({total['not checked']} mutant(s) not checked yet: run make mutation to the end)")
    counted = total["killed"] + total["survived"] + total["not checked"]
    return lines, 100.0 * total["killed"] / counted if counted else 100.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mutants", type=Path, default=ROOT / "mutants")
    parser.add_argument("--min", type=float, default=90.0, help="the least kill rate (percent) that passes")
    parser.add_argument("--out", type=Path, help="also write the summary to this file")
    args = parser.parse_args()
    lines, rate = summary(args.mutants, equivalent_names())
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    if args.out:
        args.out.write_text(text)
    if rate < args.min:
        print(f"kill rate {rate:.1f}% is under {args.min:.0f}%: see `mutmut results` and `mutmut show NAME`")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
