"""What verify reads of the chain at work on the DB server: the services' systemd state, the
watcher, the database's current run, the restarts owed, the trigger's runs, SELinux contexts."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from svrchain.core import render, selinux, sysv, trigger_status
from svrchain.core.inventory import Inventory
from svrchain.facts import Fact, Raw

# The database's, the trigger's and the watcher's service: each (its SysV name, its systemd unit).
Services = tuple[tuple[str, str], tuple[str, str], tuple[str, str]]


@dataclass(frozen=True)
class ChainState:
    """The services' systemd state, the watcher, the database's run, the trigger's runs."""

    enabled: tuple[str, ...]  # `systemctl is-enabled` of the database's unit and the trigger's
    order: dict[str, str]  # the trigger unit's After= and PartOf=, the database unit's Wants=
    chkconfig_list: str  # `chkconfig --list` of the services (chkconfig hosts)
    watcher_up: bool
    watcher_enabled: str
    run: str  # the database's current run, as the trigger tells it ("none")
    service: str  # where the run is (chain.service_problem reads it)
    ready: bool  # the database is ready (the trigger's own check)
    owed: tuple[tuple[str, str, str], ...]  # (web server, run, since) of each restart still owed
    status: str  # the trigger's last status
    going: str  # the runs going on now
    now: float | None  # the host's clock
    tick: str  # when the watcher last looked, and the run it saw
    processes: str  # the processes that may be the database's (db.run.process)
    owner: int | None  # db.run.user's uid, None when there is no such account
    selinux: str  # what selinux.CHECK said of the files svrchain writes


def current_run_command(inv: Inventory) -> str:
    """Prints the database's current run on the DB host ('none' when it does not run), as the trigger
    tells it."""
    # (The init script: a host still in an earlier svrchain's layout, which had only that.)
    scripts = " ".join((render.trigger_path(inv), render.trigger_init_path(inv)))
    return f'(for t in {scripts}; do [ -x "$t" ] && exec "$t" run; done; echo none)'


def service_probe(inv: Inventory) -> str:
    """On a systemd host, where the database's run is: the cgroup of its main process (db.run.process),
    else whether its unit is active (db.run.command); nothing on a SysV host."""
    unit = shlex.quote(render.db_unit(inv))
    where = (f'pid=$(pgrep -o -f -- {shlex.quote(inv.db.run.process)}) && echo "pid $pid" && cat /proc/$pid/cgroup'
             if inv.db.run.process else f"echo active $(systemctl is-active {unit})")
    return f"{sysv.on_systemd(where)}; true"


def chain_commands(inv: Inventory, services: Services, selinux_paths: list[str]) -> dict[str, str]:
    """The commands of :class:`ChainFact` (``$READY``: the readiness check, read from stdin)."""
    (dbname, dbunit), (tname, tunit), (wname, wunit) = services
    names = " ".join(shlex.quote(name) for name in (dbname, tname, wname))
    return {
        "enabled": sysv.enabled_command(dbunit, tunit),
        "order": sysv.on_systemd(f"systemctl show -p After -p PartOf {tunit}; systemctl show -p Wants {dbunit}"),
        "chklist": f"command -v chkconfig >/dev/null && for s in {names}; do chkconfig --list \"$s\" 2>&1; done; true",
        "wup": sysv.status_command(wname, wunit),
        "wenabled": sysv.enabled_command(wunit),
        "run": current_run_command(inv),
        "service": service_probe(inv),
        "ready": """printf '%s\\n' "$READY" | sh >/dev/null 2>&1""",
        "owed": f"for f in {render.owed_dir(inv)}/*; do [ -f \"$f\" ] && echo \"${{f##*/}} $(cat \"$f\")\"; done; true",
        "status": f"cat {trigger_status.status_path(inv)} 2>/dev/null; true",
        "going": trigger_status.going_command(inv),
        "now": "date +%s.%N",
        "tick": f"cat {render.watch_tick(inv)} 2>/dev/null; true",
        "procs": trigger_status.processes_command(inv) if inv.db.run.process else "true",
        "owner": f"id -u -- {shlex.quote(inv.db.run.user or 'root')}",
        "selinux": f"set -- {' '.join(shlex.quote(p) for p in selinux_paths)}\n{selinux.CHECK}",
    }


def outside_service(inv: Inventory) -> str:
    """What is wrong, and the hand-over, when the database runs outside its service (verify and
    restart-chain say the same)."""
    return (f"it runs outside {render.db_unit(inv)} / /etc/init.d/{inv.db.service}; stop it and start it "
            "through its service once")


def service_problem(inv: Inventory, text: str) -> str | None:
    """Why the database does not run under its service, from :func:`service_probe`'s output
    (None when it does, or when that cannot be told: a SysV host, the database not running)."""
    unit = render.db_unit(inv)
    words = text.split()
    if words[:1] == ["active"]:
        return None if words[1:] == ["active"] else f"{unit} is {' '.join(words[1:]) or 'unknown'}"
    if words[:1] != ["pid"] or len(words) < 2:
        return None
    groups = [line.split(":", 2)[2] for line in text.splitlines()[1:] if line.count(":") >= 2]
    # Its unit is a component of its cgroup path in systemd's hierarchy, whichever that is here (v2's
    # 0::, v1's name=systemd, a container's prefix such as /payload); none of the lines names it: outside.
    if any(unit in g.split("/") for g in groups):
        return None
    units = sorted({g for g in groups if re.search(r"\.(service|scope)(/|$)", g)})
    where = ", ".join(units) or max(groups, key=len, default="no cgroup")
    return f"its process {words[1]} is in {where}, not {unit}"


def _float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def parse_chain(raw: Raw) -> ChainState:
    """:class:`ChainFact`'s output, typed."""
    r = raw.results
    props = dict(line.split("=", 1) for line in r["order"].stdout.splitlines() if "=" in line)
    owed = tuple((w, run, t) for w, run, t in (ln.split() for ln in r["owed"].stdout.splitlines()
                                                 if len(ln.split()) == 3))
    owner = r["owner"].stdout.strip()
    return ChainState(
        tuple(r["enabled"].stdout.split()), props, r["chklist"].stdout, r["wup"].ok, r["wenabled"].stdout.strip(),
        r["run"].stdout.strip() or "none", r["service"].stdout, r["ready"].ok, owed, r["status"].stdout,
        r["going"].stdout, _float(r["now"].stdout), r["tick"].stdout, r["procs"].stdout,
        int(owner) if r["owner"].ok and owner.isdigit() else None, r["selinux"].stdout)


class ChainFact(Fact[ChainState]):
    """What verify reads of the chain at work (the readiness check on stdin: it may hold a password),
    for the database's, the trigger's and the watcher's ``services`` (each its name and unit) and the
    files whose SELinux context is checked."""

    name = "chain"
    # pgrep -f for db.run.process (service, procs) and the trigger's scan for the run (run: the oldest
    # process of the DB's owner that matches; held-keys reads the owner's home as the owner meanwhile)
    first = ("service", "procs", "run")

    def __init__(self, services: Services, selinux_paths: list[str]):
        self.services, self.selinux_paths = services, selinux_paths

    def prelude(self, inv: Inventory) -> str:
        return "READY=$(cat)"

    def stdin(self, inv: Inventory) -> bytes:
        return render.ready_check(inv).encode()

    def commands(self, inv: Inventory) -> dict[str, str]:
        return chain_commands(inv, self.services, self.selinux_paths)

    def parse(self, inv: Inventory, raw: Raw) -> ChainState:
        return parse_chain(raw)
