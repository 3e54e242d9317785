"""doctor's judgement (svrchain/core/webtier.py) function by function, on values a probe could give:
the edges the whole-host cases of test_doctor.py do not reach. Expected values written here by hand."""

from __future__ import annotations

import pytest

from svrchain.core import webtier
from svrchain.core.webtier import Php, Setting

WORKERS = "up to 150 requests"
FIX = "fix: oci8.ping_interval = 0 (a ping before each reuse), in the php.ini above"


def oci8(**settings: str) -> dict[str, webtier.Finding]:
    p = Php("libphp8.2.so", settings={k: Setting(v, "php.ini:9", v) for k, v in settings.items()})
    return {f.check: f for f in webtier.oci8_findings(p, WORKERS)}


@pytest.mark.parametrize(("value", "ok", "detail"), [
    # set but empty: PHP's default, 60
    ("", False, "Off (php.ini:9): a connection used again within 60s is not checked (on a busy server, every one): "
                f"after a DB restart {WORKERS} can fail; {FIX}"),
    ("1", False, "1 (php.ini:9): a connection used again within 1s is not checked (on a busy server, every one): "
                 f"after a DB restart {WORKERS} can fail; {FIX}"),
    ("-1", False, "-1 (php.ini:9): dead connections are never detected before use: after a DB restart "
                  f"{WORKERS} fail (ORA-03113/ORA-03135) until the chain restarts Apache; {FIX}"),
])
def test_oci8_ping_interval_edges(value: str, ok: bool, detail: str) -> None:
    row = oci8(**{"oci8.ping_interval": value})["oci8.ping_interval"]
    assert (row.ok, row.detail) == (ok, detail)


def test_oci8_events_off_says_what_to_set_with_rac() -> None:
    assert oci8()["oci8.events"].detail == (
        "Off (not set: PHP default): off: Oracle FAN notices are ignored; with RAC, Data Guard or Oracle Restart set "
        "oci8.events = On so dead connections are dropped when the database goes down")


@pytest.mark.parametrize(("value", "detail"), [
    ("", "Off (php.ini:9): idle persistent connections are kept until the process ends"),  # set but empty: -1
    ("-1", "-1 (php.ini:9): idle persistent connections are kept until the process ends"),
    ("0", "0 (php.ini:9): a connection idle 0s is closed"),
])
def test_oci8_persistent_timeout(value: str, detail: str) -> None:
    assert oci8(**{"oci8.persistent_timeout": value})["oci8.persistent_timeout"].detail == detail
