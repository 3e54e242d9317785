"""File plans as data: tests/unit/fixtures/plan/ holds each spec and state, the reasons and the exact diff."""

from __future__ import annotations

import pytest

from svrchain.core.plan import FileSpec, FileState, Outcome, file_change
from tests.unit.cases import cases


def as_bytes(text: str) -> bytes:
    return text.encode("latin-1")  # the fixtures' \xNN escapes are the bytes themselves


@pytest.mark.parametrize("case", cases("plan/changes.yaml"))
def test_file_change(case):
    s = case["spec"]
    spec = FileSpec("/etc/x", as_bytes(s["content"]), s.get("mode", 0o644), s.get("owner", "root"),
                    s.get("group", "root"))
    st = case["state"]
    state = FileState("/etc/x", st["exists"], as_bytes(st.get("content", "")), st.get("mode"), st.get("owner"),
                      st.get("group"))
    change = file_change(spec, state)
    if case["reasons"] is None:
        assert change is None
        return
    assert change.reasons == tuple(case["reasons"])
    assert change.diff() == case["diff"]


def test_outcome_failed_only_when_failed():
    assert [Outcome("web1", "push-key", s).failed for s in ("ok", "changed", "would change", "failed")] == [
        False, False, False, True]
    assert Outcome("web1", "push-key", "ok").diffs == []


def test_spec_checksum():
    assert FileSpec("/etc/x", b"a\n", 0o644).sha256 == (
        "87428fc522803d31065e7bce3cf03fe475096631e5e07bbd7a0fde60c4cf25c7")
