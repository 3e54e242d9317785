"""``make demo``: the chain on the lab, end to end, for a person to watch: the seed's story on the
Oracle-shaped DB host (``--db oracle``, the default).

Lab up (an ORACLE_HOME of stand-ins over PostgreSQL, docs/lab.md); ``fab bootstrap`` with ``db.oracle``;
with svrchain's watcher stopped, the DBA's ``shutdown immediate`` and ``startup`` in sqlplus: Oracle
starts in phases, the PHP page shows each phase's error, then stays failing (ORA-03113, as in the
seed); the watcher started again follows that run: Apache restarted once the service is READY; then
``service dbora restart`` (dbshut + dbstart), followed once; ``fab verify``; lab down.

``--db postgres``: the same chain with PostgreSQL behind the lab's dbora (pg_ctl restart, the service's
restart, ``fab restart-chain``).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from lab import entry, hosts

REPO = Path(__file__).resolve().parent.parent
FAB = str(Path(sys.executable).parent / "fab")


def say(text: str) -> None:
    print(f"\n=== {text}", flush=True)


def page(address: str) -> str:
    try:
        with urllib.request.urlopen(f"http://{address}/", timeout=3) as r:
            return f"{r.status} {r.read().decode().strip()}"
    except urllib.error.HTTPError as exc:
        return f"{exc.code} {exc.read().decode().strip().splitlines()[-1]}"
    except OSError as exc:
        return f"--- {exc}"


def show_pages(webs: list[hosts.LabHost], seconds: float, until_ok: bool = False) -> None:
    """Print every web host's page answer a few times a second (with Apache's PID)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        answers = {w.name: page(w.address) for w in webs}
        for w in webs:
            pid = hosts.run_in(w, "cat /var/run/apache2/apache2.pid 2>/dev/null", check=False).stdout.strip()
            print(f"  +{time.monotonic() - t0:4.1f}s {w.name} apache={pid or '-':>5}  {answers[w.name][:110]}")
        if until_ok and all(a.startswith("200") for a in answers.values()):
            return
        time.sleep(0.5)


def fab(*args: str, inventory: str = "lab.yaml") -> None:
    """Run a task on the lab's own inventory, named explicitly (svrchain has no default inventory)."""
    print(f"$ fab {' '.join(args)} -I inventory/{inventory}", flush=True)
    subprocess.run([FAB, *args, "-I", str(REPO / "inventory" / inventory)], cwd=REPO, check=True)


def oracle_phase(db: hosts.LabHost) -> str:
    """The application's database's phase on the Oracle-shaped host, in one line."""
    return hosts.run_in(db, f"{hosts.ORACLE_LAB}/phase", check=False).stdout.strip().removesuffix(", listener up")


def watch(db: hosts.LabHost, webs: list[hosts.LabHost], seconds: float, until_ok: bool = False,
          after_ready: float | None = None) -> None:
    """Print the database's phase and every web host's page (with Apache's PID) whenever either
    changes, until ``seconds`` pass, or every page is OK (``until_ok``), or ``after_ready`` seconds
    after the service became READY again (after it was not)."""
    t0 = time.monotonic()
    last, ready_at, was_down = None, None, False
    while time.monotonic() - t0 < seconds:
        phase = oracle_phase(db)
        answers = [(w.name, hosts.run_in(w, "cat /var/run/apache2/apache2.pid 2>/dev/null", check=False).stdout.strip(),
                    page(w.address)) for w in webs]
        now = (phase, answers)
        if now != last:
            print(f"  +{time.monotonic() - t0:4.1f}s  {phase}")
            for name, pid, answer in answers:
                print(f"           {name} apache={pid or '-':>5}  {answer[:100]}")
            last = now
        ready = phase.startswith("OPEN READ WRITE, PDB APPPDB READ WRITE, service app READY")
        was_down = was_down or not ready
        if was_down and ready and ready_at is None:
            ready_at = time.monotonic()
        if until_ok and all(a.startswith("200") for _, _, a in answers):
            return
        if after_ready is not None and ready_at is not None and time.monotonic() - ready_at > after_ready:
            return
        time.sleep(0.25)


def window(db: hosts.LabHost, webs: list[hosts.LabHost]) -> None:
    """Print when the service became READY and how long after it the last web server restarted."""
    log = hosts.run_in(db, f"grep 'ORCL SERVICE_READY' {hosts.ORACLE_LAB}/phases.log | tail -n 1").stdout.split()
    started = [float(hosts.run_in(w, "stat -c %.9Y /var/run/apache2/apache2.pid").stdout) for w in webs]
    print(f"  service READY -> last web server restarted: {max(started) - float(log[0]):.2f}s")


def oracle_story(args: argparse.Namespace) -> None:
    """The seed's story on the Oracle-shaped DB host."""
    say(f"lab up: 1 Oracle-shaped DB host (stand-ins for dbstart, sqlplus, lsnrctl over PostgreSQL) and "
        f"{args.web} web hosts (Apache + PHP)")
    lab = hosts.up(args.web, db="oracle")
    db, webs = lab[0], lab[1:]
    phases = ", ".join(f"{k} {v:g}s" for k, v in hosts.ORACLE_PHASES.items())
    print(f"  phase timings (lab/hosts.py ORACLE_PHASES): {phases}")
    print(hosts.run_in(db, "grep -v '^#' /etc/oratab; ps -o user=,pid=,args= -u oracle | grep -E '_pmon_|tnslsnr'; "
                           "su - oracle -c 'lsnrctl status' | sed -n '/^Services Summary/,$p'").stdout, end="")
    say("fab bootstrap: the built-in dbora template (dbstart/dbshut as oracle), oracle-ready, the key, "
        "its restricted line, the trigger and the watcher (a run: ora_pmon_ORCL)")
    fab("bootstrap", inventory="lab-oracle.yaml")
    say("the PHP page on every web host, through the listener (port 1521) and a persistent connection")
    show_pages(webs, 1)
    say("svrchain's watcher stopped; the DBA restarts the database in sqlplus: shutdown immediate, startup")
    hosts.run_in(db, "/etc/init.d/svr_restart_watch stop >/dev/null")
    hosts.run_in(db, "(su - oracle -c 'sqlplus / as sysdba' >/tmp/dba.log 2>&1 <<'SQL' &\n"
                     "shutdown immediate\nstartup\nSQL\n)")
    watch(db, webs, 60, after_ready=6)
    print("  the DBA's sqlplus:")
    print(hosts.run_in(db, "grep -E '^(Database|ORACLE)' /tmp/dba.log | sed 's/^/    SQL> /'").stdout, end="")
    say("no restart of Apache: the page stays failing (the seed's failure). The watcher started again: "
        "it follows that run")
    hosts.run_in(db, "/etc/init.d/svr_restart_watch start >/dev/null")
    watch(db, webs, 60, until_ok=True)
    print(hosts.run_in(db, "tail -n 4 /var/log/svr_restart.log").stdout, end="")
    say("service dbora restart (dbshut, then dbstart, as oracle): Oracle starts in phases, the chain "
        "restarts Apache once the service is READY")
    hosts.run_in(db, "(service dbora restart >/dev/null 2>&1 &)")
    time.sleep(0.5)
    watch(db, webs, 90, until_ok=True)
    window(db, webs)
    time.sleep(1)
    print(hosts.run_in(db, "tail -n 5 /var/log/svr_restart.log").stdout, end="")
    say("fab verify")
    fab("verify", inventory="lab-oracle.yaml")


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m lab.demo", description=__doc__)
    p.add_argument("--web", type=int, default=2)
    p.add_argument("--db", choices=hosts.DBS, default="oracle", help="the DB host (oracle)")
    p.add_argument("--keep", action="store_true", help="leave the lab up at the end")
    args = p.parse_args()
    if os.geteuid() != 0:
        print("demo: must run as root (the lab uses network namespaces)", file=sys.stderr)
        return 2
    try:
        if args.db == "oracle":
            oracle_story(args)
        else:
            postgres_story(args)
    except subprocess.CalledProcessError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1
    finally:
        if not args.keep:
            say("lab down")
            hosts.down()
    return 0


def postgres_story(args: argparse.Namespace) -> None:
    """The chain with PostgreSQL behind the lab's dbora."""
    say(f"lab up: 1 DB host (PostgreSQL standing in for Oracle) and {args.web} web hosts (Apache + PHP)")
    lab = hosts.up(args.web)
    db, webs = lab[0], lab[1:]
    for h in lab:
        print(f"  {h.name:6} {h.address}")
    say("fab bootstrap: install dbora, the key, its restricted line, and the svr_restart trigger")
    fab("bootstrap")
    say("the PHP page on every web host, through its persistent DB connection")
    show_pages(webs, 1)
    say("without svrchain's watcher, the DBA restarts the database by itself: the page breaks")
    hosts.run_in(db, "/etc/init.d/svr_restart_watch stop; /usr/local/lib/svrchain/dbora restart")
    show_pages(webs, 3)
    say("the watcher started again: it sees a run of the database nobody followed, and follows it")
    hosts.run_in(db, "/etc/init.d/svr_restart_watch start")
    show_pages(webs, 30, until_ok=True)
    say("the DBA restarts PostgreSQL by hand (pg_ctl restart as postgres): the watcher follows it")
    hosts.run_in(db, "su postgres -s /bin/sh -c \"/usr/lib/postgresql/15/bin/pg_ctl restart -s -w "
                     "-D /var/lib/postgresql/15/main -l /var/log/postgresql/postgresql-15-main.log "
                     "-o '-c config_file=/etc/postgresql/15/main/postgresql.conf'\" >/dev/null 2>&1")
    show_pages(webs, 30, until_ok=True)
    print(hosts.run_in(db, "tail -n 5 /var/log/svr_restart.log").stdout, end="")
    say("now through its service: service dbora restart (followed once: the service and the watcher agree)")
    hosts.run_in(db, "service dbora restart")
    show_pages(webs, 30, until_ok=True)
    print(hosts.run_in(db, "tail -n 4 /var/log/svr_restart.log").stdout, end="")
    say("a maintenance window: fab restart-chain")
    fab("restart-chain", "--yes")
    say("fab verify")
    fab("verify")


if __name__ == "__main__":
    entry(main)
