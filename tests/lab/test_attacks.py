"""The attack matrix on the lab's real sshd: the restricted key does nothing but its one job."""

from __future__ import annotations

import pytest

from tasks.attacks import ATTACKS
from tests.lab.conftest import lab_of

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def lab():
    """The key's refusals are sshd's and the gate's, the same on either init system: SysV hosts."""
    yield from lab_of("sysv")


def apache_pid(lab, web: str) -> str:
    return lab.host(web).check_output("cat /var/run/apache2/apache2.pid")


def test_every_attack_is_refused_and_nothing_restarts(chain):
    before = {w: apache_pid(chain, w) for w in ("web1", "web2")}
    r = chain.fab("verify", "--attacks", timeout=600)
    print(r.stdout)  # the matrix, in the test output
    assert r.returncode == 0, r.stdout + r.stderr
    rows = [ln for ln in r.stdout.splitlines() if ln.startswith(("web1 ", "web2 "))]
    matrix = [ln for ln in rows if ln.rstrip().endswith("refused")]
    assert len(matrix) == 2 * len(ATTACKS), r.stdout
    assert {w: apache_pid(chain, w) for w in ("web1", "web2")} == before  # no attack restarted Apache
    assert not chain.host("web1").file("/tmp/svrchain-scp-attack").exists
    assert "REFUSED: 'id'" in chain.host("web1").file("/var/log/auth.log").content_string
