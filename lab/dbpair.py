"""The lab's DB hosts: one (``db``, as always) or two (``db1`` 198.18.0.10 and ``db2`` 198.18.0.11, each a
full DB host), and with ``standby`` db2 a PostgreSQL streaming standby of db1.

The standby is made from the primary with the cached root's own ``pg_basebackup`` (no download): the
primary takes the base backup of itself (through its lab address, as the replication user) into a
scratch directory, which becomes the standby's data directory before the standby first boots; ``-R``
leaves ``standby.signal`` and the primary's connection in it, so db2 boots streaming from db1.

The web page says where the database is in one line (``$lab = [...]``): one address, or several
(``host=A,B target_session_attrs=read-write``) for a pair, where the page also counts a promotion as a
new run of the database (``lab_run_started()``: the later of the postmaster's start and the newest
timeline's, created by the lab in the application's database), so after a switchover the workers that
were started before it fail until the web server restarts, as they do after a restart.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

from lab import LabError, hosts

if TYPE_CHECKING:
    from lab.hosts import LabHost

PAIR = (("db1", "198.18.0.10"), ("db2", "198.18.0.11"))  # the two DB hosts' names and addresses
PGDATA = "/var/lib/postgresql/15/main"
PG_BIN = "/usr/lib/postgresql/15/bin"
REPLICATOR = "replicator"  # the standby's account on the primary (REPLICATION, password: the lab's)
SCRATCH = "/var/tmp/lab-standby"  # on the primary: its base backup, moved to the standby's disk
# The one line of the web page (lab/files/index.php) that says where the database is.
PAGE_DB_LINE = "$lab = ['host' => '198.18.0.10', 'port' => 5432, 'oracle' => false, 'pair' => false];"
_PAGE_LINE_RE = re.compile(r"^\$lab = \[.*\];$", re.M)
# The run of the database as a pair's page sees it: the later of the postmaster's start and the start of
# the newest timeline (a promotion begins one: its history file's time). Owned by postgres, who may list
# pg_wal; the application's account may only call it.
_RUN_FUNCTION = (
    "CREATE OR REPLACE FUNCTION lab_run_started() RETURNS double precision LANGUAGE sql SECURITY DEFINER "
    "SET search_path = pg_catalog AS 'SELECT extract(epoch from greatest(pg_postmaster_start_time(), "
    "(SELECT max(modification) FROM pg_ls_waldir() WHERE name LIKE ''%.history'')))'"
)


def db_hosts(count: int, standby: bool, init: str, python: bool, db: str) -> list[LabHost]:
    """The lab's DB hosts: ``db`` alone (count 1), else db1 and db2; with ``standby``, db2 follows db1."""
    if standby and db != "postgres":
        raise LabError("lab: a streaming standby is PostgreSQL's; use it with --db postgres")
    count = 2 if standby else count
    if count not in (1, 2):
        raise LabError("lab: the number of DB hosts must be 1 or 2")
    if count == 1:
        return [hosts.LabHost("db", "db", hosts.DB_ADDRESS, init, python=python, db=db)]
    (n1, a1), (n2, a2) = PAIR
    return [hosts.LabHost(n1, "db", a1, init, python=python, db=db),
            hosts.LabHost(n2, "db", a2, init, python=python, db=db, standby_of=a1 if standby else "")]


def page_line(addresses: list[str], oracle: bool = False) -> str:
    """The page's line for a database at ``addresses`` (several: a pair, reached read-write)."""
    if not addresses or not all(re.fullmatch(r"198\.18\.0\.\d{1,3}", a) for a in addresses):
        raise LabError("lab: the page's database is one or more lab addresses (198.18.0.N), comma-separated")
    port = 1521 if oracle else 5432
    return (f"$lab = ['host' => '{','.join(addresses)}', 'port' => {port}, 'oracle' => {json.dumps(oracle)}, "
            f"'pair' => {json.dumps(len(addresses) > 1)}];")


def page_for(lab_hosts: list[LabHost]) -> str:
    """The page's line when the web hosts are built: the pair through a multi-host string when db2 is a
    standby, else the first DB host (one of two independent DB hosts: ``python -m lab page`` changes it)."""
    dbs = [h for h in lab_hosts if h.role == "db"]
    pair = [h.address for h in dbs] if any(h.standby_of for h in dbs) else [dbs[0].address]
    return page_line(pair, oracle=dbs[0].db == "oracle")


def render_page(page: str, line: str) -> str:
    """The page with its database line replaced by ``line``."""
    if not _PAGE_LINE_RE.search(page):
        raise LabError("lab: the web page has no $lab line to point at a database")
    return _PAGE_LINE_RE.sub(lambda _: line, page, count=1)


def point_page(web: LabHost, addresses: list[str]) -> None:
    """Point a running full web host's page at the database at ``addresses`` (its next requests use it)."""
    if web.role != "web" or web.kind != "full":
        raise LabError(f"lab: {web.name} has no PHP page to point at a database (a full web host has)")
    page = web.root / "var/www/html/index.php"
    tmp = page.with_name("index.php.tmp")
    tmp.write_text(render_page(page.read_text(), page_line(addresses, oracle=web.db == "oracle")))
    tmp.chmod(0o644)
    tmp.replace(page)


def provision(h: LabHost) -> None:
    """A DB host of a pair (first boot): replication from the lab's subnet, as the replication user."""
    if h.name not in dict(PAIR) or h.db != "postgres":
        return
    with (h.root / "etc/postgresql/15/main/pg_hba.conf").open("a") as f:
        f.write(f"host replication {REPLICATOR} {hosts.SUBNET}.0/24 scram-sha-256\n")
    with (h.root / "etc/postgresql/15/main/postgresql.conf").open("a") as f:
        f.write("wal_keep_size = 256MB\n")  # a standby stopped for a while catches up without an archive


def _psql(sql: str) -> str:
    return f"su postgres -s /bin/sh -c \"psql -d app -qtA -c \\\"{sql}\\\"\""


def prepare_primary(h: LabHost) -> None:
    """On a pair's primary with the application's database: the replication user and the pair's run."""
    if h.name not in dict(PAIR) or h.db != "postgres" or h.standby_of:
        return
    hosts.run_in(h, _psql(_RUN_FUNCTION))
    hosts.run_in(h, _psql("REVOKE ALL ON FUNCTION lab_run_started() FROM PUBLIC"))
    hosts.run_in(h, _psql("GRANT EXECUTE ON FUNCTION lab_run_started() TO app"))
    made = hosts.run_in(h, _psql(f"SELECT 1 FROM pg_roles WHERE rolname='{REPLICATOR}'")).stdout.strip()
    if made != "1":
        hosts.run_in(h, _psql(f"CREATE ROLE {REPLICATOR} REPLICATION LOGIN PASSWORD '{REPLICATOR}'"))


def make_standby(primary: LabHost, standby: LabHost) -> None:
    """Before the standby's first boot: the primary's base backup becomes the standby's data directory."""
    conninfo = (f"host={primary.address} user={REPLICATOR} password={REPLICATOR} "
                f"application_name={standby.name}")
    hosts.run_in(primary, f"rm -rf {SCRATCH} && su postgres -s /bin/sh -c "
                          f"\"{PG_BIN}/pg_basebackup -d '{conninfo}' -D {SCRATCH} -R -X stream -c fast\"")
    data = standby.root / PGDATA.lstrip("/")
    hosts.sh("rm", "-rf", str(data))
    hosts.sh("cp", "-a", str(primary.root / SCRATCH.lstrip("/")), str(data))
    hosts.run_in(primary, f"rm -rf {SCRATCH}")
    if not (data / "standby.signal").exists():
        raise LabError(f"lab: {standby.name}: the base backup from {primary.name} left no standby.signal")


def in_recovery(h: LabHost) -> bool | None:
    """Whether PostgreSQL on the host is a standby now (None when it does not answer)."""
    r = hosts.run_in(h, _psql("SELECT pg_is_in_recovery()"), check=False)
    return {"t": True, "f": False}.get(r.stdout.strip())

