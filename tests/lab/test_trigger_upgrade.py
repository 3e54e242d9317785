"""A DB host set up by svrchain before issue 11 (the whole trigger rendered into its init script or
script, no settings file) is brought to the static script and its settings by ``fab bootstrap``,
restarting no web server; a second run changes nothing; uninstall removes either layout. SysV and
systemd hosts.

The earlier layout is staged from the files that svrchain rendered for the lab's inventory then
(``tests/lab/files/before-issue11``, from commit fa7f9c4).
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from tests.lab.conftest import lab_of
from tests.lab.test_every_restart import WEBS, dba, followed_once, gate_restarts, logs

pytestmark = pytest.mark.lab
BEFORE = Path(__file__).resolve().parent / "files" / "before-issue11"
NEW = ["/usr/local/lib/svrchain/svr_restart", "/etc/svrchain/svr_restart.conf"]


@pytest.fixture(scope="module", params=["sysv", "systemd"])
def lab(request):
    yield from lab_of(request.param)


def put(lab, path: str, source: str, mode: str = "755") -> None:
    """Write one of the earlier version's files on the DB host, as its install did."""
    text = (BEFORE / source).read_text()
    lab.console("db", f"cat >{path} <<'SVRCHAIN_EOF'\n{text}SVRCHAIN_EOF\nchmod {mode} {path}")


def stage_before(lab) -> None:
    """The DB host as the earlier svrchain left it, its watcher running the earlier trigger."""
    watcher = ("systemctl {} svr-restart-watch.service" if lab.init == "systemd"
               else "/etc/init.d/svr_restart_watch {}")
    lab.console("db", watcher.format("stop"))
    if lab.init == "systemd":
        put(lab, "/usr/local/lib/svrchain/svr_restart", "svr_restart")
        put(lab, "/etc/systemd/system/svr-restart.service", "svr-restart.service", "644")
        lab.console("db", f"rm -f {NEW[1]}; systemctl daemon-reload")
    else:
        put(lab, "/etc/init.d/svr_restart", "svr_restart")
        put(lab, "/etc/init.d/svr_restart_watch", "svr_restart_watch")
        lab.console("db", f"rm -f {' '.join(NEW)}")
    # The run it followed, as it wrote it: "<pid>.<start>" (without the owner's uid, issue 19).
    lab.console("db", "sed -i 's/^[0-9]*://' /var/lib/svrchain/svr_restart.run")
    lab.console("db", watcher.format("start"))
    earlier = "/usr/local/lib/svrchain/svr_restart" if lab.init == "systemd" else "/etc/init.d/svr_restart"
    assert "WEB_SERVERS=(" in lab.console("db", f"cat {earlier}").stdout  # the whole trigger, rendered


def test_bootstrap_upgrades_the_earlier_trigger_without_restarting_anything(lab):
    before = lab.manifest("db")
    assert lab.fab("bootstrap").returncode == 0
    lab.db_under_service()
    run = lab.settled()
    stage_before(lab)
    time.sleep(2)
    assert lab.settled() == run.split(":")[-1]  # the earlier watcher follows nothing new
    restarts = gate_restarts(lab)
    r = lab.fab("bootstrap")
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"^db\s+install-svr-restart\s+changed\b", r.stdout, re.M), r.stdout
    assert "GAP" not in r.stdout, r.stdout
    time.sleep(3)  # the watcher was restarted: it must find the run followed (written by the earlier one)
    assert lab.settled() == run and gate_restarts(lab) == restarts, logs(lab)
    assert lab.console("db", f"stat -c '%a %U %F' {NEW[1]}").stdout.strip() == "600 root regular file"
    again = lab.fab("bootstrap")
    assert again.returncode == 0 and not re.search(r"\schanged\s", again.stdout), again.stdout
    # The chain works in the new layout: a DBA's restart is followed once.
    dba(lab, "restart")
    followed_once(lab, restarts, run)
    # uninstall removes either layout: the earlier one again, then everything is as before bootstrap.
    stage_before(lab)
    r = lab.fab("uninstall", "--yes")
    assert r.returncode == 0, r.stdout + r.stderr
    assert lab.manifest("db") == before
    assert all(lab.wait_page(w, 200)[0] == 200 for w in WEBS)
