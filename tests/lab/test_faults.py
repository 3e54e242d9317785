"""Faults of real server rooms, on the lab: the chain degrades clearly, nothing is lost, and a later run
repairs it. A table of cases (tests/lab/scenarios.py reads them), each from the module's baseline."""

from __future__ import annotations

import pytest

from svrchain.plan import FileSpec
from svrchain.remote import WRITE_SCRIPT, HostError, Session
from tests.lab.conftest import lab_of
from tests.lab.scenarios import (
    ApachePid,
    Bytes,
    Call,
    Case,
    Console,
    Ctx,
    DbRestart,
    Fab,
    Install,
    KeyChange,
    Manifest,
    PowerOff,
    run_case,
    take_baseline,
)
from tests.paths import LAB_INVENTORY

pytestmark = pytest.mark.lab
AK = "/root/.ssh/authorized_keys"


@pytest.fixture(scope="module")
def lab():
    """Faults do not depend on the init system: SysV hosts."""
    yield from lab_of("sysv")


@pytest.fixture(scope="module")
def baseline(chain):
    return take_baseline(chain)


def two_quick_restarts(lab, ctx: Ctx) -> None:
    """Two DB restarts in quick succession: the last run is followed, after the last DB start, each run
    at most once; the pages are healthy."""
    seen = len(lab.console("db", "cat /var/log/svr_restart.log").stdout.splitlines())
    lab.console("db", "service dbora restart; service dbora restart")
    run = lab.settled()  # the last run is followed, whatever ran in between
    last_db_start = float(lab.console("db", "su postgres -c \"psql -tAc 'select extract(epoch from "
                                            "pg_postmaster_start_time())'\"").stdout)
    ready = float(lab.console("db", "cat /var/lib/svrchain/svr_restart.run").stdout.split()[1])
    assert ready >= last_db_start
    for web in ("web1", "web2"):
        assert lab.wait_page(web, 200)[0] == 200  # restarted after the last DB start: healthy
    log = lab.console("db", "cat /var/log/svr_restart.log").stdout.splitlines()[seen:]
    followed = [ln.split("(run ")[1].split(")")[0] for ln in log if "restarting 2 web server(s)" in ln]
    # Triggers serialized; each run followed at most once, the last one certainly.
    assert run in followed and len(followed) == len(set(followed)) and 1 <= len(followed) <= 2, log


def truncated_write(lab, ctx: Ctx) -> None:
    """As if the connection dropped mid-transfer: the host gets fewer bytes than the checksum covers."""
    before = lab.host("web1").file(AK).content
    spec = FileSpec(AK, before + b"# more\n", 0o600)
    with Session.open(LAB_INVENTORY) as s, pytest.raises(HostError, match="arrived incomplete"):
        s.webs[0].check(WRITE_SCRIPT, spec.path, "600", "root:root", spec.sha256, "/var/backups/svrchain", "-", "-",
                        stdin=spec.content[:-5], what="writing")
    assert lab.host("web1").run("ls /root/.ssh/.svrchain.* 2>/dev/null").stdout == ""  # no temp file left


# /root/.ssh on a 16k tmpfs, filled up (the same files in it); undone by unmounting it.
FULL = ("cp -a /root/.ssh /root/ssh.keep && mount -t tmpfs -o size=16k tmpfs /root/.ssh && "
        "cp -a /root/ssh.keep/. /root/.ssh/ && chmod 700 /root/.ssh && "
        "dd if=/dev/zero of=/root/.ssh/filler bs=1k count=64 2>/dev/null; true")

CASES = [
    Case(
        "web-down-during-db-restart",
        stage=(PowerOff("web2"),),
        steps=(DbRestart("failed", {"web1": "ok", "web2": "failed"},
                         log=(r"web2 \(198\.18\.0\.22\): FAILED after 3 attempts",)),),
        changed=(ApachePid("web1"),),  # the others still restarted
        unchanged=(Manifest("web1"),),
        repair=(Fab(("restart-chain", "--yes"), 0, lab=True,
                    out=(r"^web2\s+web\s+restarted by the chain\s.*ok$",)),),
    ),
    Case(
        "two-quick-db-restarts",
        steps=(Call(two_quick_restarts),),
        unchanged=(Manifest("web1"), Manifest("web2")),
    ),
    Case(
        "db-never-ready",
        inventory={"db.ready": {"command": "false", "timeout": 3, "interval": 0.5}},
        stage=(Install(("install-svr-restart",), undo=("install-svr-restart",)),),
        steps=(DbRestart("notready", log=(r"database not ready after 3s: web servers NOT restarted",)),),
        unchanged=(ApachePid("web1"), ApachePid("web2"), Manifest("web1"), Manifest("web2")),
    ),
    Case(
        "changed-host-key",
        stage=(KeyChange("web1"),),
        steps=(
            DbRestart("failed", {"web1": "hostkey", "web2": "ok"},
                      log=(r"web1 \(198\.18\.0\.21\): REFUSED: its host key is not the one pinned",)),
            # web1 cannot be logged in to: the check is incomplete, exit 3 (the DB also owes it a restart: a gap)
            Fab(("verify",), 3, lab=True, out=(r"^web1\s+reachable\s+UNREACHABLE\s+.*host key CHANGED",)),
        ),
        unchanged=(ApachePid("web1"), Manifest("web1")),  # refused: not restarted, nothing written
        changed=(ApachePid("web2"),),
        repair=(Fab(("restart-chain", "--yes"), 0, lab=True,
                    out=(r"^web1\s+web\s+restarted by the chain\s.*ok$",)),),
    ),
    Case(
        "incomplete-transfer",
        steps=(Call(truncated_write),),
        unchanged=(Bytes("web1", AK), Manifest("web1")),  # the file as it was, no temporary file left
    ),
    Case(
        "full-disk",
        stage=(Console("web1", f"sed -i '/svrchain:/d' {AK}"),  # push-key must write
               Console("web1", FULL, "umount /root/.ssh && rm -rf /root/ssh.keep")),
        steps=(Fab(("push-key",), 1, lab=True,
                   out=(r"^web1(?=.* push-key )(?=.*writing /root/\.ssh/authorized_keys failed)"
                        r"(?=.*No space left on device)",)),),
        unchanged=(Bytes("web1", AK),),  # the old (drifted) file intact
        undo_then=(Bytes("web1", AK),),
        # a later push-key writes it: the baseline's authorized_keys, byte for byte (the manifest)
        repair=(Fab(("push-key",), 0, lab=True, out=(r"^web1\s+push-key\s+changed",)),),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_fault(chain, baseline, case, tmp_path):
    run_case(chain, baseline, case, tmp_path)
