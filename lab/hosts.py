"""The lab: one DB host and N web hosts, each a network namespace with its own copy-on-write root.

Each host is ``ip netns`` + a veth on the bridge ``svrlab0`` (198.18.0.1/24 on this machine), an
overlayfs over the cached Debian root, and ``unshare --mount --pid --uts`` + ``chroot`` with tini as
PID 1 running ``lab-init``, which boots the host as SysV init does (``/etc/init.d/rc 3``): sshd,
Apache with PHP on web hosts, PostgreSQL (through its dbora script) on the DB host. ``chkconfig``
hosts boot the same way but are RHEL-like: chkconfig 1.33 is the only registration tool and the rc
directories live under ``/etc/rc.d``. ``systemd`` hosts boot under ``systemd-nspawn -b``. Run as root.

Light web hosts (``kind="light"``, for the scale bench: up to 200 of them on this machine) run only
sshd and a stand-in web server (``php -S`` serving a page that reports the DB run it was started
against; its ``restart`` takes a known, short time), with no init scripts, syslog or Apache.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from lab import LabError, dbpair
from lab.rootfs import CHKCONFIG_BIN, ensure_rootfs
from lab.slot import SLOT, WAIT, check_namespace, held

REPO = Path(__file__).resolve().parent.parent
FILES = Path(__file__).resolve().parent / "files"
STATE = REPO / ".lab"  # admin key, pinned host keys, ssh_config: what inventory/lab.yaml uses
ADMIN_USER = "admin"  # on every host, besides root: the admin key, passwordless sudo
# SVRCHAIN_LAB_SLOT=N (developers only: several labs at once on one machine) gives this lab its own
# host namespaces, disks and machine names; the command must then run inside a network namespace of
# its own (``nsenter --net=/run/netns/<ns>``), where its bridge and the lab's addresses live. Unset:
# the one lab, on this machine's own network (make demo, make test, CI).
VAR = Path(f"/var/lib/svrchain-lab{SLOT}")  # per-host disks (overlay upper layers)
BRIDGE = "svrlab0"
SUBNET = "198.18.0"
GATEWAY = f"{SUBNET}.1"
DB_ADDRESS = f"{SUBNET}.10"
NETNS_PREFIX = f"svrlab{SLOT}-"
INITS = ("sysv", "chkconfig", "systemd")  # Debian SysV (insserv), RHEL-like SysV (chkconfig), systemd
KINDS = ("full", "light")  # web hosts: Apache + PHP booted by init (default), or sshd + a stand-in server
MAX_WEB = {"full": 60, "light": 200}
# The light hosts' stand-in web server: its control script, its restart command and its delay file.
LAB_WEB = "/usr/local/sbin/lab-web"
LIGHT_RESTART_COMMAND = f"{LAB_WEB} restart"
LIGHT_RESTART_DELAY = 0.1  # seconds a stand-in restart waits between stop and start (a known, short time)
# The DB host: PostgreSQL behind the lab's dbora script ("postgres"), or an Oracle-shaped host ("oracle":
# stand-ins for Oracle's tools over a PostgreSQL underneath; lab/files/oracle, docs/lab.md).
DBS = ("postgres", "oracle")
ORACLE_HOME = "/u01/app/oracle/product/19.0.0/dbhome_1"
ORACLE_LAB = "/u01/app/oracle/lab"  # the stand-ins' own files: lab.conf, phases.log, the PostgreSQL underneath
ORACLE_FILES = FILES / "oracle"
# The one place of the Oracle stand-ins' phase timings (seconds), written to ORACLE_LAB/lab.conf:
# startup's NOMOUNT -> MOUNTED (MOUNT) -> OPEN READ WRITE (OPEN); the PDB opened PDB after that (when its
# state was saved); the application's service READY with the listener REGISTER after the PDB opened
# (or the listener started); each step of a "shutdown immediate" (CLOSE).
ORACLE_PHASES = {"MOUNT": 3.0, "OPEN": 3.0, "PDB": 2.0, "REGISTER": 3.0, "CLOSE": 1.0}
# This machine's Debian Python, bound read-only into the hosts when asked (Ansible's modules need one).
MACHINE_PYTHON = Path("/usr/bin/python3.11")
# This lab's hosts (what ``current()`` reads), one file per slot: labs in several slots share STATE's keys,
# known_hosts and ssh_config (the same name always has the same address and host key).
HOSTS_FILE = STATE / (f"hosts-slot{SLOT}.json" if SLOT else "hosts.json")


@dataclass(frozen=True)
class LabHost:
    """One lab host."""

    name: str
    role: str  # "db" or "web"
    address: str
    init: str = "sysv"  # how the host boots: "sysv" or "chkconfig" (rc 3 under tini), "systemd" (nspawn -b)
    kind: str = "full"  # "full" (its role's real services) or "light" (web only: sshd + a stand-in server)
    python: bool = False  # this machine's Python bound in at /usr/bin/python3 (for Ansible)
    db: str = "postgres"  # what the lab's DB host is: "postgres" or "oracle" (Oracle-shaped), on every host
    standby_of: str = ""  # a DB host that is a streaming standby: its primary's address (lab/dbpair.py)

    @property
    def netns(self) -> str:
        return NETNS_PREFIX + self.name

    @property
    def veth(self) -> str:
        return f"svl-{self.name}"[:15]

    @property
    def key_name(self) -> str:
        """Whose host key the host has: one address, one key (db1 has db's: known_hosts is by address)."""
        return "db" if self.address == DB_ADDRESS else self.name

    @property
    def disk(self) -> Path:
        return VAR / self.name

    @property
    def root(self) -> Path:
        return self.disk / "merged"


def plan(web_count: int, init: str = "sysv", kind: str = "full", python: bool = False,
         db: str = "postgres", db_count: int = 1, standby: bool = False) -> list[LabHost]:
    """The hosts of a lab with ``web_count`` web servers of ``kind``, booting with ``init`` (the DB
    hosts are always full hosts, PostgreSQL or Oracle-shaped as ``db`` says: ``db``, or db1 and db2
    with ``db_count`` 2 or ``standby``, lab/dbpair.py); addresses are allocated in order (web N is .20+N)."""
    if db not in DBS:
        raise LabError(f"lab: DB must be one of {', '.join(DBS)}")
    if db == "oracle" and kind != "full":
        raise LabError("lab: the Oracle-shaped DB host is for full web hosts (Apache + PHP)")
    if kind not in KINDS:
        raise LabError(f"lab: the kind of web host must be one of {', '.join(KINDS)}")
    if not 1 <= web_count <= MAX_WEB[kind]:
        raise LabError(f"lab: the number of {kind} web hosts must be between 1 and {MAX_WEB[kind]}")
    if init not in INITS:
        raise LabError(f"lab: INIT must be one of {', '.join(INITS)}")
    if kind == "light" and init != "sysv":
        raise LabError("lab: light web hosts have no init system; use them with INIT=sysv")
    if python and not MACHINE_PYTHON.exists():
        raise LabError(f"lab: {MACHINE_PYTHON} is missing on this machine (apt-get install python3.11)")
    hosts = dbpair.db_hosts(db_count, standby, init, python, db)
    hosts += [LabHost(f"web{i}", "web", f"{SUBNET}.{20 + i}", init, kind, python, db)
              for i in range(1, web_count + 1)]
    return hosts


def sh(*args: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
    """Run a command on this machine (the lab's controller side)."""
    return subprocess.run(args, check=check, text=True, capture_output=True, **kw)


# --- keys -------------------------------------------------------------------------------------


@contextlib.contextmanager
def _state_lock():
    """Hold STATE's lock: labs in other slots, brought up from this checkout at the same time, create
    and write the same keys and client files."""
    STATE.mkdir(mode=0o700, exist_ok=True)
    with (STATE / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _keypair(path: Path, comment: str) -> str:
    with _state_lock():
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path))
    return (path.with_suffix(".pub")).read_text().strip()


def admin_pubkey() -> str:
    """The admin's key (what Fabric logs in with), created once under .lab/."""
    STATE.mkdir(mode=0o700, exist_ok=True)
    return _keypair(STATE / "admin_key", "svrchain-lab-admin")


# --- network ----------------------------------------------------------------------------------


def _bridge_up() -> None:
    if sh("ip", "link", "show", BRIDGE, check=False).returncode != 0:
        sh("ip", "link", "add", BRIDGE, "type", "bridge")
        sh("ip", "addr", "add", f"{GATEWAY}/24", "dev", BRIDGE)
    sh("ip", "link", "set", BRIDGE, "up")


def _net_up(h: LabHost) -> None:
    if h.netns not in sh("ip", "netns", "list").stdout.split():
        sh("ip", "netns", "add", h.netns)
    ns = ("ip", "netns", "exec", h.netns)
    if sh(*ns, "ip", "link", "show", "eth0", check=False).returncode != 0:
        sh("ip", "link", "add", h.veth, "type", "veth", "peer", "name", "eth0", "netns", h.netns)
        sh("ip", "link", "set", h.veth, "master", BRIDGE, "up")
        sh(*ns, "ip", "addr", "add", f"{h.address}/24", "dev", "eth0")
    sh(*ns, "ip", "link", "set", "lo", "up")
    sh(*ns, "ip", "link", "set", "eth0", "up")


def _net_down(h: LabHost) -> None:
    sh("ip", "link", "del", h.veth, check=False)
    sh("ip", "netns", "del", h.netns, check=False)


# --- disks ------------------------------------------------------------------------------------


def _mounted(path: Path) -> bool:
    return any(line.split()[1] == str(path) for line in Path("/proc/mounts").read_text().splitlines())


def _disk_up(h: LabHost, lower: Path) -> bool:
    """Mount the host's overlay root; return True when its upper layer was new (first boot)."""
    fresh = not (h.disk / "upper").exists()
    for d in ("upper", "work", "merged"):
        (h.disk / d).mkdir(parents=True, exist_ok=True)
    if not _mounted(h.root):
        sh("mount", "-t", "overlay", "overlay", "-o",
           f"lowerdir={lower},upperdir={h.disk / 'upper'},workdir={h.disk / 'work'}", str(h.root))
    return fresh


def _write(root: Path, rel: str, text: str, mode: int = 0o644) -> None:
    path = root / rel.lstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def _provision_sshd(h: LabHost, admin_key: str) -> None:
    """sshd: the host key the lab pins, public keys only, no PAM; the admin key for root."""
    r = h.root
    key = STATE / "hostkeys" / h.key_name / "ssh_host_ed25519_key"
    _keypair(key, f"root@{h.key_name}")
    shutil.copy(key, r / "etc/ssh/ssh_host_ed25519_key")
    shutil.copy(key.with_suffix(".pub"), r / "etc/ssh/ssh_host_ed25519_key.pub")
    (r / "etc/ssh/ssh_host_ed25519_key").chmod(0o600)
    # Otherwise Debian's stock settings (password logins allowed): fab harden-sshd tightens them.
    _write(r, "/etc/ssh/sshd_config.d/lab.conf",
           "HostKey /etc/ssh/ssh_host_ed25519_key\nUsePAM no\nUseDNS no\nLogLevel VERBOSE\n")
    (r / "root/.ssh").mkdir(mode=0o700, exist_ok=True)
    _write(r, "/root/.ssh/authorized_keys", admin_key + "\n", 0o600)


def _provision_light(h: LabHost, hosts_text: str, admin_key: str) -> None:
    """A light web host: sshd, the stand-in web server and its page; nothing started by init, no
    syslog (sshd logs to /var/log/auth.log itself), no second admin account."""
    r = h.root
    _write(r, "/etc/hostname", h.name + "\n")
    _write(r, "/etc/hosts", hosts_text)
    _provision_sshd(h, admin_key)
    _write(r, "/usr/local/sbin/lab-init", (FILES / "lab-light-init").read_text(), 0o755)
    _write(r, LAB_WEB, (FILES / "lab-web").read_text(), 0o755)
    _write(r, "/etc/lab-web.delay", f"{LIGHT_RESTART_DELAY}\n")
    _write(r, "/var/www/lab-web/index.php", (FILES / "lab-web.php").read_text())


def _provision(h: LabHost, hosts: list[LabHost], admin_key: str, phases: dict[str, float]) -> None:
    """First boot only: give the host its identity, keys, services and application."""
    r = h.root
    hosts_text = "127.0.0.1 localhost\n" + "".join(f"{x.address} {x.name}\n" for x in hosts)
    if h.kind == "light":
        _provision_light(h, hosts_text, admin_key)
        return
    _write(r, "/etc/hostname", h.name + "\n")
    _write(r, "/etc/hosts", hosts_text)
    _write(r, "/etc/init.d/.legacy-bootordering", "")  # rc runs S scripts one by one, in order
    conf = (r / "etc/rsyslog.conf").read_text().replace('module(load="imklog")', "# imklog: no kernel log in the lab")
    _write(r, "/etc/rsyslog.conf", conf)
    # sshd: the host key the lab pins, public keys only, no PAM (none is set up in the lab).
    _provision_sshd(h, admin_key)
    # A second way in for the admin, as many sites have it: the user "admin" with passwordless sudo.
    sh("chroot", str(r), "useradd", "--create-home", "--shell", "/bin/bash", "-p", "*", ADMIN_USER)
    (r / f"home/{ADMIN_USER}/.ssh").mkdir(mode=0o700)
    _write(r, f"/home/{ADMIN_USER}/.ssh/authorized_keys", admin_key + "\n", 0o600)
    sh("chroot", str(r), "chown", "-R", f"{ADMIN_USER}:", f"/home/{ADMIN_USER}/.ssh")
    _write(r, "/etc/sudoers.d/lab-admin", f"{ADMIN_USER} ALL=(ALL) NOPASSWD: ALL\n", 0o440)
    _write(r, "/usr/local/sbin/lab-init", (FILES / "lab-init").read_text(), 0o755)
    # Each role runs only its own services at boot.
    drop = ["postgresql", "dbus"] + (["apache2", "apache-htcacheclean"] if h.role == "db" else [])
    if h.init == "chkconfig":
        _provision_chkconfig(h)
    else:
        for svc in drop:
            sh("chroot", str(r), "update-rc.d", "-f", svc, "remove")
    if h.init == "systemd":
        _provision_systemd(h, drop)
    if h.role == "db" and h.db == "oracle":
        _provision_oracle(h, phases)
    elif h.role == "db":
        _provision_postgres(h, hosts)
        dbpair.provision(h)
    else:
        _provision_web(h, dbpair.page_for(hosts))


def _provision_postgres(h: LabHost, hosts: list[LabHost]) -> None:
    """The PostgreSQL DB host: the lab's dbora, PostgreSQL reachable from the lab's subnet."""
    r = h.root
    _write(r, "/usr/local/sbin/lab-dbora", (FILES / "dbora").read_text(), 0o755)
    pgconf = r / "etc/postgresql/15/main"
    with (pgconf / "postgresql.conf").open("a") as f:
        f.write("listen_addresses = '*'\n")
    with (pgconf / "pg_hba.conf").open("a") as f:
        f.write(f"host app app {SUBNET}.0/24 scram-sha-256\n")
    if any(x.kind == "light" for x in hosts):
        # Each light web host's stand-in asks the database for its run when it starts: up to 200
        # of them at once while the lab boots.
        with (pgconf / "postgresql.conf").open("a") as f:
            f.write("max_connections = 300\n")


def _provision_web(h: LabHost, page_line: str) -> None:
    """A full web host's application: the PHP page pointed at the database by ``page_line`` (through
    the Oracle-shaped host's listener when the lab has one) and Apache's steady pool of workers."""
    r = h.root
    _write(r, "/var/www/html/index.php", dbpair.render_page((FILES / "index.php").read_text(), page_line))
    (r / "var/www/html/index.html").unlink(missing_ok=True)
    # A steady pool of workers: no new (fresh) worker appears by itself after a DB restart, so
    # the page fails until Apache restarts, as the seed describes.
    _write(r, "/etc/apache2/conf-enabled/lab.conf",
           f"ServerName {h.name}\n<IfModule mpm_prefork_module>\n  StartServers 5\n  MinSpareServers 1\n"
           "  MaxSpareServers 10\n</IfModule>\n")
    # doctor's two results: web1 keeps Debian's php.ini (pgsql.auto_reset_persistent = Off: a finding),
    # the others reset a broken persistent connection before use (clean). The page fails the same
    # either way (it compares its worker's start with the database's), so nothing else changes.
    if h.name != "web1":
        for scan in sorted((r / "etc/php").glob("*/apache2/conf.d")):
            _write(r, "/" + str((scan / "90-lab-doctor.ini").relative_to(r)),
                   "; the lab: doctor's clean web host\n[PostgreSQL]\npgsql.auto_reset_persistent = On\n")


# A RHEL-like SysV host: the rc directories under /etc/rc.d (with /etc/init.d and /etc/rcN.d
# pointing there, as on RHEL), chkconfig 1.33 in /usr/sbin, Debian's update-rc.d and insserv moved
# out of the way, and /sbin/init naming what PID 1 really is (tini), so that chkconfig never hands a
# request to systemctl. Debian's own registrations are dropped; chkconfig makes the role's afresh.
_CHKCONFIG_HOST = r"""
set -e
cd /etc
mkdir -p rc.d
mv init.d rc.d/init.d && ln -s rc.d/init.d init.d
for n in 0 1 2 3 4 5 6; do
    mv rc$n.d rc.d/rc$n.d && ln -s rc.d/rc$n.d rc$n.d
    rm -f rc.d/rc$n.d/[SK][0-9][0-9]*
done
install -m 755 "$1" /usr/sbin/chkconfig
mkdir -p /usr/lib/svrchain-lab/debian
mv /usr/sbin/update-rc.d /usr/sbin/insserv /usr/lib/svrchain-lab/debian/
ln -sf /usr/bin/tini /usr/sbin/init
shift
for svc in "$@"; do chkconfig --add "$svc"; done
"""


def _provision_chkconfig(h: LabHost) -> None:
    """chkconfig hosts: the RHEL layout, chkconfig the only registration tool, the role's services
    (sshd, sudo, Apache on web hosts) registered with it."""
    services = ["ssh", "sudo"] + (["apache2"] if h.role == "web" else [])
    sh("chroot", str(h.root), "sh", "-c", _CHKCONFIG_HOST, "chkconfig-host", CHKCONFIG_BIN, *services)


_LAB_DB_UNIT = """[Unit]
Description=The DBA's start of the database, before svrchain manages it (lab)
ConditionPathExists=!/etc/systemd/system/dbora.service
After=network.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/lab-dbora start
ExecStop=/usr/local/sbin/lab-dbora stop

[Install]
WantedBy=multi-user.target
"""


def _provision_systemd(h: LabHost, drop: list[str]) -> None:
    """systemd hosts: only the role's services, nothing periodic, no login console."""
    r = h.root
    wants = r / "etc/systemd/system"
    links = [f"multi-user.target.wants/{s}.service" for s in [*drop, "e2scrub_reap"]]
    links += ["getty.target.wants/getty@tty1.service"]
    links += [f"timers.target.wants/{t.name}" for t in (wants / "timers.target.wants").glob("*")]
    for link in links:
        (wants / link).unlink(missing_ok=True)
    # A bound on any stop that would otherwise wait for a cgroup to empty (see Apache's below); the
    # lab's services all stop within a second or two.
    _write(r, "/etc/systemd/system.conf.d/lab.conf", "[Manager]\nDefaultTimeoutStopSec=15s\n")
    if h.role == "web":
        # On this machine systemd inside the container cannot kill a unit's cgroup ("Input/output
        # error"), and a stop that has to SIGKILL the processes left in Apache's cgroup (Debian's
        # KillMode=mixed, when the main process is gone before "apachectl stop" returns) sometimes
        # never sees the cgroup empty: it waits its whole stop timeout (90 s), then "Processes still
        # around after SIGKILL. Ignoring." So systemd signals only the main process (KillMode=process)
        # and the lab does the cgroup kill's work: Apache's processes are waited for, and any left
        # after 5 s are killed and waited for.
        wait = "for i in $(seq 100); do pidof apache2 >/dev/null || exit 0; sleep 0.05; done"
        _write(r, "/etc/systemd/system/apache2.service.d/lab.conf",
               "[Service]\nExecStop=\nExecStop=/usr/sbin/apachectl stop\nKillMode=process\n"
               f"ExecStopPost=/bin/sh -c '{wait}; pkill -KILL -x apache2; {wait}'\n")
    if h.role == "db":
        _write(r, "/etc/systemd/system/lab-db.service", _LAB_DB_UNIT)
        (wants / "multi-user.target.wants/lab-db.service").symlink_to("/etc/systemd/system/lab-db.service")
    if h.role == "db" and h.db == "oracle":
        _write(r, "/etc/systemd/system/lab-db-others.service", _LAB_DB_OTHERS_UNIT)
        (wants / "multi-user.target.wants/lab-db-others.service").symlink_to(
            "/etc/systemd/system/lab-db-others.service")


_LAB_DB_OTHERS_UNIT = """[Unit]
Description=The other instances beside the application's database: +ASM and TEST (lab)
After=network.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/lab-db-others

[Install]
WantedBy=multi-user.target
"""

# The Oracle-shaped DB host's accounts, home and database underneath (run in its root): the Oracle
# software owner oracle (oinstall, and dba: "/ as sysdba"), ORACLE_HOME with the stand-ins, and a
# PostgreSQL cluster of oracle's in ORACLE_LAB/pgdata, on 127.0.0.1 only (clients come through the listener).
_ORACLE_HOST = r"""
set -e
OH=$1 LAB=$2
groupadd -g 54321 oinstall
groupadd -g 54322 dba
useradd --create-home -u 54321 -g oinstall -G dba -s /bin/bash -p '*' oracle
install -m 755 /usr/bin/cat "$OH/bin/oracle"
touch "$LAB/phases.log" "$LAB/pdb_saved_state"
chown -R oracle:oinstall /u01
su oracle -s /bin/sh -c "/usr/lib/postgresql/15/bin/initdb -D $LAB/pgdata --auth-local=peer \
    --auth-host=scram-sha-256 >$LAB/initdb.log 2>&1"
printf "listen_addresses = '127.0.0.1'\nport = 5432\nunix_socket_directories = '%s'\n" "$LAB" \
    >>"$LAB/pgdata/postgresql.conf"
"""

_ORACLE_PROFILE = f"""# The Oracle software owner's environment (lab)
export ORACLE_BASE=/u01/app/oracle
export ORACLE_HOME={ORACLE_HOME}
export ORACLE_SID=ORCL
export PATH=$ORACLE_HOME/bin:$PATH
"""

_ORATAB = f"""# /etc/oratab: SID:ORACLE_HOME:<N|Y>. dbstart and dbshut start and stop the databases marked Y.
+ASM:{ORACLE_HOME}:N
ORCL:{ORACLE_HOME}:Y
TEST:{ORACLE_HOME}:N
"""


def _oracle_conf(phases: dict[str, float]) -> str:
    """ORACLE_LAB/lab.conf: the phase timings and the databases of the host (shell assignments)."""
    timings = "".join(f"{k}={v:g}\n" for k, v in phases.items())
    return ("# The lab's Oracle stand-ins: phase timings in seconds (from lab/hosts.py ORACLE_PHASES; read at\n"
            "# each startup and shutdown), then the databases of this host.\n"
            f"{timings}PG_SID=ORCL\nPDB_NAME=APPPDB\nSERVICE=app\nLSNR_PORT=1521\n")


def _provision_oracle(h: LabHost, phases: dict[str, float]) -> None:
    """The Oracle-shaped DB host: oracle's ORACLE_HOME of stand-ins, /etc/oratab, the lab's dbora
    (dbstart/dbshut as oracle) and the other instances' start, PostgreSQL underneath."""
    r = h.root
    for tool in ("sqlplus", "lsnrctl", "tnslsnr", "dbstart", "dbshut", "srvctl"):
        _write(r, f"{ORACLE_HOME}/bin/{tool}", (ORACLE_FILES / tool).read_text(), 0o755)
    _write(r, f"{ORACLE_LAB}/labora.sh", (ORACLE_FILES / "labora.sh").read_text())
    for tool in ("instance", "phase"):
        _write(r, f"{ORACLE_LAB}/{tool}", (ORACLE_FILES / tool).read_text(), 0o755)
    _write(r, f"{ORACLE_LAB}/lab.conf", _oracle_conf(phases))
    _write(r, "/etc/oratab", _ORATAB)
    _write(r, "/usr/local/sbin/lab-dbora", (ORACLE_FILES / "lab-dbora").read_text(), 0o755)
    _write(r, "/usr/local/sbin/lab-db-others", (ORACLE_FILES / "lab-oracle-others").read_text(), 0o755)
    sh("chroot", str(r), "sh", "-c", _ORACLE_HOST, "oracle-host", ORACLE_HOME, ORACLE_LAB)
    _write(r, "/home/oracle/.bash_profile", _ORACLE_PROFILE)
    sh("chroot", str(r), "chown", "oracle:oinstall", "/home/oracle/.bash_profile")


# --- processes --------------------------------------------------------------------------------


def _pidfile(h: LabHost) -> Path:
    return h.disk / "init.pid"


def init_pid(h: LabHost) -> int | None:
    """This machine's PID of the host's PID 1 (tini or systemd), or None when the host is down.

    The pidfile's PID counts only while it is still that host's PID 1 (PID 1 of its own PID namespace,
    in the host's network namespace): after a reboot of this machine the number may be anyone's, and
    stopping the host must never kill an unrelated process."""
    try:
        pid = int(_pidfile(h).read_text())
        want = os.stat(f"/run/netns/{h.netns}").st_ino
    except (OSError, ValueError):
        return None
    return pid if _is_init_in(Path(f"/proc/{pid}"), want) else None


def _exists(pid: int) -> bool:
    """The process exists, a zombie not yet reaped included."""
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def _is_init_in(proc: Path, netns_ino: int) -> bool:
    """Whether the process at ``proc`` is PID 1 of a PID namespace and lives in the network namespace
    whose inode is ``netns_ino``."""
    try:
        nspid = next(x for x in (proc / "status").read_text().splitlines() if x.startswith("NSpid:")).split()
        return nspid[-1] == "1" and len(nspid) > 2 and os.stat(proc / "ns/net").st_ino == netns_ino
    except (OSError, StopIteration):
        return False


def _find_init(netns: str) -> int | None:
    """The process that is PID 1 of a PID namespace and lives in the network namespace ``netns``."""
    want = os.stat(f"/run/netns/{netns}").st_ino
    for d in Path("/proc").iterdir():
        if d.name.isdigit() and _is_init_in(d, want):
            return int(d.name)
    return None


def _child_init(pid: int) -> int | None:
    """PID 1 of the namespace ``unshare --fork`` (PID ``pid``, exec'd by ``ip netns exec``) made: its
    only child, once that child runs tini (without scanning every process of this machine)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        if len(children) == 1 and Path(f"/proc/{children[0]}/comm").read_text().strip() == "tini":
            return int(children[0])
    except OSError:
        pass
    return None


# Run inside the new mount/PID/UTS namespaces, before chroot: the host's /dev, /run and hostname.
_BOOT = r"""
set -e
R=$1; NAME=$2; ROLE=$3; PY=$4
hostname "$NAME"
mount -t tmpfs -o mode=755,size=8m tmpfs "$R/dev"
for d in null zero full random urandom tty; do
    touch "$R/dev/$d"; mount --bind "/dev/$d" "$R/dev/$d"
done
# As on any Linux host (bash's process substitution opens /dev/fd/N).
ln -s /proc/self/fd "$R/dev/fd"
ln -s /proc/self/fd/0 "$R/dev/stdin"; ln -s /proc/self/fd/1 "$R/dev/stdout"; ln -s /proc/self/fd/2 "$R/dev/stderr"
mkdir -p "$R/dev/pts" "$R/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666,mode=620 devpts "$R/dev/pts"
ln -sf pts/ptmx "$R/dev/ptmx"
mount -t tmpfs -o mode=1777 tmpfs "$R/dev/shm"
mount -t tmpfs -o mode=755,size=64m tmpfs "$R/run"
if [ "$PY" = 1 ]; then
    # This machine's Debian Python, read-only (Ansible's modules run with it).
    [ -e "$R/usr/bin/python3" ] || touch "$R/usr/bin/python3"
    mkdir -p "$R/usr/lib/python3.11"
    mount --bind /usr/bin/python3.11 "$R/usr/bin/python3"
    mount --bind /usr/lib/python3.11 "$R/usr/lib/python3.11"
    mount -o remount,bind,ro "$R/usr/lib/python3.11"
fi
exec chroot "$R" /usr/bin/tini -s -- /usr/local/sbin/lab-init "$ROLE"
"""


def start_host(h: LabHost) -> None:
    """Boot the host: a fresh PID namespace whose PID 1 is tini running lab-init (SysV), or
    systemd under systemd-nspawn."""
    log = (h.disk / "console.log").open("ab")
    if h.init == "systemd":
        argv = ["systemd-nspawn", "--quiet", "--boot", "--directory", str(h.root), "--machine", SLOT + h.name,
                "--hostname", h.name,
                f"--network-namespace-path=/run/netns/{h.netns}", "--register=no", "--keep-unit", "--console=passive",
                "--link-journal=no", "--resolv-conf=off", "--timezone=off"]
    else:
        argv = ["ip", "netns", "exec", h.netns, "unshare", "--mount", "--pid", "--uts", "--fork",
                "--propagation", "private", f"--mount-proc={h.root}/proc",
                "sh", "-c", _BOOT, "boot", str(h.root), h.name, h.role, "1" if h.python else "0"]
    # systemd in the container gets the cgroup v2 (unified) hierarchy, where it can kill a service's
    # processes on restart; under the machine's v1 hierarchy it cannot ("Input/output error").
    env = {**os.environ, "SYSTEMD_NSPAWN_UNIFIED_HIERARCHY": "1"}
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True, env=env)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        pid = _child_init(proc.pid) if h.init != "systemd" else None
        pid = pid or _find_init(h.netns)
        if pid is not None:
            _pidfile(h).write_text(str(pid))
            return
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    raise LabError(f"lab: {h.name} did not start; see {h.disk / 'console.log'}")


def stop_host(h: LabHost) -> None:
    """Power the host off: killing its PID 1 ends every process in its PID namespace."""
    pid = init_pid(h)
    if pid is None:
        return
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _exists(pid):  # until reaped (systemd-nspawn then exits)
        time.sleep(0.02)
    _pidfile(h).unlink(missing_ok=True)


def run_in(h: LabHost, command: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run a shell command inside a lab host, as its root (the lab's console, not SSH)."""
    pid = init_pid(h)
    if pid is None:
        raise LabError(f"lab: {h.name} is not running")
    return subprocess.run(
        ["nsenter", "-t", str(pid), "-m", "-u", "-n", "-p", "-r", "-w", "/bin/sh", "-c", command],
        text=True, capture_output=True, check=check, timeout=timeout,
    )


def wait_booted(h: LabHost, timeout: float = 90) -> None:
    booted = ("test -e /run/lab-booted" if h.init != "systemd" else
              "case $(systemctl is-system-running) in running|degraded) true;; *) false;; esac")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ssh_answers(h.address) and run_in(h, booted, check=False).returncode == 0:
            return
        if init_pid(h) is None:
            break
        time.sleep(0.05)
    raise LabError(f"lab: {h.name} did not boot within {timeout:.0f}s; see {h.disk}/console.log "
                     f"and {h.root}/var/log/boot.log")


def ssh_answers(address: str, connect_timeout: float = 0.5, read_timeout: float = 1) -> bool:
    """sshd at the address sends its banner now."""
    try:
        with socket.create_connection((address, 22), timeout=connect_timeout) as s:
            s.settimeout(read_timeout)
            return s.recv(4).startswith(b"SSH-")
    except OSError:
        return False


def _wait_db(h: LabHost, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if run_in(h, "pg_isready -q -h 127.0.0.1", check=False).returncode == 0:
            return
        time.sleep(0.2)
    raise LabError(f"lab: PostgreSQL on {h.name} did not become ready within {timeout:.0f}s")


# On the Oracle-shaped DB host: the application's database is open and its service READY.
ORACLE_READY_LINE = "OPEN READ WRITE, PDB APPPDB READ WRITE, service app READY, listener up"


def _wait_oracle(h: LabHost, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if run_in(h, f"{ORACLE_LAB}/phase", check=False).stdout.strip() == ORACLE_READY_LINE:
            return
        time.sleep(0.2)
    raise LabError(f"lab: the Oracle-shaped database on {h.name} did not open within {timeout:.0f}s; "
                   f"see {h.root}{ORACLE_LAB}/phases.log")


def _app_db_oracle(h: LabHost) -> None:
    """Create the application's role and database in the PostgreSQL under the Oracle-shaped host."""
    psql = f"su oracle -s /bin/sh -c \"psql -h {ORACLE_LAB} -d postgres -qtA -c \\\"{{}}\\\"\""
    exists = run_in(h, psql.format("SELECT 1 FROM pg_roles WHERE rolname='app'")).stdout.strip()
    if exists != "1":
        run_in(h, psql.format("CREATE ROLE app LOGIN PASSWORD 'app'"))
        run_in(h, psql.format("CREATE DATABASE app OWNER app"))


def _app_db(h: LabHost) -> None:
    """Create the application's role and database (first boot of the DB host)."""
    psql = "su postgres -s /bin/sh -c \"psql -qtA -c \\\"{}\\\"\""
    exists = run_in(h, psql.format("SELECT 1 FROM pg_roles WHERE rolname='app'")).stdout.strip()
    if exists != "1":
        run_in(h, psql.format("CREATE ROLE app LOGIN PASSWORD 'app'"))
        run_in(h, "su postgres -s /bin/sh -c 'createdb -O app app'")


# --- what Fabric and the tests read ------------------------------------------------------------


def _replace(path: Path, text: str) -> None:
    """Write a file whole, atomically (a lab in another slot may be reading it)."""
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(text)
    tmp.replace(path)


def _every_slots_hosts() -> list[LabHost]:
    """The hosts of the labs of every slot brought up from this checkout (each name once)."""
    seen: dict[str, LabHost] = {}
    for f in sorted(STATE.glob("hosts*.json")):
        for d in json.loads(f.read_text()):
            seen.setdefault(d["name"], LabHost(**d))
    return sorted(seen.values(), key=lambda h: (h.role != "db", len(h.name), h.name))


def _write_client_files(hosts: list[LabHost]) -> None:
    """This lab's hosts, and known_hosts and ssh_config for every slot's hosts (one lab: its own)."""
    with _state_lock():
        _replace(HOSTS_FILE, json.dumps([asdict(h) for h in hosts], indent=1))
        every = _every_slots_hosts()
        pub = {h.name: (STATE / "hostkeys" / h.key_name / "ssh_host_ed25519_key.pub").read_text().split(" ")
               for h in every}
        _replace(STATE / "known_hosts", "".join(f"{h.address} {pub[h.name][0]} {pub[h.name][1]}\n" for h in every))
        cfg = "".join(
            f"Host {h.name}\n  HostName {h.address}\n  User root\n  IdentityFile {STATE / 'admin_key'}\n"
            f"  IdentitiesOnly yes\n  UserKnownHostsFile {STATE / 'known_hosts'}\n"
            "  StrictHostKeyChecking yes\n  BatchMode yes\n  ConnectTimeout 5\n\n"
            for h in every
        )
        _replace(STATE / "ssh_config", cfg)


def inventory_data(name: str = "lab.yaml") -> dict:
    """inventory/lab.yaml (or another of the lab's, such as lab-oracle.yaml) with its local paths made
    absolute, to be changed and written elsewhere."""
    import yaml

    data = yaml.safe_load((REPO / "inventory" / name).read_text())
    data["connect"]["identity"] = str(STATE / "admin_key")
    data["connect"]["known_hosts"] = str(STATE / "known_hosts")
    if "script" in data["db"]:
        data["db"]["script"] = str(FILES / "dbora")
    return data


def current() -> list[LabHost]:
    """The hosts of the lab that is up (or was last brought up)."""
    try:
        return [LabHost(**d) for d in json.loads(HOSTS_FILE.read_text())]
    except FileNotFoundError:
        return []


def host(name: str) -> LabHost:
    """One host of the current lab, by name."""
    for h in current():
        if h.name == name:
            return h
    raise LabError(f"lab: no host named {name!r} in the current lab")


# --- the verbs --------------------------------------------------------------------------------


def up(web_count: int = 2, init: str = "sysv", kind: str = "full", python: bool = False,
       db: str = "postgres", phases: dict[str, float] | None = None, db_count: int = 1,
       standby: bool = False) -> list[LabHost]:
    """Bring up a fresh lab (anything left of an earlier one is torn down first): ``kind`` of web
    hosts, with ``python`` this machine's Python in every host, and DB hosts as ``db`` says (with
    "oracle", ``phases`` overrides some of ORACLE_PHASES): one, or ``db_count`` 2 (db1, db2), db2 a
    streaming standby of db1 with ``standby``. It returns once the lab is whole (every host running,
    routed through the bridge, its sshd answering), else says which host and why."""
    hosts = plan(web_count, init, kind, python, db, db_count, standby)
    with held():
        down()
        _boot_all(hosts, {**ORACLE_PHASES, **(phases or {})})
        wrong = problems(hosts)
        if wrong:
            raise LabError(f"lab: up, but not whole: {'; '.join(wrong)}")
    return hosts


def _boot_all(hosts: list[LabHost], phases: dict[str, float]) -> None:
    lower = ensure_rootfs()
    admin = admin_pubkey()
    _bridge_up()
    for h in hosts:
        _net_up(h)
        if _disk_up(h, lower):
            _provision(h, hosts, admin, phases)
    _write_client_files(hosts)
    # The order svrchain exists to keep: the database first, then the web servers (whose workers
    # would otherwise hold no valid session, as in the seed's failure); a standby after its primary.
    webs = [h for h in hosts if h.role == "web"]
    for db in sorted((h for h in hosts if h.role == "db"), key=lambda h: bool(h.standby_of)):
        _boot_db(db, hosts)
    for h in webs:
        start_host(h)
    for h in webs:
        wait_booted(h)


def _boot_db(db: LabHost, hosts: list[LabHost]) -> None:
    """Boot one DB host and wait for its database; a standby is first made from its (running) primary."""
    primary = next((h for h in hosts if h.address == db.standby_of), None)
    if primary is not None and not (db.root / dbpair.PGDATA.lstrip("/") / "standby.signal").exists():
        dbpair.make_standby(primary, db)
    start_host(db)
    wait_booted(db)
    if db.db == "oracle":
        _wait_oracle(db)
        _app_db_oracle(db)
        return
    _wait_db(db)
    if primary is None:
        _app_db(db)
        dbpair.prepare_primary(db)


def boot(name: str) -> None:
    """Power-cycle one host: everything in it is killed, its disk is kept, and it boots again."""
    h = host(name)
    stop_host(h)
    start_host(h)
    wait_booted(h)


def down(wait: float = WAIT) -> None:
    """Tear the lab down: processes, mounts, namespaces, the bridge and the hosts' disks. It returns
    only when all of it is gone (every host's processes, nspawn included, and its network namespace,
    the bridge, the mounts and disks), else says what is left; it waits for another process holding
    the lab (up to ``wait`` seconds) rather than pull the lab from under it."""
    with held(wait):
        names = {h.name for h in current()}
        if VAR.exists():
            names |= {p.name for p in VAR.iterdir() if p.is_dir()}
        spaces = _lab_namespaces()
        for name in sorted(names):
            stop_host(LabHost(name, "web", ""))
        _end_processes(spaces)
        for name in sorted(names):
            h = LabHost(name, "web", "")
            if _mounted(h.root):
                sh("umount", "-l", str(h.root), check=False)
            shutil.rmtree(h.disk, ignore_errors=True)
            _net_down(h)
        for ns in spaces.values():
            sh("ip", "netns", "del", ns, check=False)
        sh("ip", "link", "del", BRIDGE, check=False)
        HOSTS_FILE.unlink(missing_ok=True)
        _gone(names)
        with contextlib.suppress(OSError):
            VAR.rmdir()  # empty now


def _gone(names: set[str], timeout: float = 15) -> None:
    """Wait until nothing of the lab is left (a disk whose lazily unmounted overlay was still busy is
    removed again), else say what is."""
    deadline = time.monotonic() + timeout
    while left := leftovers(names):
        if time.monotonic() > deadline:
            raise LabError(f"lab: down, but not all of it: {'; '.join(left)}")
        for n in names:
            shutil.rmtree(VAR / n, ignore_errors=True)
        time.sleep(0.1)


def _lab_namespaces() -> dict[int, str]:
    """The network namespaces of this slot's hosts, by inode."""
    out = {}
    for p in Path("/run/netns").glob(NETNS_PREFIX + "*"):
        with contextlib.suppress(OSError):
            out[p.stat().st_ino] = p.name
    return out


# The processes that start a host and live outside it: systemd-nspawn, and ip netns exec / unshare / sh
# of a SysV host's boot; each names the host's root (under VAR) on its command line.
_STARTERS = ("systemd-nspawn", "unshare", "sh", "ip")


def lab_processes(spaces: dict[int, str]) -> dict[int, str]:
    """This slot's lab's processes now: those in a host's network namespace, and the starters of the
    hosts (by their command line naming a host's root), as PID -> a short description."""
    found = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            argv = (d / "cmdline").read_bytes().split(b"\0")
            inode = os.stat(d / "ns/net").st_ino
        except OSError:
            continue
        name = os.path.basename(argv[0].decode(errors="replace"))
        if inode in spaces:
            found[int(d.name)] = f"{name} (PID {d.name}) in {spaces[inode]}"
        elif name in _STARTERS and f"{VAR}/".encode() in b" ".join(argv):
            found[int(d.name)] = f"{name} (PID {d.name}) of {VAR}"
    return found


def _end_processes(spaces: dict[int, str], timeout: float = 20) -> None:
    """Kill what is left of the hosts and wait until it has all exited (a PID 1 killed takes its
    namespace's processes with it; nspawn then exits on its own)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = lab_processes(spaces)
        if not left:
            return
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)


def leftovers(names: set[str]) -> list[str]:
    """What a teardown left behind (nothing when it was complete): processes, namespaces, mounts,
    the bridge and the hosts' veths, disks."""
    left = list(lab_processes(_lab_namespaces()).values())[:5]
    left += [f"network namespace {p.name}" for p in Path("/run/netns").glob(NETNS_PREFIX + "*")]
    mounts = Path("/proc/self/mounts").read_text().split("\n")
    left += [f"mount {m.split()[1]}" for m in mounts if m and m.split()[1].startswith(f"{VAR}/")]
    links = sh("ip", "-o", "link", "show").stdout
    for dev in [BRIDGE, *(LabHost(n, "web", "").veth for n in sorted(names))]:
        if re.search(rf"^\d+: {re.escape(dev)}[@:]", links, re.M):
            left.append(f"link {dev}")
    left += [f"disk {VAR / n}" for n in sorted(names) if (VAR / n).exists()]
    return left


def _bridge_whole() -> bool:
    """The bridge exists, is up, and has this machine's lab address."""
    link = sh("ip", "-o", "link", "show", "dev", BRIDGE, check=False).stdout
    flags = re.search(r"<([^>]*)>", link)
    address = sh("ip", "-o", "-4", "addr", "show", "dev", BRIDGE, check=False).stdout
    return bool(flags) and "UP" in flags.group(1).split(",") and f" {GATEWAY}/24 " in address


def problems(hosts: list[LabHost] | None = None) -> list[str]:
    """Why the lab is not whole now (empty when it is): the bridge up with this machine's address,
    every host's PID 1 running, its address routed through the bridge, its sshd sending its banner."""
    check_namespace()
    hosts = current() if hosts is None else hosts
    if not hosts:
        return ["no lab is up (python -m lab up)"]
    if not _bridge_whole():
        return [f"the bridge {BRIDGE} with {GATEWAY}/24 is down or gone (was the lab torn down meanwhile?)"]
    wrong = [f"{h.name}: not running (no PID 1; see {h.disk / 'console.log'})" for h in hosts if init_pid(h) is None]
    asks = "".join(f"route get {h.address}\n" for h in hosts)
    routes = sh("ip", "-o", "-force", "-batch", "-", input=asks, check=False)
    devices = dict(re.findall(r"^(\S+) .*?\bdev (\S+)", routes.stdout, re.M))
    wrong += [f"{h.name}: {h.address} would go through {devices.get(h.address, 'nowhere')}, not the bridge {BRIDGE}"
              for h in hosts if devices.get(h.address) != BRIDGE]
    with ThreadPoolExecutor(max_workers=32) as pool:
        answers = list(pool.map(ssh_answers, [h.address for h in hosts]))
    wrong += [f"{h.name}: sshd at {h.address}:22 sends no SSH banner" for h, ok in zip(hosts, answers, strict=True)
              if not ok and init_pid(h) is not None]
    return wrong
