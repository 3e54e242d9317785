"""The web server's fact read for real: the whole probe of facts/web.py run as sh on this machine, over a
home, a gate, a state tree made here, with stand-ins for the programs this machine may lack (sudo and
visudo, SELinux's selinuxenabled and matchpathcon), each of which answers only the exact question the
probe must ask. What the commands do on a real web server (sshd, sudo's own rules, SELinux, the host
keys) is the lab's to prove (tests/lab/)."""

from __future__ import annotations

import glob
import grp
import os
import pwd
from pathlib import Path

import pytest

from svrchain.core import authkeys, render
from svrchain.core.inventory import Inventory
from svrchain.core.plan import FileState
from svrchain.facts import web
from svrchain.facts.web import WebFact, WebFacts
from tests.unit.test_facts import read_here, web_inv

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the probe reads an account's files as that account "
                                                          "(setpriv), which needs root")

# Each stand-in refuses any question but the probe's (exit 1, its words on stderr).
STAND_INS = {
    "sudo": """[ "$*" = "-n -l -U $EXPECT_USER" ] || { echo "stand-in sudo: asked $*" >&2; exit 1; }
printf 'Matching Defaults entries for %s on here:\\n    env_reset\\n\\n' "$4"
printf 'User %s may run the following commands on here:\\n    (root) NOPASSWD: /usr/sbin/apachectl graceful\\n' "$4"
""",
    "visudo": 'echo "stand-in visudo: never run by the probe" >&2; exit 1\n',
    "selinuxenabled": "exit 0\n",
    "matchpathcon": """[ "$1" = -V ] && [ "$2" = -- ] && [ $# = 3 ] ||
    { echo "stand-in matchpathcon: asked $*" >&2; exit 1; }
echo "$3 verified."
""",
}


class HereWeb(WebFact):
    """The web fact with web.user's home, group and name given (the prelude that finds them in the
    passwd database is run here by test_facts.py)."""

    def __init__(self, user: str, home: Path, group: str) -> None:
        self.user, self.home, self.group = user, home, group

    def prelude(self, inv: Inventory) -> str:
        return f"U={self.user}; H={self.home}; G={self.group}"


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Inventory, HereWeb, Path]:
    """web.user (this process's account) with a home holding ~/.ssh/authorized_keys, svrchain's gate and
    its state tree in ``tmp_path``, and the stand-ins first on PATH."""
    user = pwd.getpwuid(os.getuid()).pw_name
    group = grp.getgrgid(os.getgid()).gr_name
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in STAND_INS.items():
        (bin_dir / name).write_text("#!/bin/sh\n" + body)
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("EXPECT_USER", user)
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh").chmod(0o700)
    (home / ".ssh" / "authorized_keys").write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG91cnN4 admin@ws\n")
    (home / ".ssh" / "authorized_keys").chmod(0o600)
    gate = tmp_path / "svr-restart-gate"
    gate.write_text("#!/bin/sh\n# the gate\n")
    gate.chmod(0o755)
    state = tmp_path / "state"
    (state / "gate" / user).mkdir(parents=True)
    for d, mode in ((state, 0o755), (state / "gate", 0o711), (state / "gate" / user, 0o700)):
        d.chmod(mode)
    (state / "gate" / "stray").write_text("")  # beside the per-account directories: does not belong there
    (state / "gate" / user / "link").symlink_to("/etc/passwd")  # a link in the account's own: neither
    for name, value in (("GATE", gate), ("SUDOERS", tmp_path / "sudoers.d" / "svrchain"),
                        ("STATE_PARENT", state), ("GATE_STATE", state / "gate")):
        monkeypatch.setattr(render, name, str(value))
    return web_inv(user), HereWeb(user, home, group), tmp_path


def test_the_web_facts_read_here(here: tuple[Inventory, HereWeb, Path]) -> None:
    inv, fact, tmp_path = here
    user, group, home, state = fact.user, fact.group, fact.home, tmp_path / "state"
    f = read_here(inv, fact)
    assert isinstance(f, WebFacts)
    assert (f.user, f.home, f.group, f.account, f.created) == (user, str(home), group, True, False)
    assert f.keys == FileState(f"{home}/.ssh/authorized_keys", True,
                               b"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG91cnN4 admin@ws\n", 0o600, user, group)
    assert (f.sshdir, f.unsafe) == (f"700 {user}", None)
    assert f.gate == FileState(render.GATE, True, b"#!/bin/sh\n# the gate\n", 0o755, user, group)
    assert f.sudoers == FileState(render.SUDOERS, False)
    assert (f.sudo, f.sudo_rules) == (True, ("(root) NOPASSWD: /usr/sbin/apachectl graceful",))
    assert f.statedir_exists and f.statedir.splitlines() == [
        f"directory 755 {user} {group}", f"directory 711 {user} {group}", f"directory 700 {user} {group}",
        f"{state}/gate/stray", f"{state}/gate/{user}/link"]
    # SELinux "on" (the stand-ins): each file svrchain writes here that exists, checked by its path
    assert f.selinux.splitlines() == [f"ok {render.GATE}", f"ok {home}/.ssh", f"ok {home}/.ssh/authorized_keys"]
    assert web.selinux_paths(inv, str(home))[1:] == [f"{home}/.ssh", f"{home}/.ssh/authorized_keys"]
    held = [line for p in sorted(glob.glob("/etc/ssh/ssh_host_*_key.pub")) for line in Path(p).read_text().splitlines()]
    assert [line for line in f.hostkeys if line.split(" ")[0] in authkeys.KEY_TYPES] == held  # this machine's, if any


def test_without_visudo_or_a_state_tree(here: tuple[Inventory, HereWeb, Path]) -> None:
    """sudo alone is not enough (push-key checks its rule with visudo); no gate state tree at all."""
    inv, fact, tmp_path = here
    (tmp_path / "bin" / "visudo").unlink()
    os.rename(tmp_path / "state", tmp_path / "gone")
    f = read_here(inv, fact)
    assert isinstance(f, WebFacts)
    assert (f.sudo, f.statedir_exists) == (False, False)
