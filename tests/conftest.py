"""Test-wide settings: hypothesis is deterministic in `make test` (the same examples on every run, so CI
never fails on a new random draw); `make fuzz` draws new examples each run to look for more."""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("test", derandomize=True)
settings.register_profile("fuzz", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "test"))
