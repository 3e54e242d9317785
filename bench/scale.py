"""``make bench SCALE=1``: the fan-out at the sizes real sites have, on light lab web hosts.

For 1 DB host (a full lab host: PostgreSQL, the trigger, the watcher) and N light web hosts (sshd and
a stand-in web server whose restart takes a known 0.1 s and whose page reports the DB run it was
started against), N = 1, 10, 50, 100, 200 by default, measures:

- ``fab bootstrap`` from scratch and as a no-op re-run (median of 3): wall time, the controller's
  peak memory (max RSS of ``fab``), SSH connections per host (the hosts' sshd logs);
- the trigger's fan-out after ``service dbora restart`` on the DB host (median of 3): PostgreSQL
  ready (its own log line) -> the last web server restarted (the trigger's status), and -> the last
  page healthy (its stand-in answering, started against the new run; checked with one request per
  host afterwards);
- the cost of one SSH handshake with the trigger's key and options, on this machine (wall and CPU);
- with ``--tools``: the same bootstrap as a pyinfra deploy and as an Ansible playbook (from the
  bench's own environment, ``.venv-tools``), each from scratch (after ``fab uninstall``) and as a
  no-op, on the same hosts, each checked by svrchain's ``verify``.

Writes ``bench/results/scale-<time>.json`` (one entry per N), a PNG of each figure against N and the
table. ``--merge`` combines results files of separate runs (one N per run keeps each lab short).
Timings are reported, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tabulate import tabulate

from bench.run import REPO, RESULTS, SVRCHAIN, fab, import_seconds, lab_state, measure, where_it_went
from bench.run import inventory as bench_inventory
from lab import LabError, entry
from lab import hosts as labhosts
from lab.slot import held
from svrchain.core import render

TOOLS_VENV = REPO / ".venv-tools"
SIZES = [1, 10, 50, 100, 200]


# --- the inventory and the hosts' logs ----------------------------------------------------------


def inventory(n: int) -> Path:
    """The lab inventory for the N light web hosts (their stand-in's restart command)."""
    return bench_inventory(n, labhosts.LIGHT_RESTART_COMMAND, "scale")


def accepted() -> dict[str, int]:
    """Per host: SSH logins accepted so far, read from its sshd log through its disk (no process
    started in 200 hosts; rsyslog on the DB host, sshd's own -E log on light hosts)."""
    out = {}
    for h in labhosts.current():
        try:
            text = (h.root / "var/log/auth.log").read_text(errors="replace")
        except FileNotFoundError:
            text = ""
        out[h.name] = text.count("Accepted publickey")
    return out


def _proc_stats() -> dict[int, tuple[str, int, float]]:
    """Every process of this machine: (its name, its parent, the CPU seconds of its reaped children)."""
    out, tick = {}, os.sysconf("SC_CLK_TCK")
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            head, _, rest = (d / "stat").read_text().rpartition(")")
        except OSError:
            continue
        f = rest.split()  # f[0] is the state (field 3): ppid 4, cutime 16, cstime 17
        out[int(d.name)] = (head.partition("(")[2], int(f[1]), (int(f[13]) + int(f[14])) / tick)
    return out


def hosts_cpu() -> float:
    """CPU seconds that the lab hosts' sshd listeners have reaped so far: every connection's sshd and all
    it ran (handshakes, probes, commands) on every host. Read from this machine's /proc: no process is
    started in the hosts. A connection counts once it has closed: one kept open after the run (Ansible's
    ControlPersist) is not counted."""
    procs, inits = _proc_stats(), {labhosts.init_pid(h) for h in labhosts.current()} - {None}

    def in_lab(pid: int) -> bool:
        while pid > 1 and pid not in inits:
            pid = procs[pid][1] if pid in procs else 0
        return pid in inits

    return round(sum(cpu for pid, (name, ppid, cpu) in procs.items()
                     if name == "sshd" and procs.get(ppid, ("",))[0] != "sshd" and in_lab(pid)), 3)


def measured(inv: Path, *args: str, env: dict | None = None, argv: list[str] | None = None) -> dict:
    """A run (``fab`` with ``args``, or ``argv``): wall time, peak RSS, SSH connections per host, the
    hosts' CPU (``hosts_cpu``)."""
    before, cpu = accepted(), hosts_cpu()
    if argv is None:
        result = fab(inv, *args)
        result.pop("output")
    else:
        result = command(argv, env)
    time.sleep(0.3)  # rsyslog (DB host) writes its last lines
    after = accepted()
    conns = [after[h] - before.get(h, 0) for h in after]
    return {**result, "conns_per_host_max": max(conns), "conns_per_host_min": min(conns),
            "hosts_cpu_s": round(hosts_cpu() - cpu, 3)}


def command(argv: list[str], env: dict | None = None) -> dict:
    """Run a tool; wall time and peak RSS of its whole process tree (largest single process)."""
    result = measure(argv, env)
    result.pop("output")
    return result


def bootstrap_runs(inv: Path, runs: int, *, argv: list[str] | None = None, env: dict | None = None) -> dict:
    """From scratch once, then ``runs`` no-op re-runs (median reported)."""
    scratch = measured(inv, "bootstrap", argv=argv, env=env)
    noops = [measured(inv, "bootstrap", argv=argv, env=env) for _ in range(runs)]
    median = sorted(noops, key=lambda r: r["wall_s"])[len(noops) // 2]
    return {"scratch": scratch, "noop": {**median, "wall_s_all": [r["wall_s"] for r in noops]},
            "peak_rss_mb": max(r["peak_rss_mb"] for r in [scratch, *noops])}


# --- the trigger's fan-out ------------------------------------------------------------------------


def _status() -> dict:
    text = (labhosts.host("db").root / "var/lib/svrchain/svr_restart.status").read_text()
    out: dict = {"webs": {}}
    for line in text.splitlines():
        p = line.split()
        if p[0] == "web":
            out["webs"][p[1]] = (p[2], float(p[3]))
        elif p[0] == "run":
            out["run"] = p[1]
        else:
            out[p[0]] = float(p[1])
    return out


def _db_run() -> str:
    db = labhosts.host("db")
    return labhosts.run_in(db, "su postgres -s /bin/sh -c \"psql -XqtA -c 'SELECT extract(epoch FROM "
                               "pg_postmaster_start_time())'\"").stdout.strip()


def _page(address: str) -> str:
    try:
        with urllib.request.urlopen(f"http://{address}/", timeout=5) as r:
            return r.read().decode(errors="replace").strip()
    except OSError as exc:
        return f"FAIL {exc}"


def _finished_status(before: str, timeout: float = 120) -> dict | None:
    """The trigger's next status (not ``before``) once it says finished; None after ``timeout``."""
    status_file = labhosts.host("db").root / "var/lib/svrchain/svr_restart.status"
    deadline = time.time() + timeout
    while time.time() < deadline:
        text = status_file.read_text() if status_file.exists() else ""
        try:
            st = _status() if text != before else {}
        except (FileNotFoundError, ValueError, IndexError):
            st = {}
        if "finished" in st:
            return st
        time.sleep(0.1)
    return None


def _db_restart(start_delay: float) -> str:
    """``service dbora restart`` on the DB host, its PostgreSQL started ``start_delay`` seconds after
    the start script returned (the lab's dbora reads /etc/lab-db.start-delay): a database that takes
    that long to become ready, as Oracle does. Returns the status file's text before it."""
    db = labhosts.host("db")
    status_file = db.root / "var/lib/svrchain/svr_restart.status"
    delay_file = db.root / "etc/lab-db.start-delay"
    if start_delay > 0:
        delay_file.write_text(f"{start_delay}\n")
    else:
        delay_file.unlink(missing_ok=True)
    before = status_file.read_text() if status_file.exists() else ""
    labhosts.run_in(db, "service dbora restart >/dev/null 2>&1")
    return before


def fan_out(start_delay: float = 0.0) -> dict:
    """``service dbora restart`` on the DB host (what restart-chain runs there): the trigger's run,
    phase by phase."""
    from bench.run import db_ready_time

    webs = [h for h in labhosts.current() if h.role == "web"]
    # The gate starts a restart no sooner than its gap after the last one ended: measure each fan-out
    # after a quiet spell, as a DB restart in production comes, not held back by the one before.
    time.sleep(render.GATE_GAP)
    t0 = time.time()
    try:
        st = _finished_status(_db_restart(start_delay), 120 + start_delay)
    finally:
        (labhosts.host("db").root / "etc/lab-db.start-delay").unlink(missing_ok=True)
    if st is None:
        return {"error": "no trigger run finished within 120 s of the DB restart", "issued": t0}
    time.sleep(1.0)  # the last stand-ins start listening
    ready = db_ready_time()
    run = _db_run()
    healthy, bad = [], []
    for h in webs:
        try:
            listening = float((h.root / "var/lib/lab-web/listening").read_text())
            page_run = (h.root / "var/lib/lab-web/run").read_text().split()[0]
        except (FileNotFoundError, ValueError, IndexError):
            bad.append(h.name)
            continue
        if page_run != run:
            bad.append(h.name)
        healthy.append(listening)
    with ThreadPoolExecutor(max_workers=8) as pool:
        pages = list(pool.map(_page, [h.address for h in webs]))
    bad += [h.name for h, text in zip(webs, pages, strict=True) if not text.startswith(f"OK run={run} ")]
    done = [t for state, t in st["webs"].values() if state == "ok"]
    restarts = sorted(t - ready for t in done)
    return {**phases(st, t0, ready, restarts, healthy), "start_delay_s": start_delay,
            "restarted": len(done), "not_healthy": sorted(set(bad))}


def phases(st: dict, issued: float, ready: float, restarts: list[float], healthy: list[float]) -> dict:
    """Where a fan-out's time went, each phase from the one before (seconds)."""
    def r(x: float | None) -> float | None:
        return round(x, 3) if x is not None else None

    connected = st.get("connected")
    return {
        "issued_to_ready_s": r(ready - issued),
        "issued_to_trigger_started_s": r(st["started"] - issued),
        "trigger_started_to_connected_s": r(connected - st["started"]) if connected else None,
        "ready_to_connected_s": r(connected - ready) if connected else None,
        "trigger_saw_ready_s": r(st["ready"] - ready),
        "ready_to_first_restart_s": r(restarts[0]) if restarts else None,
        "ready_to_median_restart_s": r(statistics.median(restarts)) if restarts else None,
        "ready_to_last_restart_s": r(restarts[-1]) if restarts else None,
        "ready_to_last_healthy_s": r(max(healthy) - ready) if healthy else None,
    }


def show_phases(n: int, f: dict) -> None:
    """One line per fan-out: where its time went."""
    if "error" in f:
        print(f"bench: N={n}: fan-out FAILED: {f['error']}", flush=True)
        return
    print(f"bench: N={n}: fan-out (DB start held {f['start_delay_s']} s): issued→trigger started "
          f"{f['issued_to_trigger_started_s']} s; trigger started→every connection tried "
          f"{f['trigger_started_to_connected_s']} s ({f['ready_to_connected_s']} s after DB ready); "
          f"DB ready→trigger saw it {f['trigger_saw_ready_s']} s; DB ready→first/median/last restart "
          f"{f['ready_to_first_restart_s']}/{f['ready_to_median_restart_s']}/{f['ready_to_last_restart_s']} s; "
          f"→last healthy {f['ready_to_last_healthy_s']} s", flush=True)


# Issue 23's targets against the bench's own floors (reported, never asserted).
NOOP_TARGET = 1.3  # the no-op bootstrap within 1.3× its floor
RESTART_TARGET = 1.5  # DB ready -> the last web server restarted within 1.5× the restart floor


def verdict(value: float | None, floor: float | None, target: float) -> str:
    """``value`` against ``floor``: the ratio and whether it is within ``target``×."""
    if not value or not floor:
        return "not measured"
    ratio = value / floor
    return f"{ratio:.2f}× (target ≤ {target}×: {'met' if ratio <= target else 'MISSED'})"


def show_noop(n: int, res: dict) -> None:
    """The no-op against its floor, and where its time went."""
    noop, floor = res["svrchain"]["noop"], res["noop_floor"]["wall_s"]
    print(f"bench: N={n}: no-op {noop['wall_s']} s against its floor {floor} s: "
          f"{verdict(noop['wall_s'], floor, NOOP_TARGET)}; where it went: {where_it_went(noop)}; imports "
          f"(counted apart) {noop.get('imports_s')} s; the floor's controller CPU {res['noop_floor'].get('cpu_s')} s; "
          f"the hosts' CPU (every connection's sshd and what it ran) {noop.get('hosts_cpu_s')} s, the floor's "
          f"{res['noop_floor'].get('hosts_cpu_s')} s (controller and hosts share this machine's "
          f"{os.cpu_count()} cores)", flush=True)
    replay = res.get("replay_floor")
    if replay:
        print(f"bench: N={n}: the same {replay['commands']} remote commands sent by bare paramiko (the replay "
              f"floor): {replay['wall_s']} s, controller CPU {replay['cpu_s']} s, the hosts' CPU "
              f"{replay['hosts_cpu_s']} s; the no-op against it (svrchain's own cost): "
              f"{noop['wall_s'] / replay['wall_s']:.2f}×", flush=True)


CPU_BOUND_HOSTS = 10  # web hosts a core from which a fan-out is bound by the lab's shared cores


def per_host_ms(seconds: float | None, floor: float | None, n: int, cores: int) -> float | None:
    """What a fan-out spent per web host beyond the restarts themselves, in ms of CPU, when every host
    shares the same ``cores`` (the lab): its wall time beyond the restart floor, times the cores, over N."""
    if seconds is None or floor is None or n < 1:
        return None
    return round((seconds - floor) * cores / n * 1000, 1)


def show_restart_target(n: int, res: dict) -> None:
    """The median fan-outs against the restart floor, where their time went, and what they spent per web
    host beyond the restarts against what the targets leave (docs/performance.md, "The fan-out's CPU
    budget")."""
    f, floor = res.get("fan_out", {}), res["restart_floor"].get("to_last_healthy_s")
    cores = os.cpu_count() or 1
    last = f.get("ready_to_last_restart_s")

    def budget(seconds: float | None, target: float | None) -> str:
        # Only where the fan-out is bound by the shared cores (many hosts a core), not by latency.
        if n < CPU_BOUND_HOSTS * cores:
            return ""
        return (f"; CPU per web host beyond the restart {per_host_ms(seconds, floor, n, cores)} ms, the target "
                f"leaves {per_host_ms(target, floor, n, cores)} ms")

    print(f"bench: N={n}: DB ready→last restart {last} s against the restart floor "
          f"{floor} s: {verdict(last, floor, RESTART_TARGET)}; where it went (median "
          f"fan-out): trigger started→every connection tried {f.get('trigger_started_to_connected_s')} s, DB "
          f"ready→trigger saw it {f.get('trigger_saw_ready_s')} s, →first restart "
          f"{f.get('ready_to_first_restart_s')} s, →median {f.get('ready_to_median_restart_s')} s, →last "
          f"{last} s{budget(last, floor and floor * RESTART_TARGET)}", flush=True)
    held = res.get("fan_out_held_5s", {}).get("ready_to_last_restart_s")
    if held is not None and floor is not None:
        print(f"bench: N={n}: DB start held 5 s: ready→last restart {held} s against the floor + 1 s "
              f"({floor + 1:.2f} s): {'met' if held <= floor + 1 else 'MISSED'}{budget(held, floor + 1)}",
              flush=True)


def _sshd(h: labhosts.LabHost, up: bool) -> None:
    """Stop a light web host's sshd (its listener; no session is open then), or start it again."""
    labhosts.run_in(h, "/usr/sbin/sshd -E /var/log/auth.log" if up else
                    "p=$(cat /run/sshd.pid) && kill $p && while kill -0 $p 2>/dev/null; do sleep 0.05; done")


def owed_restart(away: float) -> dict:
    """A web host's sshd stopped across a fan-out, kept away ``away`` seconds more, then started: from
    sshd listening again to its owed restart done (its stand-in started again against the DB's run)."""
    webs = [h for h in labhosts.current() if h.role == "web"]
    h, db = webs[-1], labhosts.host("db")
    owed = db.root / f"var/lib/svrchain/svr_restart.owed/{h.name}"
    runfile = h.root / "var/lib/lab-web/run"
    time.sleep(render.GATE_GAP)  # the gate's gap since its last restart: the owed one is not held back
    _sshd(h, up=False)
    try:
        st = _finished_status(_db_restart(0.0))
        if st is None or not owed.exists():
            return {"error": f"{h.name} was not owed a restart after the fan-out"}
        time.sleep(away)
    finally:
        _sshd(h, up=True)
    back = time.time()
    deadline = back + 60
    while owed.exists() and time.time() < deadline:
        time.sleep(0.05)
    if owed.exists():
        return {"error": f"{h.name}: its owed restart did not come within 60 s of sshd listening again"}
    started = float(runfile.read_text().split()[1])
    return {"away_s": round(back - st["finished"], 1), "back_to_restarted_s": round(started - back, 3)}


def handshake_cost(inv: Path, count: int = 20) -> dict:
    """One SSH handshake with the trigger's key and options, from the DB host to web1, ``count`` times
    in a row: wall time each, the client's CPU (its processes on the DB host) and the server's (the
    sshd processes web1's listener forked for it), each per handshake."""
    from svrchain.core import inventory as inventory_mod
    from svrchain.core import render

    i = inventory_mod.load(inv)
    web = i.web.servers[0]
    opts = " ".join(render.ssh_options(i))
    script = (f"s=$(date +%s.%N); for i in $(seq {count}); do ssh -n -T -i {i.key.path} {opts} "
              "-o KexAlgorithms=curve25519-sha256 -o LogLevel=ERROR -S /run/svrchain/bench-hs "
              f"-f -N -o ControlMaster=yes {i.web.user}@{web.address} && "
              "ssh -S /run/svrchain/bench-hs -O exit x 2>/dev/null; done; e=$(date +%s.%N); echo $s $e; times")
    sshd = labhosts.host(web.name)
    server0 = _children_cpu(sshd)
    r = labhosts.run_in(labhosts.host("db"), f"bash -c {shlex.quote(script)}")
    time.sleep(0.2)
    server1 = _children_cpu(sshd)
    lines = r.stdout.split("\n")
    s, e = map(float, lines[0].split())
    client = sum(_seconds(x) for x in lines[2].split())  # times: children's user and system
    return {"wall_ms": round(1000 * (e - s) / count, 1), "client_cpu_ms": round(1000 * client / count, 1),
            "server_cpu_ms": round(1000 * (server1 - server0) / count, 1)}


def _seconds(text: str) -> float:
    """bash ``times``' 0m0.123s."""
    m, _, rest = text.partition("m")
    return int(m) * 60 + float(rest.rstrip("s"))


def _children_cpu(h: labhosts.LabHost) -> float:
    """CPU seconds of the finished children of the host's sshd listener (one per connection)."""
    out = labhosts.run_in(h, "set -- $(cut -d')' -f2 /proc/$(pgrep -o -x sshd)/stat); echo ${14} ${15}").stdout
    return sum(int(x) for x in out.split()) / os.sysconf("SC_CLK_TCK")


def restart_floor(webs: list[labhosts.LabHost]) -> dict:
    """The stand-in's restart run directly on every web host at once (no SSH, no gate, no trigger):
    from the start to the last page answering, what N restarts at once cost on this machine."""
    t0 = time.time()
    with ThreadPoolExecutor(max_workers=min(64, len(webs))) as pool:
        list(pool.map(lambda h: labhosts.run_in(h, f"{labhosts.LIGHT_RESTART_COMMAND} >/dev/null 2>&1"), webs))
    time.sleep(1.0)
    last = max(float((h.root / "var/lib/lab-web/listening").read_text()) for h in webs)
    return {"to_last_healthy_s": round(last - t0, 3)}


# (With every ACK sent at once, as svrchain's own connections do: else sshd's Nagle waits about 40 ms
# for a delayed ACK before its answer to the first channel.)
_FLOOR = r"""
import socket, sys, threading, paramiko
hosts, key, known = sys.argv[1].split(","), sys.argv[2], sys.argv[3]
class Quick:
    def __init__(self, s): self.s = s
    def recv(self, n):
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1); return self.s.recv(n)
    def __getattr__(self, k): return getattr(self.s, k)
def one(addr):
    s = socket.create_connection((addr, 22)); s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s = Quick(s)
    c = paramiko.SSHClient(); c.load_host_keys(known); c.set_missing_host_key_policy(paramiko.RejectPolicy())
    c.connect(addr, username="root", key_filename=key, sock=s, look_for_keys=False, allow_agent=False)
    _, out, _ = c.exec_command("sh -c 'cat /etc/hostname'"); out.read(); c.close()
ts = [threading.Thread(target=one, args=(a,)) for a in hosts]
[t.start() for t in ts]; [t.join() for t in ts]
"""


def noop_floor(inv: Path) -> dict:
    """The no-op's floor on this machine: a Python interpreter that imports paramiko, makes one
    handshake per host (all at once) and runs one command on each; no svrchain."""
    from svrchain.core import inventory as inventory_mod

    i = inventory_mod.load(inv)
    hosts = [i.db.address, *(w.address for w in i.web.servers)]
    return floor_runs("the no-op floor", [sys.executable, "-c", _FLOOR, ",".join(hosts),
                                          str(i.path(i.connect.identity)), str(i.path(i.connect.known_hosts))])


def floor_runs(what: str, argv: list[str]) -> dict:
    """A floor's program run three times: the median's wall time, its CPU and the hosts' CPU meanwhile."""
    runs = []
    for _ in range(3):
        t0, host0 = time.monotonic(), hosts_cpu()
        p = subprocess.Popen(argv)
        _, status, usage = os.wait4(p.pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise LabError(f"bench: {what} failed ({os.waitstatus_to_exitcode(status)}); {lab_state()}")
        wall = time.monotonic() - t0
        time.sleep(0.3)  # every connection's sshd reaped
        runs.append((wall, usage.ru_utime + usage.ru_stime, hosts_cpu() - host0))
    wall, cpu, host = sorted(runs)[1]
    return {"wall_s": round(wall, 3), "cpu_s": round(cpu, 3), "hosts_cpu_s": round(host, 3)}


# A no-op bootstrap run in this process's child with every remote command it sends recorded (the host's
# address, the command line, its stdin, whether it is the host lock): what the replay floor sends again.
_RECORD = r"""
import base64, json, sys, paramiko
from svrchain.remote import connection
out, records, exec_command, sendall = sys.argv[1], [], paramiko.Channel.exec_command, paramiko.Channel.sendall
def recorded_exec(self, command):
    self._svrchain_record = [self.get_transport().getpeername()[0], command, b"",
                             connection.HOST_LOCK in command]
    records.append(self._svrchain_record)
    return exec_command(self, command)
def recorded_sendall(self, data):
    if hasattr(self, "_svrchain_record"):
        self._svrchain_record[2] += bytes(data)
    return sendall(self, data)
paramiko.Channel.exec_command, paramiko.Channel.sendall = recorded_exec, recorded_sendall
sys.argv = ["svrchain", "bootstrap"]
from svrchain.program import run
try:
    run()
except SystemExit as exc:
    code = exc.code
else:
    code = 0
json.dump({"code": code, "records": [[a, c, base64.b64encode(i).decode(), lock] for a, c, i, lock in records]},
          open(out, "w"))
"""

# The same remote commands from an interpreter with paramiko only: each host's in the order svrchain sent
# them, every host at once, one connection each (the host lock kept open to the end, as svrchain keeps it).
_REPLAY = r"""
import base64, json, socket, sys, threading, paramiko
data, key, known = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3]
by_host = {}
for addr, command, stdin, lock in data["records"]:
    by_host.setdefault(addr, []).append((command, base64.b64decode(stdin), lock))
failed = []
def one(addr, commands):
    s = socket.create_connection((addr, 22)); s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    c = paramiko.SSHClient(); c.load_host_keys(known); c.set_missing_host_key_policy(paramiko.RejectPolicy())
    c.connect(addr, username="root", key_filename=key, sock=s, look_for_keys=False, allow_agent=False)
    for command, stdin, lock in commands:
        chan = c.get_transport().open_session()
        chan.exec_command(command)
        if lock:
            if chan.makefile("rb").readline().strip() != b"locked":
                failed.append(addr)
            continue
        if stdin:
            chan.sendall(stdin)
        chan.shutdown_write()
        chan.makefile("rb").read(); chan.makefile_stderr("rb").read()
        if chan.recv_exit_status() != 0:
            failed.append(addr)
    c.close()
ts = [threading.Thread(target=one, args=item) for item in by_host.items()]
[t.start() for t in ts]; [t.join() for t in ts]
sys.exit(1 if failed else 0)
"""


def replay_floor(inv: Path) -> dict:
    """The no-op's remote work without svrchain: the remote commands of one no-op bootstrap (recorded),
    sent again by an interpreter that imports paramiko only, one connection per host, every host at once
    (median of 3). Against it, the no-op's ratio is svrchain's own cost (starting, checking the
    inventory, planning, reporting); the rest of the gap to ``noop_floor`` is what reading the facts costs
    the hosts, which any tool that reads them pays."""
    from svrchain.core import inventory as inventory_mod

    i = inventory_mod.load(inv)
    records = RESULTS / f".replay-{os.getpid()}.json"
    env = {**os.environ, "INVENTORY": str(inv)}
    try:
        r = subprocess.run([sys.executable, "-c", _RECORD, str(records)], cwd=REPO, env=env,
                           capture_output=True, text=True, timeout=300)
        recorded = json.loads(records.read_text()) if records.exists() else {"code": r.returncode, "records": []}
        if recorded["code"] != 0 or not recorded["records"]:
            raise LabError(f"bench: recording the no-op's remote commands failed ({recorded['code']}): "
                           f"{(r.stdout + r.stderr)[-300:]}; {lab_state()}")
        res = floor_runs("the replay floor", [sys.executable, "-c", _REPLAY, str(records),
                                              str(i.path(i.connect.identity)), str(i.path(i.connect.known_hosts))])
    finally:
        records.unlink(missing_ok=True)
    return {**res, "commands": len(recorded["records"])}


def load_average() -> float:
    """This machine's 1-minute load average (other work shares its cores)."""
    return float(Path("/proc/loadavg").read_text().split()[0])


# --- the other tools --------------------------------------------------------------------------------


def tools_available() -> bool:
    return (TOOLS_VENV / "bin" / "pyinfra").exists() and (TOOLS_VENV / "bin" / "ansible-playbook").exists()


def tool_runs(tool: str, inv: Path, n: int, runs: int) -> dict:
    """The same bootstrap with another tool, from scratch (after fab uninstall) and as a no-op;
    svrchain's verify must pass on what it set up."""
    from bench import tools

    fab(inv, "uninstall", "--yes")
    argv, env = tools.command(tool, inv, TOOLS_VENV)
    res = bootstrap_runs(inv, runs, argv=argv, env=env)
    res["verify"] = "ok" if subprocess.run([SVRCHAIN, "verify"], cwd=REPO, env={**os.environ, "INVENTORY": str(inv)},
                                           capture_output=True).returncode == 0 else "FAILED"
    return res


# --- one size ----------------------------------------------------------------------------------------


def bench_n(n: int, with_tools: bool, opts: argparse.Namespace) -> dict:
    """One size, on a lab this process holds from up to down (no other process's lab down in between)."""
    with held():
        return _bench_n(n, with_tools, opts)


def _bench_n(n: int, with_tools: bool, opts: argparse.Namespace) -> dict:
    print(f"bench: N={n}: lab up ({n} light web hosts)", flush=True)
    t0 = time.monotonic()
    labhosts.up(n, kind="light", python=with_tools)
    try:
        res: dict = {"n": n, "web_hosts": "light", "lab_up_s": round(time.monotonic() - t0, 1)}
        inv = inventory(n)
        print(f"bench: N={n}: svrchain bootstrap", flush=True)
        if opts.trigger_only:
            fab(inv, "bootstrap")
        else:
            res["svrchain"] = bootstrap_runs(inv, 3)
            res["svrchain"]["noop"]["imports_s"] = import_seconds(inv, "bootstrap")
            res["verify"] = measured(inv, "verify")
            res["handshake"] = handshake_cost(inv)
            res["noop_floor"] = noop_floor(inv)
            res["replay_floor"] = replay_floor(inv)
            show_noop(n, res)
        res["load_before"] = load_average()
        res.update(trigger_runs(n, opts))
        if with_tools and not opts.trigger_only:
            for tool in ("pyinfra", "ansible"):
                print(f"bench: N={n}: {tool}", flush=True)
                try:
                    res[tool] = tool_runs(tool, inv, n, 1)
                except LabError as exc:  # another tool's failure loses none of svrchain's figures
                    res[tool] = {"error": str(exc)[:2000]}
                    print(f"bench: N={n}: {tool} failed, its figures left out: {str(exc)[:300]}", flush=True)
        res["load_after"] = load_average()
        return res if opts.trigger_only else summarize(res)
    finally:
        labhosts.down()


# --- an estate: two chains (db1, db2) sharing every web server -------------------------------------


def estate_inventory(n: int) -> Path:
    """Two chains over the same N light web hosts, shop (db1) and billing (db2): each web server in both."""
    import yaml

    data = yaml.safe_load(inventory(n).read_text())
    db, web = data.pop("db"), data["web"]
    servers = web.pop("servers")
    data["chains"] = {
        "shop": {"db": {**db, "name": "db1", "address": "198.18.0.10"}, "web": {"servers": servers}},
        "billing": {"db": {**db, "name": "db2", "address": "198.18.0.11"}, "web": {"servers": servers}},
    }
    path = labhosts.STATE / f"scale-estate-{n}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def bench_estate(n: int) -> dict:
    """``--estate``: on 2 DB hosts and N light web hosts in both chains, bootstrap from scratch, a no-op
    re-run and verify: wall time and SSH connections per host (min/max: 1/1 when each host is connected
    once per run, whatever the chains it is in)."""
    with held():
        print(f"bench: N={n}: lab up (db1, db2, {n} light web hosts)", flush=True)
        labhosts.up(n, kind="light", db_count=2)
        try:
            inv = estate_inventory(n)
            runs = {what: measured(inv, task) for what, task in
                    (("bootstrap", "bootstrap"), ("noop", "bootstrap"), ("verify", "verify"))}
        finally:
            labhosts.down()
    return {"n": n, "chains": 2, **{f"{what}_s": r["wall_s"] for what, r in runs.items()},
            **{f"{what}_conns_per_host": f"{r['conns_per_host_min']}/{r['conns_per_host_max']}"
               for what, r in runs.items()}}


def estate_main(sizes: list[int], stamp: str) -> int:
    """``--estate``: each size, the table, the results file."""
    results = [bench_estate(n) for n in sizes]
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"estate-{stamp}.json"
    path.write_text(json.dumps({"when": stamp, "results": results}, indent=1))
    print(tabulate([list(r.values()) for r in results], headers=list(results[0])))
    print(f"bench: wrote {path}")
    return 0


def median_run(runs: list[dict]) -> dict:
    good = sorted((r for r in runs if "error" not in r), key=lambda r: r["ready_to_last_restart_s"] or 0)
    return good[len(good) // 2] if good else {"ready_to_last_restart_s": None, "ready_to_last_healthy_s": None}


def trigger_runs(n: int, opts: argparse.Namespace) -> dict:
    """The trigger's fan-outs (as the DB is, and with its start held back), the restart floor, and an
    owed restart after an sshd outage."""
    res: dict = {}
    for delay in opts.start_delay:
        print(f"bench: N={n}: the trigger's fan-out, DB start held {delay} s", flush=True)
        runs = []
        for _ in range(opts.fan_outs):
            runs.append(fan_out(delay))
            show_phases(n, runs[-1])
        key = "fan_out" if delay == 0 else f"fan_out_held_{delay:g}s"
        res[f"{key}_all"] = runs
        res[key] = median_run(runs)
    res["restart_floor"] = restart_floor([h for h in labhosts.current() if h.role == "web"])
    print(f"bench: N={n}: restart floor (every stand-in restarted at once, no SSH): "
          f"{res['restart_floor']['to_last_healthy_s']} s", flush=True)
    show_restart_target(n, res)
    if opts.owed_away > 0:
        res["owed"] = owed_restart(opts.owed_away)
        print(f"bench: N={n}: owed restart (sshd away {res['owed'].get('away_s')} s after the run): "
              f"sshd back→restarted {res['owed'].get('back_to_restarted_s', res['owed'].get('error'))} s",
              flush=True)
    return res


def summarize(res: dict) -> dict:
    """The issue's keys at the top level of each entry."""
    s, f = res["svrchain"], res["fan_out"]
    res.update({
        "bootstrap_s": s["scratch"]["wall_s"], "noop_s": s["noop"]["wall_s"], "peak_rss_mb": s["peak_rss_mb"],
        "noop_peak_rss_mb": s["noop"]["peak_rss_mb"], "noop_first_conn_s": s["noop"].get("first_conn_s"),
        "noop_imports_s": s["noop"].get("imports_s"), "noop_cpu_s": s["noop"].get("cpu_s"),
        "noop_hosts_cpu_s": s["noop"].get("hosts_cpu_s"),
        "noop_replay_floor_s": res.get("replay_floor", {}).get("wall_s"),
        "conns_per_host": max(s["scratch"]["conns_per_host_max"], s["noop"]["conns_per_host_max"]),
        "syns_per_host": max(s["scratch"].get("syns_per_host_max", 0), s["noop"].get("syns_per_host_max", 0)),
        "ready_to_last_restart_s": f["ready_to_last_restart_s"],
        "ready_to_last_healthy_s": f["ready_to_last_healthy_s"],
        "held_ready_to_last_restart_s": res.get("fan_out_held_5s", {}).get("ready_to_last_restart_s"),
        "owed_back_to_restarted_s": res.get("owed", {}).get("back_to_restarted_s"),
    })
    for tool in ("pyinfra", "ansible"):
        if tool in res and "error" not in res[tool]:
            t = res[tool]
            res[f"{tool}_bootstrap_s"] = t["scratch"]["wall_s"]
            res[f"{tool}_noop_s"] = t["noop"]["wall_s"]
            res[f"{tool}_noop_hosts_cpu_s"] = t["noop"].get("hosts_cpu_s")
            res[f"{tool}_noop_ratio"] = round(t["noop"]["wall_s"] / res["noop_s"], 1)
            res[f"{tool}_bootstrap_ratio"] = round(t["scratch"]["wall_s"] / res["bootstrap_s"], 1)
    return res


# --- output -----------------------------------------------------------------------------------------


def table(results: list[dict], fmt: str = "simple") -> str:
    rows = []
    for r in results:
        rows.append([
            r["n"], r["bootstrap_s"], r["noop_s"], r.get("noop_first_conn_s", "-"), r.get("noop_imports_s", "-"),
            f"{r.get('noop_peak_rss_mb', '-')}/{r['peak_rss_mb']}",
            f"{r['conns_per_host']}/{r.get('syns_per_host', '-')}",
            r["ready_to_last_restart_s"], r["ready_to_last_healthy_s"],
            r.get("held_ready_to_last_restart_s") or "-", r.get("owed_back_to_restarted_s") or "-",
            r.get("noop_floor", {}).get("wall_s", "-"), r.get("replay_floor", {}).get("wall_s", "-"),
            r.get("restart_floor", {}).get("to_last_healthy_s", "-"), r["handshake"]["wall_ms"],
            f"{r['handshake'].get('client_cpu_ms', '-')}/{r['handshake'].get('server_cpu_ms', '-')}",
            r.get("pyinfra_bootstrap_s", "-"), r.get("pyinfra_noop_s", "-"),
            f"{r['pyinfra_noop_ratio']}×" if "pyinfra_noop_ratio" in r else "-",
            r.get("ansible_bootstrap_s", "-"), r.get("ansible_noop_s", "-"),
            f"{r['ansible_noop_ratio']}×" if "ansible_noop_ratio" in r else "-",
        ])
    headers = ["N (light)", "bootstrap s", "no-op s (median of 3)", "no-op →1st conn s", "no-op imports s",
               "peak MB no-op/any", "conns/host (sshd log/SYNs)",
               "DB ready→last restart s", "→last healthy s", "DB held 5 s: ready→last restart s",
               "owed: sshd back→restarted s", "no-op floor s", "no-op replay floor s", "N restarts at once s",
               "handshake ms", "handshake CPU ms client/server",
               "pyinfra s", "pyinfra no-op s", "no-op ratio", "Ansible s", "Ansible no-op s", "no-op ratio"]
    return tabulate(rows, headers=[re.sub(r" s\b", " (s)", h) for h in headers], tablefmt=fmt)


def plot(results: list[dict], stem: Path) -> list[Path]:
    """One PNG per figure against N."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ns = [r["n"] for r in results]
    figures = {
        "bootstrap": ("bootstrap wall time (s)", {"svrchain from scratch": "bootstrap_s", "svrchain no-op": "noop_s",
                                                  "pyinfra from scratch": "pyinfra_bootstrap_s",
                                                  "pyinfra no-op": "pyinfra_noop_s",
                                                  "Ansible from scratch": "ansible_bootstrap_s",
                                                  "Ansible no-op": "ansible_noop_s"}),
        "memory": ("controller peak RSS (MB)", {"fab bootstrap": "peak_rss_mb"}),
        "conns": ("SSH connections per host per run (max)", {"fab bootstrap": "conns_per_host"}),
        "fanout": ("seconds after the DB was ready", {"last web server restarted": "ready_to_last_restart_s",
                                                      "last page healthy": "ready_to_last_healthy_s"}),
    }
    paths = []
    for name, (ylabel, series) in figures.items():
        fig, ax = plt.subplots(figsize=(6.5, 4))
        for label, key in series.items():
            pts = [(r["n"], r[key]) for r in results if r.get(key) is not None]
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label)
        ax.set_xlabel("N light web hosts")
        ax.set_ylabel(ylabel)
        ax.set_xticks(ns)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        ax.set_title(f"svrchain scale bench: {ylabel}", fontsize=9)
        fig.tight_layout()
        path = stem.with_name(f"{stem.name}-{name}.png")
        fig.savefig(path, dpi=90)
        plt.close(fig)
        paths.append(path)
    return paths


def write(results: list[dict], stamp: str) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    meta = {"when": stamp, "web_hosts": "light (sshd + a stand-in web server, 0.1 s restart)",
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "kernel": platform.release()}}
    path = RESULTS / f"scale-{stamp}.json"
    path.write_text(json.dumps({**meta, "results": sorted(results, key=lambda r: r["n"])}, indent=1))
    return path


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, nargs="+", default=SIZES)
    p.add_argument("--tools", action=argparse.BooleanOptionalAction, default=None,
                   help="also pyinfra and Ansible (default: when .venv-tools has them)")
    p.add_argument("--fan-outs", type=int, default=3, help="trigger runs per N (median reported)")
    p.add_argument("--start-delay", type=float, nargs="+", default=[0.0, 5.0],
                   help="hold the DB's start back this many seconds (0: as it is; 5: as long as Oracle takes)")
    p.add_argument("--owed-away", type=float, default=8.0,
                   help="an sshd outage past the run, in seconds, before its owed restart is measured (0: none)")
    p.add_argument("--trigger-only", action="store_true",
                   help="only the trigger's measures (fan-outs, floor, owed restart): no bootstrap timings, "
                        "no other tools; printed, written as trigger-<time>.json")
    p.add_argument("--estate", action="store_true",
                   help="two chains (db1, db2) sharing every web server: bootstrap, no-op and verify, with SSH "
                        "connections per host (min/max); written as estate-<time>.json")
    p.add_argument("--merge", type=Path, nargs="+", help="combine results files of separate runs")
    p.add_argument("--markdown", type=Path, help="print the table of a results file as Markdown")
    args = p.parse_args()
    if args.markdown:
        print(table(json.loads(args.markdown.read_text())["results"], "github"))
        return 0
    stamp = time.strftime("%Y%m%dT%H%M%S")
    if args.estate:
        return estate_main(args.n, stamp)
    if args.merge:
        results = []
        for f in args.merge:
            for r in json.loads(f.read_text())["results"]:
                if "cpu_ms" in r.get("handshake", {}):  # early runs: the whole machine's CPU, not the handshake's
                    r["handshake"].pop("cpu_ms")
                results.append({**r, "source": f.name})
    else:
        if os.geteuid() != 0:
            print("bench: must run as root (the lab)", file=sys.stderr)
            return 2
        with_tools = tools_available() if args.tools is None else args.tools
        if with_tools and not tools_available():
            print(f"bench: --tools needs pyinfra and Ansible in {TOOLS_VENV} (make bench-tools)", file=sys.stderr)
            return 2
        results, partial = [], RESULTS / f"partial-{stamp}.json"
        RESULTS.mkdir(parents=True, exist_ok=True)
        for n in args.n:
            results.append(bench_n(n, with_tools, args))
            # what is measured so far, kept if a later N fails
            partial.write_text(json.dumps({"when": stamp, "results": results}, indent=1))
        if args.trigger_only:
            path = partial.replace(RESULTS / f"trigger-{stamp}.json")
            print(f"bench: wrote {path}")
            return 0
    path = write(results, stamp)
    (RESULTS / f"partial-{stamp}.json").unlink(missing_ok=True)
    pngs = plot(sorted(results, key=lambda r: r["n"]), path.with_suffix(""))
    print(table(sorted(results, key=lambda r: r["n"])))
    print(f"bench: wrote {path} and {', '.join(x.name for x in pngs)}")
    return 0


if __name__ == "__main__":
    entry(main)
