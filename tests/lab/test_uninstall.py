"""uninstall on the lab: every host's files, links, modes and owners are as before bootstrap, byte for byte."""

from __future__ import annotations

import pytest

from tests.lab.conftest import CORE_INITS, lab_fixture

pytestmark = pytest.mark.lab
HOSTS = ("db", "web1", "web2")

# The site's own dbora before svrchain (SysV): registered for boot from its own header.
SITE_DBORA = """#!/bin/sh
### BEGIN INIT INFO
# Provides:          dbora
# Required-Start:    $remote_fs
# Required-Stop:     $remote_fs
# Default-Start:     2 3 4 5
# Default-Stop:      0 1 6
# Short-Description: the DBA's own start script
### END INIT INFO
exec /usr/local/sbin/lab-dbora "$@"
"""
FOREIGN = (
    "# keys of the web team, kept by hand\n"
    'from="198.18.0.99",no-pty ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHN2cmNoYWluLWZvcmVpZ24ta2V5LWZvci10ZXN0cw'
    " deploy@ci\r\n"
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG90aGVyLWtleS13aXRob3V0LWEtZmluYWwtbmV3bGluZQ last-line-no-newline"
)


lab = lab_fixture(*CORE_INITS)


def test_uninstall_leaves_every_host_as_it_was(lab):
    if lab.init != "systemd":
        register = "chkconfig --add dbora" if lab.init == "chkconfig" else "update-rc.d dbora defaults"
        lab.console("db", f"cat >/etc/init.d/dbora <<'EOF'\n{SITE_DBORA}EOF\nchmod 755 /etc/init.d/dbora && {register}")
    for web in ("web1", "web2"):
        lab.console(web, f"printf '%s' '{FOREIGN}' >>/root/.ssh/authorized_keys")
    before = {h: lab.manifest(h) for h in HOSTS}
    assert lab.fab("bootstrap").returncode == 0
    lab.db_under_service()
    assert lab.fab("restart-chain", "--yes").returncode == 0  # the trigger and the gate leave their state too
    assert lab.manifest("web1") != before["web1"]

    installed = {h: lab.manifest(h) for h in HOSTS}
    dry = lab.fab("uninstall", "--dry-run")
    assert dry.returncode == 0 and dry.stdout.count("would change") == 3, dry.stdout
    assert "-restrict,from=\"198.18.0.10\"" in dry.stdout  # the line that would go, as a diff
    assert {h: lab.manifest(h) for h in HOSTS} == installed  # a dry run touches nothing

    r = lab.fab("uninstall", "--yes")
    assert r.returncode == 0, r.stdout + r.stderr
    print(r.stdout)
    if lab.init != "systemd":
        assert "put back the site's /etc/init.d/dbora" in r.stdout
    for h in HOSTS:
        assert lab.manifest(h) == before[h], h
    assert lab.console("db", "pg_isready -h 127.0.0.1").returncode == 0  # the database was not stopped

    again = lab.fab("uninstall", "--yes")
    assert again.returncode == 0 and again.stdout.count("nothing of svrchain's here") == 3
    # Set up again from scratch: uninstall left nothing in the way.
    assert lab.fab("bootstrap").returncode == 0


def test_uninstall_goes_on_when_a_host_is_down_and_finishes_later(lab):
    # The lab is bootstrapped again (end of the test above).
    with lab.fault("web2", "service ssh stop", "service ssh start; sleep 0.5"):
        r = lab.fab("uninstall", "--yes")
    assert r.returncode == 3  # only a host unreachable
    assert "uninstall            unreachable   web2 (198.18.0.22:22): connection refused" in r.stdout, r.stdout
    assert "svrchain: uninstall: failed on web2 (see above)" in r.stderr
    assert r.stdout.count(" changed ") == 2
    again = lab.fab("uninstall", "--yes")
    assert again.returncode == 0 and again.stdout.count("nothing of svrchain's here") == 2, again.stdout
    assert "web2       uninstall            changed" in again.stdout
