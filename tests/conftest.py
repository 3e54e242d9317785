"""Test-wide settings: hypothesis is deterministic in `make test` (the same examples on every run, so CI
never fails on a new random draw); `make fuzz` draws new examples each run to look for more. And the
summary of passed tests' output (``-rP``) is printed in linear time."""

from __future__ import annotations

import os

from _pytest.terminal import TerminalReporter
from hypothesis import settings

settings.register_profile("test", derandomize=True)
settings.register_profile("fuzz", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "test"))


# pytest's -rP summary looks up each passed test's teardown reports by scanning every setup and teardown
# report (TerminalReporter._get_teardown_reports): quadratic, ~3 s of make unit's ~1300 tests, all of it
# after the last test ended. The same reports, in the same order, from an index built once per summary.
def _teardown_reports(self: TerminalReporter, node_id):
    seen = len(self.stats.get("", ()))
    index = getattr(self, "_teardown_index", None)
    if index is None or index[0] != seen:
        by_id: dict = {}
        for report in self.getreports(""):
            if report.when == "teardown":
                by_id.setdefault(report.id, []).append(report)
        index = self._teardown_index = (seen, by_id)
    return list(index[1].get(node_id, ()))


if hasattr(TerminalReporter, "_get_teardown_reports"):
    TerminalReporter._get_teardown_reports = _teardown_reports
