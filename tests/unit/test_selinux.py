"""SELinux (svrchain/core/selinux.py): the atomic write's restorecon and verify's context check, run here as
the real shell snippets against stand-ins on PATH for selinuxenabled, restorecon and matchpathcon (the
lab has no SELinux). Expected values are written here."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from svrchain.core import selinux
from svrchain.remote.files import WRITE_SCRIPT

AS_ROOT = os.geteuid() == 0


def stand_ins(tmp_path: Path, enabled: bool = True, restorecon_fails: bool = False) -> dict[str, str]:
    """A PATH whose selinuxenabled, restorecon and matchpathcon are stand-ins; restorecon records its
    user id and arguments in calls, matchpathcon says a path under 'wrong' has the wrong context."""
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    calls = tmp_path / "calls"
    calls.touch()
    calls.chmod(0o666)
    scripts = {
        "selinuxenabled": f"exit {0 if enabled else 1}",
        "restorecon": f'echo "$(id -u) $*" >> {calls}; ' + ('echo "restorecon: no policy" >&2; exit 1'
                                                             if restorecon_fails else "exit 0"),
        "matchpathcon": 'p=${@: -1}; case $p in *wrong*) echo "$p has context unconfined_u:object_r:user_home_t:s0, '
                        'should be system_u:object_r:ssh_home_t:s0"; exit 1 ;; esac; echo "$p verified."',
    }
    for name, body in scripts.items():
        (bin_ / name).write_text(f"#!/bin/bash\n{body}\n")
        (bin_ / name).chmod(0o755)
    return {"PATH": f"{bin_}:/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}


def write(tmp_path: Path, env: dict[str, str], path: Path, runas: str = "-", pmode: str = "700"
          ) -> subprocess.CompletedProcess:
    content = b"ssh-ed25519 AAAA svrchain\n"
    owner = "root:root" if runas == "-" else f"{runas}:{runas}"
    return subprocess.run(["bash", "-c", WRITE_SCRIPT, "write", str(path), "600", owner,
                           hashlib.sha256(content).hexdigest(), str(tmp_path / "backups"), pmode, "-", runas],
                          input=content, capture_output=True, env=env)


def calls(tmp_path: Path) -> list[str]:
    return (tmp_path / "calls").read_text().splitlines()


@pytest.mark.skipif(not AS_ROOT, reason="writes a file owned by root, as the hosts' root does")
def test_a_written_file_and_the_directory_made_for_it_get_their_default_context(tmp_path):
    env = stand_ins(tmp_path)
    f = tmp_path / "home" / ".ssh" / "authorized_keys"
    (tmp_path / "home").mkdir()
    r = write(tmp_path, env, f)
    assert r.returncode == 0, r.stderr
    assert calls(tmp_path) == [f"0 -- {f.parent} {f}"]
    assert write(tmp_path, env, f).returncode == 0  # the directory exists now: the file alone
    assert calls(tmp_path)[1:] == [f"0 -- {f}"]


@pytest.mark.skipif(not AS_ROOT, reason="runs as another account through setpriv")
def test_in_an_account_home_restorecon_runs_as_the_account(tmp_path):
    base = Path(tempfile.mkdtemp(prefix="svrchain-selinux-", dir="/tmp"))  # a path nobody can walk
    try:
        base.chmod(0o755)
        env = stand_ins(base)
        home = base / "nobody"
        home.mkdir()
        os.chown(home, 65534, 65534)
        r = write(tmp_path, env, home / ".ssh" / "authorized_keys", runas="nobody")
        assert r.returncode == 0, r.stderr
        assert calls(base) == [f"65534 -- {home}/.ssh {home}/.ssh/authorized_keys"]  # never root in the home
    finally:
        shutil.rmtree(base)


@pytest.mark.skipif(not AS_ROOT, reason="writes a file owned by root")
def test_without_selinux_nothing_is_relabelled(tmp_path):
    env = stand_ins(tmp_path, enabled=False)
    (tmp_path / "d").mkdir()
    assert write(tmp_path, env, tmp_path / "d" / "f").returncode == 0
    assert calls(tmp_path) == []


@pytest.mark.skipif(not AS_ROOT, reason="writes a file owned by root")
def test_a_failed_restorecon_is_one_line_and_a_failed_step(tmp_path):
    env = stand_ins(tmp_path, restorecon_fails=True)
    (tmp_path / "d").mkdir()
    f = tmp_path / "d" / "f"
    r = write(tmp_path, env, f)
    assert r.returncode == 7
    assert r.stderr.decode().strip() == (f"{f} is written, but restorecon failed (restorecon: no policy): its SELinux "
                                         f"context may keep sshd or init from using it; run restorecon -v {f}")


def check(tmp_path: Path, env: dict[str, str], *paths: str) -> str:
    return subprocess.run(["bash", "-c", selinux.CHECK, "check", *paths], capture_output=True, text=True,
                          env=env).stdout


def test_verify_names_a_file_with_the_wrong_context(tmp_path):
    env = stand_ins(tmp_path)
    good, bad = tmp_path / "gate", tmp_path / "wrong" / "authorized_keys"
    bad.parent.mkdir()
    good.touch()
    bad.touch()
    said = check(tmp_path, env, str(good), str(bad), str(tmp_path / "missing"))
    wrong = selinux.wrong_contexts(said)
    assert wrong == [f"{bad}: {bad} has context unconfined_u:object_r:user_home_t:s0, should be "
                     "system_u:object_r:ssh_home_t:s0"]
    ok, detail = selinux.check_detail([str(good), str(bad)], wrong)
    assert not ok and detail.endswith("(run restorecon -v on it, or `fab bootstrap` rewrites it with restorecon)")
    assert selinux.check_detail([str(good)], []) == (True, "the default context on all 1 file(s) svrchain wrote")


def test_verify_has_no_selinux_check_where_it_is_off(tmp_path):
    assert selinux.wrong_contexts(check(tmp_path, stand_ins(tmp_path, enabled=False), "/etc/passwd")) is None
    no_tools = {"PATH": str(tmp_path / "empty"), "LC_ALL": "C"}
    assert selinux.wrong_contexts(subprocess.run(["/bin/bash", "-c", selinux.CHECK, "c", "/etc"], capture_output=True,
                                                 text=True, env=no_tools).stdout) is None
