"""svrchain's Oracle readiness check, run for real against stand-in sqlplus and lsnrctl.

The stand-ins print what Oracle prints in each phase of a start (NOMOUNT, MOUNTED, OPEN read only,
OPEN READ WRITE; the service not yet registered, BLOCKED, READY), so the script's decision is tested
as it runs on a DB server: only "clients can use it" is ready.
"""

from __future__ import annotations

import getpass
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from svrchain.core import render
from svrchain.core.inventory import parse

EXAMPLE = Path(__file__).resolve().parents[2] / "inventory" / "example.yaml"
SERVICE = "orcl.example.com"

LSNR_READY = f"""Services Summary...
Service "other.example.com" has 1 instance(s).
  Instance "ORCL", status READY, has 1 handler(s) for this service...
Service "{SERVICE}" has 1 instance(s).
  Instance "ORCL", status READY, has 1 handler(s) for this service...
The command completed successfully
"""
LSNR_BLOCKED = LSNR_READY.replace(f'"{SERVICE}" has 1 instance(s).\n  Instance "ORCL", status READY',
                                  f'"{SERVICE}" has 1 instance(s).\n  Instance "ORCL", status BLOCKED')
LSNR_NONE = 'Services Summary...\nService "other.example.com" has 1 instance(s).\n  Instance "ORCL", status READY\n'


def check(tmp_path: Path, sql_out: str, sql_rc: int, lsnr: str, pdb: str | None = None) -> int:
    """Render the check for an Oracle home of stand-ins owned by this user; run it; its exit code."""
    home = tmp_path / "oracle"
    (home / "bin").mkdir(parents=True)
    sqlplus = f"#!/bin/sh\ncat >{tmp_path}/sql.in\nprintf '%s' '{sql_out}'\nexit {sql_rc}\n"
    (home / "bin" / "sqlplus").write_text(sqlplus)
    (home / "bin" / "lsnrctl").write_text(f"#!/bin/sh\ncat <<'EOF'\n{lsnr}EOF\n")
    for tool in ("sqlplus", "lsnrctl"):
        (home / "bin" / tool).chmod(0o755)
    text = EXAMPLE.read_text().replace("/u01/app/oracle/product/19.0.0/dbhome_1", str(home))
    text = text.replace("owner: oracle ", f"owner: {getpass.getuser()} ")
    if pdb:
        text = text.replace("    # pdb: APPPDB", f"    pdb: {pdb}")
    script = tmp_path / "oracle-ready"
    script.write_bytes(render.oracle_ready(parse(text, EXAMPLE)))
    return subprocess.run(["sh", str(script)], capture_output=True, timeout=10).returncode


@pytest.mark.parametrize(("sql_out", "sql_rc", "lsnr", "ready"), [
    ("STATE STARTED MOUNTED\n", 0, LSNR_NONE, False),  # NOMOUNT: ORA-01033 for clients
    ("STATE MOUNTED MOUNTED\n", 0, LSNR_BLOCKED, False),  # mounted, recovering
    ("STATE OPEN READ ONLY\n", 0, LSNR_READY, False),
    ("STATE OPEN READ WRITE\n", 0, LSNR_NONE, False),  # open, service not registered yet: ORA-12514
    ("STATE OPEN READ WRITE\n", 0, LSNR_BLOCKED, False),  # ORA-12528
    ("", 1, LSNR_READY, False),  # sqlplus itself failed (instance down: ORA-01034)
    ("STATE OPEN READ WRITE\n", 0, LSNR_READY, True),
])
def test_ready_only_when_clients_can_use_it(tmp_path, sql_out, sql_rc, lsnr, ready):
    assert (check(tmp_path, sql_out, sql_rc, lsnr) == 0) is ready
    asked = (tmp_path / "sql.in").read_text()
    assert "from v$instance i, v$database d" in asked and "v$pdbs" not in asked


@pytest.mark.parametrize(("pdb_state", "ready"), [("MOUNTED", False), ("READ ONLY", False), ("READ WRITE", True)])
def test_a_named_pdb_must_be_open_read_write(tmp_path, pdb_state, ready):
    out = f"STATE OPEN READ WRITE\nPDB PDB$SEED READ ONLY\nPDB APPPDB {pdb_state}\n"
    assert (check(tmp_path, out, 0, LSNR_READY, pdb="APPPDB") == 0) is ready
    assert "from v$pdbs" in (tmp_path / "sql.in").read_text()


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is installed by make install")
def test_the_check_is_shellcheck_clean(tmp_path):
    text = EXAMPLE.read_text().replace("    # pdb: APPPDB", "    pdb: APPPDB")
    script = tmp_path / "oracle-ready"
    script.write_bytes(render.oracle_ready(parse(text, EXAMPLE)))
    r = subprocess.run(["shellcheck", "-s", "sh", str(script)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("runuser") is None,
                    reason="root runs the check, the tools as another account")
def test_root_runs_the_tools_as_the_owner_with_their_own_options():
    # As the trigger runs it: root, so sqlplus and lsnrctl run as the owner through su or runuser, which
    # take options anywhere on their command line unless told where theirs end: sqlplus's own -s and -L
    # must reach sqlplus (with su they did not: "su: failed to execute -L", never ready).
    base = Path(tempfile.mkdtemp(prefix="svrchain-oracle-", dir="/tmp"))
    try:
        base.chmod(0o755)
        seen = base / "seen"
        seen.mkdir(mode=0o777)
        seen.chmod(0o777)
        home = base / "oracle"
        (home / "bin").mkdir(parents=True)
        (home / "bin" / "sqlplus").write_text(
            f"#!/bin/sh\nprintf '%s|' \"$(id -un)\" \"$@\" >{seen}/args\ncat >/dev/null\n"
            "printf 'STATE OPEN READ WRITE\\n'\n")
        (home / "bin" / "lsnrctl").write_text(f"#!/bin/sh\ncat <<'EOF'\n{LSNR_READY}EOF\n")
        for tool in ("sqlplus", "lsnrctl"):
            (home / "bin" / tool).chmod(0o755)
        text = EXAMPLE.read_text().replace("/u01/app/oracle/product/19.0.0/dbhome_1", str(home))
        text = text.replace("owner: oracle ", "owner: nobody ")
        script = base / "oracle-ready"
        script.write_bytes(render.oracle_ready(parse(text, EXAMPLE)))
        r = subprocess.run(["sh", str(script)], capture_output=True, text=True, timeout=20)
        assert r.returncode == 0, r.stderr
        assert (seen / "args").read_text() == "nobody|-s|-L|/ as sysdba|"
    finally:
        shutil.rmtree(base)


# A stand-in tool that records the session it runs in and whether it has a controlling terminal.
SESSION_PROBE = """#!/bin/sh
set -- $(sed 's/^.*) //' /proc/$$/stat)
echo "sid $4 tty $5" >@OUT@
cat >/dev/null
"""


def world_readable_home(tools: tuple[str, ...]) -> tuple[Path, Path]:
    """An Oracle home of stand-ins another account can run, and where they write (under /tmp)."""
    root = Path(tempfile.mkdtemp(prefix="svrchain-oracle-", dir="/tmp"))
    root.chmod(0o755)
    (root / "bin").mkdir()
    out = root / "out"
    out.mkdir(mode=0o777)
    out.chmod(0o777)
    for tool in tools:
        (root / "bin" / tool).write_text(SESSION_PROBE.replace("@OUT@", str(out / tool)))
        (root / "bin" / tool).chmod(0o755)
    return root, out


def in_a_session_of_its_own(seen: str) -> bool:
    """What a stand-in recorded: another session than the test's, and no controlling terminal."""
    _, sid, _, tty = seen.split()
    return int(sid) != os.getsid(0) and tty == "0"


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("runuser") is None, reason="switching user needs root")
def test_the_check_runs_the_owners_tools_in_a_session_of_their_own():
    home, out = world_readable_home(("sqlplus",))
    try:
        text = EXAMPLE.read_text().replace("/u01/app/oracle/product/19.0.0/dbhome_1", str(home))
        text = text.replace("owner: oracle ", "owner: nobody ")
        script = home / "oracle-ready"
        script.write_bytes(render.oracle_ready(parse(text, EXAMPLE)))
        subprocess.run(["sh", str(script)], capture_output=True, timeout=10)
        assert in_a_session_of_its_own((out / "sqlplus").read_text())
    finally:
        shutil.rmtree(home)


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("runuser") is None, reason="switching user needs root")
@pytest.mark.parametrize("verb", ["start", "stop"])
def test_dbora_runs_dbstart_and_dbshut_in_a_session_of_their_own(verb):
    home, out = world_readable_home(("dbstart", "dbshut"))
    try:
        text = EXAMPLE.read_text().replace("/u01/app/oracle/product/19.0.0/dbhome_1", str(home))
        text = text.replace("owner: oracle ", "owner: root ")
        script = home / "dbora"
        script.write_bytes(render.dbora_impl(parse(text, EXAMPLE)))
        assert subprocess.run(["sh", str(script), verb], capture_output=True, timeout=10).returncode == 0
        tool = out / ("dbstart" if verb == "start" else "dbshut")
        for _ in range(100):  # start returns at once: dbstart runs in the background
            if tool.exists() and tool.read_text():
                break
            time.sleep(0.05)
        assert in_a_session_of_its_own(tool.read_text())
    finally:
        shutil.rmtree(home)
