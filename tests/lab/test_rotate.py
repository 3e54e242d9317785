"""rotate-key on the lab: the new key is proved everywhere before the old one goes, or nothing changes."""

from __future__ import annotations

import pytest

from svrchain.core.errors import HostError
from svrchain.remote.group import Session
from tests.lab.conftest import lab_of
from tests.paths import LAB_INVENTORY

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


# On web1, once rotate-key has added the new key's line (two svrchain lines), /root/.ssh is swapped
# (one bind mount) for a full 16k tmpfs holding the same files: sshd still reads them, so the new key
# is proved, but writing authorized_keys again (removing the old line) fails: no space left.
FILL_AFTER_ADD = (
    "setsid sh -c 'echo $$ >/root/fill.pid; for i in $(seq 2400); do "
    "[ $(grep -c svrchain: /root/.ssh/authorized_keys) -ge 2 ] && { "
    "mkdir -p /root/full && mount -t tmpfs -o size=16k tmpfs /root/full && cp -a /root/.ssh/. /root/full/ && "
    "chmod 700 /root/full && { dd if=/dev/zero of=/root/full/filler bs=1k count=64 2>/dev/null; "
    "mount --bind /root/full /root/.ssh; }; exit; }; sleep 0.05; done' >/dev/null 2>&1 </dev/null &"
)
UNFILL = ("kill $(cat /root/fill.pid) 2>/dev/null; rm -f /root/fill.pid; "
          "umount /root/.ssh 2>/dev/null; umount /root/full 2>/dev/null; rmdir /root/full 2>/dev/null; true")


def test_a_failed_removal_of_the_old_line_is_reported(chain):
    """The old key's line cannot be removed on web1: its own failed line, the fix, a non-zero exit."""
    old = blob(chain)
    with chain.fault("web1", FILL_AFTER_ADD, UNFILL):
        r = chain.fab("rotate-key")
    assert r.returncode == 1, r.stdout + r.stderr
    failed = [ln for ln in r.stdout.splitlines() if ln.startswith("web1") and "remove-old-line" in ln]
    assert failed and "failed" in failed[0] and "push-key" in failed[0], r.stdout
    new = blob(chain)
    assert new != old  # the new key was proved everywhere and is in place
    assert [old in ln for ln in our_lines(chain, "web1")].count(True) == 1  # the old line stays on web1
    assert len(our_lines(chain, "web2")) == 1
    # The fix the message names puts it right.
    assert chain.fab("push-key").returncode == 0
    assert [new in ln for ln in our_lines(chain, "web1")] == [True]
    assert chain.fab("verify").returncode == 0


@pytest.mark.parametrize("script", [
    "head -c 4000000 /dev/zero | tr '\\0' e >&2; echo out",
    "head -c 4000000 /dev/zero | tr '\\0' o; echo err >&2",
])
def test_a_command_with_megabytes_on_one_stream_does_not_stall(chain, script):
    """stdout and stderr are read at the same time: more than the channel's window (2 MB) on one
    of them does not wait for the other (the timeout is short, so a stall fails instead of hanging)."""
    with Session.open(LAB_INVENTORY) as s:
        try:
            r = s.webs[0].run(script, timeout=20)
        except HostError as exc:
            pytest.fail(str(exc))
    assert r.ok
    big, small = (r.stderr, r.stdout) if "echo out" in script else (r.stdout, r.stderr)
    assert len(big) == 4_000_000 and small.strip() in ("out", "err")
