"""``make demo``: the chain on the lab, end to end, for a person to watch.

Lab up; ``fab bootstrap``; the DB restarted by itself with svrchain's watcher stopped (the PHP page
breaks, as in the seed); the watcher started again (it follows that run: the page recovers); the
DBA's own ``pg_ctl restart`` (followed within a second); the DB restarted through its service;
``fab restart-chain``; lab down.
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


def fab(*args: str) -> None:
    """Run a task on the lab's own inventory, named explicitly (svrchain has no default inventory)."""
    print(f"$ fab {' '.join(args)} -I inventory/lab.yaml", flush=True)
    subprocess.run([FAB, *args, "-I", str(REPO / "inventory" / "lab.yaml")], cwd=REPO, check=True)


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m lab.demo", description=__doc__)
    p.add_argument("--web", type=int, default=2)
    p.add_argument("--keep", action="store_true", help="leave the lab up at the end")
    args = p.parse_args()
    if os.geteuid() != 0:
        print("demo: must run as root (the lab uses network namespaces)", file=sys.stderr)
        return 2
    try:
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
    except subprocess.CalledProcessError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1
    finally:
        if not args.keep:
            say("lab down")
            hosts.down()
    return 0


if __name__ == "__main__":
    entry(main)
