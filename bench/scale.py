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
import shlex
import statistics
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tabulate import tabulate

from bench.run import FAB, REPO, RESULTS, fab, import_seconds, measure
from bench.run import inventory as bench_inventory
from lab import entry
from lab import hosts as labhosts
from lab.slot import held

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


def measured(inv: Path, *args: str, env: dict | None = None, argv: list[str] | None = None) -> dict:
    """A run (``fab`` with ``args``, or ``argv``): wall time, peak RSS, SSH connections per host."""
    before = accepted()
    if argv is None:
        result = fab(inv, *args)
        result.pop("output")
    else:
        result = command(argv, env)
    time.sleep(0.3)  # rsyslog (DB host) writes its last lines
    after = accepted()
    conns = [after[h] - before.get(h, 0) for h in after]
    return {**result, "conns_per_host_max": max(conns), "conns_per_host_min": min(conns)}


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


def fan_out() -> dict:
    """``service dbora restart`` on the DB host (what restart-chain runs there): the trigger's run."""
    from bench.run import db_ready_time

    db = labhosts.host("db")
    webs = [h for h in labhosts.current() if h.role == "web"]
    status_file = db.root / "var/lib/svrchain/svr_restart.status"
    before = status_file.read_text() if status_file.exists() else ""
    t0 = time.time()
    labhosts.run_in(db, "service dbora restart >/dev/null 2>&1")
    # The trigger's run for the new run of the database: a status that is not the one before, finished.
    deadline = time.time() + 120
    st: dict = {}
    while time.time() < deadline:
        text = status_file.read_text() if status_file.exists() else ""
        try:
            st = _status() if text != before else {}
        except (FileNotFoundError, ValueError, IndexError):
            st = {}
        if "finished" in st:
            break
        time.sleep(0.2)
    else:
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
    return {
        "issued_to_ready_s": round(ready - t0, 3),
        "trigger_started_to_connected_s": round(st["connected"] - st["started"], 3) if "connected" in st else None,
        "ready_to_connected_s": round(st["connected"] - ready, 3) if "connected" in st else None,
        "trigger_saw_ready_s": round(st["ready"] - ready, 3),
        "ready_to_first_restart_s": round(restarts[0], 3) if restarts else None,
        "ready_to_median_restart_s": round(statistics.median(restarts), 3) if restarts else None,
        "ready_to_last_restart_s": round(restarts[-1], 3) if restarts else None,
        "ready_to_last_healthy_s": round(max(healthy) - ready, 3) if healthy else None,
        "restarted": len(done), "not_healthy": sorted(set(bad)),
    }


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


_FLOOR = r"""
import socket, sys, threading, paramiko
hosts, key, known = sys.argv[1].split(","), sys.argv[2], sys.argv[3]
def one(addr):
    s = socket.create_connection((addr, 22)); s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
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
    walls = []
    for _ in range(3):
        t0 = time.monotonic()
        subprocess.run([sys.executable, "-c", _FLOOR, ",".join(hosts), str(i.path(i.connect.identity)),
                        str(i.path(i.connect.known_hosts))], check=True)
        walls.append(time.monotonic() - t0)
    return {"wall_s": round(sorted(walls)[1], 3)}


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
    res["verify"] = "ok" if subprocess.run([FAB, "verify"], cwd=REPO, env={**os.environ, "INVENTORY": str(inv)},
                                           capture_output=True).returncode == 0 else "FAILED"
    return res


# --- one size ----------------------------------------------------------------------------------------


def bench_n(n: int, with_tools: bool, fanouts: int) -> dict:
    """One size, on a lab this process holds from up to down (no other process's lab down in between)."""
    with held():
        return _bench_n(n, with_tools, fanouts)


def _bench_n(n: int, with_tools: bool, fanouts: int) -> dict:
    print(f"bench: N={n}: lab up ({n} light web hosts)", flush=True)
    t0 = time.monotonic()
    labhosts.up(n, kind="light", python=with_tools)
    try:
        res: dict = {"n": n, "web_hosts": "light", "lab_up_s": round(time.monotonic() - t0, 1)}
        inv = inventory(n)
        print(f"bench: N={n}: svrchain bootstrap", flush=True)
        res["svrchain"] = bootstrap_runs(inv, 3)
        res["svrchain"]["noop"]["imports_s"] = import_seconds(inv, "bootstrap")
        res["verify"] = measured(inv, "verify")
        res["handshake"] = handshake_cost(inv)
        res["noop_floor"] = noop_floor(inv)
        res["load_before"] = load_average()
        print(f"bench: N={n}: the trigger's fan-out", flush=True)
        runs = [fan_out() for _ in range(fanouts)]
        res["fan_out_all"] = runs
        good = sorted((r for r in runs if "error" not in r), key=lambda r: r["ready_to_last_restart_s"] or 0)
        res["fan_out"] = good[len(good) // 2] if good else {"ready_to_last_restart_s": None,
                                                            "ready_to_last_healthy_s": None}
        res["restart_floor"] = restart_floor([h for h in labhosts.current() if h.role == "web"])
        if with_tools:
            for tool in ("pyinfra", "ansible"):
                print(f"bench: N={n}: {tool}", flush=True)
                res[tool] = tool_runs(tool, inv, n, 1)
        res["load_after"] = load_average()
        return summarize(res)
    finally:
        labhosts.down()


def summarize(res: dict) -> dict:
    """The issue's keys at the top level of each entry."""
    s, f = res["svrchain"], res["fan_out"]
    res.update({
        "bootstrap_s": s["scratch"]["wall_s"], "noop_s": s["noop"]["wall_s"], "peak_rss_mb": s["peak_rss_mb"],
        "noop_peak_rss_mb": s["noop"]["peak_rss_mb"], "noop_first_conn_s": s["noop"].get("first_conn_s"),
        "noop_imports_s": s["noop"].get("imports_s"),
        "conns_per_host": max(s["scratch"]["conns_per_host_max"], s["noop"]["conns_per_host_max"]),
        "syns_per_host": max(s["scratch"].get("syns_per_host_max", 0), s["noop"].get("syns_per_host_max", 0)),
        "ready_to_last_restart_s": f["ready_to_last_restart_s"],
        "ready_to_last_healthy_s": f["ready_to_last_healthy_s"],
    })
    for tool in ("pyinfra", "ansible"):
        if tool in res:
            t = res[tool]
            res[f"{tool}_bootstrap_s"] = t["scratch"]["wall_s"]
            res[f"{tool}_noop_s"] = t["noop"]["wall_s"]
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
            r.get("noop_floor", {}).get("wall_s", "-"), r.get("restart_floor", {}).get("to_last_healthy_s", "-"),
            r["handshake"]["wall_ms"],
            f"{r['handshake'].get('client_cpu_ms', '-')}/{r['handshake'].get('server_cpu_ms', '-')}",
            r.get("pyinfra_bootstrap_s", "-"), r.get("pyinfra_noop_s", "-"),
            f"{r['pyinfra_noop_ratio']}×" if "pyinfra_noop_ratio" in r else "-",
            r.get("ansible_bootstrap_s", "-"), r.get("ansible_noop_s", "-"),
            f"{r['ansible_noop_ratio']}×" if "ansible_noop_ratio" in r else "-",
        ])
    headers = ["N (light)", "bootstrap s", "no-op s (median of 3)", "no-op →1st conn s", "no-op imports s",
               "peak MB no-op/any", "conns/host (sshd log/SYNs)",
               "DB ready→last restart s", "→last healthy s", "no-op floor s", "N restarts at once s",
               "handshake ms", "handshake CPU ms client/server",
               "pyinfra s", "pyinfra no-op s", "no-op ratio", "Ansible s", "Ansible no-op s", "no-op ratio"]
    return tabulate(rows, headers=[h.replace(" s", " (s)") for h in headers], tablefmt=fmt)


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
    p.add_argument("--merge", type=Path, nargs="+", help="combine results files of separate runs")
    p.add_argument("--markdown", type=Path, help="print the table of a results file as Markdown")
    args = p.parse_args()
    if args.markdown:
        print(table(json.loads(args.markdown.read_text())["results"], "github"))
        return 0
    stamp = time.strftime("%Y%m%dT%H%M%S")
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
        results = [bench_n(n, with_tools, args.fan_outs) for n in args.n]
    path = write(results, stamp)
    pngs = plot(sorted(results, key=lambda r: r["n"]), path.with_suffix(""))
    print(table(sorted(results, key=lambda r: r["n"])))
    print(f"bench: wrote {path} and {', '.join(x.name for x in pngs)}")
    return 0


if __name__ == "__main__":
    entry(main)
