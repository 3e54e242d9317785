"""``python -m lab up [--web N] [--db oracle] [--db-hosts 2] [--standby] | down | boot HOST | exec HOST CMD |
page WEB ADDRESS[,ADDRESS] | status | check | slot N -- CMD | free N`` (as root)."""

from __future__ import annotations

import argparse
import os
import sys
import time

from lab import dbpair, entry, hosts, slot


def main(argv: list[str] | None = None) -> int:
    """Entry point of the lab's command line."""
    p = argparse.ArgumentParser(prog="python -m lab", description=__doc__)
    sub = p.add_subparsers(dest="verb", required=True)
    up = sub.add_parser("up", help="bring up a fresh lab")
    up.add_argument("--web", type=int, default=int(os.environ.get("WEB", "2")), help="web hosts (2)")
    up.add_argument("--init", choices=hosts.INITS, default=os.environ.get("INIT", "sysv"),
                    help="how the hosts boot: sysv (Debian, insserv), chkconfig (RHEL-like), systemd (sysv)")
    up.add_argument("--kind", choices=hosts.KINDS, default=os.environ.get("KIND", "full"),
                    help="web hosts: full (Apache + PHP, booted by init) or light (sshd + a stand-in web "
                         "server; up to 200, for the scale bench) (full)")
    up.add_argument("--db", choices=hosts.DBS, default=os.environ.get("DB", "postgres"),
                    help="the DB host: postgres (PostgreSQL behind the lab's dbora) or oracle (Oracle-shaped: "
                         "stand-ins for dbstart, sqlplus, lsnrctl over PostgreSQL; docs/lab.md) (postgres)")
    up.add_argument("--db-hosts", type=int, choices=(1, 2), default=int(os.environ.get("DB_HOSTS", "1")),
                    help="DB hosts: 1 (db, 198.18.0.10) or 2 (db1 198.18.0.10 and db2 198.18.0.11, each a full "
                         "DB host) (1)")
    up.add_argument("--standby", action="store_true", default=os.environ.get("STANDBY") == "1",
                    help="db2 is a PostgreSQL streaming standby of db1 (implies --db-hosts 2), and the web "
                         "pages reach the pair with host=db1,db2 target_session_attrs=read-write")
    up.add_argument("--python", action="store_true",
                    help="bind this machine's Python into every host at /usr/bin/python3 (for Ansible)")
    down = sub.add_parser("down", help="tear the lab down, leaving nothing behind")
    down.add_argument("--wait", type=float, default=slot.WAIT,
                      help="seconds to wait for another process using the lab (bench, tests) (%(default)s)")
    boot = sub.add_parser("boot", help="power-cycle a host: it boots again as SysV init does")
    boot.add_argument("host")
    ex = sub.add_parser("exec", help="run a shell command inside a host (console, not SSH)")
    ex.add_argument("host")
    ex.add_argument("command")
    page = sub.add_parser("page", help="point a web host's page at the database at ADDRESS (several, "
                                       "comma-separated: a pair, reached read-write)")
    page.add_argument("web")
    page.add_argument("addresses")
    sub.add_parser("status", help="list the hosts and whether they run")
    sub.add_parser("check", help="is the lab whole? (every host running, routed through the bridge, sshd answering)")
    in_slot = sub.add_parser("slot", help="run a command with the lab in slot N (1-9): its own network namespace "
                                       "svrctlN, host namespaces, disks; e.g. slot 1 -- python -m lab up")
    in_slot.add_argument("slot")
    in_slot.add_argument("command", nargs=argparse.REMAINDER)
    free = sub.add_parser("free", help="take down slot N's lab, whatever is left of it, and its network namespace")
    free.add_argument("slot")
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        print("lab: must run as root (network namespaces, mounts)", file=sys.stderr)
        return 2
    if args.verb == "slot":
        return slot.run(args.slot, args.command[1:] if args.command[:1] == ["--"] else args.command)
    if args.verb == "free":
        slot.free(args.slot)
        left = slot.leftovers(args.slot)
        print(f"lab: slot {args.slot} freed" if not left else f"lab: slot {args.slot}: still there: {'; '.join(left)}")
        return 1 if left else 0
    if args.verb == "up":
        t0 = time.monotonic()
        up_hosts = hosts.up(args.web, args.init, args.kind, args.python, args.db, db_count=args.db_hosts,
                            standby=args.standby)
        names = ", ".join(f"{h.name} {h.address}" for h in up_hosts[:6]) + (", ..." if len(up_hosts) > 6 else "")
        print(f"lab: up in {time.monotonic() - t0:.1f}s ({args.web} {args.kind} web hosts): {names}")
    elif args.verb == "down":
        hosts.down(args.wait)
        print("lab: down")
    elif args.verb == "boot":
        hosts.boot(args.host)
        print(f"lab: {args.host} booted")
    elif args.verb == "exec":
        r = hosts.run_in(hosts.host(args.host), args.command, check=False)
        sys.stdout.write(r.stdout)
        sys.stderr.write(r.stderr)
        return r.returncode
    elif args.verb == "page":
        dbpair.point_page(hosts.host(args.web), args.addresses.split(","))
        print(f"lab: {args.web}'s page: {args.addresses}")
    elif args.verb == "check":
        return _check()
    else:
        for h in hosts.current():
            state = "running" if hosts.init_pid(h) else "stopped"
            print(f"{h.name:8} {h.role:4} {h.address:14} {h.init:8} {h.kind:5} {state}"
                  + (f" standby of {h.standby_of}" if h.standby_of else ""))
    return 0


def _check() -> int:
    wrong = hosts.problems()
    for line in wrong:
        print(f"lab: {line}", file=sys.stderr)
    if not wrong:
        print(f"lab: whole ({len(hosts.current())} hosts)")
    return 1 if wrong else 0


if __name__ == "__main__":
    entry(main)
