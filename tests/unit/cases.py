"""Table-driven tests: each fixture file under tests/unit/fixtures/<module>/ is a list of cases, each with
its expected value written in the file (never computed from the code under test)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

FIXTURES = Path(__file__).resolve().parent / "fixtures"

# The keys the authkeys fixtures name as {OURS}, {OTHER} and {OLDER}: ssh-ed25519 blobs written out here.
BLOBS = {
    "OURS": "AAAAC3NzaC1lZDI1NTE5AAAAIG91cnN4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4",
    "OTHER": "AAAAC3NzaC1lZDI1NTE5AAAAIG90aGVyeHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4",
    "OLDER": "AAAAC3NzaC1lZDI1NTE5AAAAIG9sZGVyeHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4",
}


def expand(value):
    """``value`` with {OURS}, {OTHER} and {OLDER} replaced by their blobs, in strings, lists and dicts."""
    if isinstance(value, str):
        for name, blob in BLOBS.items():
            value = value.replace("{" + name + "}", blob)
        return value
    if isinstance(value, list):
        return [expand(v) for v in value]
    if isinstance(value, dict):
        return {k: expand(v) for k, v in value.items()}
    return value


# libyaml's safe loader where PyYAML has it: the same values for every fixture here, read ~7 times faster
# (they are read while collecting, by every process that runs tests).
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def cases(path: str) -> list:
    """The cases of one fixture file (``module/name.yaml``) as pytest params, each with its ``id``."""
    data = yaml.load((FIXTURES / path).read_text(), Loader=_LOADER)
    return [pytest.param(expand(c), id=c["id"]) for c in data]
