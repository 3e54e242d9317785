"""The lab for integration tests: brought up fresh per test module, torn down after it.

Host state is read with testinfra over real SSH (the lab's ssh_config: pinned host keys, the
admin key); the lab's console (nsenter) is used only to stage faults the tests need.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import testinfra

from lab import LabError
from lab import hosts as labhosts
from lab.slot import held
from svrchain.core.inventory import load
from svrchain.core.trigger_status import bound
from tests.paths import LAB_INVENTORY, ORACLE_INVENTORY

REPO = Path(__file__).resolve().parents[2]
# A trigger run ends within its bound (ready wait, connection, retries, backoff): the longest wait for one.
TRIGGER_BOUND = bound(load(LAB_INVENTORY))
# Path, type, mode, owner and link target of everything under the trees svrchain touches, and the
# checksum of every file.
MANIFEST = (
    "find /etc /usr/local /root /home /var/lib/svrchain /var/lib/svr-restart /run/svrchain -xdev "
    "-printf '%p %y %m %u:%g %l\\n' 2>/dev/null | sort; "
    "find /etc /usr/local /root /home -xdev -type f -exec sha256sum {} + | sort"
)
# Files the system's own tools rewrite (useradd/userdel keep their previous copy as <file>-).
TOOLS_BACKUPS = ("/etc/passwd-", "/etc/group-", "/etc/shadow-", "/etc/gshadow-", "/etc/subuid-", "/etc/subgid-")
FAB = [str(Path(sys.executable).parent / "fab")]
# On the DB host: the database's current run as the trigger tells it ('none' when it does not run).
CURRENT_RUN = "$(ls /etc/init.d/svr_restart /usr/local/lib/svrchain/svr_restart 2>/dev/null | head -n 1) run"


@dataclass
class Lab:
    """Handles on the running lab."""

    init: str = "sysv"
    inventory: Path = LAB_INVENTORY  # the inventory of this lab (inventory/lab-oracle.yaml on the Oracle-shaped host)

    def host(self, name: str):
        """A testinfra host over real SSH."""
        return testinfra.get_host(f"ssh://{name}", ssh_config=str(labhosts.STATE / "ssh_config"))

    def fab(self, *args: str, inventory: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
        """Run ``fab`` as an admin would, from the repository."""
        env = {**os.environ, "INVENTORY": str(inventory or self.inventory)}
        return subprocess.run([*FAB, *args], cwd=REPO, env=env, text=True, capture_output=True, timeout=timeout)

    def console(self, name: str, command: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run a command inside a host without SSH (to stage a fault)."""
        return labhosts.run_in(labhosts.host(name), command, check=check)

    def manifest(self, name: str) -> list[str]:
        """Every file, directory and link under the trees svrchain touches, with modes, owners and
        checksums; read through the console, the same view whatever sshd allows."""
        lines = self.console(name, MANIFEST).stdout.splitlines()
        return [x for x in lines if not any(x.startswith(p + " ") or x.endswith("  " + p) for p in TOOLS_BACKUPS)]

    @contextlib.contextmanager
    def fault(self, name: str, stage: str, undo: str) -> Iterator[None]:
        """Stage a fault on a host through its console for the duration of a block, then undo it."""
        self.console(name, stage)
        try:
            yield
        finally:
            self.console(name, undo)

    def boot(self, name: str) -> None:
        labhosts.boot(name)

    def page(self, web: str) -> tuple[int, str]:
        """GET the web host's PHP page: (status, body)."""
        address = labhosts.host(web).address
        try:
            with urllib.request.urlopen(f"http://{address}/", timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except OSError as exc:
            return 0, str(exc)

    def wait_log(self, name: str, text: str, path: str = "/var/log/auth.log", timeout: float = 30) -> str:
        """Poll a log file on a host until it contains ``text``; return the log as last read."""
        end = time.monotonic() + timeout
        while True:
            log = self.host(name).file(path).content_string
            if text in log or time.monotonic() > end:
                return log
            time.sleep(0.2)

    def db_under_service(self) -> None:
        """systemd hosts boot the database with the lab's own unit (the DBA's start, before svrchain):
        hand it over to svrchain's dbora.service, as an admin would after bootstrap. That start is a
        new run of the database, which the chain follows."""
        if self.init == "systemd":
            self.console("db", "systemctl stop lab-db.service && systemctl start dbora.service")
            self.settled()

    def current_run(self) -> str:
        """The database's current run as the trigger tells it on the DB host ('none' when it does not run)."""
        return self.console("db", CURRENT_RUN).stdout.strip()

    def bootstrapped(self) -> Lab:
        """Bootstrap svrchain on this fresh lab (it must succeed) and hand the database to its service."""
        r = self.fab("bootstrap")
        assert r.returncode == 0, r.stdout + r.stderr
        self.db_under_service()
        return self

    def verify_ok(self) -> None:
        """fab verify finds nothing to do; but on systemd, after a DBA's own restart (outside the DB's
        unit), the one gap it must report is exactly that: the database not under its service."""
        v = self.fab("verify")
        gaps = re.findall(r"^\S+ +(\S.*?) +GAP ", v.stdout, re.M)
        if self.init == "systemd" and gaps == ["under its service"]:
            assert v.returncode == 2, v.stdout + v.stderr
            return
        assert v.returncode == 0 and not gaps, v.stdout + v.stderr

    def settled(self, timeout: float | None = None) -> str:
        """Wait until the chain has followed the database's current run and no trigger run is going;
        return that run. Waits at most a trigger run's bound (the trigger's own limit)."""
        end = time.monotonic() + (timeout or (TRIGGER_BOUND if self.inventory == LAB_INVENTORY
                                              else bound(load(self.inventory))))
        # One look through the console per poll: the current run, the run last handled, and whether a
        # trigger run is going.
        look = (f'run=$({CURRENT_RUN}) || exit; echo "$run"; '
                "pgrep -f 'svr_restart (start|retry)' >/dev/null && echo busy || echo idle; "
                "cat /var/lib/svrchain/svr_restart.run 2>/dev/null; true")
        while time.monotonic() < end:
            run, state, *handled = self.console("db", look).stdout.split()
            busy = state == "busy"
            if run != "none" and handled[:1] == [run] and not busy:
                return run
            time.sleep(0.1)
        log = self.console("db", "tail -5 /var/log/svr_restart.log").stdout
        raise AssertionError(f"the chain did not follow the database's run: {log}")

    def wait_page(self, web: str, status: int, timeout: float = 30) -> tuple[int, str]:
        """Poll the page until it answers ``status`` (or time out and return the last answer)."""
        end = time.monotonic() + timeout
        while True:
            got = self.page(web)
            if got[0] == status or time.monotonic() > end:
                return got
            time.sleep(0.2)


def dedicated_inventory(tmp_path_factory, user: str) -> Path:
    """The lab's inventory with web.user a dedicated account, written to a temporary file."""
    import yaml

    data = labhosts.inventory_data()
    data["web"]["user"] = user
    path = tmp_path_factory.mktemp("inv") / "dedicated.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("the lab needs root (network namespaces, mounts); run make test as root")


def bring_up(init: str, db: str = "postgres", phases: dict[str, float] | None = None, db_count: int = 1,
             standby: bool = False) -> Lab:
    """A fresh lab (1 DB host, or db1 and db2 with ``db_count`` 2 or ``standby``, and 2 web hosts) booting
    with ``init``, its DB hosts PostgreSQL or Oracle-shaped (``db``, with ``phases`` for the stand-ins'
    timings); a systemd lab that cannot boot on this machine skips its tests, saying why."""
    _need_root()
    try:
        labhosts.up(2, init, db=db, phases=phases, db_count=db_count, standby=standby)
    except (LabError, subprocess.CalledProcessError, OSError) as exc:
        labhosts.down()
        if init == "systemd":
            pytest.skip(f"the systemd lab cannot boot on this machine: {exc}")
        raise
    return Lab(init, ORACLE_INVENTORY if db == "oracle" else LAB_INVENTORY)


def lab_of(init: str, db: str = "postgres", phases: dict[str, float] | None = None, db_count: int = 1,
           standby: bool = False):
    """Body of a module-scoped lab fixture: up with ``init`` hosts, always down afterwards; the module
    holds the lab meanwhile (another process's ``lab down`` waits for it)."""
    with held():
        try:
            yield bring_up(init, db, phases, db_count, standby)
        finally:
            labhosts.down()


# The core suite (bootstrap, the chain, uninstall) runs on every kind of host: Debian SysV (insserv),
# RHEL-like SysV (chkconfig 1.33) and systemd. Other modules run on SysV and systemd hosts, or one.
CORE_INITS = ("sysv", "chkconfig", "systemd")


def lab_fixture(*inits: str):
    """A module-scoped ``lab`` fixture: a fresh lab for the module, once per init system in ``inits``."""

    @pytest.fixture(scope="module", params=list(inits))
    def lab(request):
        yield from lab_of(request.param)

    return lab


lab = lab_fixture("sysv", "systemd")


@pytest.fixture(scope="module")
def chain(lab):
    """The lab with svrchain bootstrapped."""
    return lab.bootstrapped()
