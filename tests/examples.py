"""How many examples a property test draws. ``make unit`` and ``make test``: enough to keep each property
honest, and the same ones every run (derandomized: tests/conftest.py), so the fast loop stays fast and CI
never fails on a new draw. ``make fuzz`` (HYPOTHESIS_PROFILE=fuzz): many more, new ones each run."""

from __future__ import annotations

import os

FUZZING = os.environ.get("HYPOTHESIS_PROFILE") == "fuzz"


def examples(unit: int, fuzz: int) -> int:
    """``unit`` examples in make unit and make test, ``fuzz`` in make fuzz."""
    return fuzz if FUZZING else unit
