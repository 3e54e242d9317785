"""Documented, distinct exit codes: each error class maps to its code through svr_task."""

from __future__ import annotations

import pytest
from invoke import Context, Exit

from svrchain.cli import svr_task
from svrchain.core.errors import (
    BadInventory,
    GapFound,
    HostError,
    HostUnreachable,
    SvrchainError,
    Unreachable,
    UsageError,
    exit_code,
)
from svrchain.core.inventory import InventoryError

CODES = [
    (SvrchainError("restart-chain: web1 not healthy"), 1),
    (HostError("web1 (198.18.0.21:22): writing /x failed: disk full"), 1),
    (GapFound("verify: 2 gap(s) on web1"), 2),
    (Unreachable("push-key: failed on web2 (see above)"), 3),
    (HostUnreachable("web2 (198.18.0.22:22): connection refused"), 3),
    (BadInventory("inv.yaml: connect.identity: missing"), 4),
    (InventoryError("inv.yaml:3: db.adress: unknown key"), 4),
    (UsageError("-H/--hosts: svrchain takes its hosts from the inventory"), 4),
    (RuntimeError("not ours"), 1),
]


@pytest.mark.parametrize(("error", "code"), CODES, ids=[type(e).__name__ for e, _ in CODES])
def test_error_class_has_its_exit_code(error, code):
    assert exit_code(error) == code


@pytest.mark.parametrize(("error", "code"), [c for c in CODES if isinstance(c[0], SvrchainError)],
                         ids=[type(e).__name__ for e, _ in CODES if isinstance(e, SvrchainError)])
def test_svr_task_exits_with_the_code_and_one_line(error, code):
    @svr_task
    def failing(c: Context) -> None:
        """A task that fails."""
        raise error

    with pytest.raises(Exit) as info:
        failing(Context())
    assert info.value.code == code
    assert info.value.message == f"svrchain: {error}"


def test_declined_and_interrupted_have_their_own_codes():
    from svrchain.core.errors import Declined, Interrupted

    assert exit_code(Declined("not confirmed; nothing was changed")) == 5
    assert exit_code(Interrupted(2)) == 130 and "Ctrl-C (SIGINT)" in str(Interrupted(2))
    assert exit_code(Interrupted(15)) == 143 and "SIGTERM" in str(Interrupted(15))
    assert {c for _, c in CODES} | {5, 130, 143} == {1, 2, 3, 4, 5, 130, 143}  # each its own meaning
