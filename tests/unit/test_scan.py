"""homes.SCAN run here, in the probe as it runs on a web server: every account's authorized_keys
files where sshd reads them, located in one pass (a fake ``getent`` and ``sshd -T`` on PATH give the
accounts and sshd's AuthorizedKeysFile), each file read and reported."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from svrchain.core import homes
from svrchain.remote.files import probe_script

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="reads the files as each account (setpriv): root only")


def scan(tmp_path: Path, passwd: list[str], patterns: str) -> list[homes.KeysFile]:
    """Run SCAN with ``passwd`` as getent's accounts and ``patterns`` as sshd's AuthorizedKeysFile."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "getent").write_text("#!/bin/sh\nprintf '%s\\n' " + " ".join(f"'{p}'" for p in passwd) + "\n")
    (bin_dir / "sshd").write_text(f"#!/bin/sh\necho 'port 22'\necho 'authorizedkeysfile {patterns}'\n")
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    script = probe_script([], [homes.SCAN]).replace('cd "$d" && tar cf - .', 'cat "$d/c0"')
    r = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"})
    assert r.returncode == 0, r.stderr
    assert homes.scan_settings(r.stdout)[0] == patterns
    return homes.parse_scan(r.stdout)


def test_every_accounts_files_are_found_with_sshds_tokens_expanded(tmp_path):
    h1, h2, keys = tmp_path / "home one", tmp_path / "h2", tmp_path / "keys"
    for d in (h1 / ".ssh", h2, keys):
        d.mkdir(parents=True)
    (h1 / ".ssh/authorized_keys").write_text("ssh-ed25519 AAAA first\n")
    (keys / "root").write_text("ssh-ed25519 AAAA by-name\n")  # %u
    (h2 / "k_0").write_text("ssh-ed25519 AAAA by-uid\n")  # %h and %U
    (h1 / "pct%x").write_text("ssh-ed25519 AAAA percent\n")  # %% stays as sshd -T prints it
    (h1 / "none").write_text("ssh-ed25519 AAAA not-a-pattern\n")  # "none" is no file: sshd reads none
    passwd = [f"root:x:0:0:root:{h1}:/bin/sh",
              f"root:x:0:0:second home:{h2}:/bin/sh",
              "root:x:0:0:relative home:relative:/bin/sh",  # not absolute: skipped, as sshd cannot use it
              "nosuchaccount:x:4242:4242::/nonexistent:/bin/sh"]
    found = scan(tmp_path, passwd, f".ssh/authorized_keys {keys}/%u %h/k_%U none pct%%x")
    assert [(f.user, f.path, f.lines) for f in found] == [
        ("root", f"{h1}/.ssh/authorized_keys", ("ssh-ed25519 AAAA first",)),
        ("root", f"{keys}/root", ("ssh-ed25519 AAAA by-name",)),
        ("root", f"{h2}/k_0", ("ssh-ed25519 AAAA by-uid",)),
    ]  # each path once (the second root's %u file is the first's); pct%%x is no file of any home


def test_a_link_is_read_and_noted_a_fifo_never_opened(tmp_path):
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / "real").write_text("ssh-ed25519 AAAA linked\n")
    (home / ".ssh/authorized_keys").symlink_to(home / "real")
    os.mkfifo(home / ".ssh/authorized_keys2")
    found = scan(tmp_path, [f"root:x:0:0::{home}:/bin/sh"], ".ssh/authorized_keys .ssh/authorized_keys2")
    assert [(f.path, f.lines, f.note, bool(f.unread)) for f in found] == [
        (f"{home}/.ssh/authorized_keys", ("ssh-ed25519 AAAA linked",), "a symbolic link", False),
        (f"{home}/.ssh/authorized_keys2", (), "", True),
    ]
