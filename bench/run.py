"""``make bench``: how fast the chain is, and how it scales with the number of web servers.

For 1 DB host and N web hosts (N = 1, 4, 8, 16 by default) on the lab, measures:
- ``fab bootstrap`` from scratch and as a no-op re-run: wall time, the controller's peak memory,
  SSH connections opened per host and remote commands run per host (both from the lab sshd logs);
- ``fab restart-chain`` (full and graceful Apache restart) while a load generator requests every
  web host's PHP page: DB ready -> all web hosts healthy, failed requests before/after DB ready;
  and one Apache restart / graceful restart measured alone on one host, as the floor;
- the boot path: a power cycle of the DB host, from the trigger starting (after the start script)
  to the last web host restarted;
- the DBA's own restart (``pg_ctl restart``, bypassing the service): from the new postmaster's start
  to the watcher's trigger starting (detection latency), and on to the last web host restarted; and
  the watcher's own CPU over 20 idle seconds.
Writes a table on screen, ``bench/results/bench-<time>.json`` and ``bench/results/bench-<time>.png``.
Timings are reported, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import yaml
from tabulate import tabulate

from bench.sniff import Syns
from lab import LabError, entry
from lab import hosts as labhosts
from lab.slot import held
from svrchain.core import render, trigger_status
from svrchain.core.inventory import parse
from svrchain.core.trigger_status import TriggerRun

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
# The installed svrchain command (its tasks are the checkout's tasks/): unlike fab, which imports
# Fabric and Paramiko before any of svrchain's code runs, it starts a run's connections first.
SVRCHAIN = str(Path(sys.executable).parent / "svrchain")
FULL = "/etc/init.d/apache2 restart"
GRACEFUL = "/usr/sbin/apache2ctl graceful"


def inventory(n: int, restart_command: str, prefix: str = "bench") -> Path:
    """The lab inventory for N web hosts, with the given restart command."""
    data = labhosts.inventory_data()
    data["web"]["restart_command"] = restart_command
    data["web"]["servers"] = [
        {"name": h.name, "address": h.address, "health_url": f"http://{h.address}/"}
        for h in labhosts.current() if h.role == "web"
    ][:n]
    path = labhosts.STATE / f"{prefix}-{n}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def measure(argv: list[str], env: dict | None = None) -> dict:
    """Run a command from the repository; its wall time, the peak RSS of the largest process of its
    tree that was waited for (its controller), and its output. A failure ends the bench."""
    with Syns(labhosts.BRIDGE) as syns:
        started = time.time()
        t0 = time.monotonic()
        p = subprocess.Popen(argv, cwd=REPO, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
        lines = [(time.monotonic() - t0, line) for line in p.stdout] if p.stdout else []
        _, status, usage = os.wait4(p.pid, 0)
        wall = time.monotonic() - t0
    out = "".join(line for _, line in lines)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise LabError(f"bench: {' '.join(str(a) for a in argv[:3])} failed ({code}); {lab_state()}:\n{out[-4000:]}")
    return {"wall_s": round(wall, 3), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1), "output": out,
            "cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
            "first_conn_s": round(syns.first - started, 3) if syns.first else None,
            "syns_per_host_max": max(syns.per_host.values(), default=0), **run_phases(lines)}


# A task's first line (the inventory read and checked: Session.announce), and a host's step line.
_ANNOUNCED = re.compile(r"^svrchain: inventory ")
_STEP = re.compile(r"^\S+\s+\S+\s+(ok|changed|would-change|failed|unreachable)\b")


def run_phases(lines: list[tuple[float, str]]) -> dict:
    """When a svrchain run's output said it had got somewhere (seconds from its start): the inventory
    read and checked (everything imported by then), and its first host's step reported (connected,
    locked, facts read)."""
    announced = next((t for t, line in lines if _ANNOUNCED.match(line)), None)
    first_step = next((t for t, line in lines if _STEP.match(line)), None)
    return {"announced_s": round(announced, 3) if announced is not None else None,
            "first_step_s": round(first_step, 3) if first_step is not None else None}


def where_it_went(r: dict) -> str:
    """A run's phases in one line: start→first SYN, →inventory checked, →first step, →end."""
    return (f"start→1st SYN {r.get('first_conn_s')} s, →inventory checked (imports done) {r.get('announced_s')} s, "
            f"→first step reported {r.get('first_step_s')} s, →end {r['wall_s']} s; the controller's CPU "
            f"{r.get('cpu_s')} s")


def import_seconds(inv: Path, *args: str) -> float:
    """The run's imports, as ``python -X importtime`` counts them (every top-level import's cumulative
    time; a run of its own, as the counting slows it)."""
    out = measure([SVRCHAIN, *args], {"INVENTORY": str(inv), "PYTHONPROFILEIMPORTTIME": "1"})["output"]
    top = re.findall(r"^import time:\s+\d+ \|\s+(\d+) \| (\S.*)$", out, re.M)
    return round(sum(int(us) for us, _name in top) / 1e6, 3)


def lab_state() -> str:
    """Whether the lab is whole now, or which hosts are not and why (said when a run fails)."""
    wrong = labhosts.problems()
    return "the lab is whole" if not wrong else "the lab is not whole: " + "; ".join(wrong[:10])


def fab(inv: Path, *args: str) -> dict:
    """Run a task (the svrchain command); return wall time, the process's peak RSS and its output."""
    return measure([SVRCHAIN, *args], {"INVENTORY": str(inv)})


def sshd_counts() -> dict[str, tuple[int, int]]:
    """Per host: (SSH logins accepted, exec sessions started), from each lab sshd's log."""
    out = {}
    for h in labhosts.current():
        r = labhosts.run_in(h, "grep -c 'Accepted publickey' /var/log/auth.log; "
                               "grep -c 'Starting session: command' /var/log/auth.log", check=False)
        a, b = [*r.stdout.split(), "0", "0"][:2]
        out[h.name] = (int(a), int(b))
    return out


def measured_run(inv: Path, *args: str) -> dict:
    """A fab run with its SSH connections and remote commands per host."""
    before = sshd_counts()
    result = fab(inv, *args)
    time.sleep(0.3)  # let rsyslog write the last lines
    after = sshd_counts()
    conns = [after[h][0] - before[h][0] for h in after]
    cmds = [after[h][1] - before[h][1] for h in after]
    result.pop("output")
    return {**result, "conns_per_host_max": max(conns), "conns_per_host_min": min(conns),
            "cmds_per_host_max": max(cmds), "cmds_per_host_min": min(cmds), "cmds_total": sum(cmds)}


class Load:
    """Request every web host's page at a steady rate (bounded in time and count); record results.

    A steady 10 requests/s per host keeps the load generator from starving, on this machine's two
    cores, the very hosts and trigger it measures.
    """

    def __init__(self, addresses: list[str], max_seconds: float = 120, max_requests: int = 20000,
                 rate: float = 10.0):
        self.samples: dict[str, list[tuple[float, bool]]] = {a: [] for a in addresses}
        self.stop = threading.Event()
        self.max_seconds = max_seconds
        self.max_requests = max_requests
        self.period = 1.0 / rate
        self.threads = [threading.Thread(target=self._loop, args=(a,), daemon=True) for a in addresses]

    def _loop(self, address: str) -> None:
        end = time.time() + self.max_seconds
        samples = self.samples[address]
        tick = time.time()
        while not self.stop.is_set() and time.time() < end and len(samples) < self.max_requests:
            t = time.time()
            try:
                with urllib.request.urlopen(f"http://{address}/", timeout=2) as r:
                    ok = r.status == 200
            except (urllib.error.URLError, OSError):
                ok = False
            samples.append((t, ok))
            tick += self.period
            self.stop.wait(max(0.0, tick - time.time()))

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join()


def status() -> TriggerRun:
    """The trigger's last run on the DB host (DB host clock = this machine's clock in the lab)."""
    db = labhosts.host("db")
    return trigger_status.parse(labhosts.run_in(db, "cat /var/lib/svrchain/svr_restart.status; true").stdout)


def last_web(st: TriggerRun) -> float:
    """When the run's last web server was restarted."""
    return max(w.at for w in st.webs.values())


def run_deadline() -> float:
    """How long to wait for the trigger's run to finish: a boot or a restart's detection, then its bound."""
    return 60 + trigger_status.bound(parse(yaml.safe_dump(labhosts.inventory_data()), Path("inventory/lab.yaml")))


def db_ready_time() -> float:
    """When PostgreSQL last became ready to accept connections, from its own log (ms precision)."""
    db = labhosts.host("db")
    line = labhosts.run_in(db, "grep 'ready to accept connections' /var/log/postgresql/postgresql-15-main.log"
                               " | tail -n 1").stdout
    stamp = " ".join(line.split()[:3])  # 2026-11-25 18:30:12.345 UTC
    return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S.%f %Z").replace(tzinfo=UTC).timestamp()


def chain_under_load(inv: Path, addresses: list[str]) -> dict:
    """restart-chain while every page is requested: readiness to all-healthy, failed requests."""
    with Load(addresses) as load:
        time.sleep(max(1.0, render.GATE_GAP))  # the load running, and the gate's gap since any last restart
        t_issue = time.time()
        run = fab(inv, "restart-chain", "--yes")
        time.sleep(1.0)
    st = status()
    ready = db_ready_time()
    healthy_at = []
    for a in addresses:
        after = [(t, ok) for t, ok in load.samples[a] if t >= ready]
        last_fail = max((t for t, ok in after if not ok), default=ready)
        first_ok = min((t for t, ok in after if ok and t > last_fail), default=float("nan"))
        healthy_at.append(first_ok)
    failed_before = sum(1 for a in addresses for t, ok in load.samples[a] if t < ready and t >= t_issue and not ok)
    failed_after = sum(1 for a in addresses for t, ok in load.samples[a] if t >= ready and not ok)
    webs_done = last_web(st)
    failed_after_restart = sum(1 for a in addresses for t, ok in load.samples[a] if t >= webs_done and not ok)
    return {
        "wall_s": run["wall_s"], "peak_rss_mb": run["peak_rss_mb"],
        "ready_after_issue_s": round(ready - t_issue, 3),
        "trigger_saw_ready_s": round((st.ready or float("nan")) - ready, 3),
        "ready_to_all_healthy_s": round(max(healthy_at) - ready, 3),
        "ready_to_last_web_restarted_s": round(webs_done - ready, 3),
        "failed_before_ready": failed_before, "failed_after_ready": failed_after,
        "failed_after_web_restarted": failed_after_restart,
        "requests": sum(len(s) for s in load.samples.values()),
        "timeline": {"issue": t_issue, "ready": ready, "all_healthy": max(healthy_at),
                     "samples": {a: load.samples[a] for a in addresses}},
    }


def apache_alone(address: str) -> dict:
    """One full and one graceful Apache restart on one host, alone, under the same load: the
    command's time, and from its start until the page answers 200 after its last failure."""
    web = next(h for h in labhosts.current() if h.address == address)
    out = {}
    for name, cmd in (("restart", FULL), ("graceful", GRACEFUL)):
        with Load([address]) as load:
            time.sleep(0.5)
            r = labhosts.run_in(web, f"s=$(date +%s.%N); {cmd} >/dev/null 2>&1; e=$(date +%s.%N); echo $s $e")
            s, e = map(float, r.stdout.split())
            time.sleep(1.5)
        samples = [(t, ok) for t, ok in load.samples[address] if t >= s]
        last_fail = max((t for t, ok in samples if not ok), default=s)
        healthy = min(t for t, ok in samples if ok and t > last_fail)
        out[f"{name}_command_s"] = round(e - s, 3)
        out[f"{name}_to_healthy_s"] = round(healthy - s, 3)
        out[f"{name}_failed_requests"] = sum(1 for _t, ok in samples if not ok)
    return out


def parallel_floor(addresses: list[str], command: str) -> dict:
    """Restart Apache on every web host at once, directly (no SSH, no chain), under the same load:
    what N simultaneous restarts cost on this machine's shared cores, the floor the chain can reach."""
    webs = [h for h in labhosts.current() if h.address in addresses]
    with Load(addresses) as load:
        time.sleep(0.5)
        t0 = time.time()
        threads = [threading.Thread(target=labhosts.run_in, args=(w, f"{command} >/dev/null 2>&1")) for w in webs]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        time.sleep(1.5)
    healthy = []
    for a in addresses:
        samples = [(t, ok) for t, ok in load.samples[a] if t >= t0]
        last_fail = max((t for t, ok in samples if not ok), default=t0)
        healthy.append(min(t for t, ok in samples if ok and t > last_fail))
    return {"to_all_healthy_s": round(max(healthy) - t0, 3)}


def boot_path() -> dict:
    """Power-cycle the DB host; from the trigger starting to the last web host restarted."""
    t0 = time.time()
    labhosts.boot("db")
    deadline = time.time() + run_deadline()
    while time.time() < deadline:
        st = status()
        if st.started is not None and st.started >= t0 and st.done and st.ready is not None:
            return {"trigger_latency_s": round(last_web(st) - st.started, 3),
                    "db_ready_wait_s": round(st.ready - st.started, 3),
                    "ready_to_last_web_s": round(last_web(st) - st.ready, 3)}
        time.sleep(0.2)
    raise LabError("bench: the trigger did not run after the DB host booted")


def watcher_cpu(seconds: float = 20) -> dict:
    """The watcher's own CPU (with the processes it ran) over an idle period, as a share of one core."""
    db = labhosts.host("db")
    read = ("pid=$(cat /run/svrchain/svr_restart_watch.pid); set -- $(cut -d')' -f2 /proc/$pid/stat); "
            "echo $(( ${12} + ${13} + ${14} + ${15} )) $(getconf CLK_TCK)")
    first = labhosts.run_in(db, read).stdout.split()
    t0 = time.monotonic()
    time.sleep(seconds)
    second = labhosts.run_in(db, read).stdout.split()
    ticks, hz = int(second[0]) - int(first[0]), int(first[1])
    return {"idle_s": round(time.monotonic() - t0, 1), "cpu_percent_of_one_core": round(100 * ticks / hz / seconds, 3)}


def dba_restart_path() -> dict:
    """The DBA restarts PostgreSQL by hand (pg_ctl, not the service): from the new postmaster's start
    to the watcher's trigger starting (detection), and on to the last web server restarted."""
    db = labhosts.host("db")
    t0 = time.time()
    labhosts.run_in(db, "su postgres -s /bin/sh -c \"/usr/lib/postgresql/15/bin/pg_ctl restart -s -w -D "
                        "/var/lib/postgresql/15/main -l /var/log/postgresql/postgresql-15-main.log -o "
                        "'-c config_file=/etc/postgresql/15/main/postgresql.conf'\" >/dev/null 2>&1")
    deadline = time.time() + run_deadline()
    while time.time() < deadline:
        st = status()
        if st.started is not None and st.started >= t0 and st.done and st.ready is not None:
            start = labhosts.run_in(db, "pid=$(head -n 1 /var/lib/postgresql/15/main/postmaster.pid); "
                                        "set -- $(cut -d')' -f2 /proc/$pid/stat); "
                                        "echo $(awk '/^btime/ {print $2}' /proc/stat) ${20} $(getconf CLK_TCK)"
                                    ).stdout.split()
            process_start = int(start[0]) + int(start[1]) / int(start[2])
            return {"run_start_to_trigger_s": round(st.started - process_start, 3),
                    "db_ready_to_trigger_ready_s": round(st.ready - db_ready_time(), 3),
                    "ready_to_last_web_s": round(last_web(st) - st.ready, 3)}
        time.sleep(0.2)
    raise LabError("bench: the watcher did not follow the DBA's restart")


def bench_n(n: int) -> dict:
    """One size, on a lab this process holds from up to down (no other process's lab down in between)."""
    with held():
        return _bench_n(n)


def _bench_n(n: int) -> dict:
    print(f"bench: N={n}: lab up", flush=True)
    labhosts.up(n)
    try:
        full = inventory(n, FULL)
        addresses = [h.address for h in labhosts.current() if h.role == "web"]
        res: dict = {"n": n}
        res["bootstrap_scratch"] = measured_run(full, "bootstrap")
        # The no-op run, 5 times: this shared machine's noise is about ±0.2 s; report the median.
        noops = [measured_run(full, "bootstrap") for _ in range(5)]
        res["bootstrap_noop"] = sorted(noops, key=lambda r: r["wall_s"])[2]
        res["bootstrap_noop"]["wall_s_all"] = [r["wall_s"] for r in noops]
        res["bootstrap_noop"]["imports_s"] = import_seconds(full, "bootstrap")
        print(f"bench: N={n}: no-op (median): {where_it_went(res['bootstrap_noop'])}; imports (counted apart) "
              f"{res['bootstrap_noop']['imports_s']} s", flush=True)
        res["verify"] = measured_run(full, "verify")
        res["chain_full"] = chain_under_load(full, addresses)
        graceful = inventory(n, GRACEFUL)
        fab(graceful, "push-key")
        res["chain_graceful"] = chain_under_load(graceful, addresses)
        res["apache_alone"] = apache_alone(addresses[0])
        res["floor_full"] = parallel_floor(addresses, FULL)
        res["floor_graceful"] = parallel_floor(addresses, GRACEFUL)
        res["boot"] = boot_path()
        res["watch_cpu"] = watcher_cpu()
        res["dba_restart"] = dba_restart_path()
        return res
    finally:
        labhosts.down()


def table(results: list[dict], fmt: str = "simple") -> str:
    rows = []
    for r in results:
        s, z = r["bootstrap_scratch"], r["bootstrap_noop"]
        cf, cg, a = r["chain_full"], r["chain_graceful"], r["apache_alone"]
        rows.append([
            r["n"], s["wall_s"], z["wall_s"], z.get("first_conn_s", "-"), z.get("imports_s", "-"),
            z["peak_rss_mb"], f"{z['conns_per_host_max']}",
            f"{s['cmds_per_host_max']}/{z['cmds_per_host_max']}",
            cf["ready_to_all_healthy_s"], a["restart_to_healthy_s"], r["floor_full"]["to_all_healthy_s"],
            f"{cf['failed_after_ready']}/{cf['failed_after_web_restarted']}",
            cg["ready_to_all_healthy_s"], a["graceful_to_healthy_s"], r["floor_graceful"]["to_all_healthy_s"],
            f"{cg['failed_after_ready']}/{cg['failed_after_web_restarted']}",
            r["boot"]["trigger_latency_s"],
            r.get("dba_restart", {}).get("run_start_to_trigger_s", "-"),
            r.get("dba_restart", {}).get("ready_to_last_web_s", "-"),
            r.get("watch_cpu", {}).get("cpu_percent_of_one_core", "-"),
        ])
    headers = ["N", "bootstrap s", "no-op s (median of 5)", "→1st conn s", "imports s", "peak MB", "conns/host",
               "cmds/host 1st/no-op",
               "restart: ready→healthy s", "alone s", "N at once s", "failed after ready/after restart",
               "graceful: ready→healthy s", "alone s", "N at once s", "failed after ready/after restart",
               "boot: trigger→last web s", "DBA restart: new run→trigger s", "ready→last web s",
               "watcher CPU % of a core"]
    headers = [h.replace(" s", " (s)") for h in headers]
    return tabulate(rows, headers=headers, tablefmt=fmt)


def plot(results: list[dict], path: Path) -> None:
    """Request success over time for every host, phases marked: one panel per N and restart kind."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(results), 2, figsize=(14, 3.2 * len(results)), squeeze=False)
    for row, r in enumerate(results):
        for col, key in enumerate(("chain_full", "chain_graceful")):
            ax = axes[row][col]
            tl = r[key]["timeline"]
            t0 = tl["issue"]
            for i, (_addr, samples) in enumerate(sorted(tl["samples"].items())):
                ok = [(t - t0) for t, good in samples if good]
                bad = [(t - t0) for t, good in samples if not good]
                ax.scatter(ok, [i] * len(ok), s=2, c="tab:green", marker="|")
                ax.scatter(bad, [i] * len(bad), s=6, c="tab:red", marker="|")
            for name, color in (("ready", "tab:blue"), ("all_healthy", "tab:purple")):
                ax.axvline(tl[name] - t0, color=color, linestyle="--", label=name.replace("_", " "))
            ax.axvline(0, color="black", linestyle=":", label="restart-chain issued")
            ax.set_title(f"N={r['n']} web hosts, {'full restart' if col == 0 else 'graceful'}")
            ax.set_xlabel("seconds after restart-chain was issued")
            ax.set_ylabel("web host")
            ax.legend(loc="upper right", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    p.add_argument("--n", type=int, nargs="+", default=[1, 4, 8, 16])
    p.add_argument("--markdown", type=Path, help="print the table of an earlier results file as Markdown")
    args = p.parse_args()
    if args.markdown:
        print(table(json.loads(args.markdown.read_text())["results"], "github"))
        return 0
    if os.geteuid() != 0:
        print("bench: must run as root (the lab)", file=sys.stderr)
        return 2
    results = [bench_n(n) for n in args.n]
    stamp = time.strftime("%Y%m%dT%H%M%S")
    RESULTS.mkdir(parents=True, exist_ok=True)
    meta = {"when": stamp, "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                       "kernel": platform.release()}}
    (RESULTS / f"bench-{stamp}.json").write_text(json.dumps({**meta, "results": results}, indent=1))
    plot(results, RESULTS / f"bench-{stamp}.png")
    print(table(results))
    print(f"bench: wrote {RESULTS}/bench-{stamp}.json and .png")
    return 0


if __name__ == "__main__":
    entry(main)
