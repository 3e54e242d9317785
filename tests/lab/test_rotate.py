"""rotate-key on the lab: the new key is proved everywhere before the old one goes, or nothing changes."""

from __future__ import annotations

import pytest

from tests.lab.conftest import lab_of

pytestmark = pytest.mark.lab
WEBS = ("web1", "web2")


@pytest.fixture(scope="module")
def lab():
    """Rotation does not depend on the init system: SysV hosts."""
    yield from lab_of("sysv")


def blob(lab) -> str:
    return lab.host("db").file("/root/.ssh/svr_restart_key.pub").content_string.split()[1]


def our_lines(lab, web: str) -> list[str]:
    text = lab.host(web).file("/root/.ssh/authorized_keys").content_string
    return [ln for ln in text.splitlines() if "svrchain:" in ln]


def test_rotation_that_fails_somewhere_changes_nothing(chain):
    old = blob(chain)
    before = {w: chain.host(w).file("/root/.ssh/authorized_keys").content for w in WEBS}
    # The DB host cannot reach web2.
    with chain.fault("db", "ip route add blackhole 198.18.0.22", "ip route del blackhole 198.18.0.22"):
        r = chain.fab("rotate-key")
    assert r.returncode == 1
    assert "rotation stopped: the new key did not work on web2" in r.stdout, r.stdout
    assert blob(chain) == old
    assert not chain.host("db").file("/root/.ssh/svr_restart_key.new").exists
    assert {w: chain.host(w).file("/root/.ssh/authorized_keys").content for w in WEBS} == before
    assert chain.fab("verify").returncode == 0


def test_rotation_replaces_the_key_everywhere(chain):
    old = blob(chain)
    r = chain.fab("rotate-key")
    assert r.returncode == 0, r.stdout + r.stderr
    new = blob(chain)
    assert new != old
    for web in WEBS:
        lines = our_lines(chain, web)
        assert len(lines) == 1 and new in lines[0] and old not in lines[0]
    assert chain.fab("verify").returncode == 0
    before = chain.host("web1").check_output("cat /var/run/apache2/apache2.pid")
    chain.host("db").check_output("service dbora restart")  # the trigger uses the new key
    status, _ = chain.wait_page("web1", 200)
    assert status == 200
    assert chain.host("web1").check_output("cat /var/run/apache2/apache2.pid") != before
